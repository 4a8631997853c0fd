package exec

import (
	"fmt"
	"runtime"
	"sync"
)

// BlockStages is the number of stages RunStage splits a block into.
//
// Calibration (GPTQ, AWQ) needs the input of each group of linears of a
// block computed with the earlier groups already quantized, for every
// calibration sequence, before the group itself is quantized. RunStage
// runs one block one segment at a time, each segment ending at the input
// of the next group, so that a calibrator runs every block once per
// sequence instead of once per group. On hidden states h [T, D] at
// positions 0 .. T-1, no KV cache:
//
//	stage 0: out = RMSNorm(h, attn_norm)                        input of attn_q, attn_k, attn_v  [T, D]
//	stage 1: out = Attention(RoPE(in·Wqᵀ+bq), RoPE(in·Wkᵀ+bk), in·Wvᵀ+bv)
//	                                                           input of attn_output  [T, Heads·HeadDim]
//	stage 2: h += in·Woᵀ; out = RMSNorm(h, ffn_norm)            input of ffn_gate, ffn_up  [T, D]
//	stage 3: out = SiLU(in·Wgateᵀ) · (in·Wupᵀ)                  input of ffn_down  [T, I]
//	stage 4: h += in·Wdownᵀ                                     (no out)
//
// Each stage reads the weights current at the time of the call. Running
// stages 0 to 4 in order, each on the previous stage's out, gives bit for
// bit the hidden states of RunBlock(i, h, 0, nil), and calls the
// LinearHook for the same linears with the same inputs.
const BlockStages = 5

// StageWidths returns the widths (columns per token) of the input and the
// output of stage s of this model's blocks (0 where the stage has none).
func (m *Model) StageWidths(s int) (in, out int) {
	c := m.Config
	widths := []int{0, c.HiddenSize, m.qDim, c.HiddenSize, c.IntermediateSize, 0}
	if s < 0 || s >= BlockStages {
		return 0, 0
	}
	return widths[s], widths[s+1]
}

// RunStage runs stage s of block i (see BlockStages) on one sequence's
// hidden states h [T, HiddenSize], reading in [T, inWidth] and writing out
// [T, outWidth] (StageWidths); stages 2 and 4 update h in place. in is
// ignored by stage 0 and out by stage 4 (either may be nil there). in and
// out must not alias each other or h. Like RunBlock, it may run
// concurrently with other read-only methods.
func (m *Model) RunStage(i, s int, h, in, out []float32) error {
	c := m.Config
	D := c.HiddenSize
	if i < 0 || i >= len(m.layers) {
		return fmt.Errorf("exec: block %d out of range [0, %d)", i, len(m.layers))
	}
	if s < 0 || s >= BlockStages {
		return fmt.Errorf("exec: block stage %d out of range [0, %d)", s, BlockStages)
	}
	if len(h)%D != 0 || len(h) == 0 {
		return fmt.Errorf("exec: hidden states of %d values are not a whole number of rows of %d", len(h), D)
	}
	T := len(h) / D
	wIn, wOut := m.StageWidths(s)
	if len(in) < T*wIn {
		return fmt.Errorf("exec: stage %d input has %d values, want %d×%d", s, len(in), T, wIn)
	}
	if len(out) < T*wOut {
		return fmt.Errorf("exec: stage %d output has room for %d values, want %d×%d", s, len(out), T, wOut)
	}
	l := &m.layers[i]
	I := c.IntermediateSize
	switch s {
	case 0:
		RMSNorm(out, h, T, D, l.attnNorm, c.RMSNormEps)
	case 1:
		x := in[:T*D]
		w, kc, vc, put := m.attnWork(T, out)
		defer put()
		kv := &KVCache{Cap: T, K: make([][]float32, len(m.layers)), V: make([][]float32, len(m.layers))}
		kv.K[i], kv.V[i] = kc, vc
		RopeTable(w.cos, w.sin, m.invFreq, 0, T)
		m.linear(i, l.nameQ, w.q, x, T, l.wq, m.qDim, D, l.bq)
		m.linear(i, l.nameK, w.k, x, T, l.wk, m.kvDim, D, l.bk)
		m.linear(i, l.nameV, w.v, x, T, l.wv, m.kvDim, D, l.bv)
		RoPE(w.q, T, c.NumHeads, c.HeadDim, w.cos, w.sin)
		RoPE(w.k, T, c.NumKVHeads, c.HeadDim, w.cos, w.sin)
		hd := c.HeadDim
		for t := range T {
			for kh := range c.NumKVHeads {
				dst := (kh*kv.Cap + t) * hd
				src := (t*c.NumKVHeads + kh) * hd
				copy(kc[dst:dst+hd], w.k[src:src+hd])
				copy(vc[dst:dst+hd], w.v[src:src+hd])
			}
		}
		m.attention(w, kc, vc, AttentionParams{
			T: T, Pos0: 0, Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: hd,
			KVCap: kv.Cap, Window: c.SlidingWindow,
		})
	case 2:
		o, put := scratch(T * D)
		defer put()
		m.linear(i, l.nameO, o, in[:T*m.qDim], T, l.wo, D, m.qDim, nil)
		Add(h, o, T*D)
		RMSNorm(out, h, T, D, l.ffnNorm, c.RMSNormEps)
	case 3:
		x := in[:T*D]
		up, put := scratch(T * I)
		defer put()
		m.linear(i, l.nameGate, out, x, T, l.wGate, I, D, nil)
		m.linear(i, l.nameU, up, x, T, l.wUp, I, D, nil)
		SiLUMul(out, up, T*I)
	case 4:
		o, put := scratch(T * D)
		defer put()
		m.linear(i, l.nameDown, o, in[:T*I], T, l.wDown, D, I, nil)
		Add(h, o, T*D)
	}
	return nil
}

// attnWork is the scratch of stage 1 for T tokens: what block uses for
// q, k, v and attention (the same sizes, so the same worker split), with
// the attention output written to att, and the key and value buffers of
// one cache layer. put returns the scratch for reuse.
func (m *Model) attnWork(T int, att []float32) (w *work, kc, vc []float32, put func()) {
	c := m.Config
	half := c.HeadDim / 2
	workers := 1
	if T > 1 {
		workers = max(1, min(runtime.GOMAXPROCS(0), c.NumHeads))
	}
	sizes := []int{T * m.qDim, T * m.kvDim, T * m.kvDim, T * half, T * half, workers * min(T, attnChunk) * T, T * m.kvDim, T * m.kvDim}
	// Parts start on 64-byte boundaries of the (page-aligned) scratch, as
	// separate allocations would: gonum's assembly kernels sum in an order
	// that depends on the alignment of their operands.
	const align = 16
	total := 0
	for _, n := range sizes {
		total += (n + align - 1) / align * align
	}
	buf, put := scratch(total)
	parts := make([][]float32, len(sizes))
	for j, n := range sizes {
		parts[j], buf = buf[:n:n], buf[(n+align-1)/align*align:]
	}
	return &work{
		cap:      T,
		q:        parts[0],
		att:      att[:T*m.qDim],
		k:        parts[1],
		v:        parts[2],
		cos:      parts[3],
		sin:      parts[4],
		scores:   parts[5],
		ctx:      T,
		workers:  workers,
		ropePos0: -1,
	}, parts[6], parts[7], put
}

// stagePool recycles RunStage's scratch (calibration calls it for every
// sequence of every block).
var stagePool sync.Pool

// scratch returns n float32s of reusable scratch (contents undefined) and
// the function that gives them back.
func scratch(n int) ([]float32, func()) {
	p, ok := stagePool.Get().(*[]float32)
	if !ok || cap(*p) < n {
		b := make([]float32, n)
		p = &b
	}
	return (*p)[:n], func() { stagePool.Put(p) }
}
