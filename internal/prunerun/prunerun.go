// Package prunerun is the part of `smelt prune` that runs models: it
// gathers the calibration statistics package prune needs (Wanda's input
// norms, activation importance of MLP channels and attention heads, block
// influence) with the reference executor and runs the pure pass. Package
// prune itself stays free of I/O; `smelt prune --validate` measures the
// perplexity change with quantrun.Compare, the code of `smelt validate`.
//
// # Statistics
//
// CollectStats runs every calibration sequence through the model block by
// block (exec.Model.Embed, then RunBlock for each block, no KV cache, so
// attention sees exactly the sequence) with a LinearHook on every block
// linear. For a linear with weight W [N, K] and input rows x_t (t over all
// calibration tokens of all sequences):
//
//	InputNorms[W][k] = sqrt(Σ_t x_t[k]²)     accumulated in float64
//
// (q, k and v see the same input, as do gate and up). For block i with
// input hidden states h_t and output h'_t (the residual stream before and
// after the block):
//
//	BlockInfluence[i] = (1/T) Σ_t (1 − h_t·h'_t / (‖h_t‖·‖h'_t‖))
//
// (ShortGPT's Block Influence; a zero-norm row counts as cosine 1).
// Sequences are processed in order and tokens in order, so the statistics
// are deterministic.
package prunerun

import (
	"fmt"
	"math"
	"time"

	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/prune"
)

// CollectStats runs model over seqs and returns the input norms of every
// block linear and, when needBlockInfluence, the influence of every block
// (see the package documentation). It installs its own LinearHook on
// model and removes it (SetLinearHook(nil)) before returning; model must
// not be used concurrently meanwhile.
func CollectStats(model *exec.Model, seqs [][]int, needBlockInfluence bool) (*prune.Stats, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("prune: calibration: no sequences")
	}
	sums := map[string][]float64{}
	model.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
		if layer < 0 { // the output head is never pruned
			return
		}
		s := sums[name]
		if s == nil {
			s = make([]float64, cols)
			sums[name] = s
		}
		for r := 0; r < rows; r++ {
			for k, v := range x[r*cols : (r+1)*cols] {
				s[k] += float64(v) * float64(v)
			}
		}
	})
	defer model.SetLinearHook(nil)
	cfg := model.Config
	D := cfg.HiddenSize
	influence := make([]float64, cfg.NumLayers)
	tokens := 0
	var hin []float32
	for si, seq := range seqs {
		if len(seq) == 0 {
			return nil, fmt.Errorf("prune: calibration sequence %d is empty", si)
		}
		h, err := model.Embed(seq)
		if err != nil {
			return nil, fmt.Errorf("prune: calibration sequence %d: %w", si, err)
		}
		for i := 0; i < cfg.NumLayers; i++ {
			if needBlockInfluence {
				hin = append(hin[:0], h...)
			}
			if err := model.RunBlock(i, h, 0, nil); err != nil {
				return nil, fmt.Errorf("prune: calibration sequence %d: %w", si, err)
			}
			if needBlockInfluence {
				for t := range seq {
					influence[i] += 1 - cosine(hin[t*D:(t+1)*D], h[t*D:(t+1)*D])
				}
			}
		}
		tokens += len(seq)
	}
	st := &prune.Stats{InputNorms: map[string][]float32{}, Tokens: tokens}
	for name, s := range sums {
		n := make([]float32, len(s))
		for k, v := range s {
			n[k] = float32(math.Sqrt(v))
		}
		st.InputNorms[name] = n
	}
	if needBlockInfluence {
		for i := range influence {
			influence[i] /= float64(tokens)
		}
		st.BlockInfluence = influence
	}
	return st, nil
}

// cosine is a·b/(‖a‖‖b‖) in float64; 1 when either vector is zero.
func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 1
	}
	return ab / math.Sqrt(aa*bb)
}

// Result is the outcome of Prune.
type Result struct {
	Graph  *ir.Graph
	Report *prune.Report
	Stats  *prune.Stats // nil when the method needed none
	// Calibrate is the time spent loading the executor and collecting
	// statistics, Prune the time of the pure pass.
	Calibrate, Prune time.Duration
}

// Prune runs prune.Run on g. When the method ranks by activations
// (prune.UsesActivations) and opts.Stats is nil, g is first loaded into the
// reference executor and the statistics are collected over seqs (which
// must then be given).
func Prune(g *ir.Graph, opts prune.Options, seqs [][]int) (*Result, error) {
	act, err := prune.UsesActivations(opts)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if act && opts.Stats == nil {
		if len(seqs) == 0 {
			return nil, fmt.Errorf("prune: method %s ranks by calibration activations: give calibration data", opts.Method)
		}
		t0 := time.Now()
		m, err := exec.Load(g, exec.Options{}) // prune takes float weights only
		if err != nil {
			return nil, err
		}
		if opts.Stats, err = CollectStats(m, seqs, prune.NeedsBlockInfluence(opts)); err != nil {
			return nil, err
		}
		res.Stats = opts.Stats
		res.Calibrate = time.Since(t0)
	}
	t1 := time.Now()
	res.Graph, res.Report, err = prune.Run(g, opts)
	if err != nil {
		return nil, err
	}
	res.Prune = time.Since(t1)
	return res, nil
}
