//go:build goexperiment.simd && amd64

package exec

import (
	"math"
	"math/rand/v2"
	"testing"

	"simd/archsimd"
)

// TestLinearSIMD checks the SIMD kernels against a float64 product for
// shapes that exercise every tile (2×4, 1×4, tails) and worker split.
func TestLinearSIMD(t *testing.T) {
	if !archsimd.X86.AVX2() || !archsimd.X86.FMA() {
		t.Fatalf("this test needs AVX2 and FMA (simdLinear is nil without them)")
	}
	if simdLinear == nil {
		t.Fatal("simdLinear is not installed")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, T := range []int{1, 2, 3, 5} {
		for _, N := range []int{1, 3, 4, 7, 9, 67, 130} {
			for _, K := range []int{8, 64, 520} {
				x := make([]float32, T*K)
				w := make([]float32, N*K)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				for i := range w {
					w[i] = float32(rng.NormFloat64())
				}
				y := make([]float32, T*N)
				for i := range y {
					y[i] = float32(math.NaN()) // every output must be written
				}
				linearSIMD(y, x, T, w, N, K)
				for tt := range T {
					for n := range N {
						var want, mag float64
						for k := range K {
							p := float64(x[tt*K+k]) * float64(w[n*K+k])
							want += p
							mag += math.Abs(p)
						}
						if got := float64(y[tt*N+n]); !(math.Abs(got-want) <= 1e-6*mag) {
							t.Fatalf("T=%d N=%d K=%d: y[%d,%d] = %v, want %v", T, N, K, tt, n, got, want)
						}
					}
				}
			}
		}
	}
}
