package exec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
)

// This file holds the tests' independent oracle: a naive float64 forward
// pass written from Hugging Face's modeling_llama.py (explicit repeat_kv,
// a -inf causal mask, rotate_half as a concatenation, the llama3 rope
// scaling as written with torch.where), sharing no code with the executor
// except the tensors' float decoding. And a generator of small synthetic
// graphs with seeded random weights.

// oracleForward returns float64 logits [T][V] for ids.
func oracleForward(t testing.TB, g *ir.Graph, ids []int) [][]float64 {
	t.Helper()
	c := g.Config
	get := func(name string) []float64 {
		tt := g.Tensor(name)
		if tt == nil {
			t.Fatalf("oracle: tensor %q missing", name)
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatalf("oracle: %v", err)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	D, H, KV, hd, I, V := c.HiddenSize, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize
	T := len(ids)
	matvec := func(w []float64, rows, cols int, x []float64) []float64 { // W [rows, cols] · x
		y := make([]float64, rows)
		for r := range rows {
			var s float64
			for k := range cols {
				s += w[r*cols+k] * x[k]
			}
			y[r] = s
		}
		return y
	}
	rms := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+c.RMSNormEps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = w[i] * (x[i] * r)
		}
		return y
	}
	invFreq := oracleInvFreq(c)
	// rotate applies HF's q*cos + rotate_half(q)*sin to one head vector.
	rotate := func(x []float64, pos int) []float64 {
		half := hd / 2
		cos := make([]float64, hd)
		sin := make([]float64, hd)
		for i := range half { // emb = cat(freqs, freqs)
			cos[i], cos[i+half] = math.Cos(float64(pos)*invFreq[i]), math.Cos(float64(pos)*invFreq[i])
			sin[i], sin[i+half] = math.Sin(float64(pos)*invFreq[i]), math.Sin(float64(pos)*invFreq[i])
		}
		rh := append(append([]float64{}, negate(x[half:])...), x[:half]...) // cat(-x2, x1)
		y := make([]float64, hd)
		for i := range y {
			y[i] = x[i]*cos[i] + rh[i]*sin[i]
		}
		return y
	}
	embed := get(ir.TokenEmbedding)
	h := make([][]float64, T)
	for i, id := range ids {
		h[i] = append([]float64{}, embed[id*D:(id+1)*D]...)
	}
	for l := range c.NumLayers {
		n := func(s string) string { return ir.LayerTensor(l, s) }
		wq, wk, wv, wo := get(n(ir.AttnQ)), get(n(ir.AttnK)), get(n(ir.AttnV)), get(n(ir.AttnOutput))
		var bq, bk, bv []float64
		if c.AttentionBias {
			bq, bk, bv = get(n(ir.AttnQBias)), get(n(ir.AttnKBias)), get(n(ir.AttnVBias))
		}
		an, fn := get(n(ir.AttnNorm)), get(n(ir.FFNNorm))
		wg, wu, wd := get(n(ir.FFNGate)), get(n(ir.FFNUp)), get(n(ir.FFNDown))
		// q[t][head][d], k/v[t][kvhead][d]
		q := make([][][]float64, T)
		k := make([][][]float64, T)
		v := make([][][]float64, T)
		for t := range T {
			x := rms(h[t], an)
			qt, kt, vt := matvec(wq, H*hd, D, x), matvec(wk, KV*hd, D, x), matvec(wv, KV*hd, D, x)
			if bq != nil {
				addInto(qt, bq)
				addInto(kt, bk)
				addInto(vt, bv)
			}
			for hh := range H {
				q[t] = append(q[t], rotate(qt[hh*hd:(hh+1)*hd], t))
			}
			for hh := range KV {
				k[t] = append(k[t], rotate(kt[hh*hd:(hh+1)*hd], t))
				v[t] = append(v[t], vt[hh*hd:(hh+1)*hd])
			}
		}
		// repeat_kv: expanded head j uses kv head j / (H/KV).
		for t := range T {
			att := make([]float64, 0, H*hd)
			for hh := range H {
				kvh := hh / (H / KV)
				s := make([]float64, T)
				for j := range T {
					if j > t || (c.SlidingWindow > 0 && t-j >= c.SlidingWindow) {
						s[j] = math.Inf(-1)
						continue
					}
					var d float64
					for e := range hd {
						d += q[t][hh][e] * k[j][kvh][e]
					}
					s[j] = d / math.Sqrt(float64(hd))
				}
				p := softmax64(s)
				o := make([]float64, hd)
				for j := range T {
					for e := range hd {
						o[e] += p[j] * v[j][kvh][e]
					}
				}
				att = append(att, o...)
			}
			addInto(h[t], matvec(wo, D, H*hd, att))
		}
		for t := range T {
			x := rms(h[t], fn)
			gt, ut := matvec(wg, I, D, x), matvec(wu, I, D, x)
			for i := range gt {
				gt[i] = gt[i] / (1 + math.Exp(-gt[i])) * ut[i]
			}
			addInto(h[t], matvec(wd, D, I, gt))
		}
	}
	out := get(ir.OutputNorm)
	head := embed
	if !c.TieWordEmbeddings {
		head = get(ir.Output)
	}
	logits := make([][]float64, T)
	for t := range T {
		logits[t] = matvec(head, V, D, rms(h[t], out))
	}
	return logits
}

// oracleInvFreq follows transformers' _compute_default_rope_parameters,
// _compute_linear_scaling_rope_parameters and _compute_llama3_parameters.
func oracleInvFreq(c ir.Config) []float64 {
	dim := c.HeadDim
	inv := make([]float64, 0, dim/2)
	for i := 0; i < dim; i += 2 { // arange(0, dim, 2)
		inv = append(inv, 1/math.Pow(c.RopeTheta, float64(i)/float64(dim)))
	}
	rs := c.RopeScaling
	if rs == nil {
		return inv
	}
	switch rs.Type {
	case "linear":
		for i := range inv {
			inv[i] /= rs.Factor
		}
	case "llama3":
		old := float64(rs.OriginalMaxPositionEmbeddings)
		lowWavelen := old / rs.LowFreqFactor
		highWavelen := old / rs.HighFreqFactor
		out := make([]float64, len(inv))
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			llama := f
			if wavelen > lowWavelen {
				llama = f / rs.Factor
			}
			smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			smoothed := (1-smooth)*llama/rs.Factor + smooth*llama
			medium := !(wavelen < highWavelen) && !(wavelen > lowWavelen)
			if medium {
				llama = smoothed
			}
			out[i] = llama
		}
		return out
	}
	return inv
}

func negate(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = -v
	}
	return y
}

func addInto(a, b []float64) {
	for i := range a {
		a[i] += b[i]
	}
}

func softmax64(s []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range s {
		m = math.Max(m, v)
	}
	p := make([]float64, len(s))
	var sum float64
	for i, v := range s {
		p[i] = math.Exp(v - m)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// synthConfig is a small model configuration for synthetic tests.
type synthConfig struct {
	name    string
	cfg     ir.Config
	dtype   ir.DType // storage dtype of the weights
	seed    uint64
	scale   float64 // weight standard deviation
	quantQ0 bool    // store blk.0.attn_q.weight as a fake quantized tensor
}

func baseConfig() ir.Config {
	return ir.Config{
		Arch: "LlamaForCausalLM", Family: "llama",
		HiddenSize: 32, IntermediateSize: 48, NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 8,
		VocabSize: 40, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu",
		BOSTokenID: 1, EOSTokenIDs: []int{2},
	}
}

// synthGraph builds a graph with seeded N(0, scale²) weights (norm weights
// around 1) for sc.cfg, stored as sc.dtype.
func synthGraph(t testing.TB, sc synthConfig) *ir.Graph {
	t.Helper()
	c := sc.cfg
	rng := rand.New(rand.NewPCG(sc.seed, 7))
	g := &ir.Graph{Config: c}
	add := func(name string, norm bool, dims ...int64) {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if norm {
				v[i] = float32(1 + 0.2*rng.NormFloat64())
			} else {
				v[i] = float32(sc.scale * rng.NormFloat64())
			}
		}
		b, err := ir.EncodeFloat32(sc.dtype, v)
		if err != nil {
			t.Fatal(err)
		}
		g.Tensors = append(g.Tensors, &ir.Tensor{Name: name, DType: sc.dtype, Shape: ir.Shape(dims), Source: &ir.BytesSource{Data: b}})
	}
	D, I, V := int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.VocabSize)
	qd, kd := int64(c.NumHeads*c.HeadDim), int64(c.NumKVHeads*c.HeadDim)
	add(ir.TokenEmbedding, false, V, D)
	add(ir.OutputNorm, true, D)
	if !c.TieWordEmbeddings {
		add(ir.Output, false, V, D)
	}
	for l := range c.NumLayers {
		n := func(s string) string { return ir.LayerTensor(l, s) }
		add(n(ir.AttnNorm), true, D)
		add(n(ir.FFNNorm), true, D)
		add(n(ir.AttnQ), false, qd, D)
		add(n(ir.AttnK), false, kd, D)
		add(n(ir.AttnV), false, kd, D)
		add(n(ir.AttnOutput), false, D, qd)
		if c.AttentionBias {
			add(n(ir.AttnQBias), false, qd)
			add(n(ir.AttnKBias), false, kd)
			add(n(ir.AttnVBias), false, kd)
		}
		add(n(ir.FFNGate), false, I, D)
		add(n(ir.FFNUp), false, I, D)
		add(n(ir.FFNDown), false, D, I)
	}
	g.SortTensors()
	if sc.quantQ0 {
		// Mark blk.0.attn_q.weight as "quantized": the bytes stay f32 and
		// the test dequantizer just decodes them, so the oracle (which
		// ignores Quant through a copy) still applies.
		tt := g.Tensor(ir.LayerTensor(0, ir.AttnQ))
		tt.Quant = &ir.QuantInfo{Scheme: "test-f32", Bits: 8, Rows: tt.Shape[0], Cols: tt.Shape[1], Scales: tt.Name + ".scales"}
	}
	return g
}

// unquantized returns a copy of g whose tensors carry no Quant (for the oracle).
func unquantized(g *ir.Graph) *ir.Graph {
	h := *g
	h.Tensors = make([]*ir.Tensor, len(g.Tensors))
	for i, t := range g.Tensors {
		c := *t
		c.Quant = nil
		h.Tensors[i] = &c
	}
	return &h
}

func randomIDs(rng *rand.Rand, n, vocab int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = rng.IntN(vocab)
	}
	return ids
}

// relMaxDiff returns max|a-b| / max|b| over a [T][V] float64 reference.
func relMaxDiff(got []float32, want [][]float64) (maxDiff, maxRef float64) {
	V := len(want[0])
	for t := range want {
		for v := range V {
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[t*V+v])-want[t][v]))
			maxRef = math.Max(maxRef, math.Abs(want[t][v]))
		}
	}
	return maxDiff, maxRef
}

func describe(sc synthConfig) string {
	return fmt.Sprintf("%s(%v)", sc.name, sc.dtype)
}
