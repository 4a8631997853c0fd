package quantrun

import (
	"fmt"
	"sort"
	"time"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/quantize"
)

// NewPlan is the plan `smelt quantize` executes: the user's rules (first
// match wins) followed by quantize.DefaultRules, over g's tensors. The
// scales and zero points of tensors that are already quantized (an input
// bundle) are not planned: they travel with their packed tensor.
func NewPlan(g *ir.Graph, rules []quantize.Rule, scheme quantize.Scheme, algo quantize.Algorithm) (*quantize.Plan, error) {
	all := append(append([]quantize.Rule(nil), rules...), quantize.DefaultRules()...)
	companion := map[string]bool{}
	for _, t := range g.Tensors {
		if t.Quant != nil {
			companion[t.Quant.Scales] = true
			if t.Quant.Zeros != "" {
				companion[t.Quant.Zeros] = true
			}
		}
	}
	var ts []*ir.Tensor
	for _, t := range g.Tensors {
		if !companion[t.Name] {
			ts = append(ts, t)
		}
	}
	return quantize.NewPlan(ts, all, scheme, algo)
}

// NeedsCalibration reports whether any quantized entry of p uses an
// algorithm that needs calibration data (gptq or awq).
func NeedsCalibration(p *quantize.Plan) bool {
	for _, e := range p.Entries {
		if e.Quantize && e.Algorithm != quantize.AlgoRTN {
			return true
		}
	}
	return false
}

// Options configure Run.
type Options struct {
	// GPTQ carries the GPTQ parameters (damp, block size, act-order,
	// static groups); its Scheme is taken from each plan entry.
	GPTQ quantize.GPTQOptions
	// AWQ configures the AWQ search (nil: quantize.DefaultAWQOptions).
	AWQ *quantize.AWQOptions
	// AWQThenGPTQ quantizes AWQ-scaled weights with GPTQ instead of RTN.
	AWQThenGPTQ bool
	// Progress, if set, is called after each block's calibration stage and
	// once per RTN tensor (block = -1 for tensors quantized outside
	// calibration).
	Progress func(block, blocks int, stage string)
}

// Timings splits Run's wall time.
type Timings struct {
	Prepare time.Duration // f16 conversion of kept matrices, executor load
	Forward time.Duration // calibration: embedding and block forward passes
	Stats   time.Duration // calibration: accumulating the linears' input statistics (Hessians)
	Solve   time.Duration // calibration: the rest (GPTQ solves, AWQ searches, RTN inside blocks)
	RTN     time.Duration // RTN of the tensors calibration did not quantize
	Pack    time.Duration // packing into tensors, building the graph
}

// Result is the outcome of Run.
type Result struct {
	// Graph is the quantized graph to write.
	Graph *ir.Graph
	// Quantized holds every quantized weight by name, exactly what was
	// packed into Graph.
	Quantized map[string]*quantize.Quantized
	// Calib is calibration's result (nil when nothing needed it).
	Calib   *quantize.CalibResult
	Timings Timings
}

// Run quantizes g by plan p (see the package documentation). seqs are the
// calibration sequences, needed when NeedsCalibration(p). g's node
// constants are rewired to the new tensors: g must not be used afterwards
// (Result.Graph shares its nodes).
func Run(g *ir.Graph, p *quantize.Plan, seqs [][]int, opts Options) (*Result, error) {
	res := &Result{Quantized: map[string]*quantize.Quantized{}}
	t0 := time.Now()
	float, err := keepFloat(g, p)
	if err != nil {
		return nil, err
	}
	floatOf := func(name string) ([]float32, error) {
		if res.Calib != nil {
			if w, ok := res.Calib.Float[name]; ok {
				return w, nil
			}
		}
		t := float.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("quantize: tensor %q not in the graph", name)
		}
		return t.Float32()
	}
	if NeedsCalibration(p) {
		if len(seqs) == 0 {
			return nil, fmt.Errorf("quantize: the plan uses gptq or awq, which need calibration data")
		}
		m, err := LoadModel(float)
		if err != nil {
			return nil, err
		}
		ex := NewExecutor(m)
		res.Timings.Prepare = time.Since(t0)
		t1 := time.Now()
		cr, err := quantize.Calibrate(ex, seqs, quantize.CalibOptions{
			Plan: p, GPTQ: opts.GPTQ, AWQ: opts.AWQ, AWQThenGPTQ: opts.AWQThenGPTQ, Gram: Gram, Progress: opts.Progress,
		})
		if err != nil {
			return nil, err
		}
		res.Calib = cr
		res.Timings.Forward, res.Timings.Stats = ex.Forward, cr.Stats
		res.Timings.Solve = time.Since(t1) - ex.Forward - cr.Stats
		for name, q := range cr.Quantized {
			res.Quantized[name] = q
		}
	} else {
		res.Timings.Prepare = time.Since(t0)
	}

	t2 := time.Now()
	for i := range p.Entries {
		e := &p.Entries[i]
		if !e.Quantize || res.Quantized[e.Name] != nil {
			continue
		}
		w, err := floatOf(e.Name)
		if err != nil {
			return nil, err
		}
		q, err := quantize.RTN(w, int(e.Shape[0]), int(e.Shape[1]), e.Scheme, nil)
		if err != nil {
			return nil, fmt.Errorf("quantize: tensor %q: %w", e.Name, err)
		}
		res.Quantized[e.Name] = q
		if opts.Progress != nil {
			opts.Progress(-1, 0, e.Name)
		}
	}
	res.Timings.RTN = time.Since(t2)

	t3 := time.Now()
	out, err := assemble(float, res)
	if err != nil {
		return nil, err
	}
	res.Graph = out
	res.Timings.Pack = time.Since(t3)
	return res, nil
}

// keepFloat returns a graph whose tensor table has every matrix the plan
// keeps converted to its To dtype (f16); other tensors are shared.
func keepFloat(g *ir.Graph, p *quantize.Plan) (*ir.Graph, error) {
	out := *g
	out.Tensors = make([]*ir.Tensor, len(g.Tensors))
	for i, t := range g.Tensors {
		out.Tensors[i] = t
		e := p.Entry(t.Name)
		if e == nil || e.Quantize || e.To == t.DType || t.Quant != nil {
			continue
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
		nt, err := floatTensor(t.Name, e.To, t.Shape, v)
		if err != nil {
			return nil, err
		}
		out.Tensors[i] = nt
	}
	return &out, nil
}

func floatTensor(name string, d ir.DType, shape ir.Shape, v []float32) (*ir.Tensor, error) {
	b, err := ir.EncodeFloat32(d, v)
	if err != nil {
		return nil, fmt.Errorf("quantize: tensor %q: %w", name, err)
	}
	return &ir.Tensor{Name: name, DType: d, Shape: append(ir.Shape(nil), shape...), Source: &ir.BytesSource{Data: b, Loc: "quantize:" + name}}, nil
}

// assemble builds the output graph from the float graph and the result.
func assemble(float *ir.Graph, res *Result) (*ir.Graph, error) {
	byName := map[string]*ir.Tensor{}
	var tensors []*ir.Tensor
	add := func(t *ir.Tensor) error {
		if _, dup := byName[t.Name]; dup {
			return fmt.Errorf("quantize: tensor %q would be written twice", t.Name)
		}
		byName[t.Name] = t
		tensors = append(tensors, t)
		return nil
	}
	for _, t := range float.Tensors {
		if q := res.Quantized[t.Name]; q != nil {
			ts, _, err := q.Tensors(t.Name)
			if err != nil {
				return nil, err
			}
			for _, qt := range ts {
				if err := add(qt); err != nil {
					return nil, err
				}
			}
			continue
		}
		if res.Calib != nil {
			if w, ok := res.Calib.Float[t.Name]; ok {
				nt, err := floatTensor(t.Name, ir.F32, t.Shape, w)
				if err != nil {
					return nil, err
				}
				if err := add(nt); err != nil {
					return nil, err
				}
				continue
			}
		}
		if err := add(t); err != nil {
			return nil, err
		}
	}
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	out := *float
	out.Tensors = tensors
	for _, n := range out.Nodes {
		for _, in := range n.Inputs {
			if in == nil || in.Tensor == nil {
				continue
			}
			t := byName[in.Tensor.Name]
			if t == nil {
				return nil, fmt.Errorf("quantize: node %q: constant %q lost its tensor", n.Name, in.Tensor.Name)
			}
			in.Tensor, in.DType, in.Shape = t, t.DType, t.Shape
		}
	}
	if err := out.Check(); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	return &out, nil
}
