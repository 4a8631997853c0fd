package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/smeltml/smelt/internal/ir"
)

// Graph is the serialized IR: graph inputs, the constants (values naming a
// tensor of the tensor table), nodes in topological order, and the names
// of the graph outputs. Node inputs and graph outputs refer to values by
// name; every name is defined once (an input, a constant or a node output)
// before it is used.
type Graph struct {
	Inputs    []Value  `json:"inputs"`
	Constants []Value  `json:"constants"`
	Nodes     []Node   `json:"nodes"`
	Outputs   []string `json:"outputs"`
}

// Value is a graph value. Dims of -1 are dynamic. Tensor is set (to a
// tensor table name) exactly for constants.
type Value struct {
	Name   string   `json:"name"`
	DType  ir.DType `json:"dtype"`
	Shape  ir.Shape `json:"shape"`
	Tensor string   `json:"tensor,omitempty"`
}

// Node is one operation (an op of ir.Ops).
type Node struct {
	Name    string          `json:"name"`
	Op      string          `json:"op"`
	Inputs  []string        `json:"inputs"`
	Outputs []Value         `json:"outputs"`
	Attrs   map[string]Attr `json:"attrs,omitempty"`
}

// Attr is a typed node attribute, serialized as a one-key object naming its
// type: {"int":8}, {"float":1e-05}, {"string":"silu"}, {"bool":true},
// {"ints":[1,2]}, {"floats":[0.5]}, {"strings":["a"]}. Go values map as:
// signed and unsigned integers → int, float32/float64 → float (finite
// only), and the slice forms likewise; decoding gives back int, float64,
// string, bool, []int, []float64 and []string.
type Attr struct {
	V any // one of int, float64, string, bool, []int, []float64, []string
}

// NewAttr converts a Go attribute value to an Attr.
func NewAttr(v any) (Attr, error) {
	switch x := v.(type) {
	case int:
		return Attr{x}, nil
	case int8:
		return Attr{int(x)}, nil
	case int16:
		return Attr{int(x)}, nil
	case int32:
		return Attr{int(x)}, nil
	case int64:
		return Attr{int(x)}, nil
	case uint8:
		return Attr{int(x)}, nil
	case uint16:
		return Attr{int(x)}, nil
	case uint32:
		return Attr{int(x)}, nil
	case float32:
		return NewAttr(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Attr{}, fmt.Errorf("non-finite float %v", x)
		}
		return Attr{x}, nil
	case string:
		return Attr{x}, nil
	case bool:
		return Attr{x}, nil
	case []int:
		return Attr{append([]int{}, x...)}, nil
	case []int64:
		out := make([]int, len(x))
		for i, e := range x {
			out[i] = int(e)
		}
		return Attr{out}, nil
	case []int32:
		out := make([]int, len(x))
		for i, e := range x {
			out[i] = int(e)
		}
		return Attr{out}, nil
	case []float64:
		for _, e := range x {
			if math.IsNaN(e) || math.IsInf(e, 0) {
				return Attr{}, fmt.Errorf("non-finite float %v", e)
			}
		}
		return Attr{append([]float64{}, x...)}, nil
	case []float32:
		out := make([]float64, len(x))
		for i, e := range x {
			out[i] = float64(e)
		}
		return NewAttr(out)
	case []string:
		return Attr{append([]string{}, x...)}, nil
	}
	return Attr{}, fmt.Errorf("unsupported attribute type %T", v)
}

var attrKinds = map[string]func(json.RawMessage) (any, error){
	"int":     func(b json.RawMessage) (any, error) { var v int; err := strictUnmarshal(b, &v); return v, err },
	"float":   func(b json.RawMessage) (any, error) { var v float64; err := strictUnmarshal(b, &v); return v, err },
	"string":  func(b json.RawMessage) (any, error) { var v string; err := strictUnmarshal(b, &v); return v, err },
	"bool":    func(b json.RawMessage) (any, error) { var v bool; err := strictUnmarshal(b, &v); return v, err },
	"ints":    func(b json.RawMessage) (any, error) { v := []int{}; err := strictUnmarshal(b, &v); return v, err },
	"floats":  func(b json.RawMessage) (any, error) { v := []float64{}; err := strictUnmarshal(b, &v); return v, err },
	"strings": func(b json.RawMessage) (any, error) { v := []string{}; err := strictUnmarshal(b, &v); return v, err },
}

func strictUnmarshal(b []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return fmt.Errorf("null attribute value")
	}
	return json.Unmarshal(b, v)
}

// MarshalJSON implements json.Marshaler.
func (a Attr) MarshalJSON() ([]byte, error) {
	var kind string
	switch x := a.V.(type) {
	case int:
		kind = "int"
	case float64:
		kind = "float"
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("non-finite float attribute %v", x)
		}
	case string:
		kind = "string"
	case bool:
		kind = "bool"
	case []int:
		kind = "ints"
	case []float64:
		kind = "floats"
	case []string:
		kind = "strings"
	default:
		return nil, fmt.Errorf("unsupported attribute type %T", a.V)
	}
	v := a.V
	switch x := v.(type) { // empty lists are [] rather than null
	case []int:
		if x == nil {
			v = []int{}
		}
	case []float64:
		if x == nil {
			v = []float64{}
		}
	case []string:
		if x == nil {
			v = []string{}
		}
	}
	return json.Marshal(map[string]any{kind: v})
}

// UnmarshalJSON implements json.Unmarshaler: exactly one known key.
func (a *Attr) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if len(m) != 1 {
		return fmt.Errorf("attribute must have exactly one type key, has %d", len(m))
	}
	for k, raw := range m {
		f, ok := attrKinds[k]
		if !ok {
			return fmt.Errorf("unknown attribute type %q", k)
		}
		v, err := f(raw)
		if err != nil {
			return fmt.Errorf("attribute of type %s: %w", k, err)
		}
		a.V = v
	}
	return nil
}

// FromIR serializes g's inputs, nodes and outputs. Constants are the
// distinct tensor-backed values used as node inputs, in first-use order.
func FromIR(g *ir.Graph) (Graph, error) {
	out := Graph{Inputs: []Value{}, Constants: []Value{}, Nodes: []Node{}, Outputs: []string{}}
	for _, v := range g.Inputs {
		if v == nil {
			return out, fmt.Errorf("manifest: graph has a nil input")
		}
		out.Inputs = append(out.Inputs, Value{Name: v.Name, DType: v.DType, Shape: v.Shape})
	}
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		sn := Node{Name: n.Name, Op: n.Op, Inputs: []string{}, Outputs: []Value{}}
		for _, in := range n.Inputs {
			if in == nil {
				return out, fmt.Errorf("manifest: node %q: nil input", n.Name)
			}
			if in.Tensor != nil && !seen[in.Name] {
				seen[in.Name] = true
				out.Constants = append(out.Constants, Value{Name: in.Name, DType: in.DType, Shape: in.Shape, Tensor: in.Tensor.Name})
			}
			sn.Inputs = append(sn.Inputs, in.Name)
		}
		for _, o := range n.Outputs {
			if o == nil {
				return out, fmt.Errorf("manifest: node %q: nil output", n.Name)
			}
			sn.Outputs = append(sn.Outputs, Value{Name: o.Name, DType: o.DType, Shape: o.Shape})
		}
		if len(n.Attrs) > 0 {
			sn.Attrs = make(map[string]Attr, len(n.Attrs))
			for k, v := range n.Attrs {
				a, err := NewAttr(v)
				if err != nil {
					return out, fmt.Errorf("manifest: node %q: attribute %q: %w", n.Name, k, err)
				}
				sn.Attrs[k] = a
			}
		}
		out.Nodes = append(out.Nodes, sn)
	}
	for _, v := range g.Outputs {
		if v == nil {
			return out, fmt.Errorf("manifest: graph has a nil output")
		}
		out.Outputs = append(out.Outputs, v.Name)
	}
	return out, nil
}

// Build fills g.Inputs, g.Nodes and g.Outputs from the serialized graph,
// resolving constants against g's tensor table (which must be filled).
func (gr *Graph) Build(g *ir.Graph) error {
	tensors := make(map[string]*ir.Tensor, len(g.Tensors))
	names := make(map[string]bool, len(g.Tensors))
	for _, t := range g.Tensors {
		tensors[t.Name] = t
		names[t.Name] = true
	}
	if err := gr.check(names); err != nil {
		return err
	}
	values := map[string]*ir.Value{}
	g.Inputs, g.Nodes, g.Outputs = nil, nil, nil
	for _, v := range gr.Inputs {
		iv := &ir.Value{Name: v.Name, DType: v.DType, Shape: v.Shape}
		values[v.Name] = iv
		g.Inputs = append(g.Inputs, iv)
	}
	for _, v := range gr.Constants {
		values[v.Name] = &ir.Value{Name: v.Name, DType: v.DType, Shape: v.Shape, Tensor: tensors[v.Tensor]}
	}
	for _, n := range gr.Nodes {
		in := &ir.Node{Name: n.Name, Op: n.Op}
		for _, name := range n.Inputs {
			in.Inputs = append(in.Inputs, values[name])
		}
		for _, o := range n.Outputs {
			ov := &ir.Value{Name: o.Name, DType: o.DType, Shape: o.Shape, Def: in}
			values[o.Name] = ov
			in.Outputs = append(in.Outputs, ov)
		}
		if len(n.Attrs) > 0 {
			in.Attrs = make(map[string]any, len(n.Attrs))
			for k, a := range n.Attrs {
				in.Attrs[k] = a.V
			}
		}
		g.Nodes = append(g.Nodes, in)
	}
	for _, name := range gr.Outputs {
		g.Outputs = append(g.Outputs, values[name])
	}
	return nil
}

// check verifies names: each defined once, defined before use, constants
// naming tensors, outputs defined.
func (gr *Graph) check(tensors map[string]bool) error {
	defined := map[string]bool{}
	def := func(v Value, where string) error {
		if v.Name == "" {
			return fmt.Errorf("manifest: graph: %s: value with an empty name", where)
		}
		if defined[v.Name] {
			return fmt.Errorf("manifest: graph: %s: value %q defined twice", where, v.Name)
		}
		defined[v.Name] = true
		return nil
	}
	for _, v := range gr.Inputs {
		if err := def(v, "input"); err != nil {
			return err
		}
		if v.Tensor != "" {
			return fmt.Errorf("manifest: graph: input %q names a tensor", v.Name)
		}
	}
	for _, v := range gr.Constants {
		if err := def(v, "constant"); err != nil {
			return err
		}
		if !tensors[v.Tensor] {
			return fmt.Errorf("manifest: graph: constant %q names tensor %q, which is not in the tensor table", v.Name, v.Tensor)
		}
	}
	nodes := map[string]bool{}
	for i, n := range gr.Nodes {
		where := fmt.Sprintf("node %d (%s %q)", i, n.Op, n.Name)
		if nodes[n.Name] {
			return fmt.Errorf("manifest: graph: %s: duplicate node name", where)
		}
		nodes[n.Name] = true
		for _, in := range n.Inputs {
			if !defined[in] {
				return fmt.Errorf("manifest: graph: %s: input %q used before definition", where, in)
			}
		}
		for _, o := range n.Outputs {
			if err := def(o, where); err != nil {
				return err
			}
			if o.Tensor != "" {
				return fmt.Errorf("manifest: graph: %s: output %q names a tensor", where, o.Name)
			}
		}
		keys := make([]string, 0, len(n.Attrs))
		for k := range n.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if _, err := n.Attrs[k].MarshalJSON(); err != nil {
				return fmt.Errorf("manifest: graph: %s: attribute %q: %w", where, k, err)
			}
		}
	}
	for _, name := range gr.Outputs {
		if !defined[name] {
			return fmt.Errorf("manifest: graph: output %q is not defined", name)
		}
	}
	return nil
}
