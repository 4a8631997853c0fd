package prune

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// uniformStats returns activation norms of 1 for every linear input channel
// (then Wanda's score is |W|), with channel big of every linear set to
// scale, and block influence 1..L.
func uniformStats(g *ir.Graph, big int, scale float32) *Stats {
	s := &Stats{InputNorms: map[string][]float32{}, Tokens: 1}
	for _, name := range LinearNames(g.Config) {
		norms := make([]float32, g.Tensor(name).Shape[1])
		for c := range norms {
			norms[c] = 1
		}
		norms[big] = scale
		s.InputNorms[name] = norms
	}
	for i := 0; i < g.Config.NumLayers; i++ {
		s.BlockInfluence = append(s.BlockInfluence, float64(i+1))
	}
	return s
}

// TestNMRun: N:M through Run (magnitude and activation scores) leaves every
// group of M input columns of every block linear with at most N non-zeros,
// and exactly N when the weights had no zeros.
func TestNMRun(t *testing.T) {
	g := tinyGraph(t, 6)
	for _, tt := range []struct {
		n, m int
		imp  string
	}{{2, 4, "magnitude"}, {4, 8, "magnitude"}, {2, 4, "activations"}, {1, 4, "activations"}} {
		ng, rep, err := Run(g, Options{Method: "nm", N: tt.n, M: tt.m, Importance: tt.imp, Stats: uniformStats(g, 3, 1e6)})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range LinearNames(g.Config) {
			w := values(t, ng, name)
			cols := int(ng.Tensor(name).Shape[1])
			for g0 := 0; g0 < len(w); g0 += tt.m {
				nz := 0
				for _, v := range w[g0 : g0+tt.m] {
					if v != 0 {
						nz++
					}
				}
				if nz != tt.n {
					t.Fatalf("%d:%d %s: %s row %d group at column %d has %d non-zeros, want %d", tt.n, tt.m, tt.imp, name, g0/cols, g0%cols, nz, tt.n)
				}
			}
			if tt.imp == "activations" && tt.n >= 1 {
				// channel 3's huge activation norm keeps it in every row
				for r := 0; r < len(w)/cols; r++ {
					if w[r*cols+3] == 0 {
						t.Fatalf("%d:%d activations: %s row %d dropped the outlier channel", tt.n, tt.m, name, r)
					}
				}
			}
		}
		if want := rep.LinearElements / int64(tt.m) * int64(tt.m-tt.n); rep.Pruned != want {
			t.Errorf("%d:%d: report says %d pruned, want %d", tt.n, tt.m, rep.Pruned, want)
		}
	}
}

// TestGlobalScopeCount: a global magnitude mask removes exactly ⌊p·total⌋
// of the block linears' weights (random normal weights have no ties), the
// smallest ones: every kept |w| >= every dropped |w|.
func TestGlobalScopeCount(t *testing.T) {
	g := tinyGraph(t, 7)
	ng, rep, err := Run(g, Options{Method: "magnitude", Sparsity: 0.3, Scope: Global})
	if err != nil {
		t.Fatal(err)
	}
	var zeros, total int64
	minKept, maxDropped := float32(1e30), float32(0)
	for _, name := range LinearNames(g.Config) {
		orig, w := values(t, g, name), values(t, ng, name)
		for i := range w {
			a := orig[i]
			if a < 0 {
				a = -a
			}
			if w[i] == 0 {
				zeros++
				maxDropped = max(maxDropped, a)
			} else {
				minKept = min(minKept, a)
			}
		}
		total += int64(len(w))
	}
	if want := int64(0.3 * float64(total)); zeros != want || rep.Pruned != want {
		t.Errorf("global 30%%: %d zeros, report %d, want %d", zeros, rep.Pruned, want)
	}
	if maxDropped > minKept {
		t.Errorf("global mask dropped |w| = %g but kept |w| = %g", maxDropped, minKept)
	}
	// per-tensor sparsity differs between tensors, but adds up
	var sum int64
	for _, r := range rep.Tensors {
		sum += r.Pruned
	}
	if sum != rep.Pruned {
		t.Errorf("per-tensor pruned counts add up to %d, total %d", sum, rep.Pruned)
	}
}

// linearOutputError is ‖X·Wᵀ − X·Ŵᵀ‖_F² for X [T, K], W and Ŵ [N, K].
func linearOutputError(x, w, wp []float32, T, N, K int) float64 {
	e := 0.0
	for t := 0; t < T; t++ {
		for n := 0; n < N; n++ {
			d := 0.0
			for k := 0; k < K; k++ {
				d += float64(x[t*K+k]) * float64(w[n*K+k]-wp[n*K+k])
			}
			e += d * d
		}
	}
	return e
}

// TestWandaBeatsMagnitudeOutliers: on a linear whose inputs have a few
// outlier channels (20× the others, as LLM activations do), Wanda's mask
// (|W|·‖X_k‖) gives a much smaller output error than the magnitude mask
// at the same 50% per-row sparsity; with uniform activations both masks
// are the same.
func TestWandaBeatsMagnitudeOutliers(t *testing.T) {
	const T, N, K = 256, 48, 64
	rng := rand.New(rand.NewPCG(11, 3))
	w := make([]float32, N*K)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	outlier := map[int]bool{5: true, 17: true, 40: true, 41: true}
	x := make([]float32, T*K)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if outlier[i%K] {
			x[i] *= 20
		}
	}
	norms := make([]float32, K)
	for k := range norms {
		s := 0.0
		for tk := 0; tk < T; tk++ {
			s += float64(x[tk*K+k]) * float64(x[tk*K+k])
		}
		norms[k] = float32(math.Sqrt(s))
	}
	mag := append([]float32(nil), w...)
	MaskRows(mag, MagnitudeScores(w), N, K, 0.5)
	wanda := append([]float32(nil), w...)
	ws, err := WandaScores(w, N, K, norms)
	if err != nil {
		t.Fatal(err)
	}
	MaskRows(wanda, ws, N, K, 0.5)
	eMag, eWanda := linearOutputError(x, w, mag, T, N, K), linearOutputError(x, w, wanda, T, N, K)
	t.Logf("output error ‖XWᵀ−XŴᵀ‖²: magnitude %.4g, wanda %.4g", eMag, eWanda)
	if !(eWanda < 0.5*eMag) {
		t.Errorf("wanda's output error %.4g is not below half of magnitude's %.4g", eWanda, eMag)
	}
	ones := make([]float32, K)
	for k := range ones {
		ones[k] = 3
	}
	u := append([]float32(nil), w...)
	us, _ := WandaScores(w, N, K, ones)
	MaskRows(u, us, N, K, 0.5)
	if diff := cmp.Diff(mag, u); diff != "" {
		t.Errorf("wanda with uniform activations differs from magnitude (-mag +wanda):\n%s", diff)
	}
}

// TestActivationImportance: with activation statistics the structured
// methods keep what the statistics call important: the MLP channel and the
// attention group with huge input norms, and the blocks with the largest
// influence; removed blocks' successors are renumbered in order.
func TestActivationImportance(t *testing.T) {
	g := tinyGraph(t, 8)
	st := uniformStats(g, 0, 1) // every norm 1 ...
	for i := 0; i < g.Config.NumLayers; i++ {
		st.InputNorms[ir.LayerTensor(i, ir.FFNDown)][90] = 1e6   // ... but MLP channel 90
		st.InputNorms[ir.LayerTensor(i, ir.AttnOutput)][0] = 1e6 // and group 0's first column
	}
	ng, _, err := Run(g, Options{Method: "structured-mlp", Sparsity: 0.5, Stats: st, Align: 8})
	if err != nil {
		t.Fatal(err)
	}
	og, kg := values(t, g, "blk.1.ffn_gate.weight"), values(t, ng, "blk.1.ffn_gate.weight")
	if ng.Config.IntermediateSize != 48 {
		t.Fatalf("kept %d MLP channels, want 48", ng.Config.IntermediateSize)
	}
	kept := false
	for r := 0; r < 48; r++ {
		kept = kept || cmp.Diff(kg[r*32:(r+1)*32], og[90*32:91*32]) == ""
	}
	if !kept {
		t.Errorf("MLP channel 90 with the huge activation norm was not kept")
	}
	hg, _, err := Run(g, Options{Method: "structured-heads", Sparsity: 0.5, Stats: st, Importance: "activations"})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := values(t, g, "blk.2.attn_k.weight"), values(t, hg, "blk.2.attn_k.weight"); cmp.Diff(a[:8*32], b) != "" {
		t.Errorf("structured-heads did not keep kv group 0 (the one with the huge activation norm)")
	}
	st.BlockInfluence = []float64{0.5, 0.1, 0.9}
	lg, rep, err := Run(g, Options{Method: "layers", Sparsity: 0.34, Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(values(t, g, "blk.2.ffn_up.weight"), values(t, lg, "blk.1.ffn_up.weight")); d != "" {
		t.Errorf("after removing block 1, new block 1 is not old block 2")
	}
	var removed []string
	for _, r := range rep.Tensors {
		if r.Removed {
			removed = append(removed, r.Name)
		}
	}
	if len(removed) != 9 || removed[0] != "blk.1.attn_k.weight" {
		t.Errorf("removed tensors %v, want the 9 of block 1", removed)
	}
}

// TestDeterministic: the same input and options give byte-identical
// tensors.
func TestDeterministic(t *testing.T) {
	g := tinyGraph(t, 9)
	for _, o := range []Options{
		{Method: "magnitude", Sparsity: 0.5, Scope: Global},
		{Method: "wanda", Sparsity: 0.5, Stats: uniformStats(g, 1, 7)},
		{Method: "structured-mlp", Sparsity: 0.25},
	} {
		a, _, err := Run(g, o)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := Run(g, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, ta := range a.Tensors {
			da, _ := ta.Data()
			db, _ := b.Tensor(ta.Name).Data()
			if string(da) != string(db) {
				t.Errorf("%s: tensor %q differs between two runs", o.Method, ta.Name)
			}
		}
	}
}

func TestQuantizedInputRejected(t *testing.T) {
	g := tinyGraph(t, 10)
	tn := *g.Tensor("blk.0.ffn_up.weight")
	tn.Quant = &ir.QuantInfo{Scheme: "int4-g32-asym"}
	for i, x := range g.Tensors {
		if x.Name == tn.Name {
			g.Tensors[i] = &tn
		}
	}
	_, _, err := Run(g, Options{Method: "layers", Sparsity: 0.5})
	if err == nil || !strings.Contains(err.Error(), "prune before quantizing") {
		t.Errorf("pruning a quantized model: err %v", err)
	}
}

func TestStructuredMLPNoOp(t *testing.T) {
	g := tinyGraph(t, 12) // intermediate 96
	if _, _, err := Run(g, Options{Method: "structured-mlp", Sparsity: 0.1, Align: 128}); err == nil || !strings.Contains(err.Error(), "removes no MLP channel") {
		t.Errorf("align above the width: err %v", err)
	}
}
