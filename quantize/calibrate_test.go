package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
)

// toyLlama is an independent, minimal Llama-block executor (no RoPE) for
// driver tests: RMSNorm, q/k/v, causal GQA attention, o, residual,
// RMSNorm, SiLU(gate)·up, down, residual.
type toyLlama struct {
	cfg  ir.Config
	w    map[string][]float32
	hook func(layer int, name string, x []float32, rows, cols int)
}

func newToyLlama(seed uint64) *toyLlama {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	c := ir.Config{HiddenSize: 64, IntermediateSize: 128, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 16, VocabSize: 50, RMSNormEps: 1e-5}
	m := &toyLlama{cfg: c, w: map[string][]float32{}}
	D, I, q, kv := 64, 128, 64, 32
	emb := randWeights(rng, c.VocabSize*D, 1)
	for v := 0; v < c.VocabSize; v++ {
		for j := 0; j < D; j += 13 {
			emb[v*D+j] *= 10 // outlier channels
		}
	}
	m.w[ir.TokenEmbedding] = emb
	for b := 0; b < c.NumLayers; b++ {
		set := func(n string, rows, cols int, s float64) {
			m.w[ir.LayerTensor(b, n)] = randWeights(rng, rows*cols, s)
		}
		norm := func(n string) {
			w := make([]float32, D)
			for i := range w {
				w[i] = float32(1 + 0.3*rng.NormFloat64())
			}
			m.w[ir.LayerTensor(b, n)] = w
		}
		norm(ir.AttnNorm)
		norm(ir.FFNNorm)
		set(ir.AttnQ, q, D, 0.15)
		set(ir.AttnK, kv, D, 0.15)
		set(ir.AttnV, kv, D, 0.15)
		set(ir.AttnOutput, D, q, 0.1)
		set(ir.FFNGate, I, D, 0.15)
		set(ir.FFNUp, I, D, 0.15)
		set(ir.FFNDown, D, I, 0.1)
	}
	return m
}

func (m *toyLlama) Config() ir.Config                                      { return m.cfg }
func (m *toyLlama) Weight(name string) []float32                           { return m.w[name] }
func (m *toyLlama) SetLinearHook(h func(int, string, []float32, int, int)) { m.hook = h }
func (m *toyLlama) SetWeight(name string, w []float32) error {
	if len(m.w[name]) != len(w) {
		return fmt.Errorf("toy: %s: %d values, want %d", name, len(w), len(m.w[name]))
	}
	m.w[name] = w
	return nil
}

func (m *toyLlama) Embed(ids []int) ([]float32, error) {
	D := m.cfg.HiddenSize
	h := make([]float32, len(ids)*D)
	for t, id := range ids {
		copy(h[t*D:], m.w[ir.TokenEmbedding][id*D:(id+1)*D])
	}
	return h, nil
}

func (m *toyLlama) linear(b int, n string, x []float32, T, K, N int) []float32 {
	name := ir.LayerTensor(b, n)
	if m.hook != nil {
		m.hook(b, name, x, T, K)
	}
	w := m.w[name]
	y := make([]float32, T*N)
	for t := 0; t < T; t++ {
		for o := 0; o < N; o++ {
			var s float32
			for k := 0; k < K; k++ {
				s += x[t*K+k] * w[o*K+k]
			}
			y[t*N+o] = s
		}
	}
	return y
}

func (m *toyLlama) norm(h []float32, T int, w []float32) []float32 {
	D := m.cfg.HiddenSize
	x := make([]float32, len(h))
	for t := 0; t < T; t++ {
		var ss float64
		for _, v := range h[t*D : (t+1)*D] {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(D)+m.cfg.RMSNormEps))
		for i := 0; i < D; i++ {
			x[t*D+i] = h[t*D+i] * r * w[i]
		}
	}
	return x
}

// RunStage is stage st of the toy block (see Executor.RunStage).
func (m *toyLlama) RunStage(b, st int, h, in, out []float32) error {
	c := m.cfg
	D, I, hd := c.HiddenSize, c.IntermediateSize, c.HeadDim
	T := len(h) / D
	if w := stageWidth(c, st); len(out) != T*w {
		return fmt.Errorf("toy: stage %d: output of %d values, want %d", st, len(out), T*w)
	}
	switch st {
	case 0:
		copy(out, m.norm(h, T, m.w[ir.LayerTensor(b, ir.AttnNorm)]))
	case 1:
		x := in
		q := m.linear(b, ir.AttnQ, x, T, D, c.NumHeads*hd)
		k := m.linear(b, ir.AttnK, x, T, D, c.NumKVHeads*hd)
		v := m.linear(b, ir.AttnV, x, T, D, c.NumKVHeads*hd)
		att := out
		rep := c.NumHeads / c.NumKVHeads
		for t := 0; t < T; t++ {
			for hh := 0; hh < c.NumHeads; hh++ {
				g := hh / rep
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for u := 0; u <= t; u++ {
					var s float64
					for d := 0; d < hd; d++ {
						s += float64(q[t*c.NumHeads*hd+hh*hd+d]) * float64(k[u*c.NumKVHeads*hd+g*hd+d])
					}
					sc[u] = s / math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[u])
				}
				var z float64
				for u := range sc {
					sc[u] = math.Exp(sc[u] - mx)
					z += sc[u]
				}
				for d := 0; d < hd; d++ {
					var s float64
					for u := range sc {
						s += sc[u] / z * float64(v[u*c.NumKVHeads*hd+g*hd+d])
					}
					att[t*c.NumHeads*hd+hh*hd+d] = float32(s)
				}
			}
		}
	case 2:
		o := m.linear(b, ir.AttnOutput, in, T, c.NumHeads*hd, D)
		for i := range h {
			h[i] += o[i]
		}
		copy(out, m.norm(h, T, m.w[ir.LayerTensor(b, ir.FFNNorm)]))
	case 3:
		g := m.linear(b, ir.FFNGate, in, T, D, I)
		u := m.linear(b, ir.FFNUp, in, T, D, I)
		for i := range g {
			out[i] = g[i] / (1 + float32(math.Exp(-float64(g[i])))) * u[i]
		}
	case 4:
		dn := m.linear(b, ir.FFNDown, in, T, I, D)
		for i := range h {
			h[i] += dn[i]
		}
	default:
		return fmt.Errorf("toy: stage %d", st)
	}
	return nil
}

// RunBlock runs the whole toy block (stages 0..4 chained), calling the
// linear hook as it goes.
func (m *toyLlama) RunBlock(b int, h []float32) error {
	T := len(h) / m.cfg.HiddenSize
	var in []float32
	for st := 0; st < 5; st++ {
		out := make([]float32, T*stageWidth(m.cfg, st))
		if err := m.RunStage(b, st, h, in, out); err != nil {
			return err
		}
		in = out
	}
	return nil
}

func (m *toyLlama) forward(t *testing.T, ids []int) []float32 {
	h, _ := m.Embed(ids)
	for b := 0; b < m.cfg.NumLayers; b++ {
		if err := m.RunBlock(b, h); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (m *toyLlama) tensors() []*ir.Tensor {
	var ts []*ir.Tensor
	c := m.cfg
	for b := 0; b < c.NumLayers; b++ {
		for _, g := range SequentialGroups(b) {
			for _, n := range g {
				k := int64(c.HiddenSize)
				if n == ir.LayerTensor(b, ir.AttnOutput) {
					k = int64(c.NumHeads * c.HeadDim)
				} else if n == ir.LayerTensor(b, ir.FFNDown) {
					k = int64(c.IntermediateSize)
				}
				ts = append(ts, &ir.Tensor{Name: n, DType: ir.F32, Shape: ir.Shape{int64(len(m.w[n])) / k, k}})
			}
		}
	}
	return ts
}

func toySeqs(seed uint64, n, T, vocab int) [][]int {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([][]int, n)
	for i := range out {
		for t := 0; t < T; t++ {
			out[i] = append(out[i], rng.IntN(vocab))
		}
	}
	return out
}

func TestCalibrate(t *testing.T) {
	ref := newToyLlama(50)
	calib := toySeqs(1, 16, 24, ref.cfg.VocabSize)
	held := toySeqs(2, 4, 24, ref.cfg.VocabSize)
	var want [][]float32
	for _, s := range held {
		want = append(want, ref.forward(t, s))
	}
	errOf := func(m *toyLlama) float64 {
		var e float64
		for i, s := range held {
			got := m.forward(t, s)
			for j := range got {
				d := float64(got[j] - want[i][j])
				e += d * d
			}
		}
		return e
	}
	scheme := mustScheme(t, "int4-g32-asym")
	run := func(algo Algorithm, thenGPTQ bool) (*toyLlama, *CalibResult) {
		m := newToyLlama(50)
		p, err := NewPlan(m.tensors(), nil, scheme, algo)
		if err != nil {
			t.Fatal(err)
		}
		var stages int
		res, err := Calibrate(m, calib, CalibOptions{Plan: p, AWQThenGPTQ: thenGPTQ, Progress: func(b, n int, s string) { stages++ }})
		if err != nil {
			t.Fatal(err)
		}
		if stages < 2*5 {
			t.Errorf("%s: %d progress calls, want at least 10", algo, stages)
		}
		if len(res.Quantized) != 14 {
			t.Errorf("%s: %d quantized tensors, want 14", algo, len(res.Quantized))
		}
		// The executor now holds exactly the dequantized weights.
		for name, q := range res.Quantized {
			if diff := cmp.Diff(q.Dequantize(), m.w[name]); diff != "" {
				t.Fatalf("%s: executor weight of %s is not the dequantized result", algo, name)
			}
		}
		return m, res
	}
	mR, _ := run(AlgoRTN, false)
	mG, resG := run(AlgoGPTQ, false)
	mA, resA := run(AlgoAWQ, false)
	mAG, _ := run(AlgoAWQ, true)
	eR, eG, eA, eAG := errOf(mR), errOf(mG), errOf(mA), errOf(mAG)
	t.Logf("held-out output error: RTN %.4g, GPTQ %.4g, AWQ %.4g, AWQ+GPTQ %.4g", eR, eG, eA, eAG)
	if eG >= 0.9*eR {
		t.Errorf("GPTQ error %.4g not below 0.9 × RTN %.4g", eG, eR)
	}
	if eA >= eR {
		t.Errorf("AWQ error %.4g not below RTN %.4g", eA, eR)
	}
	if eAG >= eR {
		t.Errorf("AWQ+GPTQ error %.4g not below RTN %.4g", eAG, eR)
	}
	if len(resG.GPTQ) != 14 || len(resA.AWQAlpha) != 8 {
		t.Errorf("reports: %d gptq, %d awq alphas", len(resG.GPTQ), len(resA.AWQAlpha))
	}
	if resA.Float[ir.LayerTensor(0, ir.AttnNorm)] == nil || resA.Float[ir.LayerTensor(1, ir.FFNNorm)] == nil {
		t.Error("AWQ did not report the folded norm weights")
	}
	// Deterministic.
	_, resG2 := run(AlgoGPTQ, false)
	if diff := cmp.Diff(resG.Quantized, resG2.Quantized); diff != "" {
		t.Error("two GPTQ calibrations differ")
	}
}

func TestAWQFoldKeepsFloatModel(t *testing.T) {
	// Folding the searched scales (no quantization) leaves outputs unchanged.
	m := newToyLlama(60)
	ids := toySeqs(3, 1, 16, m.cfg.VocabSize)[0]
	want := m.forward(t, ids)
	hs, _ := m.Embed(ids)
	p, err := NewPlan(m.tensors(), nil, mustScheme(t, "int4-g32-asym"), AlgoAWQ)
	if err != nil {
		t.Fatal(err)
	}
	res := &CalibResult{Float: map[string][]float32{}, AWQAlpha: map[string]float64{}}
	for b := 0; b < m.cfg.NumLayers; b++ {
		groups := SequentialGroups(b)
		var firsts []string
		for _, g := range groups {
			firsts = append(firsts, g[0])
		}
		hss, err := refCaptureInputs(m, b, [][]float32{hs}, firsts)
		if err != nil {
			t.Fatal(err)
		}
		for gi, g := range groups {
			var es []*PlanEntry
			for _, n := range g {
				es = append(es, p.Entry(n))
			}
			if err := awqScaleGroup(m, m.cfg, b, gi, es, hss[gi], DefaultAWQOptions(), res); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.RunBlock(b, hs); err != nil {
			t.Fatal(err)
		}
	}
	got := m.forward(t, ids)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-3*(math.Abs(float64(want[i]))+1) {
			t.Fatalf("output %d: %v after folding, %v before", i, got[i], want[i])
		}
	}
}

// refCalibrate is the straightforward true-sequential driver that
// IST-DASLab/gptq's llama.py runs: for every group of a block, the whole
// block is run on every sequence with a hook capturing the group's input
// (earlier groups already quantized), and once more at the end for the
// block's output; AWQ blocks first capture every group's input from the
// float block. Calibrate must give the same bytes with one forward per
// block.
func refCalibrate(t *testing.T, m *toyLlama, seqs [][]int, opts CalibOptions) *CalibResult {
	t.Helper()
	cfg := m.cfg
	res := &CalibResult{Quantized: map[string]*Quantized{}, Float: map[string][]float32{}, GPTQ: map[string]GPTQReport{}, AWQAlpha: map[string]float64{}}
	var hs [][]float32
	for _, s := range seqs {
		h, _ := m.Embed(s)
		hs = append(hs, h)
	}
	for b := 0; b < cfg.NumLayers; b++ {
		groups := SequentialGroups(b)
		entries := make([][]*PlanEntry, len(groups))
		awq := false
		for gi, group := range groups {
			for _, name := range group {
				if e := opts.Plan.Entry(name); e != nil && e.Quantize {
					entries[gi] = append(entries[gi], e)
					awq = awq || e.Algorithm == AlgoAWQ
				}
			}
		}
		if awq {
			var firsts []string
			for _, g := range groups {
				firsts = append(firsts, g[0])
			}
			hss, err := refCaptureInputs(m, b, hs, firsts)
			if err != nil {
				t.Fatal(err)
			}
			for gi := range groups {
				if err := awqScaleGroup(m, cfg, b, gi, entries[gi], hss[gi], DefaultAWQOptions(), res); err != nil {
					t.Fatal(err)
				}
			}
		}
		for gi, group := range groups {
			if len(entries[gi]) == 0 {
				continue
			}
			hss, err := refCaptureInputs(m, b, hs, group[:1])
			if err != nil {
				t.Fatal(err)
			}
			if err := quantizeGroup(m, gi, entries[gi], hss[0], opts, res); err != nil {
				t.Fatal(err)
			}
		}
		for _, hv := range hs {
			if err := m.RunBlock(b, hv); err != nil {
				t.Fatal(err)
			}
		}
	}
	return res
}

// refCaptureInputs runs the toy block b on a copy of every sequence's
// hidden states and accumulates the inputs of the named linears.
func refCaptureInputs(m *toyLlama, b int, hs [][]float32, names []string) ([]*Hessian, error) {
	acc := make([]*Hessian, len(names))
	var addErr error
	m.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
		for i, n := range names {
			if n != name || layer != b {
				continue
			}
			if acc[i] == nil {
				acc[i] = NewHessian(cols)
			}
			if err := acc[i].Add(x, rows); err != nil && addErr == nil {
				addErr = err
			}
		}
	})
	defer m.SetLinearHook(nil)
	for _, hv := range hs {
		if err := m.RunBlock(b, append([]float32(nil), hv...)); err != nil {
			return nil, err
		}
	}
	return acc, addErr
}

// TestCalibrateMatchesReferenceDriver checks that the staged driver
// captures the true-sequential inputs: o's input through the quantized
// q, k, v, gate/up's through the quantized o, down's through the quantized
// gate and up, the next block's through the quantized block (including
// AWQ's folded scales), with ffn_down's inputs kept or computed twice.
func TestCalibrateMatchesReferenceDriver(t *testing.T) {
	seqs := toySeqs(7, 6, 20, 50)
	scheme := mustScheme(t, "int4-g32-asym")
	for _, tc := range []struct {
		name     string
		algo     Algorithm
		thenGPTQ bool
		maxBytes int64
	}{
		{"gptq", AlgoGPTQ, false, 0},
		{"gptq-recompute-down", AlgoGPTQ, false, 1},
		{"awq", AlgoAWQ, false, 0},
		{"awq-gptq-recompute-down", AlgoAWQ, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mRef, mGot := newToyLlama(80), newToyLlama(80)
			p, err := NewPlan(mRef.tensors(), nil, scheme, tc.algo)
			if err != nil {
				t.Fatal(err)
			}
			opts := CalibOptions{Plan: p, AWQThenGPTQ: tc.thenGPTQ, MaxStoredBytes: tc.maxBytes}
			want := refCalibrate(t, mRef, seqs, opts)
			got, err := Calibrate(mGot, seqs, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Quantized, got.Quantized); diff != "" {
				t.Errorf("quantized weights differ from the reference driver (-ref +staged):\n%s", diff)
			}
			if diff := cmp.Diff(want.Float, got.Float); diff != "" {
				t.Errorf("float weights differ from the reference driver (-ref +staged):\n%s", diff)
			}
			if diff := cmp.Diff(want.GPTQ, got.GPTQ); diff != "" {
				t.Errorf("GPTQ reports differ (-ref +staged):\n%s", diff)
			}
		})
	}
}
