package ir

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/x448/float16"
)

func TestParseDType(t *testing.T) {
	for d := F64; d <= Bool; d++ {
		got, err := ParseDType(strings.ToUpper(d.String()))
		if err != nil || got != d {
			t.Errorf("ParseDType(%q) = %v, %v, want %v", strings.ToUpper(d.String()), got, err, d)
		}
		b, err := d.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back DType
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("text round trip of %v gives %v, %v", d, back, err)
		}
	}
	for _, s := range []string{"", "invalid", "f8", "float32"} {
		if _, err := ParseDType(s); err == nil {
			t.Errorf("ParseDType(%q) succeeded", s)
		}
	}
	if _, err := Invalid.MarshalText(); err == nil {
		t.Error("Invalid.MarshalText succeeded")
	}
	if got, want := DType(200).String(), "dtype(200)"; got != want {
		t.Errorf("DType(200).String() = %q, want %q", got, want)
	}
}

func TestDTypeBits(t *testing.T) {
	want := map[DType]int{F64: 64, F32: 32, F16: 16, BF16: 16, I64: 64, I32: 32, I16: 16, I8: 8, U8: 8, U32: 32, I4: 4, U4: 4, Bool: 8, Invalid: 0}
	for d, w := range want {
		if got := d.Bits(); got != w {
			t.Errorf("%v.Bits() = %d, want %d", d, got, w)
		}
	}
}

func TestShapeSizes(t *testing.T) {
	tests := []struct {
		shape   Shape
		dtype   DType
		elems   int64
		bytes   int64
		wantErr string
	}{
		{Shape{}, F32, 1, 4, ""},
		{Shape{0, 5}, F16, 0, 0, ""},
		{Shape{3, 5}, BF16, 15, 30, ""},
		{Shape{3}, I4, 3, 2, ""}, // 4-bit types round up to whole bytes
		{Shape{4096, 4096}, U4, 1 << 24, 1 << 23, ""},
		{Shape{2, -1}, F32, 0, 0, "dim 1 is negative (-1)"},
		{Shape{1 << 32, 1 << 32}, U8, 0, 0, "element count overflows int64"},
		{Shape{3, 3074457345618258603}, U8, 0, 0, "element count overflows int64"},
		{Shape{1 << 61}, F32, 1 << 61, 0, "byte size overflows int64"},
		{Shape{math.MaxInt64}, U8, math.MaxInt64, 0, "byte size overflows"}, // n*8 bits overflows
		{Shape{2}, Invalid, 2, 0, "has no size"},
	}
	for _, tt := range tests {
		t.Run(tt.shape.String()+tt.dtype.String(), func(t *testing.T) {
			n, nerr := tt.shape.NumElements()
			b, berr := tt.shape.ByteSize(tt.dtype)
			if tt.wantErr == "" {
				if nerr != nil || berr != nil || n != tt.elems || b != tt.bytes {
					t.Errorf("NumElements = %d, %v; ByteSize = %d, %v; want %d, %d", n, nerr, b, berr, tt.elems, tt.bytes)
				}
				return
			}
			err := berr
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ByteSize error = %v, want %q", err, tt.wantErr)
			}
			if nerr == nil && n != tt.elems {
				t.Errorf("NumElements = %d, want %d", n, tt.elems)
			}
		})
	}
	if got, want := (Shape{-1, 64}).String(), "[? 64]"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if (Shape{1, 2}).Equal(Shape{1}) || !(Shape{1, 2}).Equal(Shape{1, 2}) {
		t.Error("Shape.Equal wrong")
	}
}

// TestDecodeFloat32 checks every dtype against values written with the
// standard library (and x448/float16 for f16).
func TestDecodeFloat32(t *testing.T) {
	le := binary.LittleEndian
	vals := []float64{0, 1, -2, 3, -100} // exact in every dtype
	tests := []struct {
		d   DType
		enc func(x float64) []byte
	}{
		{F64, func(x float64) []byte { return le.AppendUint64(nil, math.Float64bits(x)) }},
		{F32, func(x float64) []byte { return le.AppendUint32(nil, math.Float32bits(float32(x))) }},
		{F16, func(x float64) []byte { return le.AppendUint16(nil, float16.Fromfloat32(float32(x)).Bits()) }},
		{BF16, func(x float64) []byte { return le.AppendUint16(nil, uint16(math.Float32bits(float32(x))>>16)) }},
		{I64, func(x float64) []byte { return le.AppendUint64(nil, uint64(int64(x))) }},
		{I32, func(x float64) []byte { return le.AppendUint32(nil, uint32(int32(x))) }},
		{I16, func(x float64) []byte { return le.AppendUint16(nil, uint16(int16(x))) }},
		{I8, func(x float64) []byte { return []byte{byte(int8(x))} }},
	}
	for _, tt := range tests {
		var b []byte
		want := make([]float32, len(vals))
		for i, x := range vals {
			b = append(b, tt.enc(x)...)
			want[i] = float32(x)
		}
		got, err := DecodeFloat32(tt.d, b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DecodeFloat32(%v) (-want +got):\n%s", tt.d, diff)
		}
	}
	if got, _ := DecodeFloat32(U8, []byte{0, 255}); !cmp.Equal(got, []float32{0, 255}) {
		t.Errorf("u8 = %v", got)
	}
	if got, _ := DecodeFloat32(U32, le.AppendUint32(nil, 1<<31)); !cmp.Equal(got, []float32{1 << 31}) {
		t.Errorf("u32 = %v", got)
	}
	if _, err := DecodeFloat32(I4, []byte{1}); err == nil {
		t.Error("DecodeFloat32(i4) succeeded")
	}
}

// TestF16TableAllPatterns compares the lookup table with x448/float16 on all
// 65536 half-precision bit patterns (NaNs compared as NaN).
func TestF16TableAllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		got, want := F16ToF32(uint16(i)), float16.Frombits(uint16(i)).Float32()
		if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Fatalf("F16ToF32(%#04x) = %g, want %g", i, got, want)
		}
	}
}

func TestF32ToBF16(t *testing.T) {
	tests := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1.0
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0x7f7fffff, 0x7f80}, // max float rounds to +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x7fc00001, 0x7fc0}, // quiet NaN stays NaN
		{0x7f800001, 0x7fc0}, // signalling NaN becomes quiet, not Inf
	}
	for _, tt := range tests {
		if got := F32ToBF16(math.Float32frombits(tt.in)); got != tt.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestEncodeFloat32RoundTrip(t *testing.T) {
	v := []float32{0, 1, -0.5, 65504, 1e-3, 3.14159}
	for _, d := range []DType{F32, F16, BF16} {
		b, err := EncodeFloat32(d, v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeFloat32(d, b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			tol := map[DType]float64{F32: 0, F16: 1.0 / 2048, BF16: 1.0 / 256}[d]
			if math.Abs(float64(back[i]-v[i])) > tol*math.Abs(float64(v[i])) {
				t.Errorf("%v: %g -> %g", d, v[i], back[i])
			}
		}
	}
	if _, err := EncodeFloat32(I8, v); err == nil {
		t.Error("EncodeFloat32(i8) succeeded")
	}
}

// reverseRows is a test Transform: reverses the rows of a 2-D tensor and
// widens f16 to f32.
type reverseRows struct{}

func (reverseRows) Name() string { return "reverse-rows" }
func (reverseRows) Apply(d DType, s Shape, b []byte) (DType, Shape, []byte, error) {
	v, err := DecodeFloat32(d, b)
	if err != nil {
		return 0, nil, nil, err
	}
	rows, cols := int(s[0]), int(s[1])
	out := make([]float32, 0, len(v))
	for r := rows - 1; r >= 0; r-- {
		out = append(out, v[r*cols:(r+1)*cols]...)
	}
	enc, err := EncodeFloat32(F32, out)
	return F32, s, enc, err
}

func TestTensorData(t *testing.T) {
	src, _ := EncodeFloat32(F16, []float32{1, 2, 3, 4, 5, 6})
	tt := &Tensor{Name: "w", DType: F32, Shape: Shape{3, 2}, SrcDType: F16, SrcShape: Shape{3, 2},
		Source: &BytesSource{Data: src}, Transforms: []Transform{reverseRows{}}}
	got, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{5, 6, 3, 4, 1, 2}, got); diff != "" {
		t.Errorf("Float32 (-want +got):\n%s", diff)
	}

	short := &Tensor{Name: "s", DType: F32, Shape: Shape{4}, Source: &BytesSource{Data: make([]byte, 12), Loc: "x.bin"}}
	if _, err := short.Data(); err == nil || err.Error() != `ir: tensor "s" from x.bin: 12 bytes, want 16 for f32 [4]` {
		t.Errorf("Data error = %v", err)
	}
	lying := &Tensor{Name: "l", DType: F16, Shape: Shape{3, 2}, SrcDType: F16, SrcShape: Shape{3, 2}, Source: &BytesSource{Data: src}, Transforms: []Transform{reverseRows{}}}
	if _, err := lying.Data(); err == nil || !strings.Contains(err.Error(), "transforms give f32 [3 2], declared f16 [3 2]") {
		t.Errorf("Data error = %v", err)
	}
	if _, err := (&Tensor{Name: "n"}).Data(); err == nil {
		t.Error("Data without a source succeeded")
	}
	q := &Tensor{Name: "q", DType: U8, Shape: Shape{2}, Source: &BytesSource{Data: []byte{1, 2}}, Quant: &QuantInfo{Scheme: "int4-g32-sym"}}
	if _, err := q.Float32(); err == nil || !strings.Contains(err.Error(), "is quantized (int4-g32-sym)") {
		t.Errorf("Float32 on a quantized tensor: %v", err)
	}
	if got := (&BytesSource{}).Location(); got != "memory" {
		t.Errorf("Location = %q", got)
	}
}

// sampleGraph is a small valid graph covering constants, a bias, a
// transform and quantized weights.
func sampleGraph() *Graph {
	w := func(name string, d DType, s Shape) *Tensor {
		n, _ := s.ByteSize(d)
		return &Tensor{Name: name, DType: d, Shape: s, SrcDType: d, SrcShape: s, Source: &BytesSource{Data: make([]byte, n), Loc: "model.safetensors"}}
	}
	emb := w("token_embd.weight", F32, Shape{16, 4})
	norm := w("output_norm.weight", F32, Shape{4})
	bias := w("blk.0.attn_q.bias", F32, Shape{4})
	q := &Tensor{Name: "blk.0.attn_q.weight", DType: U8, Shape: Shape{4, 2}, Source: &BytesSource{Data: make([]byte, 8), Loc: "shard-0"},
		Quant: &QuantInfo{Scheme: "int4-g4-asym", Bits: 4, GroupSize: 4, ScaleType: F16, Rows: 4, Cols: 4, Scales: "blk.0.attn_q.scales", Zeros: "blk.0.attn_q.zeros"}}
	scales := w("blk.0.attn_q.scales", F16, Shape{4, 1})
	zeros := w("blk.0.attn_q.zeros", U8, Shape{4, 1})
	head := &Tensor{Name: "output.weight", DType: F32, Shape: Shape{16, 4}, SrcDType: F16, SrcShape: Shape{16, 4},
		Source: &BytesSource{Data: make([]byte, 128)}, Transforms: []Transform{reverseRows{}}}
	g := &Graph{Config: Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 4, NumLayers: 1, VocabSize: 16, RMSNormEps: 1e-5, EOSTokenIDs: []int{2}},
		Tensors: []*Tensor{emb, norm, bias, q, scales, zeros, head}}
	g.SortTensors()
	c := func(t *Tensor) *Value { return &Value{Name: t.Name, DType: t.DType, Shape: t.Shape, Tensor: t} }
	ids := &Value{Name: "input_ids", DType: I32, Shape: Shape{-1}}
	g.Inputs = []*Value{ids}
	node := func(op, name string, attrs map[string]any, ins ...*Value) *Value {
		n := &Node{Name: name, Op: op, Inputs: ins, Attrs: attrs}
		out := &Value{Name: name, DType: F32, Shape: Shape{-1, 4}, Def: n}
		n.Outputs = []*Value{out}
		g.Nodes = append(g.Nodes, n)
		return out
	}
	h := node("Embedding", "embed", nil, ids, c(emb))
	x := node("Linear", "blk.0.q", nil, h, c(q), c(bias))
	x = node("RoPE", "blk.0.q_rope", map[string]any{"theta": 10000.0, "head_dim": 4, "scaling": map[string]any{"type": "linear", "factor": 2.0}}, x)
	x = node("Add", "blk.0.residual", nil, h, x)
	x = node("RMSNorm", "output_norm", map[string]any{"eps": 1e-5}, x, c(norm))
	out := node("Linear", "logits", nil, x, c(head))
	out.Name = "logits_value" // node and value names differ: printed as a comment
	g.Outputs = []*Value{out}
	return g
}

func TestPrintGolden(t *testing.T) {
	g := sampleGraph()
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := Print(&a, g); err != nil {
		t.Fatal(err)
	}
	if err := Print(&b, sampleGraph()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("Print is not deterministic")
	}
	checkGolden(t, "print.golden", a.Bytes())
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(g *Graph)
		want   string
	}{
		{"valid", func(g *Graph) {}, ""},
		{"unknown op", func(g *Graph) { g.Nodes[1].Op = "Conv" }, `node 1 (Conv "blk.0.q"): unknown op`},
		{"too many inputs", func(g *Graph) { g.Nodes[3].Inputs = append(g.Nodes[3].Inputs, g.Inputs[0]) }, `node 3 (Add "blk.0.residual"): 3 inputs, want 2..2`},
		{"too few inputs", func(g *Graph) { g.Nodes[1].Inputs = g.Nodes[1].Inputs[:1] }, "1 inputs, want 2..3"},
		{"use before definition", func(g *Graph) { g.Nodes[0], g.Nodes[1] = g.Nodes[1], g.Nodes[0] }, `input "embed" used before definition`},
		{"value defined twice", func(g *Graph) { g.Nodes[2].Outputs[0].Name = "embed" }, `value "embed" defined twice`},
		{"duplicate node name", func(g *Graph) { g.Nodes[2].Name = "embed" }, "duplicate node name"},
		{"output not pointing back", func(g *Graph) { g.Nodes[2].Outputs[0].Def = g.Nodes[0] }, "does not point back at its node"},
		{"constant not in the table", func(g *Graph) {
			g.Nodes[4].Inputs[1] = &Value{Name: "x", Tensor: &Tensor{Name: "output_norm.weight", DType: F32, Shape: Shape{4}}}
		}, `constant "output_norm.weight" is not in the tensor table`},
		{"unsorted tensors", func(g *Graph) { g.Tensors[0], g.Tensors[1] = g.Tensors[1], g.Tensors[0] }, "tensor table not sorted"},
		{"duplicate tensor", func(g *Graph) { g.Tensors = append(g.Tensors, g.Tensors[len(g.Tensors)-1]) }, "appears twice"},
		{"tensor without dtype", func(g *Graph) { g.Tensors[0].DType = Invalid }, "has no dtype"},
		{"dynamic dim in a tensor", func(g *Graph) { g.Tensors[0].Shape = Shape{-1, 4} }, "has a dynamic dim"},
		{"quant bits", func(g *Graph) { g.Tensor("blk.0.attn_q.weight").Quant.Bits = 3 }, "quant bits 3, want 4 or 8"},
		{"quant group size", func(g *Graph) { g.Tensor("blk.0.attn_q.weight").Quant.GroupSize = 3 }, "group size 3 does not divide cols 4"},
		{"quant scales missing", func(g *Graph) { g.Tensor("blk.0.attn_q.weight").Quant.Scales = "nope" }, `scales tensor "nope" missing`},
		{"quant scale dtype", func(g *Graph) { g.Tensor("blk.0.attn_q.weight").Quant.ScaleType = F32 }, "scales \"blk.0.attn_q.scales\" are f16, quant says f32"},
		{"quant zeros missing", func(g *Graph) { g.Tensor("blk.0.attn_q.weight").Quant.Zeros = "" }, "asymmetric but zero-point tensor"},
		{"undefined output", func(g *Graph) { g.Outputs = append(g.Outputs, &Value{Name: "ghost"}) }, "is not defined"},
		{"nil input", func(g *Graph) { g.Nodes[3].Inputs[0] = nil }, "nil input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := sampleGraph()
			tt.mutate(g)
			err := g.Check()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestGraphTensorLookup(t *testing.T) {
	g := sampleGraph()
	if got := g.Tensor("output_norm.weight"); got == nil || got.Name != "output_norm.weight" {
		t.Errorf("Tensor lookup = %v", got)
	}
	if g.Tensor("nope") != nil {
		t.Error("Tensor(nope) != nil")
	}
	g.Tensors[0], g.Tensors[len(g.Tensors)-1] = g.Tensors[len(g.Tensors)-1], g.Tensors[0]
	if g.Tensor("blk.0.attn_q.bias") == nil {
		t.Error("lookup in an unsorted table failed")
	}
	if got, want := LayerTensor(3, FFNDown), "blk.3.ffn_down.weight"; got != want {
		t.Errorf("LayerTensor = %q, want %q", got, want)
	}
}
