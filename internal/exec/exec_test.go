package exec

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
)

func synthConfigs() []synthConfig {
	withBias := baseConfig()
	withBias.Arch, withBias.AttentionBias = "Qwen2ForCausalLM", true
	tied := baseConfig()
	tied.TieWordEmbeddings = true
	linear := baseConfig()
	linear.RopeScaling = &ir.RopeScaling{Type: "linear", Factor: 4}
	llama3 := baseConfig()
	llama3.HeadDim, llama3.NumHeads, llama3.NumKVHeads = 32, 2, 1
	llama3.RopeTheta = 500000
	llama3.RopeScaling = &ir.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
	window := baseConfig()
	window.SlidingWindow = 5
	mha := baseConfig()
	mha.NumKVHeads, mha.NumLayers = 4, 3
	return []synthConfig{
		{name: "gqa-untied", cfg: baseConfig(), dtype: ir.F32, seed: 1, scale: 0.3},
		{name: "gqa-untied-f16", cfg: baseConfig(), dtype: ir.F16, seed: 2, scale: 0.3},
		{name: "qkv-bias-bf16", cfg: withBias, dtype: ir.BF16, seed: 3, scale: 0.3},
		{name: "tied", cfg: tied, dtype: ir.F32, seed: 4, scale: 0.3},
		{name: "rope-linear", cfg: linear, dtype: ir.F32, seed: 5, scale: 0.3},
		{name: "rope-llama3", cfg: llama3, dtype: ir.F32, seed: 6, scale: 0.3},
		{name: "sliding-window", cfg: window, dtype: ir.F32, seed: 7, scale: 0.3},
		{name: "mha-3-layers", cfg: mha, dtype: ir.F16, seed: 8, scale: 0.3},
	}
}

func mustLoad(t testing.TB, g *ir.Graph, opts Options) *Model {
	t.Helper()
	m, err := Load(g, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m
}

// TestForwardMatchesOracle checks every position's logits against the
// float64 oracle on synthetic models covering GQA, biases, tied heads, both
// rope scalings, a sliding window and f16/bf16 storage.
func TestForwardMatchesOracle(t *testing.T) {
	for _, sc := range synthConfigs() {
		t.Run(sc.name, func(t *testing.T) {
			g := synthGraph(t, sc)
			m := mustLoad(t, g, Options{})
			ids := randomIDs(rand.New(rand.NewPCG(sc.seed, 1)), 24, sc.cfg.VocabSize)
			got, err := m.Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			want := oracleForward(t, g, ids)
			d, ref := relMaxDiff(got, want)
			if d > 2e-5*ref {
				t.Errorf("%s: max|Δ| = %.3g, max|logit| = %.3g: ratio %.3g > 2e-5", describe(sc), d, ref, d/ref)
			}
		})
	}
}

// TestSessionMatchesForward checks that prefill + incremental decode with
// the KV cache gives the logits of a full recompute at every step.
func TestSessionMatchesForward(t *testing.T) {
	for _, sc := range synthConfigs() {
		t.Run(sc.name, func(t *testing.T) {
			g := synthGraph(t, sc)
			m := mustLoad(t, g, Options{})
			ids := randomIDs(rand.New(rand.NewPCG(sc.seed, 2)), 20, sc.cfg.VocabSize)
			full, err := m.Forward(ids)
			if err != nil {
				t.Fatal(err)
			}
			V := sc.cfg.VocabSize
			s, err := m.NewSession(len(ids))
			if err != nil {
				t.Fatal(err)
			}
			// Prefill 7 tokens, then 2 more in one chunk, then one at a time.
			check := func(pos int, got []float32) {
				t.Helper()
				want := full[pos*V : (pos+1)*V]
				for v := range V {
					if d := math.Abs(float64(got[v] - want[v])); d > 1e-5*(1+math.Abs(float64(want[v]))) {
						t.Fatalf("position %d token %d: session %v, forward %v", pos, v, got[v], want[v])
					}
				}
			}
			l, err := s.Prefill(ids[:7])
			if err != nil {
				t.Fatal(err)
			}
			check(6, l)
			if l, err = s.Prefill(ids[7:9]); err != nil {
				t.Fatal(err)
			}
			check(8, l)
			for p := 9; p < len(ids); p++ {
				if l, err = s.Decode(ids[p]); err != nil {
					t.Fatal(err)
				}
				check(p, l)
			}
			if got, want := s.Pos(), len(ids); got != want {
				t.Errorf("Pos() = %d, want %d", got, want)
			}
			if _, err := s.Decode(1); err == nil || !strings.Contains(err.Error(), "full") {
				t.Errorf("Decode past the context: err = %v, want a full-context error", err)
			}
		})
	}
}

// TestBlockByBlock checks Embed + RunBlock + Head against Forward, with and
// without a cache, and that the hook sees the inputs of the 7 linears of
// every block plus the head.
func TestBlockByBlock(t *testing.T) {
	sc := synthConfigs()[2] // biases
	g := synthGraph(t, sc)
	m := mustLoad(t, g, Options{})
	ids := randomIDs(rand.New(rand.NewPCG(9, 9)), 11, sc.cfg.VocabSize)
	want, err := m.Forward(ids)
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		layer      int
		name       string
		rows, cols int
		first      float32
	}
	var calls []call
	m.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
		if len(x) != rows*cols {
			t.Errorf("hook %s: len(x) = %d, want %d×%d", name, len(x), rows, cols)
		}
		calls = append(calls, call{layer, name, rows, cols, x[0]})
	})
	for _, useCache := range []bool{false, true} {
		calls = calls[:0]
		h, err := m.Embed(ids)
		if err != nil {
			t.Fatal(err)
		}
		var cache *KVCache
		if useCache {
			cache = m.NewKVCache(len(ids))
		}
		for i := range sc.cfg.NumLayers {
			if err := m.RunBlock(i, h, 0, cache); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.Head(h)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("cache=%v: logit %d = %v, Forward gives %v", useCache, i, got[i], want[i])
			}
		}
		names := []string{ir.AttnQ, ir.AttnK, ir.AttnV, ir.AttnOutput, ir.FFNGate, ir.FFNUp, ir.FFNDown}
		if got, want := len(calls), sc.cfg.NumLayers*len(names)+1; got != want {
			t.Fatalf("hook called %d times, want %d", got, want)
		}
		D, I, qd := sc.cfg.HiddenSize, sc.cfg.IntermediateSize, sc.cfg.NumHeads*sc.cfg.HeadDim
		for i := range sc.cfg.NumLayers {
			for j, n := range names {
				c := calls[i*len(names)+j]
				cols := D
				switch n {
				case ir.AttnOutput:
					cols = qd
				case ir.FFNDown:
					cols = I
				}
				if c.layer != i || c.name != ir.LayerTensor(i, n) || c.rows != len(ids) || c.cols != cols {
					t.Errorf("hook call %d = %+v, want layer %d %s [%d×%d]", i*len(names)+j, c, i, ir.LayerTensor(i, n), len(ids), cols)
				}
			}
		}
		if c := calls[len(calls)-1]; c.layer != -1 || c.name != ir.Output {
			t.Errorf("last hook call = %+v, want the output head", c)
		}
	}
	// The hook's q input is the attention RMSNorm of the embeddings.
	h0, _ := m.Embed(ids[:1])
	x := make([]float32, sc.cfg.HiddenSize)
	RMSNorm(x, h0, 1, sc.cfg.HiddenSize, m.Weight(ir.LayerTensor(0, ir.AttnNorm)), sc.cfg.RMSNormEps)
	calls = calls[:0]
	if err := m.RunBlock(0, h0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if calls[0].first != x[0] {
		t.Errorf("hook saw x[0] = %v, want RMSNorm(embedding)[0] = %v", calls[0].first, x[0])
	}
}

// TestSetWeight checks that swapped-in weights are used (and shape-checked).
func TestSetWeight(t *testing.T) {
	sc := synthConfigs()[3] // tied
	g := synthGraph(t, sc)
	m := mustLoad(t, g, Options{})
	ids := []int{1, 5, 7}
	before, _ := m.Forward(ids)
	name := ir.LayerTensor(1, ir.FFNDown)
	w := append([]float32{}, m.Weight(name)...)
	for i := range w {
		w[i] *= 0.5
	}
	if err := m.SetWeight(name, w); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Forward(ids)
	if relSame(before, after) {
		t.Errorf("SetWeight(%q) did not change the logits", name)
	}
	// Check against the oracle on a graph holding the halved weights.
	g2 := unquantized(g)
	b, _ := ir.EncodeFloat32(ir.F32, w)
	g2.Tensor(name).Source = &ir.BytesSource{Data: b}
	if d, ref := relMaxDiff(after, oracleForward(t, g2, ids)); d > 2e-5*ref {
		t.Errorf("after SetWeight: max|Δ| %.3g vs oracle, max|logit| %.3g", d, ref)
	}
	// Tied embedding: replacing it changes the head too.
	e := make([]float32, len(m.Weight(ir.TokenEmbedding)))
	if err := m.SetWeight(ir.TokenEmbedding, e); err != nil {
		t.Fatal(err)
	}
	zero, _ := m.Forward(ids)
	for i, v := range zero {
		if v != 0 {
			t.Fatalf("zero tied embedding: logit %d = %v, want 0", i, v)
		}
	}
	for _, tc := range []struct {
		name string
		n    int
		want string
	}{
		{"blk.9.ffn_up.weight", 4, "no tensor"},
		{name, 3, "needs"},
	} {
		if err := m.SetWeight(tc.name, make([]float32, tc.n)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetWeight(%q, %d values) = %v, want an error containing %q", tc.name, tc.n, err, tc.want)
		}
	}
}

func relSame(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDequantizer checks that quantized tensors go through Options.Dequantize.
func TestDequantizer(t *testing.T) {
	sc := synthConfigs()[0]
	sc.quantQ0 = true
	g := synthGraph(t, sc)
	if _, err := Load(g, Options{}); err == nil || !strings.Contains(err.Error(), "no dequantizer") {
		t.Fatalf("Load of a quantized tensor without a dequantizer: err = %v", err)
	}
	var seen []string
	dq := func(g *ir.Graph, tt *ir.Tensor) ([]float32, error) {
		seen = append(seen, tt.Name)
		b, err := tt.Data()
		if err != nil {
			return nil, err
		}
		return ir.DecodeFloat32(ir.F32, b)
	}
	m := mustLoad(t, g, Options{Dequantize: dq})
	if len(seen) != 1 || seen[0] != ir.LayerTensor(0, ir.AttnQ) {
		t.Errorf("dequantizer saw %v, want only blk.0.attn_q.weight", seen)
	}
	ids := []int{3, 1, 4, 1, 5}
	got, _ := m.Forward(ids)
	if d, ref := relMaxDiff(got, oracleForward(t, unquantized(g), ids)); d > 2e-5*ref {
		t.Errorf("max|Δ| %.3g vs oracle, max|logit| %.3g", d, ref)
	}
}

// TestLoadErrors checks that bad graphs are rejected with a named cause.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(g *ir.Graph)
		want   string
	}{
		{"missing tensor", func(g *ir.Graph) {
			g.Tensors = g.Tensors[1:] // blk.0.attn_k.weight sorts first
		}, `tensor "blk.0.attn_k.weight" missing`},
		{"bad shape", func(g *ir.Graph) { g.Tensor(ir.OutputNorm).Shape = ir.Shape{31} }, `"output_norm.weight" has shape [31], want [32]`},
		{"short data", func(g *ir.Graph) {
			g.Tensor(ir.OutputNorm).Source = &ir.BytesSource{Data: make([]byte, 8)}
		}, "8 bytes, want 128"},
		{"gqa", func(g *ir.Graph) { g.Config.NumKVHeads = 3 }, "not a multiple"},
		{"act", func(g *ir.Graph) { g.Config.HiddenAct = "gelu" }, `hidden_act "gelu"`},
		{"rope", func(g *ir.Graph) { g.Config.RopeScaling = &ir.RopeScaling{Type: "yarn", Factor: 2} }, `"yarn" is not supported`},
		{"nan", func(g *ir.Graph) {
			b, _ := ir.EncodeFloat32(ir.F32, make([]float32, 32))
			b[2*4+2], b[2*4+3] = 0xc0, 0x7f
			g.Tensor(ir.OutputNorm).Source = &ir.BytesSource{Data: b}
		}, "element 2 is NaN"},
		{"tied with output", func(g *ir.Graph) { g.Config.TieWordEmbeddings = true }, "is present"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := synthGraph(t, synthConfigs()[0])
			tc.mutate(g)
			_, err := Load(g, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	m := mustLoad(t, synthGraph(t, synthConfigs()[0]), Options{})
	if _, err := m.Forward([]int{1, 40}); err == nil || !strings.Contains(err.Error(), "token id 40 at position 1") {
		t.Errorf("Forward with an id out of range: err = %v", err)
	}
	if _, err := m.Forward(nil); err == nil {
		t.Errorf("Forward(nil): no error")
	}
	if err := m.RunBlock(2, make([]float32, 32), 0, nil); err == nil {
		t.Errorf("RunBlock(2) on a 2-layer model: no error")
	}
	if err := m.RunBlock(0, make([]float32, 32), 4, m.NewKVCache(4)); err == nil || !strings.Contains(err.Error(), "capacity") {
		t.Errorf("RunBlock past the cache: err = %v", err)
	}
}

// TestForwardBatch checks that sequences of a batch are independent.
func TestForwardBatch(t *testing.T) {
	m := mustLoad(t, synthGraph(t, synthConfigs()[0]), Options{})
	seqs := [][]int{{1, 2, 3}, {4, 5}, {6, 7, 8, 9, 10}}
	got, err := m.ForwardBatch(seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		want, _ := m.Forward(s)
		if !relSame(got[i], want) || len(got[i]) != len(want) {
			t.Errorf("sequence %d: batch logits differ from Forward", i)
		}
	}
}

// TestDecodeAllocs checks that steady-state decoding allocates nothing.
func TestDecodeAllocs(t *testing.T) {
	m := mustLoad(t, synthGraph(t, synthConfigs()[0]), Options{})
	s, err := m.NewSession(200)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prefill([]int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := s.Decode(5); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %v times per token, want 0", allocs)
	}
}
