package exec

import (
	"fmt"
	"math"
)

// Window is one forward pass of the perplexity protocol: the model runs on
// ids[Start:End] (positions restart at 0) and scores the targets ids[t] for
// ScoreFrom <= t < End from the logits at position t-1-Start.
type Window struct {
	Start, End, ScoreFrom int
}

// PerplexityWindows returns the windows of the perplexity protocol over n
// token ids (the reference protocol of ../shared/models/README.md,
// "Perplexity"): windows of ctx tokens start at 0, stride, 2*stride, ...
// (the last one is cut at n; no window starts after the one reaching n,
// nor at n-1, where it would score nothing); each target ids[t], t >= 1, is scored exactly once, by the first
// window that holds t and at least one earlier token. With stride == ctx
// the windows do not overlap and the first token of every window after the
// first is context only. Worked example: n = 10, ctx = 4, stride = 2 gives
// {0 4 1} {2 6 4} {4 8 6} {6 10 8}; stride 4 gives {0 4 1} {4 8 5} {8 10 9}; n = 9, ctx = stride =
// 4 gives {0 4 1} {4 8 5} (id 8 is context only, as every window's first).
// These are internal/textdata's Windows (checked by a test).
// It needs n >= 2 and 1 <= stride <= ctx.
func PerplexityWindows(n, ctx, stride int) ([]Window, error) {
	if n < 2 {
		return nil, fmt.Errorf("exec: perplexity needs at least 2 tokens, have %d", n)
	}
	if ctx < 2 {
		return nil, fmt.Errorf("exec: perplexity context %d, want >= 2", ctx)
	}
	if stride < 1 || stride > ctx {
		return nil, fmt.Errorf("exec: perplexity stride %d, want 1 <= stride <= context %d", stride, ctx)
	}
	var ws []Window
	prevEnd := 0
	// A window starting at n-1 would hold one id and score nothing (stride
	// == ctx only): the windows end before it.
	for start := 0; start < n-1; start += stride {
		end := min(start+ctx, n)
		ws = append(ws, Window{Start: start, End: end, ScoreFrom: max(start+1, prevEnd)})
		if end == n {
			return ws, nil
		}
		prevEnd = end
	}
	return ws, nil
}

// PerplexityResult is the outcome of Perplexity.
type PerplexityResult struct {
	Context int     `json:"context"`
	Stride  int     `json:"stride"`
	Windows int     `json:"windows"`
	Tokens  int     `json:"tokens"`  // ids given, BOS included
	Scored  int     `json:"scored"`  // targets scored
	NLLSum  float64 `json:"nll_sum"` // sum of -log p(target), natural log
	MeanNLL float64 `json:"mean_nll"`
	PPL     float64 `json:"ppl"` // exp(MeanNLL)
}

// Perplexity scores ids with the protocol of PerplexityWindows: each
// window's logits (float32) go through a float64 log-softmax (LogSoftmax),
// ppl = exp(sum NLL / scored). Callers put the single BOS at ids[0]
// themselves. progress, if not nil, is called after each window with the
// number of windows done and the total.
func (m *Model) Perplexity(ids []int, ctx, stride int, progress func(done, total int)) (PerplexityResult, error) {
	ws, err := PerplexityWindows(len(ids), ctx, stride)
	if err != nil {
		return PerplexityResult{}, err
	}
	for i, id := range ids {
		if id < 0 || id >= m.Config.VocabSize {
			return PerplexityResult{}, fmt.Errorf("exec: token id %d at position %d is outside the vocabulary [0, %d)", id, i, m.Config.VocabSize)
		}
	}
	D, V := m.Config.HiddenSize, m.Config.VocabSize
	wlen := min(ctx, len(ids))
	w := m.newWork(wlen, wlen)
	cache := m.NewKVCache(wlen)
	h := make([]float32, wlen*D)
	logits := make([]float32, wlen*V)
	r := PerplexityResult{Context: ctx, Stride: stride, Windows: len(ws), Tokens: len(ids)}
	for wi, win := range ws {
		T := win.End - win.Start
		if err := m.embedInto(h, ids[win.Start:win.End]); err != nil {
			return PerplexityResult{}, err
		}
		m.rope(w, 0, T)
		for i := range m.layers {
			m.block(i, h[:T*D], T, 0, cache, w)
		}
		// Logits only for the rows that predict scored targets.
		r0 := win.ScoreFrom - 1 - win.Start
		rows := win.End - win.ScoreFrom
		if rows > 0 {
			m.head(logits[:rows*V], w.x, h[r0*D:(r0+rows)*D], rows)
			for j := range rows {
				t := win.ScoreFrom + j
				r.NLLSum -= LogSoftmax(logits[j*V:(j+1)*V], ids[t])
			}
			r.Scored += rows
		}
		if progress != nil {
			progress(wi+1, len(ws))
		}
	}
	r.MeanNLL = r.NLLSum / float64(r.Scored)
	r.PPL = math.Exp(r.MeanNLL)
	return r, nil
}
