package quantize

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/x448/float16"
)

// refRTNGroup is a float64 reference of the documented group convention,
// written from the formulas (not from GroupParams).
func refRTNGroup(v []float32, bits int, sym, f16 bool) (codes []uint8, scale float64, zero int) {
	var lo, hi float32
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	maxq := float64(int(1)<<bits - 1)
	if sym {
		e := lo
		if math.Abs(float64(hi)) > math.Abs(float64(lo)) {
			e = hi
		}
		scale = float64(e / -float32(int(1)<<(bits-1)))
		zero = 1 << (bits - 1)
	} else {
		scale = float64((hi - lo) / float32(maxq))
	}
	if f16 {
		scale = float64(float16.Fromfloat32(float32(scale)).Float32())
	} else {
		scale = float64(float32(scale))
	}
	if !sym && scale != 0 {
		zero = int(math.Max(0, math.Min(maxq, math.RoundToEven(float64(float32(-lo)/float32(scale))))))
	}
	for _, x := range v {
		c := float64(zero)
		if scale != 0 {
			c = math.RoundToEven(float64(x/float32(scale))) + float64(zero)
		}
		codes = append(codes, uint8(math.Max(0, math.Min(maxq, c))))
	}
	return codes, scale, zero
}

func TestRTNMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, name := range []string{"int4-g128-asym", "int4-g32-sym", "int4-g64-asym-f32", "int8-channel-sym", "int8-g128-asym", "int4-channel-sym", "int4-g32-asym"} {
		t.Run(name, func(t *testing.T) {
			s := mustScheme(t, name)
			rows, cols := 9, 256
			w := randWeights(rng, rows*cols, 0.02)
			w[5] = 0.3 // outlier
			w[300] = -0.4
			for k := 0; k < 32; k++ { // an all-zero group
				w[2*cols+k] = 0
			}
			q, err := RTN(w, rows, cols, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Validate(); err != nil {
				t.Fatal(err)
			}
			g, nb := s.Group(cols), q.NBlocks()
			for r := 0; r < rows; r++ {
				for j := 0; j < nb; j++ {
					codes, scale, zero := refRTNGroup(w[r*cols+j*g:r*cols+(j+1)*g], s.Bits, s.Symmetric, s.ScaleType == ir.F16)
					if got := float64(q.Scales[r*nb+j]); got != scale {
						t.Fatalf("row %d group %d: scale %v, want %v", r, j, got, scale)
					}
					if got := int(q.Zero(r, j)); got != zero {
						t.Fatalf("row %d group %d: zero %d, want %d", r, j, got, zero)
					}
					if diff := cmp.Diff(codes, q.Q[r*cols+j*g:r*cols+(j+1)*g]); diff != "" {
						t.Fatalf("row %d group %d codes (-want +got):\n%s", r, j, diff)
					}
				}
			}
		})
	}
}

func TestRTNErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, name := range []string{"int4-g128-asym", "int4-g32-sym", "int8-channel-sym", "int8-g64-asym", "int4-g32-asym-f32"} {
		t.Run(name, func(t *testing.T) {
			s := mustScheme(t, name)
			rows, cols := 16, 512
			w := randWeights(rng, rows*cols, 0.03)
			q, err := RTN(w, rows, cols, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := q.Dequantize()
			g, nb := s.Group(cols), q.NBlocks()
			maxq := float64(s.MaxCode())
			var sq, sqW float64
			for i, x := range w {
				r, j := i/cols, (i%cols)/g
				sc := math.Abs(float64(q.Scales[r*nb+j]))
				u := float64(x)/float64(q.Scales[r*nb+j]) + float64(q.Zero(r, j))
				if u >= -0.5 && u <= maxq+0.5 { // in range: no clamping
					if e := math.Abs(float64(x - d[i])); e > sc/2*(1+1e-5) {
						t.Fatalf("element %d: |w - deq| = %g > scale/2 = %g", i, e, sc/2)
					}
				}
				sq += float64((x - d[i]) * (x - d[i]))
				sqW += float64(x * x)
			}
			// Relative error must be small and reflect the bit width.
			rel := math.Sqrt(sq / sqW)
			limit := 0.15
			if s.Bits == 8 {
				limit = 0.01
			}
			if rel > limit {
				t.Errorf("relative RMS error %.4f > %.3f", rel, limit)
			}
		})
	}
}

func TestRTNProperties(t *testing.T) {
	// Symmetric: the largest-magnitude value of each group is exact up to
	// scale rounding and maps to code 0; asymmetric: min and max lie within
	// half a step, zero is exactly representable.
	w := []float32{0.5, -0.25, 0.125, 0, 0.75, -1.0, 0.3, 0.2, 0.1, 0, 0, 0, 0, 0, 0, 0}
	q, err := RTN(w, 1, 16, mustScheme(t, "int4-g16-sym-f32"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Scales[0] != 0.125 || q.Q[5] != 0 {
		t.Errorf("sym: scale %v, code of -1.0 = %d; want 0.125 and 0", q.Scales[0], q.Q[5])
	}
	d := q.Dequantize()
	if d[5] != -1 || d[3] != 0 {
		t.Errorf("sym: deq %v", d)
	}
	pos := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	q, err = RTN(pos, 1, 16, mustScheme(t, "int4-g16-asym"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := q.Dequantize()[15]; q.Zeros[0] != 0 || math.Abs(float64(d-16)) > float64(q.Scales[0])/2 {
		t.Errorf("asym positive: zero %d deq %v (range must include 0)", q.Zeros[0], q.Dequantize())
	}
	// Clip: values beyond the clip limit saturate at it.
	q, err = RTN(pos, 1, 16, mustScheme(t, "int4-g16-sym-f32"), &RTNOptions{ClipMax: []float32{8}})
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Dequantize()[15]; got != 8 {
		t.Errorf("clipped max deq = %v, want 8", got)
	}
	// f16 overflow is an error, not a silent Inf.
	big := make([]float32, 16)
	big[0] = 1e9
	if _, err := RTN(big, 1, 16, mustScheme(t, "int4-g16-sym"), nil); err == nil {
		t.Error("RTN accepted a scale that overflows f16")
	}
	nan := make([]float32, 16)
	nan[3] = float32(math.NaN())
	if _, err := RTN(nan, 1, 16, mustScheme(t, "int4-g16-asym"), nil); err == nil {
		t.Error("RTN accepted NaN weights")
	}
}

func TestRTNDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	w := randWeights(rng, 64*256, 1)
	s := mustScheme(t, "int4-g32-asym")
	prev := runtime.GOMAXPROCS(1)
	a, err := RTN(w, 64, 256, s, nil)
	runtime.GOMAXPROCS(max(prev, 3))
	b, err2 := RTN(w, 64, 256, s, nil)
	runtime.GOMAXPROCS(prev)
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("RTN depends on GOMAXPROCS:\n%s", diff)
	}
}

func BenchmarkRTNInt4(b *testing.B) {
	for _, sz := range []struct {
		name       string
		rows, cols int
	}{{"4096x4096", 4096, 4096}, {"512x1536", 512, 1536}} {
		b.Run(sz.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			w := randWeights(rng, sz.rows*sz.cols, 0.02)
			s := mustScheme(b, "int4-g128-asym")
			b.SetBytes(int64(2 * len(w))) // f16 input bytes
			b.ReportAllocs()
			for b.Loop() {
				if _, err := RTN(w, sz.rows, sz.cols, s, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
