// Package compare measures how far a candidate model's predictions are from
// a reference model's on the same token windows — the numbers `smelt
// validate` gates on.
//
// For every scored position t (the targets of the perplexity protocol),
// with reference logits a and candidate logits b over the vocabulary and
// target token y:
//
//	nll_ref  = −log softmax(a)[y]          (natural log, float64)
//	nll_cand = −log softmax(b)[y]
//	kl       = Σ_v p_a(v) · (log p_a(v) − log p_b(v))     KL(reference ‖ candidate)
//	top1     = argmax a == argmax b
//	Δmax     = max_v |a_v − b_v|
//
// Perplexities are exp(mean nll); the report gives mean and p99 KL (p99 by
// the nearest-rank method over all scored positions), top-1 agreement as a
// fraction, and the largest |Δlogit| seen anywhere.
package compare

import (
	"fmt"
	"math"
	"sort"
)

// Accumulator collects per-position statistics. The zero value is ready.
type Accumulator struct {
	nllRef, nllCand float64
	kls             []float64
	agree           int
	maxDelta        float64
}

// Add scores one position: reference logits a, candidate logits b, target y.
func (acc *Accumulator) Add(a, b []float32, y int) error {
	if len(a) != len(b) {
		return fmt.Errorf("compare: logits have %d and %d entries", len(a), len(b))
	}
	if y < 0 || y >= len(a) {
		return fmt.Errorf("compare: target %d outside the vocabulary of %d", y, len(a))
	}
	lsa, lsb := logSumExp(a), logSumExp(b)
	acc.nllRef += lsa - float64(a[y])
	acc.nllCand += lsb - float64(b[y])
	kl := 0.0
	ia, ib := 0, 0
	for v := range a {
		la, lb := float64(a[v])-lsa, float64(b[v])-lsb
		kl += math.Exp(la) * (la - lb)
		if a[v] > a[ia] {
			ia = v
		}
		if b[v] > b[ib] {
			ib = v
		}
		if d := math.Abs(float64(a[v]) - float64(b[v])); d > acc.maxDelta {
			acc.maxDelta = d
		}
	}
	if kl < 0 { // rounding: KL is non-negative
		kl = 0
	}
	acc.kls = append(acc.kls, kl)
	if ia == ib {
		acc.agree++
	}
	return nil
}

func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// Report is the summary of an Accumulator.
type Report struct {
	Tokens           int     `json:"tokens"`
	PPLReference     float64 `json:"ppl_reference"`
	PPLCandidate     float64 `json:"ppl_candidate"`
	PPLIncrease      float64 `json:"ppl_increase"` // fraction: 0.02 = +2%
	MeanKL           float64 `json:"mean_kl"`
	P99KL            float64 `json:"p99_kl"`
	Top1Agreement    float64 `json:"top1_agreement"`
	MaxAbsDeltaLogit float64 `json:"max_abs_delta_logit"`
}

// Report summarizes what was added.
func (acc *Accumulator) Report() Report {
	n := len(acc.kls)
	if n == 0 {
		return Report{}
	}
	r := Report{Tokens: n}
	r.PPLReference = math.Exp(acc.nllRef / float64(n))
	r.PPLCandidate = math.Exp(acc.nllCand / float64(n))
	r.PPLIncrease = r.PPLCandidate/r.PPLReference - 1
	sum := 0.0
	for _, k := range acc.kls {
		sum += k
	}
	r.MeanKL = sum / float64(n)
	sorted := append([]float64(nil), acc.kls...)
	sort.Float64s(sorted)
	rank := int(math.Ceil(0.99*float64(n))) - 1
	r.P99KL = sorted[max(rank, 0)]
	r.Top1Agreement = float64(acc.agree) / float64(n)
	r.MaxAbsDeltaLogit = acc.maxDelta
	return r
}

// Gates are the thresholds of `smelt validate`; nil fields are not checked.
type Gates struct {
	MaxPPLIncrease *float64 // fraction
	MaxKL          *float64 // on the mean KL
	MinTop1        *float64
}

// Check returns one message per failed gate (empty when all pass).
func (g Gates) Check(r Report) []string {
	var fails []string
	if g.MaxPPLIncrease != nil && r.PPLIncrease > *g.MaxPPLIncrease {
		fails = append(fails, fmt.Sprintf("perplexity increase %+.3f%% exceeds the %.3f%% gate", 100*r.PPLIncrease, 100**g.MaxPPLIncrease))
	}
	if g.MaxKL != nil && r.MeanKL > *g.MaxKL {
		fails = append(fails, fmt.Sprintf("mean KL %.5f exceeds the %.5f gate", r.MeanKL, *g.MaxKL))
	}
	if g.MinTop1 != nil && r.Top1Agreement < *g.MinTop1 {
		fails = append(fails, fmt.Sprintf("top-1 agreement %.4f is below the %.4f gate", r.Top1Agreement, *g.MinTop1))
	}
	return fails
}
