package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

func TestHalfConversions(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		want := float16.Frombits(uint16(h)).Float32()
		got := HalfToFloat(uint16(h))
		if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Fatalf("HalfToFloat(%#04x) = %v, want %v", h, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if i%2 == 0 {
			f = (r.Float32()*2 - 1) * float32(math.Ldexp(1, r.IntN(40)-25))
		}
		got, want := FloatToHalf(f), float16.Fromfloat32(f).Bits()
		if f != f {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("FloatToHalf(NaN) = %#04x, not a NaN", got)
			}
			continue
		}
		if got != want {
			t.Fatalf("FloatToHalf(%v) = %#04x, want %#04x", f, got, want)
		}
	}
}

// TestMatrixAtLayout checks the packed layout on hand-built words: int4,
// group 8, asymmetric, two blocks per row.
func TestMatrixAtLayout(t *testing.T) {
	m := &Matrix{Rows: 1, Cols: 16, Bits: 4, GroupSize: 8,
		QWeight: []uint32{0x76543210, 0xfedcba98},
		Scales:  []float32{0.5, 2},
		Zeros:   []uint8{0x93}, // block 0: 3 (low nibble), block 1: 9
	}
	for k := 0; k < 16; k++ {
		z, s := float32(3), float32(0.5)
		if k >= 8 {
			z, s = 9, 2
		}
		if got, want := m.At(0, k), (float32(k)-z)*s; got != want {
			t.Errorf("At(0, %d) = %v, want %v", k, got, want)
		}
	}
	sym := &Matrix{Rows: 1, Cols: 4, Bits: 8, GroupSize: 4, QWeight: []uint32{0x807f01ff}, Scales: []float32{1}}
	for k, want := range []float32{127, -127, -1, 0} {
		if got := sym.At(0, k); got != want {
			t.Errorf("int8 sym At(0, %d) = %v, want %v", k, got, want)
		}
	}
}

func TestSample(t *testing.T) {
	x := []float32{1, 5, 3, 5, -2}
	tests := []struct {
		name string
		temp float32
		k    int
		p, r float32
		want uint32
	}{
		{"greedy ties lowest index", 0, 0, 1, 0.9, 1},
		{"top-1", 1, 1, 1, 0.9, 1},
		{"top-2 first", 1, 2, 1, 0.1, 1},
		{"top-2 second", 1, 2, 1, 0.9, 3},
		{"top-p keeps 1", 1, 0, 0.3, 0.99, 1},
		{"all, low draw", 100, 0, 1, 0.0, 1},
		{"all, high draw", 100, 0, 1, 0.999, 4},
	}
	for _, tt := range tests {
		if got := Sample(x, tt.temp, tt.k, tt.p, tt.r, 64); got != tt.want {
			t.Errorf("%s: Sample = %d, want %d", tt.name, got, tt.want)
		}
	}
	nan := float32(math.NaN())
	if got := Argmax([]float32{nan, -1, nan, 2, 2}); got != 3 {
		t.Errorf("Argmax with NaN = %d, want 3", got)
	}
}

func TestRoPEPairs(t *testing.T) {
	// position 1, inv_freq 1 for both pairs: rotation by 1 radian.
	x := []float32{1, 0, 0, 1}
	RoPE(x, 1, 4, 0, 1, 4, []float32{1, 1}, 1)
	c, s := float32(math.Cos(1)), float32(math.Sin(1))
	want := []float32{c, -s, s, c}
	for i := range x {
		if x[i] != want[i] {
			t.Errorf("x[%d] = %v, want %v", i, x[i], want[i])
		}
	}
}
