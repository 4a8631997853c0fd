package ir

import (
	"fmt"
	"sort"
	"strings"
)

// Value is an SSA value: a graph input, a node output, or a constant that
// names a Tensor.
type Value struct {
	Name   string
	DType  DType
	Shape  Shape   // dims of -1 are dynamic (sequence, batch)
	Tensor *Tensor // non-nil for constants (weights)
	Def    *Node   // producing node; nil for inputs and constants
}

// Node is one operation. Attrs hold op parameters (ints, floats, strings).
type Node struct {
	Name    string
	Op      string
	Inputs  []*Value
	Outputs []*Value
	Attrs   map[string]any
}

// Graph is a model: a DAG of nodes in topological order, over values, plus
// the table of weight tensors it references.
type Graph struct {
	Config  Config
	Inputs  []*Value
	Outputs []*Value
	Nodes   []*Node
	Tensors []*Tensor // sorted by name (SortTensors)
}

// OpInfo is the static description of an op in the op table.
type OpInfo struct {
	MinInputs, MaxInputs int // MaxInputs -1 = unbounded
	Outputs              int
	Doc                  string
}

// Ops is the op table: every node's Op must be here. Semantics are those of
// the reference executor (internal/exec), which the WGSL kernels match.
var Ops = map[string]OpInfo{
	"Embedding": {2, 2, 1, "Embedding(ids [T] i32, table [V, D]) -> [T, D]: row gather"},
	"RMSNorm":   {2, 2, 1, "RMSNorm(x [T, D], w [D]) -> x / sqrt(mean(x^2) + eps) * w; attr eps"},
	"Linear":    {2, 3, 1, "Linear(x [T, K], W [N, K], bias [N]?) -> x W^T + bias"},
	"RoPE":      {1, 1, 1, "RoPE(x [T, H*Dh]) rotate_half convention; attrs heads, head_dim, theta, scaling"},
	"Attention": {3, 3, 1, "Attention(q, k, v) causal, GQA, KV cache; attrs heads, kv_heads, head_dim, layer"},
	"SiLUMul":   {2, 2, 1, "SiLUMul(g, u) -> silu(g) * u"},
	"Add":       {2, 2, 1, "Add(a, b) -> a + b"},
	"Softmax":   {1, 1, 1, "Softmax over the last axis"},
	"Argmax":    {1, 1, 1, "Argmax over the last axis"},
}

// SortTensors sorts g.Tensors by name (the canonical order).
func (g *Graph) SortTensors() {
	sort.Slice(g.Tensors, func(i, j int) bool { return g.Tensors[i].Name < g.Tensors[j].Name })
}

// Tensor returns the tensor with the given name, or nil.
func (g *Graph) Tensor(name string) *Tensor {
	i := sort.Search(len(g.Tensors), func(i int) bool { return g.Tensors[i].Name >= name })
	if i < len(g.Tensors) && g.Tensors[i].Name == name {
		return g.Tensors[i]
	}
	for _, t := range g.Tensors { // tolerate unsorted tables; Check reports them
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Check verifies the graph's invariants: known ops with the right arity,
// unique value and tensor names, definition before use, constants naming
// tensors in the table, sorted tensor table, consistent shapes/dtypes of
// stored tensors, and quantization metadata pointing at existing tensors of
// the right sizes. It returns all problems joined, or nil.
func (g *Graph) Check() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	tensors := map[string]*Tensor{}
	for i, t := range g.Tensors {
		if t == nil {
			add("tensor %d is nil", i)
			continue
		}
		if _, dup := tensors[t.Name]; dup {
			add("tensor %q appears twice", t.Name)
		}
		tensors[t.Name] = t
		if i > 0 && g.Tensors[i-1] != nil && g.Tensors[i-1].Name > t.Name {
			add("tensor table not sorted at %q", t.Name)
		}
		if t.DType == Invalid {
			add("tensor %q has no dtype", t.Name)
		}
		for _, d := range t.Shape {
			if d < 0 {
				add("tensor %q has a dynamic dim in %v", t.Name, t.Shape)
			}
		}
		if _, err := t.Shape.ByteSize(t.DType); err != nil && t.DType != Invalid {
			add("tensor %q: %v", t.Name, err)
		}
	}
	for _, t := range g.Tensors {
		if t == nil || t.Quant == nil {
			continue
		}
		q := t.Quant
		if q.Bits != 4 && q.Bits != 8 {
			add("tensor %q: quant bits %d, want 4 or 8", t.Name, q.Bits)
		}
		if q.GroupSize < 0 || (q.GroupSize > 0 && q.Cols%int64(q.GroupSize) != 0) {
			add("tensor %q: group size %d does not divide cols %d", t.Name, q.GroupSize, q.Cols)
		}
		if s, ok := tensors[q.Scales]; !ok {
			add("tensor %q: scales tensor %q missing", t.Name, q.Scales)
		} else if s.DType != q.ScaleType {
			add("tensor %q: scales %q are %v, quant says %v", t.Name, q.Scales, s.DType, q.ScaleType)
		}
		if !q.Symmetric {
			if _, ok := tensors[q.Zeros]; !ok {
				add("tensor %q: asymmetric but zero-point tensor %q missing", t.Name, q.Zeros)
			}
		}
	}

	defined := map[string]bool{}
	define := func(v *Value, where string) {
		if v == nil {
			add("%s: nil value", where)
			return
		}
		if defined[v.Name] {
			add("%s: value %q defined twice", where, v.Name)
		}
		defined[v.Name] = true
	}
	for _, v := range g.Inputs {
		define(v, "graph input")
	}
	nodeNames := map[string]bool{}
	for i, n := range g.Nodes {
		where := fmt.Sprintf("node %d (%s %q)", i, n.Op, n.Name)
		if nodeNames[n.Name] {
			add("%s: duplicate node name", where)
		}
		nodeNames[n.Name] = true
		info, ok := Ops[n.Op]
		if !ok {
			add("%s: unknown op", where)
		} else {
			if len(n.Inputs) < info.MinInputs || (info.MaxInputs >= 0 && len(n.Inputs) > info.MaxInputs) {
				add("%s: %d inputs, want %d..%d", where, len(n.Inputs), info.MinInputs, info.MaxInputs)
			}
			if len(n.Outputs) != info.Outputs {
				add("%s: %d outputs, want %d", where, len(n.Outputs), info.Outputs)
			}
		}
		for _, in := range n.Inputs {
			if in == nil {
				add("%s: nil input", where)
				continue
			}
			if in.Tensor != nil {
				if tensors[in.Tensor.Name] != in.Tensor {
					add("%s: constant %q is not in the tensor table", where, in.Tensor.Name)
				}
				continue
			}
			if !defined[in.Name] {
				add("%s: input %q used before definition", where, in.Name)
			}
		}
		for _, out := range n.Outputs {
			define(out, where)
			if out != nil && out.Def != n {
				add("%s: output %q does not point back at its node", where, out.Name)
			}
		}
	}
	for _, v := range g.Outputs {
		if v == nil || !defined[v.Name] {
			add("graph output %v is not defined", v)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("ir: graph check failed:\n  %s", strings.Join(errs, "\n  "))
}
