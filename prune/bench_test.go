package prune

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func randomWeights(n int) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	return w
}

// BenchmarkMaskRows/512x1536 is one ref29m ffn_down; 4096x4096 a 7B-class
// attention projection.
func BenchmarkMaskRows(b *testing.B) {
	for _, s := range [][2]int{{512, 1536}, {4096, 4096}} {
		b.Run(fmt.Sprintf("%dx%d", s[0], s[1]), func(b *testing.B) {
			w0 := randomWeights(s[0] * s[1])
			sc := MagnitudeScores(w0)
			w := make([]float32, len(w0))
			b.SetBytes(int64(4 * len(w0)))
			b.ReportAllocs()
			for b.Loop() {
				copy(w, w0)
				MaskRows(w, sc, s[0], s[1], 0.5)
			}
		})
	}
}

func BenchmarkMaskNM(b *testing.B) {
	for _, s := range [][2]int{{512, 1536}, {4096, 4096}} {
		b.Run(fmt.Sprintf("%dx%d", s[0], s[1]), func(b *testing.B) {
			w0 := randomWeights(s[0] * s[1])
			sc := MagnitudeScores(w0)
			w := make([]float32, len(w0))
			b.SetBytes(int64(4 * len(w0)))
			b.ReportAllocs()
			for b.Loop() {
				copy(w, w0)
				if _, err := MaskNM(w, sc, s[0], s[1], 2, 4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
