package prune

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/internal/ir"
)

// TestPlanMatchesRun: for every method, Plan (shapes only) predicts Run's
// shapes, bytes, config and pruned counts exactly; the non-zero counts
// Plan cannot know are -1.
func TestPlanMatchesRun(t *testing.T) {
	g := tinyGraph(t, 21)
	st := uniformStats(g, 2, 50)
	for _, o := range []Options{
		{Method: "magnitude", Sparsity: 0.5},
		{Method: "magnitude", Sparsity: 0.37, Scope: PerTensor},
		{Method: "magnitude", Sparsity: 0.6, Scope: Global},
		{Method: "wanda", Sparsity: 0.5, Stats: st},
		{Method: "nm", N: 2, M: 4},
		{Method: "nm", N: 4, M: 8, Stats: st},
		{Method: "structured-mlp", Sparsity: 0.25},
		{Method: "structured-mlp", Sparsity: 0.4, Align: 8, Stats: st},
		{Method: "structured-heads", Sparsity: 0.5},
		{Method: "layers", Sparsity: 0.34},
		{Method: "layers", Sparsity: 0.67, Stats: st},
	} {
		run, rr, err := Run(g, o)
		if err != nil {
			t.Fatalf("Run(%+v): %v", o, err)
		}
		plan, err := Plan(g, o)
		if err != nil {
			t.Fatalf("Plan(%+v): %v", o, err)
		}
		name := o.Method
		if got, want := plan.Config, run.Config; !cmp.Equal(got, want) {
			t.Errorf("%s: planned config %+v, run gives %+v", name, got, want)
		}
		if plan.BytesBefore != rr.BytesBefore || plan.BytesAfter != rr.BytesAfter {
			t.Errorf("%s: planned bytes %d → %d, run %d → %d", name, plan.BytesBefore, plan.BytesAfter, rr.BytesBefore, rr.BytesAfter)
		}
		if plan.Pruned != rr.Pruned || plan.LinearElements != rr.LinearElements {
			t.Errorf("%s: planned %d of %d pruned, run %d of %d", name, plan.Pruned, plan.LinearElements, rr.Pruned, rr.LinearElements)
		}
		if o.Method == "layers" {
			if len(plan.Tensors) != 0 {
				t.Errorf("layers plan lists tensors")
			}
			continue
		}
		want := append([]TensorReport(nil), rr.Tensors...)
		for i := range want {
			want[i].NonZeroBefore, want[i].NonZeroAfter = -1, -1
			if o.Scope == Global && o.Method == "magnitude" {
				want[i].Pruned, want[i].Sparsity = -1, -1
			}
		}
		if d := cmp.Diff(want, plan.Tensors, cmpopts.EquateApprox(0, 1e-12)); d != "" {
			t.Errorf("%s: plan differs from run (-run +plan):\n%s", name, d)
		}
	}
}

// shapeOnlyGraph builds a graph of cfg whose tensors have shapes and
// dtypes but no data: Plan must not read any.
func shapeOnlyGraph(t *testing.T, cfg ir.Config, dt ir.DType) *ir.Graph {
	t.Helper()
	fam, err := arch.Lookup(cfg.Arch)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*ir.Tensor
	for _, tg := range fam.Targets(cfg) {
		ts = append(ts, &ir.Tensor{Name: tg.Name, DType: dt, Shape: tg.Shape})
	}
	g, err := fam.Build(cfg, ts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPlanFullScale plans Llama-3-8B (bf16, GQA 32/8, intermediate 14336)
// and ref29m (f16) from their configs alone, against hand-computed sizes.
func TestPlanFullScale(t *testing.T) {
	llama3 := ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32,
		NumHeads: 32, NumKVHeads: 8, HeadDim: 128, VocabSize: 128256, MaxPositionEmbeddings: 8192, RMSNormEps: 1e-5, RopeTheta: 500000, HiddenAct: "silu"}
	ref29m := ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 512, IntermediateSize: 1536, NumLayers: 8,
		NumHeads: 8, NumKVHeads: 4, HeadDim: 64, VocabSize: 4096, MaxPositionEmbeddings: 512, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu"}
	tests := []struct {
		name      string
		cfg       ir.Config
		opts      Options
		bytesDrop int64
		pruned    int64
		after     func(c *ir.Config)
	}{
		// 14336·0.75 = 10752 (a multiple of 32): 3584 channels × 4096 × 3 matrices × 2 bytes × 32 layers
		{"llama3-8b mlp 25%", llama3, Options{Method: "structured-mlp", Sparsity: 0.25}, 32 * 3 * 3584 * 4096 * 2, 32 * 3 * 3584 * 4096,
			func(c *ir.Config) { c.IntermediateSize = 10752 }},
		// 8 kv groups − ⌊0.25·8⌋ = 6: q/o lose 2·4·128 = 1024 rows/columns, k/v 256 rows
		{"llama3-8b heads 25%", llama3, Options{Method: "structured-heads", Sparsity: 0.25}, 32 * (2*1024 + 2*256) * 4096 * 2, 32 * (2*1024 + 2*256) * 4096,
			func(c *ir.Config) { c.NumHeads, c.NumKVHeads = 24, 6 }},
		// a block: 2 norms of 4096 + q,o 4096² + k,v 1024·4096 + 3·14336·4096, bf16
		{"llama3-8b layers 25%", llama3, Options{Method: "layers", Sparsity: 0.25}, 8 * 2 * (2*4096 + 2*4096*4096 + 2*1024*4096 + 3*14336*4096), 8 * (2*4096*4096 + 2*1024*4096 + 3*14336*4096),
			func(c *ir.Config) { c.NumLayers = 24 }},
		{"llama3-8b 2:4", llama3, Options{Method: "nm", N: 2, M: 4}, 0, 32 * (2*4096*4096 + 2*1024*4096 + 3*14336*4096) / 2, func(*ir.Config) {}},
		// ref29m: 1536·0.75 = 1152; 384 × 512 × 3 × 2 bytes = 1,179,648 per layer, × 8 = 9,437,184
		{"ref29m mlp 25%", ref29m, Options{Method: "structured-mlp", Sparsity: 0.25}, 9437184, 8 * 3 * 384 * 512,
			func(c *ir.Config) { c.IntermediateSize = 1152 }},
		{"ref29m wanda 50%", ref29m, Options{Method: "wanda", Sparsity: 0.5}, 0, 8 * (2*512*512 + 2*256*512 + 3*1536*512) / 2, func(*ir.Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dt := ir.BF16
			if tt.cfg.HiddenSize == 512 {
				dt = ir.F16
			}
			g := shapeOnlyGraph(t, tt.cfg, dt)
			rep, err := Plan(g, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := rep.BytesBefore - rep.BytesAfter; got != tt.bytesDrop {
				t.Errorf("bytes drop %d, want %d", got, tt.bytesDrop)
			}
			if rep.Pruned != tt.pruned {
				t.Errorf("pruned %d, want %d", rep.Pruned, tt.pruned)
			}
			want := tt.cfg
			tt.after(&want)
			if d := cmp.Diff(want, rep.Config); d != "" {
				t.Errorf("config after (-want +got):\n%s", d)
			}
		})
	}
}
