package exec

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRunStagesEqualRunBlock checks that stages 0..4 chained give bit for
// bit RunBlock's hidden states and the same linear-hook calls, on every
// synthetic configuration (biases, GQA, rope scalings, sliding window),
// T = 1 and T > attention chunk.
func TestRunStagesEqualRunBlock(t *testing.T) {
	for _, sc := range synthConfigs() {
		for _, T := range []int{1, 7, 70} {
			t.Run(fmt.Sprintf("%s/T=%d", sc.name, T), func(t *testing.T) {
				g := synthGraph(t, sc)
				m := mustLoad(t, g, Options{})
				ids := randomIDs(rand.New(rand.NewPCG(sc.seed, 2)), T, sc.cfg.VocabSize)
				var calls []string
				m.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
					var s float64
					for _, v := range x[:rows*cols] {
						s += float64(v)
					}
					calls = append(calls, fmt.Sprintf("%d %s %dx%d %v", layer, name, rows, cols, s))
				})
				want, err := m.Embed(ids)
				if err != nil {
					t.Fatal(err)
				}
				got := append([]float32(nil), want...)
				for b := range sc.cfg.NumLayers {
					if err := m.RunBlock(b, want, 0, nil); err != nil {
						t.Fatal(err)
					}
				}
				wantCalls := calls
				calls = nil
				for b := range sc.cfg.NumLayers {
					var in []float32
					for s := range BlockStages {
						_, wo := m.StageWidths(s)
						out := make([]float32, T*wo)
						if err := m.RunStage(b, s, got, in, out); err != nil {
							t.Fatal(err)
						}
						in = out
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("stages differ from RunBlock (-RunBlock +stages):\n%s", diff)
				}
				if diff := cmp.Diff(wantCalls, calls); diff != "" {
					t.Errorf("hook calls differ (-RunBlock +stages):\n%s", diff)
				}
			})
		}
	}
}

func TestRunStageErrors(t *testing.T) {
	sc := synthConfigs()[0]
	m := mustLoad(t, synthGraph(t, sc), Options{})
	D := sc.cfg.HiddenSize
	h := make([]float32, 3*D)
	tests := []struct {
		name     string
		block, s int
		h, in    []float32
		out      []float32
	}{
		{"block", sc.cfg.NumLayers, 0, h, nil, make([]float32, 3*D)},
		{"stage", 0, BlockStages, h, nil, nil},
		{"hidden", 0, 0, h[:D+1], nil, make([]float32, 3*D)},
		{"short in", 0, 1, h, make([]float32, 3*D-1), make([]float32, 3*D)},
		{"short out", 0, 3, h, make([]float32, 3*D), make([]float32, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := m.RunStage(tt.block, tt.s, tt.h, tt.in, tt.out); err == nil {
				t.Errorf("RunStage(%d, %d) = nil, want an error", tt.block, tt.s)
			}
		})
	}
}
