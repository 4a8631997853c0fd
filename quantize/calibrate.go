package quantize

import (
	"fmt"

	"github.com/smeltml/smelt/internal/ir"
)

// Executor is what calibration needs from the reference executor
// (internal/exec's Model, through a thin adapter in the caller: this
// package does no I/O and does not import the executor).
type Executor interface {
	// Config is the model's configuration.
	Config() ir.Config
	// Embed returns the embeddings of one sequence, [len(ids), HiddenSize].
	Embed(ids []int) ([]float32, error)
	// RunBlock runs block i in place on one sequence's hidden states
	// [T, HiddenSize] at positions 0 .. T-1, without a KV cache, calling
	// the linear hook for the block's linears.
	RunBlock(i int, h []float32) error
	// Weight returns the current float32 weights of a canonical tensor.
	Weight(name string) []float32
	// SetWeight replaces them (the executor keeps w).
	SetWeight(name string, w []float32) error
	// SetLinearHook installs (nil: removes) the observer of every linear's
	// input x [rows, cols] (scratch: copy to keep); layer is the block.
	SetLinearHook(func(layer int, name string, x []float32, rows, cols int))
}

// SequentialGroups returns the linears of Llama block i in true-sequential
// order, each group sharing one input: q,k,v → o → gate,up → down.
func SequentialGroups(i int) [][]string {
	l := func(n string) string { return ir.LayerTensor(i, n) }
	return [][]string{
		{l(ir.AttnQ), l(ir.AttnK), l(ir.AttnV)},
		{l(ir.AttnOutput)},
		{l(ir.FFNGate), l(ir.FFNUp)},
		{l(ir.FFNDown)},
	}
}

// CalibOptions configure Calibrate.
type CalibOptions struct {
	// Plan decides which tensors are quantized, with which scheme and
	// algorithm (rtn, gptq, awq). Tensors outside the decoder blocks'
	// linears are not touched by Calibrate (quantize them with RTN).
	Plan *Plan
	// GPTQ carries Damp, BlockSize, ActOrder and StaticGroups (its Scheme
	// is taken from the plan entry).
	GPTQ GPTQOptions
	// AWQ configures the scale search (zero value: DefaultAWQOptions).
	AWQ *AWQOptions
	// AWQThenGPTQ quantizes AWQ-scaled (and clipped) weights with GPTQ
	// instead of RTN for tensors whose algorithm is awq.
	AWQThenGPTQ bool
	// Progress, if set, is called after each block's stage.
	Progress func(block, blocks int, stage string)
}

// CalibResult is the outcome of Calibrate.
type CalibResult struct {
	// Quantized holds the packed-to-be weights by canonical name.
	Quantized map[string]*Quantized
	// Float holds float tensors that AWQ rewrote (norm weights, and the
	// scaled linears) and that must be stored instead of the originals; an
	// entry in Quantized of the same name supersedes it.
	Float map[string][]float32
	// GPTQ holds the report of every GPTQ solve.
	GPTQ map[string]GPTQReport
	// AWQAlpha holds the chosen exponent per scaled group, by the name of
	// the group's first linear.
	AWQAlpha map[string]float64
}

// Calibrate quantizes the decoder blocks' linears block by block on
// calibration sequences. Every block sees the outputs of the blocks
// already quantized (their dequantized weights are swapped into the
// executor), and inside a block the linears are processed in
// true-sequential order (SequentialGroups): each group's inputs are
// captured with the previous groups already quantized; GPTQ tensors get
// the Hessian of that input.
//
// AWQ (blocks with any awq tensor) first runs the float block once,
// capturing the four groups' inputs, and searches and folds the scales of
// every group in float as AutoAWQ does (into attn_norm; into attn_v rows,
// tied across GQA groups; into ffn_norm; into ffn_up rows — see
// FoldScalesInto*), so the float model is unchanged; then the sequential
// pass clips (AWQClip, not for the q/k/v group, as AutoAWQ skips q and k)
// and quantizes with RTN, or GPTQ with AWQThenGPTQ. Groups the plan keeps
// are skipped. The result is deterministic for given sequences.
func Calibrate(ex Executor, seqs [][]int, opts CalibOptions) (*CalibResult, error) {
	if opts.Plan == nil {
		return nil, fmt.Errorf("quantize: calibrate: no plan")
	}
	if len(seqs) == 0 {
		return nil, fmt.Errorf("quantize: calibrate: no calibration sequences")
	}
	cfg := ex.Config()
	awqOpts := DefaultAWQOptions()
	if opts.AWQ != nil {
		awqOpts = *opts.AWQ
	}
	res := &CalibResult{
		Quantized: map[string]*Quantized{},
		Float:     map[string][]float32{},
		GPTQ:      map[string]GPTQReport{},
		AWQAlpha:  map[string]float64{},
	}
	hs := make([][]float32, len(seqs))
	for i, s := range seqs {
		h, err := ex.Embed(s)
		if err != nil {
			return nil, fmt.Errorf("quantize: calibrate: sequence %d: %w", i, err)
		}
		hs[i] = h
	}
	defer ex.SetLinearHook(nil)
	nBlocks := cfg.NumLayers
	for b := 0; b < nBlocks; b++ {
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
			hss, err := captureInputs(ex, b, hs, firsts)
			if err != nil {
				return nil, err
			}
			for gi := range groups {
				if err := awqScaleGroup(ex, cfg, b, gi, entries[gi], hss[gi], awqOpts, res); err != nil {
					return nil, err
				}
			}
			if opts.Progress != nil {
				opts.Progress(b, nBlocks, "awq scales")
			}
		}
		for gi, group := range groups {
			if len(entries[gi]) == 0 {
				continue
			}
			hss, err := captureInputs(ex, b, hs, group[:1])
			if err != nil {
				return nil, err
			}
			if err := quantizeGroup(ex, gi, entries[gi], hss[0], opts, res); err != nil {
				return nil, err
			}
			if opts.Progress != nil {
				opts.Progress(b, nBlocks, fmt.Sprintf("group %d/%d", gi+1, len(groups)))
			}
		}
		// Propagate through the quantized block.
		for si, hv := range hs {
			if err := ex.RunBlock(b, hv); err != nil {
				return nil, fmt.Errorf("quantize: calibrate: block %d sequence %d: %w", b, si, err)
			}
		}
		if opts.Progress != nil {
			opts.Progress(b, nBlocks, "done")
		}
	}
	return res, nil
}

// captureInputs runs block b on a copy of every sequence's hidden states
// and accumulates the inputs of the named linears.
func captureInputs(ex Executor, b int, hs [][]float32, names []string) ([]*Hessian, error) {
	acc := make([]*Hessian, len(names))
	var addErr error
	ex.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
		if layer != b {
			return
		}
		for i, n := range names {
			if n != name {
				continue
			}
			if acc[i] == nil {
				acc[i] = NewHessian(cols)
			}
			if err := acc[i].Add(x, rows); err != nil && addErr == nil {
				addErr = fmt.Errorf("quantize: calibrate: inputs of %s: %w", name, err)
			}
		}
	})
	defer ex.SetLinearHook(nil)
	for si, hv := range hs {
		tmp := append([]float32(nil), hv...)
		if err := ex.RunBlock(b, tmp); err != nil {
			return nil, fmt.Errorf("quantize: calibrate: block %d sequence %d: %w", b, si, err)
		}
		if addErr != nil {
			return nil, addErr
		}
	}
	for i, h := range acc {
		if h == nil {
			return nil, fmt.Errorf("quantize: calibrate: block %d: the executor never reported the input of %s", b, names[i])
		}
	}
	return acc, nil
}

// awqScaleGroup searches AWQ scales for group gi of block b and folds them
// in float: producer divided, consumers' columns multiplied.
func awqScaleGroup(ex Executor, cfg ir.Config, b, gi int, entries []*PlanEntry, h *Hessian, awqOpts AWQOptions, res *CalibResult) error {
	if len(entries) == 0 {
		return nil
	}
	group := SequentialGroups(b)[gi]
	for _, e := range entries {
		if e.Algorithm != AlgoAWQ || e.Scheme != entries[0].Scheme {
			return fmt.Errorf("quantize: calibrate: %s and %s share an input but not algorithm awq and one scheme", entries[0].Name, e.Name)
		}
	}
	if len(entries) != len(group) {
		return fmt.Errorf("quantize: calibrate: awq scales for %s need every linear of its group (%v) quantized", entries[0].Name, group)
	}
	ws := make([][]float32, len(entries))
	for i, e := range entries {
		w := ex.Weight(e.Name)
		if w == nil {
			return fmt.Errorf("quantize: calibrate: executor has no tensor %q", e.Name)
		}
		ws[i] = append([]float32(nil), w...)
	}
	o := awqOpts
	if gi == 1 { // attn_output: scales fold into attn_v, tied per kv group
		tie, err := TieGQA(cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
		if err != nil {
			return err
		}
		o.Tie = tie
	}
	sr, err := AWQSearchHessian(h, ws, entries[0].Scheme, o)
	if err != nil {
		return fmt.Errorf("quantize: calibrate: %s: %w", entries[0].Name, err)
	}
	s := sr.Scales
	res.AWQAlpha[entries[0].Name] = sr.Alpha

	var prod string
	switch gi {
	case 0:
		prod = ir.LayerTensor(b, ir.AttnNorm)
	case 1:
		prod = ir.LayerTensor(b, ir.AttnV)
	case 2:
		prod = ir.LayerTensor(b, ir.FFNNorm)
	case 3:
		prod = ir.LayerTensor(b, ir.FFNUp)
	}
	cur := ex.Weight(prod)
	if cur == nil {
		return fmt.Errorf("quantize: calibrate: executor has no tensor %q", prod)
	}
	pw := append([]float32(nil), cur...)
	switch gi {
	case 0, 2:
		err = FoldScalesIntoNorm(pw, s)
	case 1:
		err = FoldScalesIntoV(pw, cfg.HiddenSize, nil, s, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
	case 3:
		err = FoldScalesIntoLinear(pw, cfg.IntermediateSize, cfg.HiddenSize, nil, s)
	}
	if err != nil {
		return err
	}
	res.Float[prod] = pw
	if err := ex.SetWeight(prod, pw); err != nil {
		return err
	}
	for i, e := range entries {
		ScaleColumns(ws[i], int(e.Shape[0]), int(e.Shape[1]), s)
		res.Float[e.Name] = ws[i]
		if err := ex.SetWeight(e.Name, ws[i]); err != nil {
			return err
		}
	}
	return nil
}

// quantizeGroup quantizes the linears of one group from the executor's
// current float weights and their captured input statistics h, and swaps
// the dequantized weights into the executor.
func quantizeGroup(ex Executor, gi int, entries []*PlanEntry, h *Hessian, opts CalibOptions, res *CalibResult) error {
	for _, e := range entries {
		rows, cols := int(e.Shape[0]), int(e.Shape[1])
		cur := ex.Weight(e.Name)
		if cur == nil || len(cur) != rows*cols {
			return fmt.Errorf("quantize: calibrate: executor has no [%d %d] tensor %q", rows, cols, e.Name)
		}
		w := append([]float32(nil), cur...)
		if e.Algorithm == AlgoAWQ && gi != 0 {
			clip, err := AWQClip(h, w, rows, e.Scheme, AWQClipOptions{})
			if err != nil {
				return fmt.Errorf("quantize: calibrate: %s: %w", e.Name, err)
			}
			if err := ApplyClip(w, rows, cols, e.Scheme.GroupSize, clip); err != nil {
				return err
			}
		}
		var q *Quantized
		var err error
		if e.Algorithm == AlgoGPTQ || (e.Algorithm == AlgoAWQ && opts.AWQThenGPTQ) {
			o := opts.GPTQ
			o.Scheme = e.Scheme
			var rep GPTQReport
			q, rep, err = GPTQWithReport(w, rows, cols, h.H, o)
			res.GPTQ[e.Name] = rep
		} else {
			q, err = RTN(w, rows, cols, e.Scheme, nil)
		}
		if err != nil {
			return fmt.Errorf("quantize: calibrate: tensor %q: %w", e.Name, err)
		}
		q.Algorithm = e.Algorithm
		res.Quantized[e.Name] = q
		if err := ex.SetWeight(e.Name, q.Dequantize()); err != nil {
			return err
		}
	}
	return nil
}
