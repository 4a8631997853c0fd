package onnx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

// safetensorsData is a minimal, independent safetensors read: name -> bytes.
func safetensorsData(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for k, v := range hdr {
		var e struct {
			DataOffsets [2]int `json:"data_offsets"`
		}
		if k == "__metadata__" {
			continue
		}
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		out[k] = b[8+int(n)+e.DataOffsets[0] : 8+int(n)+e.DataOffsets[1]]
	}
	return out
}

func TestStories260K(t *testing.T) {
	inv, err := Open(testmodels.Path(t, "stories260K-onnx", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if got, want := len(inv.Entries), 48; got != want {
		t.Errorf("len(Entries) = %d, want %d", got, want)
	}
	var total int64
	for _, e := range inv.Entries {
		n, err := e.Shape.NumElements()
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if e.DType != ir.F32 {
			t.Errorf("%s: dtype %v, want f32", e.Name, e.DType)
		}
		b, err := e.Source.Bytes()
		if err != nil || int64(len(b)) != e.NBytes {
			t.Errorf("%s: Bytes() = %d bytes, %v; want %d", e.Name, len(b), err, e.NBytes)
		}
	}
	if total != 292800 {
		t.Errorf("total elements = %d, want 292,800 (260,032 + the separately stored lm_head 32,768)", total)
	}

	st := safetensorsData(t, testmodels.Path(t, "stories260K", "model.safetensors"))
	emb := st["model.embed_tokens.weight"]
	same := map[string]string{
		"p.model__embed_tokens__weight":                        "model.embed_tokens.weight",
		"p.model__norm__weight":                                "model.norm.weight",
		"p.model__layers__3__post_attention_layernorm__weight": "model.layers.3.post_attention_layernorm.weight",
	}
	for onnxName, stName := range same {
		e := inv.Lookup(onnxName)
		if e == nil {
			t.Fatalf("%s missing", onnxName)
		}
		got, _ := e.Source.Bytes()
		if !bytes.Equal(got, st[stName]) {
			t.Errorf("%s differs from safetensors %s", onnxName, stName)
		}
	}
	// The export stores lm_head as a MatMul weight: the embedding transposed.
	head := inv.Lookup("onnx::MatMul_1326")
	if head == nil || !head.Shape.Equal(ir.Shape{64, 512}) {
		t.Fatalf("lm_head initializer onnx::MatMul_1326 = %+v, want [64 512]", head)
	}
	hb, _ := head.Source.Bytes()
	for i := 0; i < 64; i++ {
		for j := 0; j < 512; j++ {
			if !bytes.Equal(hb[4*(i*512+j):4*(i*512+j)+4], emb[4*(j*64+i):4*(j*64+i)+4]) {
				t.Fatalf("lm_head[%d][%d] != embed_tokens[%d][%d]", i, j, j, i)
			}
		}
	}

	md := inv.Metadata
	for k, want := range map[string]string{
		"onnx.ir_version": "8", "onnx.opset": "ai.onnx=17", "onnx.producer": "pytorch 1.13.0",
		"onnx.nodes": "950", "onnx.graph": "torch_jit",
		"onnx.inputs": "input_ids:i64[batch,sequence]", "onnx.outputs": "logits:f32[batch,sequence,512]",
	} {
		if md[k] != want {
			t.Errorf("Metadata[%s] = %q, want %q", k, md[k], want)
		}
	}
	var ops []string
	for _, kv := range strings.Split(md["onnx.ops"], ",") {
		ops = append(ops, strings.SplitN(kv, "=", 2)[0])
	}
	// the op list in ../shared/models/README.md
	want := strings.Fields("Add Cast Concat Constant ConstantOfShape Cos Div Einsum Equal Expand Gather MatMul Mul Neg Pow Range ReduceMean Reshape Shape Sigmoid Sin Slice Softmax Sqrt Transpose Trilu Unsqueeze Where")
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("op types (-README +got):\n%s", diff)
	}
}

// Fixture helpers.

func f32s(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func model(inits ...*onnxpb.TensorProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion: 10, ProducerName: "smelt-test", OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 21}},
		Graph: &onnxpb.GraphProto{Name: "g", Initializer: inits, Node: []*onnxpb.NodeProto{
			{OpType: "MatMul", Input: []string{"x", "w"}, Output: []string{"y"}},
			{OpType: "MatMulNBits", Domain: "com.microsoft", Input: []string{"y", "q"}, Output: []string{"z"}},
		}},
	}
}

func tensor(name string, dt onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: name, DataType: int32(dt), Dims: dims}
}

func marshal(t testing.TB, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func ext(location string, kv ...string) []*onnxpb.StringStringEntryProto {
	out := []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}}
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &onnxpb.StringStringEntryProto{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func with(t *onnxpb.TensorProto, f func(*onnxpb.TensorProto)) *onnxpb.TensorProto { f(t); return t }

// unpackedFloats is a model whose one initializer stores float_data
// unpacked (one fixed32 field per value), as proto2 writers may.
func unpackedFloats(t testing.TB, name string, v ...float32) []byte {
	tb := marshalTensor(t, tensor(name, onnxpb.TensorProto_FLOAT, int64(len(v))))
	for _, x := range v {
		tb = protowire.AppendTag(tb, tensorFloatData, protowire.Fixed32Type)
		tb = protowire.AppendFixed32(tb, math.Float32bits(x))
	}
	return wrapTensor(t, tb)
}

func marshalTensor(t testing.TB, tp *onnxpb.TensorProto) []byte {
	b, err := proto.Marshal(tp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wrapTensor(t testing.TB, tb []byte) []byte {
	m := model()
	g := marshalGraph(t, m.Graph)
	g = protowire.AppendTag(g, graphInitializer, protowire.BytesType)
	g = protowire.AppendBytes(g, tb)
	m.Graph = nil
	b := marshal(t, m)
	b = protowire.AppendTag(b, modelGraph, protowire.BytesType)
	return protowire.AppendBytes(b, g)
}

func marshalGraph(t testing.TB, g *onnxpb.GraphProto) []byte {
	b, err := proto.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInitializers(t *testing.T) {
	dir := t.TempDir()
	// external file: 16 bytes of padding, w1 (2 f32), padding, w2 (3 f32)
	extData := append(make([]byte, 16), f32s(1.5, -2)...)
	extData = append(extData, make([]byte, 4)...)
	extData = append(extData, f32s(7, 8, 9)...)
	write(t, dir, "weights/w.bin", extData)
	write(t, dir, "whole.bin", f32s(3, 4))
	inits := []*onnxpb.TensorProto{
		with(tensor("raw", onnxpb.TensorProto_FLOAT, 2, 2), func(p *onnxpb.TensorProto) { p.RawData = f32s(1, 2, 3, 4) }),
		with(tensor("float_data", onnxpb.TensorProto_FLOAT, 3), func(p *onnxpb.TensorProto) { p.FloatData = []float32{0.5, -1, 1e30} }),
		with(tensor("f16", onnxpb.TensorProto_FLOAT16, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{0x3c00, 0xc000} }),
		with(tensor("bf16", onnxpb.TensorProto_BFLOAT16, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{0x3f80, 0xbf80} }),
		with(tensor("i8", onnxpb.TensorProto_INT8, 3), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{-128, 0, 127} }),
		with(tensor("u8", onnxpb.TensorProto_UINT8, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{0, 255} }),
		with(tensor("i16", onnxpb.TensorProto_INT16, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{-300, 300} }),
		with(tensor("i32", onnxpb.TensorProto_INT32, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{math.MinInt32, 5} }),
		with(tensor("bool", onnxpb.TensorProto_BOOL, 3), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{1, 0, 1} }),
		with(tensor("i4", onnxpb.TensorProto_INT4, 3), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{0x8f, 0x07} }),
		with(tensor("u4", onnxpb.TensorProto_UINT4, 2, 2), func(p *onnxpb.TensorProto) { p.RawData = []byte{0x21, 0x43} }),
		with(tensor("i64", onnxpb.TensorProto_INT64, 2), func(p *onnxpb.TensorProto) { p.Int64Data = []int64{-1, 1 << 40} }),
		with(tensor("f64", onnxpb.TensorProto_DOUBLE, 1), func(p *onnxpb.TensorProto) { p.DoubleData = []float64{math.Pi} }),
		with(tensor("u32", onnxpb.TensorProto_UINT32, 1), func(p *onnxpb.TensorProto) { p.Uint64Data = []uint64{math.MaxUint32} }),
		with(tensor("scalar", onnxpb.TensorProto_FLOAT), func(p *onnxpb.TensorProto) { p.FloatData = []float32{42} }),
		tensor("empty", onnxpb.TensorProto_FLOAT, 0, 3),
		with(tensor("ext1", onnxpb.TensorProto_FLOAT, 2), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			p.ExternalData = ext("weights/w.bin", "offset", "16", "length", "8")
		}),
		with(tensor("ext2", onnxpb.TensorProto_FLOAT, 3), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			p.ExternalData = ext("weights/w.bin", "offset", "28", "checksum", "ignored")
		}),
		with(tensor("ext-whole", onnxpb.TensorProto_FLOAT, 2), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			p.ExternalData = ext("./whole.bin")
		}),
	}
	le16 := func(v ...uint16) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, x)
		}
		return b
	}
	want := map[string]struct {
		dtype ir.DType
		shape ir.Shape
		data  []byte
		file  string
	}{
		"raw":        {ir.F32, ir.Shape{2, 2}, f32s(1, 2, 3, 4), "model.onnx"},
		"float_data": {ir.F32, ir.Shape{3}, f32s(0.5, -1, 1e30), "model.onnx"},
		"f16":        {ir.F16, ir.Shape{2}, le16(0x3c00, 0xc000), "model.onnx"},
		"bf16":       {ir.BF16, ir.Shape{2}, le16(0x3f80, 0xbf80), "model.onnx"},
		"i8":         {ir.I8, ir.Shape{3}, []byte{0x80, 0, 0x7f}, "model.onnx"},
		"u8":         {ir.U8, ir.Shape{2}, []byte{0, 255}, "model.onnx"},
		"i16":        {ir.I16, ir.Shape{2}, le16(0xfed4, 300), "model.onnx"},
		"i32":        {ir.I32, ir.Shape{2}, []byte{0, 0, 0, 0x80, 5, 0, 0, 0}, "model.onnx"},
		"bool":       {ir.Bool, ir.Shape{3}, []byte{1, 0, 1}, "model.onnx"},
		"i4":         {ir.I4, ir.Shape{3}, []byte{0x8f, 0x07}, "model.onnx"},
		"u4":         {ir.U4, ir.Shape{2, 2}, []byte{0x21, 0x43}, "model.onnx"},
		"i64":        {ir.I64, ir.Shape{2}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0, 0}, "model.onnx"},
		"f64":        {ir.F64, ir.Shape{1}, binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.Pi)), "model.onnx"},
		"u32":        {ir.U32, ir.Shape{1}, []byte{0xff, 0xff, 0xff, 0xff}, "model.onnx"},
		"scalar":     {ir.F32, ir.Shape{}, f32s(42), "model.onnx"},
		"empty":      {ir.F32, ir.Shape{0, 3}, []byte{}, "model.onnx"},
		"ext1":       {ir.F32, ir.Shape{2}, f32s(1.5, -2), "weights/w.bin"},
		"ext2":       {ir.F32, ir.Shape{3}, f32s(7, 8, 9), "weights/w.bin"},
		"ext-whole":  {ir.F32, ir.Shape{2}, f32s(3, 4), "whole.bin"},
	}
	m, err := OpenModel(write(t, dir, "model.onnx", marshal(t, model(inits...))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	inv := m.Inventory
	if len(inv.Entries) != len(want) {
		t.Errorf("%d entries, want %d", len(inv.Entries), len(want))
	}
	for _, e := range inv.Entries {
		w, ok := want[e.Name]
		if !ok {
			t.Errorf("unexpected entry %q", e.Name)
			continue
		}
		got, err := e.Source.Bytes()
		if err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		if e.DType != w.dtype || !e.Shape.Equal(w.shape) || e.File != w.file || !bytes.Equal(got, w.data) {
			t.Errorf("%s = %v %v %s %x, want %v %v %s %x", e.Name, e.DType, e.Shape, e.File, got, w.dtype, w.shape, w.file, w.data)
		}
		if e.NBytes != int64(len(w.data)) {
			t.Errorf("%s: NBytes = %d, want %d", e.Name, e.NBytes, len(w.data))
		}
	}
	// raw and external data are zero-copy: Offset points at them in File.
	for _, name := range []string{"raw", "u4", "ext1", "ext2", "ext-whole"} {
		e := inv.Lookup(name)
		file, _ := os.ReadFile(filepath.Join(dir, e.File))
		if e.Offset < 0 || !bytes.Equal(file[e.Offset:e.Offset+e.NBytes], want[name].data) {
			t.Errorf("%s: Offset %d in %s does not hold its data", name, e.Offset, e.File)
		}
	}
	if diff := cmp.Diff([]string{"model.onnx", "weights/w.bin", "whole.bin"}, inv.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if got, want := inv.Metadata["onnx.ops"], "MatMul=1,com.microsoft.MatMulNBits=1"; got != want {
		t.Errorf("Metadata[onnx.ops] = %q, want %q", got, want)
	}
	for _, ti := range m.Proto.Graph.Initializer {
		if len(ti.RawData)+len(ti.FloatData)+len(ti.Int32Data)+len(ti.Int64Data) != 0 {
			t.Errorf("Proto initializer %q still holds its data", ti.Name)
		}
	}
}

func TestUnpackedTypedFields(t *testing.T) {
	inv, err := Open(write(t, t.TempDir(), "model.onnx", unpackedFloats(t, "w", 1, 2, 3)))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	got, err := inv.Lookup("w").Source.Bytes()
	if err != nil || !bytes.Equal(got, f32s(1, 2, 3)) {
		t.Errorf("Bytes() = %v, %v; want %v", got, err, f32s(1, 2, 3))
	}
}

func TestHostile(t *testing.T) {
	extern := func(name string, n int64, kv ...string) *onnxpb.TensorProto {
		return with(tensor(name, onnxpb.TensorProto_FLOAT, n), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			if len(kv) > 0 {
				p.ExternalData = ext(kv[0], kv[1:]...)
			}
		})
	}
	raw := func(name string, dt onnxpb.TensorProto_DataType, data []byte, dims ...int64) *onnxpb.TensorProto {
		return with(tensor(name, dt, dims...), func(p *onnxpb.TensorProto) { p.RawData = data })
	}
	good := marshal(t, model(raw("w", onnxpb.TensorProto_FLOAT, f32s(1, 2, 3, 4), 4)))
	tests := []struct {
		name  string
		model func(t *testing.T, dir string) []byte
		want  string
	}{
		{"dotdot", models(extern("w", 2, "../x")), `convert: model.onnx: initializer "w": external data location "../x" escapes the model folder`},
		{"etc passwd", models(extern("w", 2, "../../etc/passwd")), `initializer "w": external data location "../../etc/passwd" escapes the model folder`},
		{"absolute", models(extern("w", 2, "/etc/passwd")), `external data location "/etc/passwd" escapes the model folder`},
		{"inner dotdot", models(extern("w", 2, "sub/../../x")), `external data location "sub/../../x" escapes the model folder`},
		{"symlink escape", func(t *testing.T, dir string) []byte {
			outside := write(t, t.TempDir(), "secret.bin", f32s(1, 2))
			if err := os.Symlink(outside, filepath.Join(dir, "link.bin")); err != nil {
				t.Fatal(err)
			}
			return marshal(t, model(extern("w", 2, "link.bin")))
		}, `external data location "link.bin" escapes the model folder`},
		{"symlinked folder escape", func(t *testing.T, dir string) []byte {
			outside := t.TempDir()
			write(t, outside, "secret.bin", f32s(1, 2))
			if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
				t.Fatal(err)
			}
			return marshal(t, model(extern("w", 2, "sub/secret.bin")))
		}, `external data location "sub/secret.bin" escapes the model folder`},
		{"missing external file", models(extern("w", 2, "nope.bin")), `external data file "nope.bin"`},
		{"no location", models(extern("w", 2)), `initializer "w": external data has no location`},
		{"offset past end", withExt(extern("w", 2, "w.bin", "offset", "100")), "external data offset 100 is past the end of w.bin (8 bytes)"},
		{"length past end", withExt(extern("w", 2, "w.bin", "offset", "4", "length", "8")), "external data (offset 4, length 8) runs past the end of w.bin (8 bytes)"},
		{"huge length", withExt(extern("w", 2, "w.bin", "length", "9223372036854775807")), "runs past the end of w.bin"},
		{"length mismatch", withExt(extern("w", 1, "w.bin")), "external data has 8 bytes, want 4 for f32 [1]"},
		{"negative offset", withExt(extern("w", 2, "w.bin", "offset", "-1")), `external data offset "-1" is not a non-negative integer`},
		{"hex offset", withExt(extern("w", 2, "w.bin", "offset", "0x10")), `external data offset "0x10" is not a non-negative integer`},
		{"unknown key", withExt(extern("w", 2, "w.bin", "compression", "zstd")), `unknown external_data key "compression"`},
		{"duplicate key", withExt(extern("w", 2, "w.bin", "location", "other.bin")), `external_data key "location" appears twice`},
		{"external plus raw", withExt(with(extern("w", 2, "w.bin"), func(p *onnxpb.TensorProto) { p.RawData = f32s(1, 2) })), "external data and raw_data both present"},
		{"truncated file", func(t *testing.T, dir string) []byte { return good[:len(good)-7] }, "convert: model.onnx: not a valid ONNX model"},
		{"wrong raw_data length", models(raw("w", onnxpb.TensorProto_FLOAT, f32s(1, 2, 3), 4)), `initializer "w": raw_data has 12 bytes, want 16 for f32 [4]`},
		{"int4 raw_data length", models(raw("w", onnxpb.TensorProto_INT4, []byte{1, 2}, 5)), `raw_data has 2 bytes, want 3 for i4 [5]`},
		{"typed count", models(with(tensor("w", onnxpb.TensorProto_FLOAT, 4), func(p *onnxpb.TensorProto) { p.FloatData = []float32{1} })), "float_data has 1 values, want 4 for f32 [4]"},
		{"wrong typed field", models(with(tensor("w", onnxpb.TensorProto_INT8, 1), func(p *onnxpb.TensorProto) { p.FloatData = []float32{1} })), "float_data present for a i8 tensor (want raw_data or int32_data)"},
		{"raw and typed", models(with(tensor("w", onnxpb.TensorProto_FLOAT, 1), func(p *onnxpb.TensorProto) { p.FloatData = []float32{1}; p.RawData = f32s(1) })), "both float_data and raw_data present"},
		{"no data", models(tensor("w", onnxpb.TensorProto_FLOAT, 2)), `initializer "w": f32 [2] has no data`},
		{"string", models(with(tensor("w", onnxpb.TensorProto_STRING, 1), func(p *onnxpb.TensorProto) { p.StringData = [][]byte{[]byte("x")} })), `initializer "w": data type STRING (8) is not supported`},
		{"uint16", models(raw("w", onnxpb.TensorProto_UINT16, []byte{1, 2}, 1)), `initializer "w": data type UINT16 (4) is not supported`},
		{"float8", models(raw("w", onnxpb.TensorProto_FLOAT8E4M3FN, []byte{1}, 1)), `initializer "w": data type FLOAT8E4M3FN (17) is not supported`},
		{"shape overflow", models(raw("w", onnxpb.TensorProto_FLOAT, nil, 1<<40, 1<<40)), `initializer "w": ir: shape [1099511627776 1099511627776]: element count overflows int64`},
		{"negative dim", models(raw("w", onnxpb.TensorProto_FLOAT, nil, -1)), "dim 0 is negative"},
		{"segment", models(with(raw("w", onnxpb.TensorProto_FLOAT, f32s(1), 1), func(p *onnxpb.TensorProto) { p.Segment = &onnxpb.TensorProto_Segment{End: 1} })), "segmented tensors are not supported"},
		{"duplicate initializer", models(raw("w", onnxpb.TensorProto_FLOAT, f32s(1), 1), raw("w", onnxpb.TensorProto_FLOAT, f32s(1), 1)), `initializer "w" appears twice`},
		{"unnamed initializer", models(raw("", onnxpb.TensorProto_FLOAT, f32s(1), 1)), "initializer 0 has no name"},
		{"sparse initializer", func(t *testing.T, dir string) []byte {
			m := model()
			m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{Values: tensor("sp", onnxpb.TensorProto_FLOAT, 1)}}
			return marshal(t, m)
		}, `sparse initializer "sp" is not supported`},
		{"no graph", func(t *testing.T, dir string) []byte { return nil }, "convert: model.onnx: model has no graph"},
		{"two graphs", func(t *testing.T, dir string) []byte {
			b := marshal(t, model())
			return append(b, marshal(t, &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{Name: "h"}})...)
		}, "model has 2 graph fields, want 1"},
		{"random bytes", func(t *testing.T, dir string) []byte { return []byte("\xff\xff\xff\xff") }, "not a valid ONNX model"},
		{"too many messages", func(t *testing.T, dir string) []byte {
			g := bytes.Repeat([]byte{0x0a, 0x00}, MaxProtoMessages+1) // empty NodeProtos
			b := protowire.AppendTag(nil, modelGraph, protowire.BytesType)
			return protowire.AppendBytes(b, g)
		}, "model too large to decode: more than 2097152 messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			inv, err := Open(write(t, dir, "model.onnx", tt.model(t, dir)))
			if err == nil {
				inv.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "convert: model.onnx: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant one line with prefix %q and substring %q", err, "convert: model.onnx: ", tt.want)
			}
		})
	}
}

func models(inits ...*onnxpb.TensorProto) func(t *testing.T, dir string) []byte {
	return func(t *testing.T, dir string) []byte { return marshal(t, model(inits...)) }
}

// withExt writes w.bin (8 bytes) next to the model.
func withExt(inits ...*onnxpb.TensorProto) func(t *testing.T, dir string) []byte {
	return func(t *testing.T, dir string) []byte {
		write(t, dir, "w.bin", f32s(1, 2))
		return marshal(t, model(inits...))
	}
}

func TestTypedValueOutOfRange(t *testing.T) {
	tests := []struct {
		dt   onnxpb.TensorProto_DataType
		v    int32
		want string
	}{
		{onnxpb.TensorProto_INT8, 300, "value 300 out of range [-128, 127] for i8"},
		{onnxpb.TensorProto_UINT8, -1, "value -1 out of range [0, 255] for u8"},
		{onnxpb.TensorProto_BOOL, 2, "value 2 out of range [0, 1] for bool"},
		{onnxpb.TensorProto_FLOAT16, 70000, "value 70000 out of range [0, 65535] for f16"},
	}
	for _, tt := range tests {
		m := model(with(tensor("w", tt.dt, 1), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{tt.v} }))
		inv, err := Open(write(t, t.TempDir(), "model.onnx", marshal(t, m)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = inv.Lookup("w").Source.Bytes()
		inv.Close()
		if err == nil || err.Error() != `convert: model.onnx: initializer "w": `+tt.want {
			t.Errorf("%v %d: Bytes() error = %v, want %q", tt.dt, tt.v, err, tt.want)
		}
	}
}

func TestEntriesSorted(t *testing.T) {
	m := model(
		with(tensor("b", onnxpb.TensorProto_FLOAT, 1), func(p *onnxpb.TensorProto) { p.RawData = f32s(1) }),
		with(tensor("a", onnxpb.TensorProto_FLOAT, 1), func(p *onnxpb.TensorProto) { p.RawData = f32s(2) }),
	)
	inv, err := Open(write(t, t.TempDir(), "model.onnx", marshal(t, m)))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	var names []string
	for _, e := range inv.Entries {
		names = append(names, e.Name)
	}
	if !sort.StringsAreSorted(names) || len(names) != 2 {
		t.Errorf("entries %v, want [a b]", names)
	}
}
