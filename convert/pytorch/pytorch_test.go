package pytorch

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

// safetensorsTensors is a minimal, independent safetensors parse for
// cross-checking: name -> (dtype, shape, bytes).
type stTensor struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets [2]int  `json:"data_offsets"`
	data        []byte
}

func safetensorsTensors(t *testing.T, path string) map[string]stTensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]stTensor{}
	for k, v := range raw {
		if k == "__metadata__" {
			continue
		}
		var e stTensor
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		e.data = b[8+int(n)+e.DataOffsets[0] : 8+int(n)+e.DataOffsets[1]]
		out[k] = e
	}
	return out
}

func TestStories260K(t *testing.T) {
	inv, err := Open(testmodels.Path(t, "stories260K", "pytorch_model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	want := safetensorsTensors(t, testmodels.Path(t, "stories260K", "model.safetensors"))

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
		got, err := e.Source.Bytes()
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		if int64(len(got)) != e.NBytes {
			t.Errorf("%s: %d bytes, NBytes %d", e.Name, len(got), e.NBytes)
		}
		ref := e.Name
		if ref == "lm_head.weight" {
			ref = "model.embed_tokens.weight" // tied: safetensors stores it once
		}
		w, ok := want[ref]
		if !ok {
			t.Errorf("%s: not in model.safetensors", e.Name)
			continue
		}
		if e.DType != ir.F32 || w.DType != "F32" {
			t.Errorf("%s: dtype %v, safetensors %s", e.Name, e.DType, w.DType)
		}
		if !e.Shape.Equal(w.Shape) {
			t.Errorf("%s: shape %v, safetensors %v", e.Name, e.Shape, w.Shape)
		}
		if !bytes.Equal(got, w.data) {
			t.Errorf("%s: bytes differ from model.safetensors", e.Name)
		}
	}
	if total != 292800 {
		t.Errorf("total elements = %d, want 292,800 (260,032 + tied lm_head 32,768)", total)
	}
	emb, head := inv.Lookup("model.embed_tokens.weight"), inv.Lookup("lm_head.weight")
	if emb == nil || head == nil {
		t.Fatal("embed_tokens or lm_head missing")
	}
	if emb.Offset != head.Offset || emb.Offset < 0 {
		t.Errorf("lm_head offset %d, embed_tokens offset %d: want the same shared storage", head.Offset, emb.Offset)
	}
	if got, want := inv.Metadata["pytorch.shared"], "lm_head.weight,model.embed_tokens.weight"; got != want {
		t.Errorf("Metadata[pytorch.shared] = %q, want %q", got, want)
	}
	if got, want := inv.Metadata["pytorch.storages"], "47"; got != want {
		t.Errorf("Metadata[pytorch.storages] = %q, want %q", got, want)
	}
}

// f32s encodes values as little-endian float32.
func f32s(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func iota32(n int) []byte {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return f32s(v...)
}

// refView is the reference strided read: element by element, index by
// index, in row-major order of size.
func refView(data []byte, es, offset int64, size, stride []int64) []byte {
	var out []byte
	n := int64(1)
	for _, s := range size {
		n *= s
	}
	for flat := int64(0); flat < n; flat++ {
		at, rem := offset, flat
		for i := len(size) - 1; i >= 0; i-- {
			at += (rem % size[i]) * stride[i]
			rem /= size[i]
		}
		out = append(out, data[at*es:(at+1)*es]...)
	}
	return out
}

func TestViews(t *testing.T) {
	f := fxStorage{key: "0", class: "FloatStorage", numel: 24, data: iota32(24)}
	h := fxStorage{key: "1", class: "HalfStorage", numel: 6, data: []byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44, 0, 0x45, 0, 0x46}}
	l := fxStorage{key: "2", class: "LongStorage", numel: 3, data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, 0, 0, 0, 0}}
	bo := fxStorage{key: "3", class: "BoolStorage", numel: 4, data: []byte{1, 0, 0, 1}}
	u := fxStorage{key: "4", class: "UntypedStorage", numel: 8, data: []byte{0, 0x3f, 0x80, 0x3f, 0, 0x40, 0x40, 0x40}}
	storages := []fxStorage{f, h, l, bo, u}
	tests := []struct {
		t       fxTensor
		dtype   ir.DType
		want    []byte
		dense   bool // zero-copy view expected
		storage fxStorage
	}{
		{fxTensor{name: "dense", key: "0", size: []int64{4, 6}, stride: []int64{6, 1}}, ir.F32, iota32(24), true, f},
		{fxTensor{name: "offset", key: "0", offset: 6, size: []int64{3, 2}, stride: []int64{2, 1}}, ir.F32, f32s(6, 7, 8, 9, 10, 11), true, f},
		{fxTensor{name: "transposed", key: "0", size: []int64{3, 2}, stride: []int64{1, 3}}, ir.F32, f32s(0, 3, 1, 4, 2, 5), false, f},
		{fxTensor{name: "every-other-row", key: "0", offset: 1, size: []int64{3, 4}, stride: []int64{8, 1}}, ir.F32, f32s(1, 2, 3, 4, 9, 10, 11, 12, 17, 18, 19, 20), false, f},
		{fxTensor{name: "permuted3d", key: "0", size: []int64{4, 3, 2}, stride: []int64{1, 8, 4}}, ir.F32, nil, false, f},
		{fxTensor{name: "size1-any-stride", key: "0", offset: 5, size: []int64{1, 3}, stride: []int64{99, 1}}, ir.F32, f32s(5, 6, 7), true, f},
		{fxTensor{name: "scalar", key: "0", offset: 23, size: []int64{}, stride: []int64{}}, ir.F32, f32s(23), true, f},
		{fxTensor{name: "empty", key: "0", size: []int64{0, 6}, stride: []int64{6, 1}}, ir.F32, []byte{}, false, f},
		{fxTensor{name: "f16", key: "1", size: []int64{2, 3}, stride: []int64{3, 1}}, ir.F16, h.data, true, h},
		{fxTensor{name: "f16-col", key: "1", offset: 1, size: []int64{2}, stride: []int64{3}}, ir.F16, []byte{0, 0x40, 0, 0x45}, false, h},
		{fxTensor{name: "i64", key: "2", size: []int64{3}, stride: []int64{1}}, ir.I64, l.data, true, l},
		{fxTensor{name: "bool", key: "3", size: []int64{2, 2}, stride: []int64{2, 1}}, ir.Bool, bo.data, true, bo},
		{fxTensor{name: "param", key: "0", size: []int64{2}, stride: []int64{1}, rebuild: "param"}, ir.F32, f32s(0, 1), true, f},
		{fxTensor{name: "param-state", key: "0", offset: 2, size: []int64{2}, stride: []int64{1}, rebuild: "param_state"}, ir.F32, f32s(2, 3), true, f},
		{fxTensor{name: "from-type", key: "0", offset: 4, size: []int64{2}, stride: []int64{1}, rebuild: "from_type"}, ir.F32, f32s(4, 5), true, f},
		{fxTensor{name: "v3-bf16", key: "4", offset: 1, size: []int64{3}, stride: []int64{1}, rebuild: "v3", v3DType: "bfloat16"}, ir.BF16, u.data[2:], true, u},
	}
	var tensors []fxTensor
	for _, tt := range tests {
		tensors = append(tensors, tt.t)
	}
	pk := statePickle(tensors, storages, false)
	dir := t.TempDir()
	formats := map[string][]byte{"zip": torchZip(t, pk, storages), "legacy": torchLegacy(tensors, storages)}
	for format, data := range formats {
		inv, err := Open(writeFile(t, dir, format+".bin", data))
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		defer inv.Close()
		if got := inv.Metadata["pytorch.format"]; got != format {
			t.Errorf("%s: Metadata[pytorch.format] = %q", format, got)
		}
		for _, tt := range tests {
			e := inv.Lookup(tt.t.name)
			if e == nil {
				t.Errorf("%s: %s missing", format, tt.t.name)
				continue
			}
			want := tt.want
			if want == nil {
				want = refView(tt.storage.data, int64(tt.dtype.Bits()/8), tt.t.offset, tt.t.size, tt.t.stride)
			}
			got, err := e.Source.Bytes()
			if err != nil {
				t.Errorf("%s: %s: %v", format, tt.t.name, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %s = %v, want %v", format, tt.t.name, got, want)
			}
			if ref := refView(tt.storage.data, int64(tt.dtype.Bits()/8), tt.t.offset, tt.t.size, tt.t.stride); !bytes.Equal(got, ref) {
				t.Errorf("%s: %s differs from the reference strided read", format, tt.t.name)
			}
			if e.DType != tt.dtype || !e.Shape.Equal(tt.t.size) {
				t.Errorf("%s: %s: %v %v, want %v %v", format, tt.t.name, e.DType, e.Shape, tt.dtype, ir.Shape(tt.t.size))
			}
			if dense := e.Offset >= 0; dense != tt.dense {
				t.Errorf("%s: %s: zero-copy = %v (offset %d), want %v", format, tt.t.name, dense, e.Offset, tt.dense)
			}
			if tt.dense && format == "zip" && !bytes.Equal(data[e.Offset:e.Offset+e.NBytes], want) {
				t.Errorf("%s: %s: Offset %d does not point at the data", format, tt.t.name, e.Offset)
			}
		}
	}
}

func TestEntriesSortedAndLocated(t *testing.T) {
	s := fxStorage{key: "7", class: "FloatStorage", numel: 4, data: iota32(4)}
	tensors := []fxTensor{
		{name: "b", key: "7", size: []int64{2, 2}, stride: []int64{2, 1}},
		{name: "a", key: "7", size: []int64{2, 2}, stride: []int64{1, 2}},
	}
	inv, err := Open(writeFile(t, t.TempDir(), "m.bin", torchZip(t, statePickle(tensors, []fxStorage{s}, false), []fxStorage{s})))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	var got []string
	for _, e := range inv.Entries {
		got = append(got, e.Name+" "+e.File+" "+e.Source.Location())
	}
	want := []string{"a m.bin m.bin:archive/data/7 (strided)", "b m.bin m.bin:archive/data/7"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if got, want := inv.Metadata["pytorch.shared"], "a,b"; got != want {
		t.Errorf("Metadata[pytorch.shared] = %q, want %q", got, want)
	}
}

// hostile builds a file whose Open must fail with an error containing want.
type hostile struct {
	name string
	data func(t *testing.T) []byte
	want string
}

func globalPickle(module, name string) []byte {
	var p pkl
	return p.proto(2).global(module, name).str("echo pwned").op(0x85).reduce().stop().Bytes()
}

// stackGlobalPickle is protocol 4: names pushed as strings, memoized, then STACK_GLOBAL.
func stackGlobalPickle(module, name string) []byte {
	var p pkl
	p.proto(4).op(0x8c, byte(len(module))).WriteString(module)
	p.op(0x94).op(0x8c, byte(len(name))).WriteString(name)
	return p.op(0x94).op(0x93).str("1+1").op(0x85).reduce().stop().Bytes()
}

func zipWith(pk []byte, storages ...fxStorage) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return torchZip(t, pk, storages) }
}

func oneTensor(tn fxTensor, s fxStorage) func(t *testing.T) []byte {
	return zipWith(statePickle([]fxTensor{tn}, []fxStorage{s}, false), s)
}

// plainDict turns statePickle's OrderedDict into a plain dict (EMPTY_DICT),
// as in stories260K's pytorch_model.bin.
func plainDict(pk []byte) []byte {
	head := "\x80\x02ccollections\nOrderedDict\n)R"
	return append([]byte("\x80\x02}"), bytes.TrimPrefix(pk, []byte(head))...)
}

func TestHostile(t *testing.T) {
	f4 := fxStorage{key: "0", class: "FloatStorage", numel: 4, data: iota32(4)}
	bigNumel := fxStorage{key: "0", class: "DoubleStorage", numel: 1 << 59, data: iota32(4)}
	tests := []hostile{
		{"os.system", zipWith(globalPickle("os", "system")), `convert: evil.bin: pickle references disallowed global "os.system"`},
		{"posix.system", zipWith(globalPickle("posix", "system")), `disallowed global "posix.system"`},
		{"builtins.eval", zipWith(globalPickle("builtins", "eval")), `disallowed global "builtins.eval"`},
		{"subprocess.Popen", zipWith(globalPickle("subprocess", "Popen")), `disallowed global "subprocess.Popen"`},
		{"builtin object (gopickle built-in)", zipWith(globalPickle("__builtin__", "object")), `disallowed global "__builtin__.object"`},
		{"copy_reg._reconstructor (gopickle built-in)", zipWith(globalPickle("copy_reg", "_reconstructor")), `disallowed global "copy_reg._reconstructor"`},
		{"torch.load", zipWith(globalPickle("torch", "load")), `disallowed global "torch.load"`},
		{"stack global eval", zipWith(stackGlobalPickle("builtins", "eval")), `disallowed global "builtins.eval"`},
		{"stack global non-literal", zipWith(func() []byte {
			var p pkl
			return p.proto(4).op(')').op(')').op(0x93).stop().Bytes()
		}()), "STACK_GLOBAL with a non-string module or name"},
		{"INST opcode", zipWith([]byte("\x80\x02(ios\nsystem\n.")), "opcode 0x69 is not allowed"},
		{"legacy os.system", func(t *testing.T) []byte {
			b := append([]byte{}, legacyMagic...)
			b = append(b, "\x80\x02M\xe9\x03."...)
			b = append(b, "\x80\x02}."...)
			return append(b, globalPickle("os", "system")...)
		}, `convert: evil.bin: pickle references disallowed global "os.system"`},
		{"truncated zip", func(t *testing.T) []byte {
			b := oneTensor(fxTensor{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}, f4)(t)
			return b[:len(b)/2]
		}, "zip: "},
		{"truncated pickle", zipWith([]byte("\x80\x02}"), f4), "pickle: truncated: no STOP opcode in 3 bytes"},
		{"pickle cut in a GLOBAL", zipWith(statePickle([]fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}, []fxStorage{f4}, false)[:60], f4), "unterminated line argument"},
		{"storage offset beyond storage", oneTensor(fxTensor{name: "w", key: "0", offset: 9, size: []int64{2}, stride: []int64{1}}, f4),
			`tensor "w": view (offset 9, size [2], stride [1]) reaches element 10, past the end of storage archive/data/0 (4 elements of f32)`},
		{"strides outside", oneTensor(fxTensor{name: "w", key: "0", size: []int64{2, 2}, stride: []int64{1, 3}}, f4), "reaches element 4, past the end"},
		{"size overflow", oneTensor(fxTensor{name: "w", key: "0", size: []int64{1 << 40, 1 << 40}, stride: []int64{1 << 40, 1}}, f4), "element count overflows int64"},
		{"stride overflow", oneTensor(fxTensor{name: "w", key: "0", size: []int64{4, 1}, stride: []int64{1 << 62, 1}}, f4), "size [4 1] with stride [4611686018427387904 1] overflows"},
		{"broadcast view", oneTensor(fxTensor{name: "w", key: "0", size: []int64{1000}, stride: []int64{0}}, f4), "needs 1000 elements of 4 bytes, storage archive/data/0 has 16 bytes"},
		{"huge numel", oneTensor(fxTensor{name: "w", key: "0", size: []int64{2}, stride: []int64{1}}, bigNumel), "record archive/data/0 has 16 bytes, want"},
		{"numel past int64", oneTensor(fxTensor{name: "w", key: "0", size: []int64{2}, stride: []int64{1}}, fxStorage{key: "0", class: "FloatStorage", numel: math.MaxInt64, data: iota32(4)}), "numel 9223372036854775807 is not a valid size"},
		{"record missing", zipWith(statePickle([]fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}, []fxStorage{f4}, false)), `storage "0": record archive/data/0 is missing`},
		{"compressed record", func(t *testing.T) []byte {
			return writeZip(t, []zipRecord{
				{name: "archive/data.pkl", data: statePickle([]fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}, []fxStorage{f4}, false)},
				{name: "archive/data/0", data: f4.data, method: 8},
			})
		}, "record archive/data/0 is compressed (method 8)"},
		{"key escapes data/", oneTensor(fxTensor{name: "w", key: "../x", size: []int64{4}, stride: []int64{1}}, fxStorage{key: "../x", class: "FloatStorage", numel: 4, data: iota32(4)}), "storage key ../x is not a plain name"},
		{"not a tensor", zipWith(func() []byte {
			var p pkl
			return p.proto(2).op('}').str("epoch").int(3).op('s').stop().Bytes()
		}()), `entry "epoch" is an int, not a tensor`},
		{"not a dict", zipWith(func() []byte {
			var p pkl
			return p.proto(2).op(']').stop().Bytes()
		}()), "checkpoint holds a list, want a state_dict"},
		{"duplicate key in a plain dict", zipWith(plainDict(statePickle([]fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}, {name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}, []fxStorage{f4}, false)), f4), `tensor "w" appears twice`},
		{"odd SETITEMS", zipWith([]byte("\x80\x02}(K\x01u.")), "SETITEMS with an odd number (1) of items"},
		{"odd DICT", zipWith([]byte("\x80\x02(K\x01d.")), "DICT with an odd number (1) of items"},
		{"empty LONG1", zipWith([]byte("\x80\x02\x8a\x00.")), "integer of 0 bytes"},
		{"bytes as dict key", zipWith([]byte("\x80\x03}C\x01xK\x01s.")), "bytes used as a dict key"},
		{"BINBYTES8 of 2^60 bytes", zipWith([]byte("\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10.")), "runs past the end"},
		{"BINUNICODE of 4 GiB", zipWith([]byte("\x80\x02X\xff\xff\xff\xff.")), "runs past the end"},
		{"FRAME of 2^63 bytes", zipWith([]byte("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x80.")), "runs past the end"},
		{"memo miss", zipWith([]byte("\x80\x02h\x05.")), "memo key 5 is not set"},
		{"stack underflow", zipWith([]byte("\x80\x02R.")), "stack underflow"},
		{"deep marks", zipWith(bytes.Repeat([]byte("("), 5000)), "MARKs nested deeper than 1024"},
		{"unknown opcode", zipWith([]byte("\x80\x02\xff.")), "opcode 0xff is not allowed"},
		{"hooks", zipWith(func() []byte {
			var p pkl
			p.proto(2).op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").mark()
			p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(4).tuple().op('Q')
			p.int(0).ints([]int64{4}).ints([]int64{1}).op(0x89).op('}').str("h").int(1).op('s')
			return p.tuple().reduce().op('s').stop().Bytes()
		}(), f4), "backward_hooks must be empty"},
		{"inconsistent storage", zipWith(func() []byte {
			var p pkl
			p.proto(2).op('}').mark()
			for _, cls := range []string{"FloatStorage", "HalfStorage"} {
				p.str(cls).global("torch._utils", "_rebuild_tensor_v2").mark()
				p.mark().str("storage").global("torch", cls).str("0").str("cpu").int(4).tuple().op('Q')
				p.int(0).ints([]int64{4}).ints([]int64{1}).op(0x89).op('N').tuple().reduce()
			}
			return p.op('u').stop().Bytes()
		}(), f4), `storage "0" is declared as 4 x f32 and as 4 x f16`},
		{"two data.pkl", func(t *testing.T) []byte {
			return writeZip(t, []zipRecord{{name: "a/data.pkl", data: []byte("\x80\x02}.")}, {name: "b/data.pkl", data: []byte("\x80\x02}.")}})
		}, "want exactly one <archive>/data.pkl record, found 2"},
		{"torchscript", func(t *testing.T) []byte {
			return writeZip(t, []zipRecord{{name: "a/data.pkl", data: []byte("\x80\x02}.")}, {name: "a/constants.pkl", data: []byte("\x80\x02).")}})
		}, "TorchScript archive"},
		{"big endian", func(t *testing.T) []byte {
			return writeZip(t, []zipRecord{{name: "a/data.pkl", data: []byte("\x80\x02}.")}, {name: "a/byteorder", data: []byte("big")}})
		}, `byteorder record says "big"`},
		{"legacy truncated", func(t *testing.T) []byte {
			tn := []fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}
			b := torchLegacy(tn, []fxStorage{f4})
			return b[:len(b)-3]
		}, `legacy format: record storage 0 (16 bytes at offset`},
		{"legacy wrong count", func(t *testing.T) []byte {
			tn := []fxTensor{{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}}
			b := torchLegacy(tn, []fxStorage{f4})
			b[len(b)-24] = 5
			return b
		}, `legacy format: storage "0" holds 5 elements, the pickle says 4`},
		{"pickle without magic", func(t *testing.T) []byte { return []byte("\x80\x02}.") }, "a pickle without torch's magic number"},
		{"tar", func(t *testing.T) []byte {
			b := make([]byte, 1024)
			copy(b[257:], "ustar")
			return b
		}, "tar-format checkpoint"},
		{"empty file", func(t *testing.T) []byte { return nil }, "not a PyTorch checkpoint"},
		{"random bytes", func(t *testing.T) []byte { return []byte("hello world") }, "not a PyTorch checkpoint"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Open(writeFile(t, dir, "evil.bin", tt.data(t)))
			if err == nil {
				inv.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "convert: evil.bin: ") {
				t.Errorf("error %q\nwant prefix %q and substring %q", err, "convert: evil.bin: ", tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestCorruptStorageCRC(t *testing.T) {
	s := fxStorage{key: "0", class: "FloatStorage", numel: 4, data: iota32(4)}
	data := oneTensor(fxTensor{name: "w", key: "0", size: []int64{4}, stride: []int64{1}}, s)(t)
	i := bytes.Index(data, s.data)
	data[i+5] ^= 0xff
	inv, err := Open(writeFile(t, t.TempDir(), "m.bin", data))
	if err != nil {
		t.Fatal(err) // the CRC is checked lazily, when the bytes are read
	}
	defer inv.Close()
	_, err = inv.Lookup("w").Source.Bytes()
	if err == nil || !strings.Contains(err.Error(), "convert: m.bin: record archive/data/0: crc32") {
		t.Errorf("Bytes() error = %v, want a crc32 mismatch", err)
	}
}

func TestScanPickleWindow(t *testing.T) {
	// A legacy checkpoint's pickles are followed by the storages: only the
	// program up to STOP counts against MaxPickleBytes.
	data := make([]byte, MaxPickleBytes+4096)
	copy(data, "\x80\x02}.")
	if n, err := scanPickle(data); n != 4 || err != nil {
		t.Errorf("scanPickle(pickle + %d trailing bytes) = %d, %v; want 4, nil", len(data)-4, n, err)
	}
	for i := 0; i+1 < len(data); i += 2 {
		data[i], data[i+1] = 0x80, 2 // PROTO 2, PROTO 2, ...: no STOP within the limit
	}
	if _, err := scanPickle(data); err == nil || !strings.Contains(err.Error(), "no STOP opcode in 67108864 bytes") {
		t.Errorf("scanPickle(no STOP) error = %v", err)
	}
}
