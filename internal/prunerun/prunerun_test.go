package prunerun

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/prune"
)

var testConfig = ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 32, IntermediateSize: 96, NumLayers: 3,
	NumHeads: 4, NumKVHeads: 2, HeadDim: 8, VocabSize: 64, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
	HiddenAct: "silu", EOSTokenIDs: []int{2}}

// randomGraph builds a Llama graph of cfg with N(0, 0.3²) weights, norms of
// 1, and edit applied to the values by name before encoding.
func randomGraph(t testing.TB, cfg ir.Config, seed uint64, edit func(name string, v []float32)) *ir.Graph {
	t.Helper()
	fam, err := arch.Lookup(cfg.Arch)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 5))
	var ts []*ir.Tensor
	for _, tg := range fam.Targets(cfg) {
		n, _ := tg.Shape.NumElements()
		v := make([]float32, n)
		for i := range v {
			if len(tg.Shape) == 1 {
				v[i] = 1
			} else {
				v[i] = float32(0.3 * rng.NormFloat64())
			}
		}
		if edit != nil {
			edit(tg.Name, v)
		}
		b, _ := ir.EncodeFloat32(ir.F32, v)
		ts = append(ts, &ir.Tensor{Name: tg.Name, DType: ir.F32, Shape: tg.Shape, Source: &ir.BytesSource{Data: b}})
	}
	g, err := fam.Build(cfg, ts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func randomSeqs(seed uint64, n, length, vocab int) [][]int {
	rng := rand.New(rand.NewPCG(seed, 9))
	out := make([][]int, n)
	for i := range out {
		for range length {
			out[i] = append(out[i], rng.IntN(vocab))
		}
	}
	return out
}

func load(t testing.TB, g *ir.Graph) *exec.Model {
	t.Helper()
	m, err := exec.Load(g, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tensorValues(t *testing.T, g *ir.Graph, name string) []float32 {
	t.Helper()
	v, err := g.Tensor(name).Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rmsnorm(x, w []float32, eps float64) []float64 {
	ss := 0.0
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) * r * float64(w[i])
	}
	return out
}

func matvec(w []float32, x []float64, n int) []float64 {
	k := len(x)
	out := make([]float64, n)
	for r := range n {
		for c := range k {
			out[r] += float64(w[r*k+c]) * x[c]
		}
	}
	return out
}

func closeRel(got float32, want float64) bool {
	return math.Abs(float64(got)-want) <= 1e-4*math.Max(math.Abs(want), 1e-3)
}

// TestCollectStatsReference checks the statistics of block 0 against a
// direct float64 computation. Block 0's attention output projection is
// zero, so its residual stream after attention is the embedding, and every
// input of its linears but attn_output follows from the weights without
// attention: q/k/v see RMSNorm(e, attn_norm), gate/up RMSNorm(e, ffn_norm),
// down silu(gate)·up; the block's output is e + down(silu(gate)·up). Block
// 2 is an identity (attn_output and ffn_down zero): influence 0.
func TestCollectStatsReference(t *testing.T) {
	cfg := testConfig
	g := randomGraph(t, cfg, 1, func(name string, v []float32) {
		switch name {
		case "blk.0.attn_output.weight", "blk.2.attn_output.weight", "blk.2.ffn_down.weight":
			clear(v)
		case "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight":
			for i := range v {
				v[i] = 0.5 + float32(i%5)
			}
		}
	})
	seqs := randomSeqs(2, 3, 9, cfg.VocabSize)
	st, err := CollectStats(load(t, g), seqs, true)
	if err != nil {
		t.Fatal(err)
	}
	D, I := cfg.HiddenSize, cfg.IntermediateSize
	emb := tensorValues(t, g, ir.TokenEmbedding)
	an, fn := tensorValues(t, g, "blk.0.attn_norm.weight"), tensorValues(t, g, "blk.0.ffn_norm.weight")
	wg, wu, wd := tensorValues(t, g, "blk.0.ffn_gate.weight"), tensorValues(t, g, "blk.0.ffn_up.weight"), tensorValues(t, g, "blk.0.ffn_down.weight")
	sa, sf, sd := make([]float64, D), make([]float64, D), make([]float64, I)
	bi, tokens := 0.0, 0
	for _, seq := range seqs {
		for _, id := range seq {
			e := emb[id*D : (id+1)*D]
			xa, xf := rmsnorm(e, an, cfg.RMSNormEps), rmsnorm(e, fn, cfg.RMSNormEps)
			gt, up := matvec(wg, xf, I), matvec(wu, xf, I)
			a := make([]float64, I)
			for j := range a {
				a[j] = gt[j] / (1 + math.Exp(-gt[j])) * up[j]
			}
			out := matvec(wd, a, D)
			var ab, aa, bb float64
			for k := range D {
				sa[k] += xa[k] * xa[k]
				sf[k] += xf[k] * xf[k]
				h := float64(e[k]) + out[k]
				ab += float64(e[k]) * h
				aa += float64(e[k]) * float64(e[k])
				bb += h * h
			}
			for j := range a {
				sd[j] += a[j] * a[j]
			}
			bi += 1 - ab/math.Sqrt(aa*bb)
			tokens++
		}
	}
	check := func(name string, want []float64) {
		got := st.InputNorms[name]
		if len(got) != len(want) {
			t.Fatalf("%s: %d norms, want %d", name, len(got), len(want))
		}
		for k := range want {
			if w := math.Sqrt(want[k]); !closeRel(got[k], w) {
				t.Errorf("%s channel %d: norm %g, want %g", name, k, got[k], w)
			}
		}
	}
	for _, n := range []string{"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"} {
		check(n, sa)
	}
	check("blk.0.ffn_gate.weight", sf)
	check("blk.0.ffn_up.weight", sf)
	check("blk.0.ffn_down.weight", sd)
	if st.Tokens != tokens {
		t.Errorf("tokens %d, want %d", st.Tokens, tokens)
	}
	if len(st.InputNorms) != 7*cfg.NumLayers {
		t.Errorf("norms for %d linears, want %d (no output head)", len(st.InputNorms), 7*cfg.NumLayers)
	}
	if want := bi / float64(tokens); math.Abs(st.BlockInfluence[0]-want) > 1e-5*want {
		t.Errorf("block 0 influence %g, want %g", st.BlockInfluence[0], want)
	}
	if st.BlockInfluence[2] > 1e-12 || !(st.BlockInfluence[1] > 0) {
		t.Errorf("influence %v: want block 2 (identity) 0 and block 1 > 0", st.BlockInfluence)
	}
	// Norms of a concatenation: ‖x‖² adds over sequences.
	a, err := CollectStats(load(t, g), seqs[:1], false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CollectStats(load(t, g), seqs[1:], false)
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range st.InputNorms {
		for k := range n {
			want := math.Sqrt(float64(a.InputNorms[name][k])*float64(a.InputNorms[name][k]) + float64(b.InputNorms[name][k])*float64(b.InputNorms[name][k]))
			if !closeRel(n[k], want) {
				t.Fatalf("%s channel %d: norm over all %g, from parts %g", name, k, n[k], want)
			}
		}
	}
	if a.BlockInfluence != nil {
		t.Errorf("block influence computed without being asked for")
	}
}

func TestCollectStatsErrors(t *testing.T) {
	m := load(t, randomGraph(t, testConfig, 3, nil))
	for _, seqs := range [][][]int{nil, {{1, 2}, {}}, {{1, 9999}}} {
		if _, err := CollectStats(m, seqs, true); err == nil {
			t.Errorf("CollectStats(%v) succeeded", seqs)
		}
	}
}

// logitError is the mean squared difference of two models' logits over
// seqs.
func logitError(t *testing.T, a, b *exec.Model, seqs [][]int) float64 {
	t.Helper()
	la, err := a.ForwardBatch(seqs)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.ForwardBatch(seqs)
	if err != nil {
		t.Fatal(err)
	}
	s, n := 0.0, 0
	for i := range la {
		for j := range la[i] {
			d := float64(la[i][j] - lb[i][j])
			s += d * d
			n++
		}
	}
	return s / float64(n)
}

// TestWandaBeatsMagnitudeOnModel: in a model whose RMSNorm weights make a
// few input channels of every q/k/v/gate/up 12× larger (the outlier
// features of LLM activations), Wanda at 50% changes held-out logits
// much less than magnitude pruning at 50%.
func TestWandaBeatsMagnitudeOnModel(t *testing.T) {
	cfg := testConfig
	g := randomGraph(t, cfg, 4, func(name string, v []float32) {
		if strings.HasSuffix(name, "_norm.weight") && strings.HasPrefix(name, "blk.") {
			v[3], v[17], v[29] = 12, 12, 12
		}
	})
	calib, held := randomSeqs(5, 8, 24, cfg.VocabSize), randomSeqs(6, 4, 24, cfg.VocabSize)
	wanda, err := Prune(g, prune.Options{Method: "wanda", Sparsity: 0.5}, calib)
	if err != nil {
		t.Fatal(err)
	}
	if wanda.Stats == nil || wanda.Stats.Tokens != 8*24 {
		t.Fatalf("wanda collected no statistics over the calibration tokens")
	}
	mag, err := Prune(g, prune.Options{Method: "magnitude", Sparsity: 0.5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mag.Stats != nil {
		t.Errorf("magnitude pruning collected statistics")
	}
	dense := load(t, g)
	eW, eM := logitError(t, dense, load(t, wanda.Graph), held), logitError(t, dense, load(t, mag.Graph), held)
	t.Logf("held-out logit MSE vs dense: wanda %.4g, magnitude %.4g", eW, eM)
	if !(eW < 0.7*eM) {
		t.Errorf("wanda's logit error %.4g is not clearly below magnitude's %.4g", eW, eM)
	}
	if wanda.Report.Pruned != mag.Report.Pruned {
		t.Errorf("wanda pruned %d weights, magnitude %d", wanda.Report.Pruned, mag.Report.Pruned)
	}
	if _, err := Prune(g, prune.Options{Method: "wanda", Sparsity: 0.5}, nil); err == nil {
		t.Error("wanda without calibration sequences succeeded")
	}
}

// TestStructuredActivations: structured pruning ranked by activations
// (MLP channels, heads, and layers by block influence) gives graphs the
// executor runs with a finite perplexity.
func TestStructuredActivations(t *testing.T) {
	cfg := testConfig
	g := randomGraph(t, cfg, 7, nil)
	calib := randomSeqs(8, 4, 16, cfg.VocabSize)
	held := randomSeqs(9, 1, 100, cfg.VocabSize)[0]
	dense, err := load(t, g).Perplexity(held, 32, 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []prune.Options{
		{Method: "structured-mlp", Sparsity: 0.25, Importance: "activations", Align: 8},
		{Method: "structured-heads", Sparsity: 0.5, Importance: "activations"},
		{Method: "layers", Sparsity: 0.34, Importance: "activations"},
	} {
		res, err := Prune(g, o, calib)
		if err != nil {
			t.Fatal(err)
		}
		if o.Method == "layers" && len(res.Stats.BlockInfluence) != cfg.NumLayers {
			t.Errorf("layers: no block influence collected")
		}
		r, err := load(t, res.Graph).Perplexity(held, 32, 32, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ppl %.4f → %.4f", o.Method, dense.PPL, r.PPL)
		if math.IsNaN(r.PPL) || math.IsInf(r.PPL, 0) || r.PPL == dense.PPL {
			t.Errorf("%s: perplexity %v (dense %v)", o.Method, r.PPL, dense.PPL)
		}
	}
}

// TestCollectStatsDeterministic: two runs give identical statistics.
func TestCollectStatsDeterministic(t *testing.T) {
	g := randomGraph(t, testConfig, 10, nil)
	seqs := randomSeqs(11, 4, 40, testConfig.VocabSize)
	a, err := CollectStats(load(t, g), seqs, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CollectStats(load(t, g), seqs, true)
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range a.InputNorms {
		for k := range n {
			if math.Float32bits(n[k]) != math.Float32bits(b.InputNorms[name][k]) {
				t.Fatalf("%s channel %d differs between runs", name, k)
			}
		}
	}
	for i := range a.BlockInfluence {
		if a.BlockInfluence[i] != b.BlockInfluence[i] {
			t.Fatalf("block %d influence differs between runs", i)
		}
	}
}
