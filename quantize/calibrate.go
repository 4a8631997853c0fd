package quantize

import (
	"fmt"
	"strings"
	"time"

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
	// RunStage runs stage s (0 ≤ s < 5) of Llama block i on one
	// sequence's hidden states h [T, HiddenSize] at positions 0 .. T-1,
	// without a KV cache, reading in and writing out (internal/exec's
	// Model.RunStage): each stage ends at the input of one group of
	// SequentialGroups,
	//
	//	stage 0: out = RMSNorm(h, attn_norm)                       input of group 0 (q, k, v)   [T, HiddenSize]
	//	stage 1: out = attention of in through q, k, v             input of group 1 (o)         [T, NumHeads·HeadDim]
	//	stage 2: h += in·Woᵀ; out = RMSNorm(h, ffn_norm)           input of group 2 (gate, up)  [T, HiddenSize]
	//	stage 3: out = SiLU(in·Wgateᵀ)·(in·Wupᵀ)                   input of group 3 (down)      [T, IntermediateSize]
	//	stage 4: h += in·Wdownᵀ                                    (no out)
	//
	// with the weights current at the call. Stages 0 to 4 chained are one
	// block forward.
	RunStage(i, s int, h, in, out []float32) error
	// Weight returns the current float32 weights of a canonical tensor.
	Weight(name string) []float32
	// SetWeight replaces them (the executor keeps w).
	SetWeight(name string, w []float32) error
}

// stageWidth returns the columns per token of the output of stage s
// (the input of group s), 0 for the last stage.
func stageWidth(c ir.Config, s int) int {
	switch s {
	case 0, 2:
		return c.HiddenSize
	case 1:
		return c.NumHeads * c.HeadDim
	case 3:
		return c.IntermediateSize
	}
	return 0
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
	// Gram, if set, computes the Gram matrices of the input statistics
	// (Hessian.AddGram); nil uses gonum.
	Gram GramFunc
	// MaxStoredBytes bounds the memory kept for the inputs of ffn_down
	// between their statistics and the block's last stage (all sequences
	// × tokens × IntermediateSize × 4 bytes); above it they are computed
	// twice instead (0 → 1 GiB).
	MaxStoredBytes int64
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
	// Stats is the wall time spent accumulating input statistics
	// (Hessian.AddGram); the rest of Calibrate is the executor's forward
	// passes and the solves.
	Stats time.Duration
}

// Calibrate quantizes the decoder blocks' linears block by block on
// calibration sequences. Every block sees the outputs of the blocks
// already quantized (their dequantized weights are swapped into the
// executor), and inside a block the linears are processed in
// true-sequential order (SequentialGroups): each group's inputs are
// computed with the previous groups already quantized; GPTQ tensors get
// the Hessian of that input. This is IST-DASLab/gptq's true-sequential
// loop, which runs the whole block once per group and once more for its
// output; here each block runs once per sequence: stage s of every
// sequence (Executor.RunStage) yields the input of group s, the group is
// quantized, and stage s+1 continues from that input with the group's
// quantized weights (the same numbers, computed once).
//
// AWQ (blocks with any awq tensor) first runs the float block once,
// capturing the four groups' inputs, and searches and folds the scales of
// every group in float as AutoAWQ does (into attn_norm; into attn_v rows,
// tied across GQA groups; into ffn_norm; into ffn_up rows — see
// FoldScalesInto*), so the float model is unchanged; then the sequential
// pass clips (AWQClip; not q and k, which AutoAWQ and llm-awq skip because
// the softmax amplifies their errors)
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
	c := &calibration{
		ex: ex, cfg: cfg, opts: opts,
		res: &CalibResult{
			Quantized: map[string]*Quantized{},
			Float:     map[string][]float32{},
			GPTQ:      map[string]GPTQReport{},
			AWQAlpha:  map[string]float64{},
		},
		free: map[int][][]float32{},
	}
	c.hs = make([][]float32, len(seqs))
	var tokens int64
	for i, s := range seqs {
		h, err := ex.Embed(s)
		if err != nil {
			return nil, fmt.Errorf("quantize: calibrate: sequence %d: %w", i, err)
		}
		c.hs[i] = h
		tokens += int64(len(s))
	}
	limit := opts.MaxStoredBytes
	if limit == 0 {
		limit = 1 << 30
	}
	c.storeDown = tokens*int64(cfg.IntermediateSize)*4 <= limit
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
			hss, err := c.captureFloat(b)
			if err != nil {
				return nil, err
			}
			for gi := range groups {
				if err := awqScaleGroup(ex, cfg, b, gi, entries[gi], hss[gi], awqOpts, c.res); err != nil {
					return nil, err
				}
			}
			if opts.Progress != nil {
				opts.Progress(b, nBlocks, "awq scales")
			}
		}
		if err := c.sequential(b, entries); err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(b, nBlocks, "done")
		}
	}
	return c.res, nil
}

// calibration is the state of one Calibrate call.
type calibration struct {
	ex        Executor
	cfg       ir.Config
	opts      CalibOptions
	res       *CalibResult
	hs        [][]float32         // every sequence's hidden states entering the current block
	storeDown bool                // keep ffn_down's inputs between their statistics and stage 4
	free      map[int][][]float32 // recycled stage outputs by length
	want      int                 // the length release recycles
}

// buf returns a buffer of n values (recycled, contents undefined).
func (c *calibration) buf(n int) []float32 {
	if l := c.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		c.free[n] = l[:len(l)-1]
		return b
	}
	return make([]float32, n)
}

// keepFree makes release recycle only buffers of n values (the current
// stage's outputs; -1: every length) and drops the others, so that their memory goes back to
// the garbage collector when a stage's outputs change size.
func (c *calibration) keepFree(n int) {
	c.want = n
	for k := range c.free {
		if k != n {
			delete(c.free, k)
		}
	}
}

// release returns a buffer from buf for reuse if it has the length
// keepFree asked for.
func (c *calibration) release(b []float32) {
	if b != nil && (c.want < 0 || len(b) == c.want) {
		c.free[len(b)] = append(c.free[len(b)], b)
	}
}

// stage runs stage s of block b on sequence si; out is a new buffer (nil
// for the last stage).
func (c *calibration) stage(b, s, si int, h, in []float32) ([]float32, error) {
	var out []float32
	if w := stageWidth(c.cfg, s); w > 0 {
		out = c.buf(len(h) / c.cfg.HiddenSize * w)
	}
	if err := c.ex.RunStage(b, s, h, in, out); err != nil {
		return nil, fmt.Errorf("quantize: calibrate: block %d stage %d sequence %d: %w", b, s, si, err)
	}
	return out, nil
}

// add accumulates one sequence's input of a group.
func (c *calibration) add(acc *Hessian, x []float32, name string) error {
	t := time.Now()
	defer func() { c.res.Stats += time.Since(t) }()
	if err := acc.AddGram(x, len(x)/acc.N, c.opts.Gram); err != nil {
		return fmt.Errorf("quantize: calibrate: inputs of %s: %w", name, err)
	}
	return nil
}

// captureFloat runs block b on a copy of every sequence's hidden states
// with the current weights and returns the input statistics of its four
// groups.
func (c *calibration) captureFloat(b int) ([]*Hessian, error) {
	groups := SequentialGroups(b)
	acc := make([]*Hessian, len(groups))
	for gi := range acc {
		acc[gi] = NewHessian(stageWidth(c.cfg, gi))
	}
	c.want = -1
	for si, hv := range c.hs {
		h := append(c.buf(len(hv))[:0], hv...)
		var in []float32
		for gi := range groups {
			out, err := c.stage(b, gi, si, h, in)
			if err != nil {
				return nil, err
			}
			c.release(in)
			in = out
			if err := c.add(acc[gi], out, groups[gi][0]); err != nil {
				return nil, err
			}
		}
		c.release(in)
		c.release(h)
	}
	return acc, nil
}

// sequential runs block b stage by stage over every sequence, quantizing
// each group's entries from the statistics of its input as soon as every
// sequence has produced it, and leaves c.hs holding the quantized block's
// outputs.
func (c *calibration) sequential(b int, entries [][]*PlanEntry) error {
	groups := SequentialGroups(b)
	cur := make([][]float32, len(c.hs)) // every sequence's input of the current group
	last := len(groups) - 1
	for gi := range groups {
		c.keepFree(len(c.hs[0]) / c.cfg.HiddenSize * stageWidth(c.cfg, gi))
		var acc *Hessian
		if len(entries[gi]) > 0 {
			acc = NewHessian(stageWidth(c.cfg, gi))
		}
		for si, h := range c.hs {
			out, err := c.stage(b, gi, si, h, cur[si])
			if err != nil {
				return err
			}
			if acc != nil {
				if err := c.add(acc, out, groups[gi][0]); err != nil {
					return err
				}
			}
			if gi == last && !c.storeDown {
				// Keep ffn_norm's output; ffn_down's input is computed
				// again for stage 4.
				c.release(out)
				continue
			}
			c.release(cur[si])
			cur[si] = out
		}
		if acc != nil {
			if err := quantizeGroup(c.ex, gi, entries[gi], acc, c.opts, c.res); err != nil {
				return err
			}
			if c.opts.Progress != nil {
				c.opts.Progress(b, c.cfg.NumLayers, fmt.Sprintf("group %d/%d", gi+1, len(groups)))
			}
		}
	}
	for si, h := range c.hs {
		in := cur[si]
		if !c.storeDown {
			x, err := c.stage(b, last, si, h, in)
			if err != nil {
				return err
			}
			c.release(in)
			in = x
		}
		if _, err := c.stage(b, last+1, si, h, in); err != nil {
			return err
		}
		c.release(in)
		cur[si] = nil
	}
	return nil
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

// awqNoClip reports whether AWQ leaves the weight of group gi unclipped:
// the query and key projections (AutoAWQ's avoid_clipping "q_", "k_").
func awqNoClip(gi int, name string) bool {
	return gi == 0 && (strings.HasSuffix(name, "."+ir.AttnQ) || strings.HasSuffix(name, "."+ir.AttnK))
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
		if e.Algorithm == AlgoAWQ && !awqNoClip(gi, e.Name) {
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
