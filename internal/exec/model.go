package exec

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/smeltml/smelt/internal/ir"
)

// Dequantizer decodes a packed quantized tensor (t.Quant != nil) of graph g
// into its logical [t.Quant.Rows, t.Quant.Cols] float32 matrix, row-major.
// The CLI wires it to package quantize's DequantizeTensor.
type Dequantizer func(g *ir.Graph, t *ir.Tensor) ([]float32, error)

// LinearHook observes the input of a linear layer: x is [rows, cols]
// row-major (rows = tokens, cols = the layer's in-features), name the
// canonical weight name ("blk.3.attn_q.weight", "output.weight" or, with
// tied embeddings, "token_embd.weight"), layer the block index (-1 for the
// output head). q, k and v see the same x, as do gate and up. x is the
// executor's scratch: a hook that keeps it must copy it.
type LinearHook func(layer int, name string, x []float32, rows, cols int)

// Options configures Load.
type Options struct {
	// Dequantize decodes quantized tensors; nil makes them an error.
	Dequantize Dequantizer
	// LinearHook, if set, sees the input of every linear layer.
	LinearHook LinearHook
}

// Model is a Llama-family decoder loaded for CPU execution: every weight
// decoded once to float32. Methods that only read weights (Forward,
// RunBlock, Sessions) may run concurrently; SetWeight and SetLinearHook
// must not run concurrently with them.
//
// The computation, per block i over hidden states h [T, D]:
//
//	x  = RMSNorm(h, attn_norm, eps)
//	q  = RoPE(Linear(x, attn_q, attn_q.bias)); k = RoPE(Linear(x, attn_k, attn_k.bias)); v = Linear(x, attn_v, attn_v.bias)
//	h += Linear(Attention(q, k, v), attn_output)
//	x  = RMSNorm(h, ffn_norm, eps)
//	h += Linear(SiLUMul(Linear(x, ffn_gate), Linear(x, ffn_up)), ffn_down)
//
// then logits = Linear(RMSNorm(h, output_norm, eps), output) with output =
// token_embd when the embeddings are tied. The graph's nodes describe the
// same computation; the executor reads g.Config and the canonical tensors
// (internal/ir/names.go) and does not interpret the nodes.
type Model struct {
	// Config is the model's configuration (a copy of the graph's).
	Config ir.Config

	invFreq []float32
	embed   []float32 // [V, D]
	outNorm []float32 // [D]
	output  []float32 // [V, D]; the same slice as embed when tied
	layers  []layer
	slots   map[string]slot
	hook    LinearHook
	qDim    int // Heads*HeadDim
	kvDim   int // KVHeads*HeadDim
}

type layer struct {
	attnNorm, ffnNorm      []float32
	wq, wk, wv, wo         []float32
	bq, bk, bv             []float32
	wGate, wUp, wDown      []float32
	nameQ, nameK, nameV    string
	nameO, nameGate, nameU string
	nameDown               string
}

// slot is where SetWeight writes a named weight.
type slot struct {
	p    *[]float32
	n    int
	also *[]float32 // tied output head
}

// Load decodes g's weights to float32 and checks every shape against
// g.Config. Unknown extra tensors are ignored; missing or misshapen ones are
// errors naming the tensor, the expected and the found shape.
func Load(g *ir.Graph, opts Options) (*Model, error) {
	c := g.Config
	if err := checkConfig(c); err != nil {
		return nil, err
	}
	inv, err := RopeInvFreq(c.HeadDim, c.RopeTheta, c.RopeScaling)
	if err != nil {
		return nil, err
	}
	m := &Model{
		Config:  c,
		invFreq: inv,
		slots:   map[string]slot{},
		hook:    opts.LinearHook,
		qDim:    c.NumHeads * c.HeadDim,
		kvDim:   c.NumKVHeads * c.HeadDim,
	}
	D, I, V := c.HiddenSize, c.IntermediateSize, c.VocabSize
	get := func(name string, dims ...int) ([]float32, error) {
		t := g.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("exec: tensor %q missing", name)
		}
		return decode(g, t, opts.Dequantize, dims)
	}
	var lerr error
	bind := func(dst *[]float32, name string, dims ...int) {
		if lerr != nil {
			return
		}
		*dst, lerr = get(name, dims...)
		n := 1
		for _, d := range dims {
			n *= d
		}
		m.slots[name] = slot{p: dst, n: n}
	}
	bind(&m.embed, ir.TokenEmbedding, V, D)
	bind(&m.outNorm, ir.OutputNorm, D)
	if c.TieWordEmbeddings {
		if g.Tensor(ir.Output) != nil {
			return nil, fmt.Errorf("exec: config ties the word embeddings but tensor %q is present", ir.Output)
		}
		m.output = m.embed
		m.slots[ir.TokenEmbedding] = slot{p: &m.embed, n: V * D, also: &m.output}
	} else {
		bind(&m.output, ir.Output, V, D)
	}
	m.layers = make([]layer, c.NumLayers)
	for i := range m.layers {
		l := &m.layers[i]
		n := func(s string) string { return ir.LayerTensor(i, s) }
		l.nameQ, l.nameK, l.nameV, l.nameO = n(ir.AttnQ), n(ir.AttnK), n(ir.AttnV), n(ir.AttnOutput)
		l.nameGate, l.nameU, l.nameDown = n(ir.FFNGate), n(ir.FFNUp), n(ir.FFNDown)
		bind(&l.attnNorm, n(ir.AttnNorm), D)
		bind(&l.ffnNorm, n(ir.FFNNorm), D)
		bind(&l.wq, l.nameQ, m.qDim, D)
		bind(&l.wk, l.nameK, m.kvDim, D)
		bind(&l.wv, l.nameV, m.kvDim, D)
		bind(&l.wo, l.nameO, D, m.qDim)
		if c.AttentionBias {
			bind(&l.bq, n(ir.AttnQBias), m.qDim)
			bind(&l.bk, n(ir.AttnKBias), m.kvDim)
			bind(&l.bv, n(ir.AttnVBias), m.kvDim)
		}
		bind(&l.wGate, l.nameGate, I, D)
		bind(&l.wUp, l.nameU, I, D)
		bind(&l.wDown, l.nameDown, D, I)
	}
	if lerr != nil {
		return nil, lerr
	}
	return m, nil
}

func checkConfig(c ir.Config) error {
	pos := []struct {
		name string
		v    int
	}{
		{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_layers", c.NumLayers}, {"num_heads", c.NumHeads}, {"num_kv_heads", c.NumKVHeads},
		{"head_dim", c.HeadDim}, {"vocab_size", c.VocabSize},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("exec: config %s is %d, want > 0", p.name, p.v)
		}
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf("exec: config num_heads %d is not a multiple of num_kv_heads %d", c.NumHeads, c.NumKVHeads)
	}
	if !(c.RMSNormEps > 0) {
		return fmt.Errorf("exec: config rms_norm_eps %v, want > 0", c.RMSNormEps)
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return fmt.Errorf("exec: config hidden_act %q is not supported (want silu)", c.HiddenAct)
	}
	if c.MLPBias {
		return fmt.Errorf("exec: config mlp_bias is not supported")
	}
	if c.SlidingWindow < 0 {
		return fmt.Errorf("exec: config sliding_window %d, want >= 0", c.SlidingWindow)
	}
	return nil
}

// decode returns t's values as float32, checking its logical shape.
func decode(g *ir.Graph, t *ir.Tensor, dq Dequantizer, dims []int) ([]float32, error) {
	var shape []int64
	if t.Quant != nil {
		shape = []int64{t.Quant.Rows, t.Quant.Cols}
	} else {
		shape = t.Shape
	}
	ok := len(shape) == len(dims)
	for i := 0; ok && i < len(dims); i++ {
		ok = shape[i] == int64(dims[i])
	}
	if !ok {
		return nil, fmt.Errorf("exec: tensor %q has shape %v, want %v", t.Name, shape, dims)
	}
	var (
		v   []float32
		err error
	)
	if t.Quant != nil {
		if dq == nil {
			return nil, fmt.Errorf("exec: tensor %q is quantized (%s) and no dequantizer is configured", t.Name, t.Quant.Scheme)
		}
		v, err = dq(g, t)
	} else {
		v, err = t.Float32()
	}
	if err != nil {
		return nil, fmt.Errorf("exec: tensor %q: %w", t.Name, err)
	}
	n := 1
	for _, d := range dims {
		n *= d
	}
	if len(v) != n {
		return nil, fmt.Errorf("exec: tensor %q decoded to %d values, want %d", t.Name, len(v), n)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("exec: tensor %q: element %d is %v", t.Name, i, x)
		}
	}
	return v, nil
}

// SetWeight replaces the weights of the tensor with canonical name name by
// w (which the model keeps; the caller must not modify it afterwards). The
// length must match the tensor's logical size. With tied embeddings,
// replacing token_embd.weight replaces the output head too. The quantizer
// uses it to swap in dequantized weights block by block.
func (m *Model) SetWeight(name string, w []float32) error {
	s, ok := m.slots[name]
	if !ok {
		return fmt.Errorf("exec: SetWeight: model has no tensor %q", name)
	}
	if len(w) != s.n {
		return fmt.Errorf("exec: SetWeight: tensor %q needs %d values, got %d", name, s.n, len(w))
	}
	*s.p = w
	if s.also != nil {
		*s.also = w
	}
	return nil
}

// Weight returns the current float32 weights of the named tensor (nil if
// the model has none). The slice is the model's own: do not modify it; use
// SetWeight.
func (m *Model) Weight(name string) []float32 {
	s, ok := m.slots[name]
	if !ok {
		return nil
	}
	return *s.p
}

// SetLinearHook installs (or, with nil, removes) the linear-input hook.
func (m *Model) SetLinearHook(h LinearHook) { m.hook = h }

// work is the scratch of a forward pass over up to cap tokens.
type work struct {
	cap                 int
	x                   []float32 // [cap, D] normalized input
	q, att              []float32 // [cap, qDim]
	k, v                []float32 // [cap, kvDim]
	o                   []float32 // [cap, D] block outputs before the residual add
	gate, up            []float32 // [cap, I]
	cos, sin            []float32 // [cap, HeadDim/2]
	scores              []float32 // [workers][min(cap, attnChunk), ctx]
	ctx, workers        int
	ropePos0, ropeCount int
}

func (m *Model) newWork(capTokens, ctx int) *work {
	c := m.Config
	half := c.HeadDim / 2
	workers := 1
	if capTokens > 1 {
		workers = max(1, min(runtime.GOMAXPROCS(0), c.NumHeads))
	}
	return &work{
		cap:      capTokens,
		x:        make([]float32, capTokens*c.HiddenSize),
		q:        make([]float32, capTokens*m.qDim),
		att:      make([]float32, capTokens*m.qDim),
		k:        make([]float32, capTokens*m.kvDim),
		v:        make([]float32, capTokens*m.kvDim),
		o:        make([]float32, capTokens*c.HiddenSize),
		gate:     make([]float32, capTokens*c.IntermediateSize),
		up:       make([]float32, capTokens*c.IntermediateSize),
		cos:      make([]float32, capTokens*half),
		sin:      make([]float32, capTokens*half),
		scores:   make([]float32, workers*min(capTokens, attnChunk)*ctx),
		ctx:      ctx,
		workers:  workers,
		ropePos0: -1,
	}
}

// rope makes w.cos/w.sin hold the table for positions pos0 .. pos0+T-1.
func (m *Model) rope(w *work, pos0, T int) {
	if w.ropePos0 == pos0 && w.ropeCount == T {
		return
	}
	RopeTable(w.cos, w.sin, m.invFreq, pos0, T)
	w.ropePos0, w.ropeCount = pos0, T
}

// KVCache holds the keys (after RoPE) and values of every block for
// positions 0 .. Cap-1: K[i] and V[i] are [KVHeads, Cap, HeadDim].
type KVCache struct {
	Cap  int
	K, V [][]float32
}

// NewKVCache allocates a cache for capTokens positions.
func (m *Model) NewKVCache(capTokens int) *KVCache {
	kc := &KVCache{Cap: capTokens, K: make([][]float32, len(m.layers)), V: make([][]float32, len(m.layers))}
	for i := range m.layers {
		kc.K[i] = make([]float32, capTokens*m.kvDim)
		kc.V[i] = make([]float32, capTokens*m.kvDim)
	}
	return kc
}

// Embed returns the embeddings of ids, [len(ids), HiddenSize] row-major.
func (m *Model) Embed(ids []int) ([]float32, error) {
	h := make([]float32, len(ids)*m.Config.HiddenSize)
	if err := m.embedInto(h, ids); err != nil {
		return nil, err
	}
	return h, nil
}

func (m *Model) embedInto(h []float32, ids []int) error {
	D := m.Config.HiddenSize
	for t, id := range ids {
		if err := m.embedRow(h[t*D:(t+1)*D], id, t); err != nil {
			return err
		}
	}
	return nil
}

// embedRow copies the embedding of id (at position pos, for errors) into h.
func (m *Model) embedRow(h []float32, id, pos int) error {
	D, V := m.Config.HiddenSize, m.Config.VocabSize
	if id < 0 || id >= V {
		return fmt.Errorf("exec: token id %d at position %d is outside the vocabulary [0, %d)", id, pos, V)
	}
	copy(h[:D], m.embed[id*D:(id+1)*D])
	return nil
}

// RunBlock runs block i in place on hidden states h ([T, HiddenSize]) at
// positions pos0 .. pos0+T-1. With a cache, the block's keys and values are
// written at those positions and attention reads positions 0 .. pos0+T-1
// of the cache (earlier positions must have been filled); with cache nil,
// attention sees only these T tokens (positions still start at pos0 for
// RoPE). The LinearHook, if any, is called for the block's seven linears.
func (m *Model) RunBlock(i int, h []float32, pos0 int, cache *KVCache) error {
	D := m.Config.HiddenSize
	if i < 0 || i >= len(m.layers) {
		return fmt.Errorf("exec: block %d out of range [0, %d)", i, len(m.layers))
	}
	if len(h)%D != 0 || len(h) == 0 {
		return fmt.Errorf("exec: hidden states of %d values are not a whole number of rows of %d", len(h), D)
	}
	if pos0 < 0 {
		return fmt.Errorf("exec: negative position %d", pos0)
	}
	T := len(h) / D
	kv, kvPos := cache, pos0
	if kv == nil {
		kv, kvPos = &KVCache{Cap: T, K: make([][]float32, len(m.layers)), V: make([][]float32, len(m.layers))}, 0
		kv.K[i] = make([]float32, T*m.kvDim)
		kv.V[i] = make([]float32, T*m.kvDim)
	} else if err := m.checkCache(cache, pos0+T); err != nil {
		return err
	}
	w := m.newWork(T, kvPos+T)
	RopeTable(w.cos, w.sin, m.invFreq, pos0, T)
	w.ropePos0, w.ropeCount = pos0, T
	m.block(i, h, T, kvPos, kv, w)
	return nil
}

func (m *Model) checkCache(c *KVCache, end int) error {
	if len(c.K) != len(m.layers) || len(c.V) != len(m.layers) {
		return fmt.Errorf("exec: KV cache has %d/%d layers, model has %d", len(c.K), len(c.V), len(m.layers))
	}
	if end > c.Cap {
		return fmt.Errorf("exec: position %d exceeds the KV cache capacity %d", end-1, c.Cap)
	}
	for i := range c.K {
		if len(c.K[i]) < c.Cap*m.kvDim || len(c.V[i]) < c.Cap*m.kvDim {
			return fmt.Errorf("exec: KV cache layer %d is smaller than its capacity %d", i, c.Cap)
		}
	}
	return nil
}

// block runs layer i on h [T, D]; the rotary table in w must already hold
// the T positions; keys/values go to cache positions kvPos .. kvPos+T-1.
func (m *Model) block(i int, h []float32, T, kvPos int, cache *KVCache, w *work) {
	c := m.Config
	l := &m.layers[i]
	D, I := c.HiddenSize, c.IntermediateSize
	x := w.x[:T*D]

	RMSNorm(x, h, T, D, l.attnNorm, c.RMSNormEps)
	m.linear(i, l.nameQ, w.q, x, T, l.wq, m.qDim, D, l.bq)
	m.linear(i, l.nameK, w.k, x, T, l.wk, m.kvDim, D, l.bk)
	m.linear(i, l.nameV, w.v, x, T, l.wv, m.kvDim, D, l.bv)
	RoPE(w.q, T, c.NumHeads, c.HeadDim, w.cos, w.sin)
	RoPE(w.k, T, c.NumKVHeads, c.HeadDim, w.cos, w.sin)
	// Scatter [T, KVHeads, HeadDim] into the cache's [KVHeads, Cap, HeadDim].
	kc, vc := cache.K[i], cache.V[i]
	hd := c.HeadDim
	for t := range T {
		for kh := range c.NumKVHeads {
			dst := (kh*cache.Cap + kvPos + t) * hd
			src := (t*c.NumKVHeads + kh) * hd
			copy(kc[dst:dst+hd], w.k[src:src+hd])
			copy(vc[dst:dst+hd], w.v[src:src+hd])
		}
	}
	m.attention(w, kc, vc, AttentionParams{
		T: T, Pos0: kvPos, Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: hd,
		KVCap: cache.Cap, Window: c.SlidingWindow,
	})
	m.linear(i, l.nameO, w.o, w.att, T, l.wo, D, m.qDim, nil)
	Add(h, w.o, T*D)

	RMSNorm(x, h, T, D, l.ffnNorm, c.RMSNormEps)
	m.linear(i, l.nameGate, w.gate, x, T, l.wGate, I, D, nil)
	m.linear(i, l.nameU, w.up, x, T, l.wUp, I, D, nil)
	SiLUMul(w.gate, w.up, T*I)
	m.linear(i, l.nameDown, w.o, w.gate, T, l.wDown, D, I, nil)
	Add(h, w.o, T*D)
}

// attention runs Attention with the heads spread over w.workers goroutines
// (each head's result does not depend on the split).
func (m *Model) attention(w *work, kc, vc []float32, p AttentionParams) {
	if p.T == 1 || w.workers == 1 {
		Attention(w.att, w.q, kc, vc, w.scores, p)
		return
	}
	per := len(w.scores) / w.workers
	var wg sync.WaitGroup
	for wk := range w.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := w.scores[wk*per : (wk+1)*per]
			for h := wk; h < p.Heads; h += w.workers {
				AttentionHead(h, w.att, w.q, kc, vc, sc, p)
			}
		}()
	}
	wg.Wait()
}

func (m *Model) linear(layer int, name string, y, x []float32, T int, wt []float32, N, K int, b []float32) {
	if m.hook != nil {
		m.hook(layer, name, x[:T*K], T, K)
	}
	Linear(y, x, T, wt, N, K, b)
}

// Head applies the final norm and the output head to hidden states h
// ([T, HiddenSize]) and returns logits [T, VocabSize] row-major.
func (m *Model) Head(h []float32) ([]float32, error) {
	D := m.Config.HiddenSize
	if len(h)%D != 0 || len(h) == 0 {
		return nil, fmt.Errorf("exec: hidden states of %d values are not a whole number of rows of %d", len(h), D)
	}
	T := len(h) / D
	logits := make([]float32, T*m.Config.VocabSize)
	m.head(logits, make([]float32, T*D), h, T)
	return logits, nil
}

// head writes logits [T, V] for hidden states h [T, D], using x as scratch.
func (m *Model) head(logits, x, h []float32, T int) {
	c := m.Config
	RMSNorm(x, h, T, c.HiddenSize, m.outNorm, c.RMSNormEps)
	name := ir.Output
	if c.TieWordEmbeddings {
		name = ir.TokenEmbedding
	}
	m.linear(-1, name, logits, x, T, m.output, c.VocabSize, c.HiddenSize, nil)
}

// Forward runs the model over one sequence (positions 0 .. len(ids)-1,
// causal, no cache kept) and returns the logits of every position,
// [len(ids), VocabSize] row-major.
func (m *Model) Forward(ids []int) ([]float32, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("exec: empty sequence")
	}
	T := len(ids)
	h, err := m.Embed(ids)
	if err != nil {
		return nil, err
	}
	cache := m.NewKVCache(T)
	w := m.newWork(T, T)
	m.rope(w, 0, T)
	for i := range m.layers {
		m.block(i, h, T, 0, cache, w)
	}
	logits := make([]float32, T*m.Config.VocabSize)
	m.head(logits, w.x, h, T)
	return logits, nil
}

// ForwardBatch runs Forward on each sequence (independently; sequences may
// have different lengths) and returns their logits in order.
func (m *Model) ForwardBatch(seqs [][]int) ([][]float32, error) {
	out := make([][]float32, len(seqs))
	for i, s := range seqs {
		l, err := m.Forward(s)
		if err != nil {
			return nil, fmt.Errorf("exec: sequence %d: %w", i, err)
		}
		out[i] = l
	}
	return out, nil
}
