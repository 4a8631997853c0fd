package exec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SamplerOptions selects how the next token is chosen from logits.
// Temperature 0 is greedy (Argmax) and ignores the rest. Otherwise, in
// Hugging Face's order: logits are divided by Temperature; TopK > 0 keeps
// the K most likely tokens; 0 < TopP < 1 keeps the smallest set of most
// likely tokens whose probability sums to at least TopP (always at least
// one); the token is drawn from the renormalized probabilities with a
// PCG generator seeded by Seed. Ties in likelihood are broken by the lower
// token id. The same options and logits give the same tokens on every
// platform; other runtimes' samplers are not bit-compatible with it.
type SamplerOptions struct {
	Temperature float64
	TopK        int
	TopP        float64
	Seed        uint64
}

// Sampler draws tokens; it keeps its scratch so Sample allocates nothing
// after the first call.
type Sampler struct {
	opts  SamplerOptions
	rng   *rand.Rand
	idx   []int
	probs []float64
}

// NewSampler checks opts and returns a Sampler.
func NewSampler(opts SamplerOptions) (*Sampler, error) {
	if opts.Temperature < 0 || math.IsNaN(opts.Temperature) || math.IsInf(opts.Temperature, 0) {
		return nil, fmt.Errorf("exec: temperature %v, want >= 0", opts.Temperature)
	}
	if opts.TopK < 0 {
		return nil, fmt.Errorf("exec: top-k %d, want >= 0", opts.TopK)
	}
	if !(opts.TopP >= 0 && opts.TopP <= 1) {
		return nil, fmt.Errorf("exec: top-p %v, want 0 <= p <= 1", opts.TopP)
	}
	return &Sampler{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))}, nil
}

// Sample returns the next token id for logits.
func (s *Sampler) Sample(logits []float32) int {
	o := s.opts
	if o.Temperature == 0 || len(logits) == 1 {
		return Argmax(logits)
	}
	n := len(logits)
	if cap(s.idx) < n {
		s.idx = make([]int, n)
		s.probs = make([]float64, n)
	}
	idx, probs := s.idx[:n], s.probs[:n]
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		la, lb := logits[a], logits[b]
		switch {
		case la > lb:
			return -1
		case la < lb:
			return 1
		}
		return a - b
	})
	keep := n
	if o.TopK > 0 && o.TopK < keep {
		keep = o.TopK
	}
	m := float64(logits[idx[0]]) / o.Temperature
	var sum float64
	for i := range keep {
		probs[i] = math.Exp(float64(logits[idx[i]])/o.Temperature - m)
		sum += probs[i]
	}
	if o.TopP > 0 && o.TopP < 1 {
		var c float64
		for i := range keep {
			c += probs[i] / sum
			if c >= o.TopP {
				keep = i + 1
				break
			}
		}
		sum = 0
		for i := range keep {
			sum += probs[i]
		}
	}
	u := s.rng.Float64() * sum
	for i := range keep {
		u -= probs[i]
		if u < 0 {
			return idx[i]
		}
	}
	return idx[keep-1]
}
