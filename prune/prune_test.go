package prune

import (
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/internal/ir"
)

// tinyGraph builds a random Llama graph (f32) through the real family.
func tinyGraph(t *testing.T, seed uint64) *ir.Graph {
	t.Helper()
	cfg := ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 32, IntermediateSize: 96, NumLayers: 3,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: 50, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", EOSTokenIDs: []int{2}}
	fam, err := arch.Lookup(cfg.Arch)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var tensors []*ir.Tensor
	for _, tg := range fam.Targets(cfg) {
		n, _ := tg.Shape.NumElements()
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		b, _ := ir.EncodeFloat32(ir.F32, v)
		tensors = append(tensors, &ir.Tensor{Name: tg.Name, DType: ir.F32, Shape: tg.Shape, Source: &ir.BytesSource{Data: b}})
	}
	g, err := fam.Build(cfg, tensors)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func values(t *testing.T, g *ir.Graph, name string) []float32 {
	t.Helper()
	tt := g.Tensor(name)
	if tt == nil {
		t.Fatalf("tensor %q missing", name)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNMProperty: for random weights, shapes and N:M, every group of M
// consecutive input columns keeps at most N non-zeros, and the kept ones
// are the N largest scores of the group.
func TestNMProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := 0; trial < 200; trial++ {
		nm := [][2]int{{2, 4}, {4, 8}, {1, 4}, {3, 8}}[rng.IntN(4)]
		n, m := nm[0], nm[1]
		rows, cols := 1+rng.IntN(6), m*(1+rng.IntN(5))
		w := make([]float32, rows*cols)
		for i := range w {
			if rng.IntN(5) > 0 { // some exact zeros and ties
				w[i] = float32(rng.IntN(7) - 3)
			}
		}
		orig := append([]float32(nil), w...)
		if _, err := MaskNM(w, MagnitudeScores(orig), rows, cols, n, m); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < rows; r++ {
			for g := 0; g < cols; g += m {
				nz := 0
				minKept, maxDropped := float32(1e9), float32(-1)
				for j := 0; j < m; j++ {
					i := r*cols + g + j
					a := orig[i]
					if a < 0 {
						a = -a
					}
					if w[i] != 0 {
						nz++
						minKept = min(minKept, a)
						if w[i] != orig[i] {
							t.Fatalf("kept value changed")
						}
					} else if orig[i] != 0 {
						maxDropped = max(maxDropped, a)
					}
				}
				if nz > n {
					t.Fatalf("%d:%d rows %d cols %d: group (%d,%d) has %d non-zeros", n, m, rows, cols, r, g, nz)
				}
				if nz > 0 && maxDropped > minKept {
					t.Fatalf("dropped |%g| > kept |%g|", maxDropped, minKept)
				}
			}
		}
	}
}

func TestUnstructuredSparsity(t *testing.T) {
	g := tinyGraph(t, 1)
	for _, scope := range []Scope{PerRow, PerTensor, Global} {
		ng, rep, err := Run(g, Options{Method: "magnitude", Sparsity: 0.5, Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		var zeros, total int
		for _, name := range []string{"blk.0.attn_q.weight", "blk.2.ffn_down.weight"} {
			v := values(t, ng, name)
			for _, x := range v {
				if x == 0 {
					zeros++
				}
			}
			total += len(v)
		}
		if scope != Global && zeros != total/2 {
			t.Errorf("scope %v: %d zeros of %d, want half", scope, zeros, total)
		}
		if rep.BytesAfter != rep.BytesBefore {
			t.Errorf("unstructured pruning changed bytes %d → %d", rep.BytesBefore, rep.BytesAfter)
		}
		if err := ng.Check(); err != nil {
			t.Fatal(err)
		}
	}
	// the original graph is untouched
	for _, x := range values(t, g, "blk.0.attn_q.weight") {
		if x == 0 {
			t.Fatal("Run modified its input graph")
		}
	}
}

func TestWandaUsesActivations(t *testing.T) {
	g := tinyGraph(t, 2)
	stats := &Stats{InputNorms: map[string][]float32{}}
	for i := 0; i < g.Config.NumLayers; i++ {
		for _, k := range linearKinds {
			name := ir.LayerTensor(i, k)
			cols := int(g.Tensor(name).Shape[1])
			norms := make([]float32, cols)
			for c := range norms {
				norms[c] = 1
			}
			norms[0] = 1e6 // channel 0 is huge: wanda must keep it everywhere
			stats.InputNorms[name] = norms
		}
	}
	ng, _, err := Run(g, Options{Method: "wanda", Sparsity: 0.9, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	w := values(t, ng, "blk.1.ffn_up.weight")
	cols := int(g.Tensor("blk.1.ffn_up.weight").Shape[1])
	for r := 0; r < len(w)/cols; r++ {
		if w[r*cols] == 0 {
			t.Fatalf("row %d: channel 0 pruned despite its activation norm", r)
		}
	}
	if _, _, err := Run(g, Options{Method: "wanda", Sparsity: 0.5}); err == nil {
		t.Error("wanda without calibration stats succeeded")
	}
}

func TestStructuredMLP(t *testing.T) {
	g := tinyGraph(t, 3)
	ng, rep, err := Run(g, Options{Method: "structured-mlp", Sparsity: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ng.Config.IntermediateSize, 64; got != want { // 96·0.75 = 72 → aligned down to 64
		t.Errorf("intermediate size %d, want %d", got, want)
	}
	for i := 0; i < 3; i++ {
		if got := ng.Tensor(ir.LayerTensor(i, ir.FFNDown)).Shape; !got.Equal(ir.Shape{32, 64}) {
			t.Errorf("ffn_down shape %v", got)
		}
	}
	// The kept gate rows are original rows, in order; down columns match.
	og, oup, od := values(t, g, "blk.0.ffn_gate.weight"), values(t, g, "blk.0.ffn_up.weight"), values(t, g, "blk.0.ffn_down.weight")
	ng0, nu0, nd0 := values(t, ng, "blk.0.ffn_gate.weight"), values(t, ng, "blk.0.ffn_up.weight"), values(t, ng, "blk.0.ffn_down.weight")
	prev := -1
	for j := 0; j < 64; j++ {
		found := -1
		for o := prev + 1; o < 96; o++ {
			if og[o*32] == ng0[j*32] && og[o*32+1] == ng0[j*32+1] {
				found = o
				break
			}
		}
		if found < 0 {
			t.Fatalf("kept row %d is not an original row in order", j)
		}
		if oup[found*32] != nu0[j*32] || od[5*96+found] != nd0[5*64+j] {
			t.Fatalf("row %d: up row / down column do not follow gate row %d", j, found)
		}
		prev = found
	}
	wantBytes := rep.BytesBefore - 3*3*32*32*4
	if rep.BytesAfter != wantBytes {
		t.Errorf("bytes after %d, want %d", rep.BytesAfter, wantBytes)
	}
}

func TestStructuredHeadsAndLayers(t *testing.T) {
	g := tinyGraph(t, 4)
	ng, _, err := Run(g, Options{Method: "structured-heads", Sparsity: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if ng.Config.NumKVHeads != 1 || ng.Config.NumHeads != 2 {
		t.Errorf("heads %d/%d, want 2/1", ng.Config.NumHeads, ng.Config.NumKVHeads)
	}
	if s := ng.Tensor("blk.0.attn_output.weight").Shape; !s.Equal(ir.Shape{32, 16}) {
		t.Errorf("attn_output shape %v", s)
	}
	lg, rep, err := Run(g, Options{Method: "layers", Sparsity: 0.34})
	if err != nil {
		t.Fatal(err)
	}
	if lg.Config.NumLayers != 2 || lg.Tensor("blk.2.attn_q.weight") != nil || lg.Tensor("blk.1.attn_q.weight") == nil {
		t.Errorf("layers: config %d, tensors not renumbered", lg.Config.NumLayers)
	}
	if rep.BytesAfter >= rep.BytesBefore {
		t.Errorf("layer pruning did not shrink the model")
	}
}

func TestErrors(t *testing.T) {
	g := tinyGraph(t, 5)
	for _, o := range []Options{
		{Method: "bogus", Sparsity: 0.5},
		{Method: "magnitude", Sparsity: 1.5},
		{Method: "nm", N: 4, M: 2},
		{Method: "nm", N: 2, M: 5}, // 32 columns not a multiple of 5
		{Method: "structured-heads", Sparsity: 0.1},
		{Method: "layers", Sparsity: 0.1},
		{Method: "structured-mlp", Sparsity: 0.5, Importance: "activations"},
	} {
		if _, _, err := Run(g, o); err == nil {
			t.Errorf("Run(%+v) succeeded, want error", o)
		}
	}
}
