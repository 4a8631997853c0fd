package quantize_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/ortcheck"
	"github.com/smeltml/smelt/quantize"
)

// matMulNBitsModel is a one-node ONNX model: Y[M, N] = com.microsoft
// MatMulNBits(A[M, K], B, scales[, zero_points]) with B, scales and
// zero_points as initializers holding exactly the bytes smelt's packed
// tensors hold (B: the qweight u32 words as little-endian bytes, shaped
// [N, K/g, g·bits/8]; scales: [N·K/g]; zero_points: [N·ceil(K/g·bits/8)]).
// elem is the ONNX type of A, scales and Y (FLOAT or FLOAT16).
func matMulNBitsModel(t *testing.T, m, k, n, bits, g int, elem onnxpb.TensorProto_DataType, b, scales, zeros []byte) []byte {
	t.Helper()
	nb := int64(k / g)
	inits := []*onnxpb.TensorProto{
		{Name: "B", DataType: int32(onnxpb.TensorProto_UINT8), Dims: []int64{int64(n), nb, int64(g * bits / 8)}, RawData: b},
		{Name: "scales", DataType: int32(elem), Dims: []int64{int64(n) * nb}, RawData: scales},
	}
	inputs := []string{"A", "B", "scales"}
	if zeros != nil {
		inits = append(inits, &onnxpb.TensorProto{Name: "zero_points", DataType: int32(onnxpb.TensorProto_UINT8), Dims: []int64{int64(len(zeros))}, RawData: zeros})
		inputs = append(inputs, "zero_points")
	}
	attr := func(name string, v int) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: int64(v)}
	}
	vi := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		var d []*onnxpb.TensorShapeProto_Dimension
		for _, x := range dims {
			d = append(d, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: x}})
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(elem), Shape: &onnxpb.TensorShapeProto{Dim: d}},
		}}}
	}
	mp := &onnxpb.ModelProto{
		IrVersion:    10,
		ProducerName: "smelt-quantize-test",
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Version: 21}, {Domain: "com.microsoft", Version: 1}},
		Graph: &onnxpb.GraphProto{
			Name: "matmulnbits",
			Node: []*onnxpb.NodeProto{{
				Name: "mm", OpType: "MatMulNBits", Domain: "com.microsoft", Input: inputs, Output: []string{"Y"},
				// accuracy_level left at its default (0: compute in A's type).
				Attribute: []*onnxpb.AttributeProto{attr("K", k), attr("N", n), attr("bits", bits), attr("block_size", g)},
			}},
			Initializer: inits,
			Input:       []*onnxpb.ValueInfoProto{vi("A", int64(m), int64(k))},
			Output:      []*onnxpb.ValueInfoProto{vi("Y", int64(m), int64(n))},
		},
	}
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ortCase is one MatMulNBits conformance case: a scheme on a [N, K] weight,
// run with A (and scales, Y) in float32 or, with f16, float16.
type ortCase struct {
	scheme string
	k, n   int
	f16    bool // T1 = float16: A, scales (smelt's own f16 bytes) and Y in f16
	// corrupt, when set, damages the packed bytes before they go to ONNX
	// Runtime: a negative control that must make the comparison fail.
	corrupt func(b, zeros []byte)
}

func (c ortCase) name() string {
	s := fmt.Sprintf("%s/K%d_N%d", c.scheme, c.k, c.n)
	if c.f16 {
		s += "/T1=f16"
	}
	if c.corrupt != nil {
		s += "/corrupted"
	}
	return s
}

// ortRows is M, the number of activation rows.
const ortRows = 3

// TestMatMulNBitsConformance proves that smelt's packed layout is ONNX
// Runtime's MatMulNBits layout: weights quantized by RTN and packed by
// Quantized.Tensors go, byte for byte, into a MatMulNBits node run by
// onnxruntime-node (CPU), whose output must match the reference
// x·Dequantize(W)ᵀ (computed in float64 from the f32 dequantized weight).
//
// Tolerance, per output element: |Y_ort − Y_ref| ≤ tol·Σ_k |x_k|·|w_nk|,
// with tol = 2e-6 for T1 = float32 (ORT sums K f32 products in its own
// order: the rounding error is a few ulps of the magnitude sum; measured
// at most 3.0e-7 with ORT 1.30) and 2e-3 for T1 = float16 (A rounded to
// f16 before both computations; Y rounded to f16, 2^-11 relative, plus f16
// accumulation; measured at most 1.3e-4). A layout error moves outputs by
// about 1/sqrt(K) of the magnitude sum (1e-2 here); the corrupted cases
// (measured 0.41 and 0.056) check that the comparison does fail.
//
// Scales: MatMulNBits takes scales in A's type (T1). For float32 A, f16
// scales (exact in f32) are widened; the f32-scale schemes and the
// T1=float16 cases pass smelt's scale bytes unchanged. Per-channel schemes
// (g = K) are MatMulNBits blocks of K; ORT 1.30's CPU kernel accepts
// block_size 16, 32, 64, 128 and 256 only, so they run with K = 256 and 128.
func TestMatMulNBitsConformance(t *testing.T) {
	var cases []ortCase
	for _, shape := range [][2]int{{512, 256}, {1536, 512}} {
		for _, s := range []string{
			"int4-g32-sym-f32", "int4-g32-asym-f32", "int4-g64-sym-f32", "int4-g64-asym-f32",
			"int4-g128-sym-f32", "int4-g128-asym-f32",
			"int8-g32-asym-f32", "int8-g128-sym-f32", "int8-g128-asym-f32",
			"int4-g128-asym", // f16 scales widened to f32
		} {
			cases = append(cases, ortCase{scheme: s, k: shape[0], n: shape[1]})
		}
	}
	cases = append(cases,
		ortCase{scheme: "int4-channel-asym-f32", k: 256, n: 256},
		ortCase{scheme: "int8-channel-sym-f32", k: 128, n: 256},
		ortCase{scheme: "int4-g32-asym", k: 512, n: 256, f16: true},
		ortCase{scheme: "int4-g128-sym", k: 1536, n: 512, f16: true},
		ortCase{scheme: "int8-g64-asym", k: 512, n: 256, f16: true},
		// Negative controls: nibbles of each byte swapped (high first), and
		// one zero point's nibbles swapped.
		ortCase{scheme: "int4-g32-asym-f32", k: 512, n: 256, corrupt: func(b, _ []byte) {
			for i := range b {
				b[i] = b[i]<<4 | b[i]>>4
			}
		}},
		ortCase{scheme: "int4-g128-asym-f32", k: 512, n: 256, corrupt: func(_, z []byte) {
			z[5] = z[5]<<4 | z[5]>>4
			if z[5]&0xf == z[5]>>4 {
				z[5] ^= 0x11
			}
		}},
	)

	type prepared struct {
		c      ortCase
		x      []float32 // [M, K], f16-rounded when c.f16
		w      []float32 // dequantized [N, K]
		job    ortcheck.Job
		tol    float64
		scheme quantize.Scheme
	}
	var preps []prepared
	rng := rand.New(rand.NewPCG(7, 11))
	for _, c := range cases {
		s, err := quantize.ParseScheme(c.scheme)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float32, c.n*c.k)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.05)
		}
		// A few large weights, so that groups have uneven ranges.
		for i := 0; i < len(w)/97; i++ {
			w[rng.IntN(len(w))] *= 8
		}
		q, err := quantize.RTN(w, c.n, c.k, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		ts, info, err := q.Tensors("w")
		if err != nil {
			t.Fatal(err)
		}
		data := func(name string) []byte {
			for _, tt := range ts {
				if tt.Name == name {
					b, err := tt.Data()
					if err != nil {
						t.Fatal(err)
					}
					return append([]byte(nil), b...)
				}
			}
			if name == "" {
				return nil
			}
			t.Fatalf("%s: no tensor %q", c.name(), name)
			return nil
		}
		b, zeros := data("w"), data(info.Zeros)
		scales := data(info.Scales)
		elem := onnxpb.TensorProto_FLOAT
		x := make([]float32, ortRows*c.k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		tol := 2e-6
		if c.f16 {
			elem, tol = onnxpb.TensorProto_FLOAT16, 2e-3
			if s.ScaleType != ir.F16 {
				t.Fatalf("%s: T1=f16 cases need f16 scales", c.name())
			}
			for i, v := range x {
				x[i] = ir.F16ToF32(f16bits(v))
			}
		} else if s.ScaleType == ir.F16 {
			vals, err := ir.DecodeFloat32(ir.F16, scales)
			if err != nil {
				t.Fatal(err)
			}
			if scales, err = ir.EncodeFloat32(ir.F32, vals); err != nil {
				t.Fatal(err)
			}
		}
		if c.corrupt != nil {
			c.corrupt(b, zeros)
		}
		g := s.Group(c.k)
		in := ortcheck.F32("A", []int64{ortRows, int64(c.k)}, x)
		if c.f16 {
			hb := make([]byte, 2*len(x))
			for i, v := range x {
				h := f16bits(v)
				hb[2*i], hb[2*i+1] = byte(h), byte(h>>8)
			}
			in = ortcheck.Tensor{Name: "A", Type: "float16", Dims: in.Dims, Data: hb}
		}
		preps = append(preps, prepared{
			c: c, x: x, w: q.Dequantize(), tol: tol, scheme: s,
			job: ortcheck.Job{
				Model:      "mm.onnx",
				ModelBytes: matMulNBitsModel(t, ortRows, c.k, c.n, s.Bits, g, elem, b, scales, zeros),
				Inputs:     []ortcheck.Tensor{in},
				Outputs:    []string{"Y"},
			},
		})
	}
	jobs := make([]ortcheck.Job, len(preps))
	for i, p := range preps {
		jobs[i] = p.job
	}
	res, err := ortcheck.Run(t.TempDir(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("onnxruntime-node %s", res.Version)
	for i, p := range preps {
		c := p.c
		out := res.Outputs[i][0]
		var y []float32
		if c.f16 {
			if out.Type != "float16" {
				t.Fatalf("%s: Y is %s, want float16", c.name(), out.Type)
			}
			y = make([]float32, len(out.Data)/2)
			for j := range y {
				y[j] = ir.F16ToF32(uint16(out.Data[2*j]) | uint16(out.Data[2*j+1])<<8)
			}
		} else if y, err = out.Float32(); err != nil {
			t.Fatal(err)
		}
		if len(y) != ortRows*c.n {
			t.Fatalf("%s: Y has %d values (dims %v), want %d", c.name(), len(y), out.Dims, ortRows*c.n)
		}
		worst, worstAt := 0.0, 0
		for m := 0; m < ortRows; m++ {
			xr := p.x[m*c.k : (m+1)*c.k]
			for n := 0; n < c.n; n++ {
				wr := p.w[n*c.k : (n+1)*c.k]
				var ref, mag float64
				for k, xv := range xr {
					ref += float64(xv) * float64(wr[k])
					mag += math.Abs(float64(xv) * float64(wr[k]))
				}
				if r := math.Abs(float64(y[m*c.n+n])-ref) / mag; r > worst || math.IsNaN(r) {
					worst, worstAt = r, m*c.n+n
				}
			}
		}
		failed := !(worst <= p.tol)
		switch {
		case c.corrupt != nil && !failed:
			t.Errorf("%s: negative control passed (max |ΔY|/Σ|x||w| = %.3g ≤ %g): the comparison cannot see layout errors", c.name(), worst, p.tol)
		case c.corrupt == nil && failed:
			t.Errorf("%s: max |ΔY|/Σ|x||w| = %.3g at Y[%d] (ORT %v), want ≤ %g", c.name(), worst, worstAt, y[worstAt], p.tol)
		default:
			t.Logf("%s: max |ΔY|/Σ|x||w| = %.3g (tolerance %g)", c.name(), worst, p.tol)
		}
	}
}

// f16bits rounds v to the nearest half-precision value.
func f16bits(v float32) uint16 {
	b, err := ir.EncodeFloat32(ir.F16, []float32{v})
	if err != nil {
		panic(err)
	}
	return uint16(b[0]) | uint16(b[1])<<8
}
