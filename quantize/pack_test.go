package quantize

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
)

func mustScheme(t testing.TB, name string) Scheme {
	t.Helper()
	s, err := ParseScheme(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refCode is the layout contract's formula, written independently of Unpack.
func refCode(p []uint32, n, k, cols, bits int) uint8 {
	return uint8((p[n*(cols*bits/32)+(k*bits)/32] >> ((k * bits) % 32)) & (1<<bits - 1))
}

func TestPackUnpack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct{ rows, cols, bits int }{
		{1, 8, 4}, {3, 16, 4}, {5, 64, 4}, {2, 4, 8}, {7, 36, 8}, {0, 8, 4},
	} {
		q := make([]uint8, tt.rows*tt.cols)
		for i := range q {
			q[i] = uint8(rng.IntN(1 << tt.bits))
		}
		p, err := Pack(q, tt.rows, tt.cols, tt.bits)
		if err != nil {
			t.Fatalf("Pack %v: %v", tt, err)
		}
		for n := 0; n < tt.rows; n++ {
			for k := 0; k < tt.cols; k++ {
				if got, want := refCode(p, n, k, tt.cols, tt.bits), q[n*tt.cols+k]; got != want {
					t.Fatalf("%v: packed code (%d,%d) = %d, want %d", tt, n, k, got, want)
				}
			}
		}
		got, err := Unpack(p, tt.rows, tt.cols, tt.bits)
		if err != nil {
			t.Fatalf("Unpack %v: %v", tt, err)
		}
		if !bytes.Equal(got, q) {
			t.Errorf("%v: Unpack(Pack(q)) != q", tt)
		}
	}
}

func TestPackErrors(t *testing.T) {
	if _, err := Pack([]uint8{16, 0, 0, 0, 0, 0, 0, 0}, 1, 8, 4); err == nil {
		t.Error("Pack accepted code 16 at 4 bits")
	}
	if _, err := Pack(make([]uint8, 6), 1, 6, 4); err == nil {
		t.Error("Pack accepted cols 6 at 4 bits")
	}
	if _, err := Pack(make([]uint8, 8), 1, 8, 3); err == nil {
		t.Error("Pack accepted 3 bits")
	}
	if _, err := Unpack(make([]uint32, 3), 1, 8, 4); err == nil {
		t.Error("Unpack accepted 3 words for 8 codes")
	}
}

func TestZeros(t *testing.T) {
	// 3 blocks of int4 in one row: low nibble first, the last padded.
	b, err := PackZeros([]uint8{1, 2, 3, 4, 5, 6}, 2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x21, 0x03, 0x54, 0x06}; !bytes.Equal(b, want) {
		t.Errorf("PackZeros = % x, want % x", b, want)
	}
	z, err := UnpackZeros(b, 2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint8{1, 2, 3, 4, 5, 6}, z); diff != "" {
		t.Errorf("UnpackZeros mismatch:\n%s", diff)
	}
	if _, err := UnpackZeros([]byte{0x21, 0x13, 0x54, 0x06}, 2, 3, 4); err == nil || !strings.Contains(err.Error(), "padding") {
		t.Errorf("UnpackZeros with nonzero padding: err = %v, want padding error", err)
	}
	b8, err := PackZeros([]uint8{200, 7}, 1, 2, 8)
	if err != nil || !bytes.Equal(b8, []byte{200, 7}) {
		t.Errorf("PackZeros 8-bit = % x, %v", b8, err)
	}
}

func TestDocExample(t *testing.T) {
	w := make([]float32, 16)
	for i := range w {
		w[i] = -1 + 0.5*float32(i)
	}
	q, err := RTN(w, 1, 16, mustScheme(t, "int4-g16-asym"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := q.Tensors("x")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"x":        {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe},
		"x.scales": {0x00, 0x38},
		"x.zeros":  {0x02},
	}
	for _, tn := range ts {
		got, err := tn.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[tn.Name]) {
			t.Errorf("%s bytes = % x, want % x", tn.Name, got, want[tn.Name])
		}
	}
	if diff := cmp.Diff(w, q.Dequantize()); diff != "" {
		t.Errorf("Dequantize mismatch:\n%s", diff)
	}
}

func randWeights(rng *rand.Rand, n int, scale float64) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * scale)
	}
	return w
}

func TestTensorsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"int4-g128-asym", "int4-g32-sym", "int4-g64-asym-f32", "int8-channel-sym", "int8-g128-asym", "int4-channel-asym", "int4-g16-asym"} {
		t.Run(name, func(t *testing.T) {
			s := mustScheme(t, name)
			rows, cols := 6, 384
			if name == "int4-g16-asym" {
				cols = 48 // 3 blocks: odd, exercises zero-point padding
			}
			w := randWeights(rng, rows*cols, 0.05)
			q, err := RTN(w, rows, cols, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts, info, err := q.Tensors("blk.0.attn_q.weight")
			if err != nil {
				t.Fatal(err)
			}
			wantN := 3
			if s.Symmetric {
				wantN = 2
			}
			if len(ts) != wantN {
				t.Fatalf("Tensors gave %d tensors, want %d", len(ts), wantN)
			}
			if ts[0].Quant != info || info.Scales != "blk.0.attn_q.weight.scales" || info.GroupSize != s.Group(cols) {
				t.Errorf("quant info %+v", info)
			}
			g := &ir.Graph{Tensors: ts}
			g.SortTensors()
			if err := g.Check(); err != nil {
				t.Fatalf("graph check: %v", err)
			}
			var zeros *ir.Tensor
			if !s.Symmetric {
				zeros = ts[2]
			}
			back, err := FromTensors(ts[0], ts[1], zeros)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(q, back); diff != "" {
				t.Errorf("FromTensors(Tensors(q)) mismatch:\n%s", diff)
			}
			deq, err := DequantizeTensor(g, g.Tensor("blk.0.attn_q.weight"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(q.Dequantize(), deq); diff != "" {
				t.Errorf("DequantizeTensor mismatch:\n%s", diff)
			}
		})
	}
}

// tensorsFor builds packed tensors from raw bytes for FromTensors tests.
func tensorsFor(name string, info ir.QuantInfo, main, scales, zeros []byte, mainShape, scaleShape, zeroShape ir.Shape) (*ir.Tensor, *ir.Tensor, *ir.Tensor) {
	m := &ir.Tensor{Name: name, DType: ir.U32, Shape: mainShape, Source: &ir.BytesSource{Data: main}, Quant: &info}
	s := &ir.Tensor{Name: info.Scales, DType: info.ScaleType, Shape: scaleShape, Source: &ir.BytesSource{Data: scales}}
	var z *ir.Tensor
	if zeros != nil {
		z = &ir.Tensor{Name: info.Zeros, DType: ir.U8, Shape: zeroShape, Source: &ir.BytesSource{Data: zeros}}
	}
	return m, s, z
}

func TestFromTensorsErrors(t *testing.T) {
	good := ir.QuantInfo{Scheme: "int4-g16-asym", Bits: 4, GroupSize: 16, ScaleType: ir.F16, Rows: 1, Cols: 48, Scales: "w.scales", Zeros: "w.zeros"}
	main := make([]byte, 24)
	scales := []byte{0, 0x38, 0, 0x38, 0, 0x38}
	zeros := []byte{0x21, 0x03}
	ms, ss, zs := ir.Shape{1, 6}, ir.Shape{1, 3}, ir.Shape{1, 2}
	if _, err := FromTensors(tensorsFor("w", good, main, scales, zeros, ms, ss, zs)); err != nil {
		t.Fatalf("good input rejected: %v", err)
	}
	tests := []struct {
		name   string
		edit   func(*ir.QuantInfo)
		main   []byte
		scales []byte
		zeros  []byte
		ms     ir.Shape
		want   string
	}{
		{name: "unknown scheme", edit: func(q *ir.QuantInfo) { q.Scheme = "int4-g17-asym" }, want: "unknown scheme"},
		{name: "bits disagree", edit: func(q *ir.QuantInfo) { q.Bits = 8 }, want: "disagrees"},
		{name: "group disagree", edit: func(q *ir.QuantInfo) { q.GroupSize = 32 }, want: "group size"},
		{name: "cols not divisible", edit: func(q *ir.QuantInfo) { q.Cols = 40 }, want: "not divisible"},
		{name: "huge", edit: func(q *ir.QuantInfo) { q.Rows = 1 << 40 }, want: "out of range"},
		{name: "main short", main: make([]byte, 20), want: "bytes"},
		{name: "main shape", ms: ir.Shape{6, 1}, want: "packed tensor"},
		{name: "scales short", scales: []byte{0, 0x38}, want: "bytes"},
		{name: "scale inf", scales: []byte{0, 0x7c, 0, 0x38, 0, 0x38}, want: "+Inf"},
		{name: "zeros padding", zeros: []byte{0x21, 0x13}, want: "padding"},
		{name: "zeros missing", zeros: []byte{}, want: "bytes"},
		{name: "wrong scales name", edit: func(q *ir.QuantInfo) { q.Scales = "v.scales" }, want: "names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := good
			if tt.edit != nil {
				tt.edit(&info)
			}
			m, s, z := main, scales, zeros
			if tt.main != nil {
				m = tt.main
			}
			if tt.scales != nil {
				s = tt.scales
			}
			if tt.zeros != nil {
				z = tt.zeros
			}
			shape := ms
			if tt.ms != nil {
				shape = tt.ms
			}
			mt, st, zt := tensorsFor("w", info, m, s, z, shape, ss, zs)
			if tt.edit != nil {
				st.Name, zt.Name = "w.scales", "w.zeros"
			}
			_, err := FromTensors(mt, st, zt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromTensors: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzUnpack checks Unpack(Pack(q)) == q for codes derived from the input
// and that FromTensors never panics on arbitrary bytes and metadata.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte{0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe}, []byte{0, 0x38}, []byte{2}, uint8(0), uint8(1), uint8(1))
	f.Add(make([]byte, 64), []byte{0, 0x3c, 0, 0x3c}, []byte{}, uint8(1), uint8(2), uint8(3))
	f.Add([]byte{1, 2, 3, 4}, []byte{0, 0, 0x80, 0x3f}, []byte{0x11}, uint8(2), uint8(1), uint8(0))
	schemes := []string{"int4-g16-asym", "int4-g32-sym", "int8-channel-asym", "int8-g16-sym-f32", "int4-channel-asym-f32"}
	f.Fuzz(func(t *testing.T, data, sdata, zdata []byte, schemeIdx, rows, blocks uint8) {
		// Round trip of codes read from data.
		for _, bits := range []int{4, 8} {
			per := 32 / bits
			cols := per * (1 + int(blocks)%8)
			r := 1 + int(rows)%4
			q := make([]uint8, r*cols)
			for i := range q {
				if len(data) > 0 {
					q[i] = data[i%len(data)] & (1<<bits - 1)
				}
			}
			p, err := Pack(q, r, cols, bits)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Unpack(p, r, cols, bits)
			if err != nil || !bytes.Equal(back, q) {
				t.Fatalf("Unpack(Pack(q)) != q (%v)", err)
			}
		}
		// FromTensors on arbitrary bytes: no panic; success only if the
		// re-encoding reproduces the input bytes exactly.
		s := mustScheme(t, schemes[int(schemeIdx)%len(schemes)])
		r := int64(1 + int(rows)%4)
		cols := int64(s.Group(64))
		if s.GroupSize != 0 {
			cols = int64(s.GroupSize) * int64(1+int(blocks)%4)
		}
		info := ir.QuantInfo{Scheme: s.Name(), Bits: s.Bits, GroupSize: s.Group(int(cols)), Symmetric: s.Symmetric, ScaleType: s.ScaleType, Rows: r, Cols: cols, Scales: "w.scales"}
		nb := cols / int64(s.Group(int(cols)))
		var z []byte
		if !s.Symmetric {
			info.Zeros = "w.zeros"
			z = zdata
		}
		mt, st, zt := tensorsFor("w", info, data, sdata, z,
			ir.Shape{r, cols * int64(s.Bits) / 32}, ir.Shape{r, nb}, ir.Shape{r, int64(ZeroRowBytes(int(nb), s.Bits))})
		q, err := FromTensors(mt, st, zt)
		if err != nil {
			return
		}
		ts, _, err := q.Tensors("w")
		if err != nil {
			t.Fatalf("re-encoding an accepted tensor failed: %v", err)
		}
		for i, want := range [][]byte{data, sdata, z} {
			if i >= len(ts) {
				break
			}
			got, _ := ts[i].Data()
			if !bytes.Equal(got, want) {
				t.Fatalf("tensor %s re-encodes to % x, input was % x", ts[i].Name, got, want)
			}
		}
		_ = q.Dequantize()
	})
}

func TestDequantizeFormula(t *testing.T) {
	// Independent evaluation of the contract formula on random packed bytes.
	rng := rand.New(rand.NewPCG(5, 6))
	s := mustScheme(t, "int4-g32-asym")
	rows, cols := 3, 96
	words := make([]uint32, rows*cols/8)
	for i := range words {
		words[i] = rng.Uint32()
	}
	q := &Quantized{Scheme: s, Rows: rows, Cols: cols}
	q.Q, _ = Unpack(words, rows, cols, 4)
	for i := 0; i < rows*3; i++ {
		q.Scales = append(q.Scales, float32(rng.IntN(100)-50)/64)
		q.Zeros = append(q.Zeros, uint8(rng.IntN(16)))
	}
	got := q.Dequantize()
	for n := 0; n < rows; n++ {
		for k := 0; k < cols; k++ {
			c := refCode(words, n, k, cols, 4)
			want := (float32(c) - float32(q.Zeros[n*3+k/32])) * q.Scales[n*3+k/32]
			if got[n*cols+k] != want {
				t.Fatalf("w(%d,%d) = %v, want %v", n, k, got[n*cols+k], want)
			}
		}
	}
}
