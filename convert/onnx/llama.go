package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// MapLlama recognizes a Llama decoder in an ONNX graph and maps its
// initializers onto smelt's canonical tensors (internal/ir/names.go).
// The graph must be what torch.onnx.export makes of a Hugging Face
// convention Llama forward without KV cache (input_ids [batch, sequence]
// int64 → logits [batch, sequence, vocab]), as
// ../shared/models/stories260K-onnx/model.onnx is. cfg carries the
// hyper-parameters, which the graph does not state in one place (they come
// from the config.json beside the model); every one the graph fixes is
// checked against it. The returned Config equals cfg except
// TieWordEmbeddings, which follows the graph: true only when the head
// MatMul reads the embedding initializer through a Transpose, false when
// the graph holds its own head matrix (the stories260K export does, although
// its config.json says tied, because the exporter stores the head as a
// separate transposed copy).
//
// The walk follows the residual stream from the embedding Gather on the
// graph input and, per block, requires exactly:
//
//	RMSNorm      Pow(h, 2) → ReduceMean(axes=[-1], keepdims) → Add(eps) → Sqrt →
//	             Div(1, ·) → Mul(h, ·) [→ Cast] → Mul(·, norm weight initializer)
//	             (or Reciprocal, or Div(h, ·)); eps = config.json rms_norm_eps in f32
//	q, k, v      three MatMuls of the normed x by [hidden, out] initializers,
//	             in node order, each → Reshape [*, *, heads, head_dim] →
//	             Transpose [0 2 1 3]
//	RoPE (q, k)  Add(Mul(t, cos), Mul(Concat(Neg(Slice(t, d/2:)), Slice(t, :d/2)), sin))
//	             on the last axis: HF's rotate_half convention (a llama2.c /
//	             GPT-J interleaved rotation has no such Concat and is refused);
//	             cos/sin = Cos/Sin of Concat(f, f) with f = positions ⊗ inv_freq,
//	             positions = Range(0, sequence, 1) and inv_freq a constant equal
//	             to theta^(-2i/head_dim) for config.json's rope_theta (rel. 1e-5)
//	repeat_kv    k, v reach the attention MatMuls through at most Unsqueeze
//	             (axis 2) → Expand → Reshape, so query head j reads kv head
//	             j / (heads/kv_heads), as HF's repeat_kv does
//	attention    MatMul(q_rot, Transpose_{[0 1 3 2]}(k)) → Div by sqrt(head_dim)
//	             (or Mul by its inverse) → Add(causal mask: Trilu(upper, k=1) of a
//	             -inf/-1e9 constant) → Softmax(axis -1) → MatMul(·, v) →
//	             Transpose [0 2 1 3] → Reshape → MatMul by the o initializer →
//	             Add to h
//	MLP          RMSNorm → two MatMuls (gate feeds Sigmoid and Mul(gate, Sigmoid(gate)),
//	             up the other) → Mul(silu, up) → MatMul by down → Add to h
//
// and after num_hidden_layers blocks a final RMSNorm and one MatMul whose
// result is the graph's only output. Casts to float and Identity nodes on
// the stream are skipped. Anything else — another consumer of a stream
// value, an op outside the ai.onnx set the pattern uses (a fused com.microsoft
// op, LayerNormalization, Gelu, ...), an initializer no pattern reads, a
// shape or constant that disagrees with cfg — is an error naming the node.
//
// The q/k rows need no permutation: with the rotate_half rotation, the
// transposed MatMul weights are HF's q_proj/k_proj, which is smelt's
// layout. Weights are stored [in, out] (MatMul right operands); each
// canonical linear tensor gets a lazy Transpose transform to [out, in].
//
// What is assumed, not checked: the batch and sequence entries of the
// Reshape targets and the Expand shape of repeat_kv (they are computed from
// Shape nodes at run time); that the mask's ConstantOfShape covers
// [sequence, sequence].
func MapLlama(m *Model, cfg ir.Config) (*arch.Mapping, ir.Config, error) {
	file := "model.onnx"
	if len(m.Inventory.Files) > 0 {
		file = m.Inventory.Files[0]
	}
	v, err := newGraphView(file, m)
	if err != nil {
		return nil, cfg, err
	}
	if cfg.AttentionBias || cfg.MLPBias {
		return nil, cfg, v.errorf(nil, "config.json asks for attention or MLP biases; the ONNX Llama pattern has none")
	}
	if cfg.RopeScaling != nil {
		return nil, cfg, v.errorf(nil, "config.json has rope_scaling %q; ONNX import supports plain RoPE only", cfg.RopeScaling.Type)
	}
	w := &llamaWalk{graphView: v, cfg: cfg, m: &arch.Mapping{Source: map[string]string{}, Unused: map[string]string{}}}
	if err := w.run(); err != nil {
		return nil, cfg, err
	}
	return w.m, w.cfg, nil
}

// allowedOps are the ai.onnx ops a recognized graph may contain (the
// pattern's ops plus the shape arithmetic around them), with their input
// counts [min, max] (every op has exactly one output).
var allowedOps = map[string][2]int{
	"Add": {2, 2}, "Cast": {1, 1}, "Concat": {1, 1 << 10}, "Constant": {0, 0}, "ConstantOfShape": {1, 1}, "Cos": {1, 1},
	"Div": {2, 2}, "Einsum": {1, 1 << 10}, "Equal": {2, 2}, "Expand": {2, 2}, "Gather": {2, 2}, "Identity": {1, 1},
	"MatMul": {2, 2}, "Mul": {2, 2}, "Neg": {1, 1}, "Pow": {2, 2}, "Range": {3, 3}, "Reciprocal": {1, 1},
	"ReduceMean": {1, 2}, "Reshape": {2, 2}, "Shape": {1, 1}, "Sigmoid": {1, 1}, "Sin": {1, 1}, "Slice": {3, 5},
	"Softmax": {1, 1}, "Sqrt": {1, 1}, "Squeeze": {1, 2}, "Sub": {2, 2}, "Transpose": {1, 1}, "Trilu": {1, 2},
	"Unsqueeze": {1, 2}, "Where": {3, 3},
}

// dyn marks a dimension or integer only known at run time.
const dyn = math.MinInt64

type graphView struct {
	file     string
	g        *onnxpb.GraphProto
	inv      *tensorfile.Inventory
	producer map[string]*onnxpb.NodeProto
	index    map[*onnxpb.NodeProto]int
	users    map[string][]*onnxpb.NodeProto
	shapes   map[string][]int64 // static shapes of some values (dyn entries)
	outputs  map[string]bool
	usedInit map[string]bool    // initializers a recognized pattern reads
	intsMemo map[string][]int64 // evaluated shape arithmetic (successes only)
}

func newGraphView(file string, m *Model) (*graphView, error) {
	g := m.Proto.GetGraph()
	v := &graphView{file: file, g: g, inv: m.Inventory, producer: map[string]*onnxpb.NodeProto{},
		index: map[*onnxpb.NodeProto]int{}, users: map[string][]*onnxpb.NodeProto{},
		shapes: map[string][]int64{}, outputs: map[string]bool{}, usedInit: map[string]bool{}, intsMemo: map[string][]int64{}}
	known := map[string]bool{}
	for _, e := range m.Inventory.Entries {
		known[e.Name] = true
	}
	for _, in := range g.GetInput() {
		known[in.GetName()] = true
		if tt := in.GetType().GetTensorType(); tt != nil && tt.GetShape() != nil {
			var dims []int64
			for _, d := range tt.GetShape().GetDim() {
				if x, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
					dims = append(dims, x.DimValue)
				} else {
					dims = append(dims, dyn)
				}
			}
			v.shapes[in.GetName()] = dims
		}
	}
	for i, n := range g.GetNode() {
		v.index[n] = i
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			return nil, v.errorf(n, "op %s.%s is not part of the Llama pattern smelt recognizes (a graph with fused or contrib ops cannot be mapped; export the plain torch model)", n.GetDomain(), n.GetOpType())
		}
		arity, ok := allowedOps[n.GetOpType()]
		if !ok {
			return nil, v.errorf(n, "op %s is not part of the Llama pattern smelt recognizes", n.GetOpType())
		}
		if k := len(n.GetInput()); k < arity[0] || k > arity[1] || len(n.GetOutput()) != 1 {
			return nil, v.errorf(n, "%d inputs and %d outputs, want %d to %d inputs and one output", k, len(n.GetOutput()), arity[0], arity[1])
		}
		for j, in := range n.GetInput() {
			if in == "" {
				if j == 0 || n.GetOpType() != "Slice" && n.GetOpType() != "Trilu" && n.GetOpType() != "ReduceMean" && n.GetOpType() != "Squeeze" && n.GetOpType() != "Unsqueeze" {
					return nil, v.errorf(n, "input %d is empty", j)
				}
				continue
			}
			if !known[in] {
				return nil, v.errorf(n, "input %q is used before it is defined (nodes must be in topological order)", in)
			}
			v.users[in] = append(v.users[in], n)
		}
		for _, out := range n.GetOutput() {
			if out == "" {
				return nil, v.errorf(n, "output has no name")
			}
			if known[out] {
				return nil, v.errorf(n, "output %q is defined twice", out)
			}
			known[out] = true
			v.producer[out] = n
		}
	}
	for _, o := range g.GetOutput() {
		v.outputs[o.GetName()] = true
	}
	return v, nil
}

func nodeName(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return strings.Join(n.GetOutput(), ",")
}

// errorf formats an error naming the file and, when n is not nil, the node.
func (v *graphView) errorf(n *onnxpb.NodeProto, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if n == nil {
		return fmt.Errorf("convert: %s: %s", v.file, msg)
	}
	return fmt.Errorf("convert: %s: node %q (%s): %s", v.file, nodeName(n), n.GetOpType(), msg)
}

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func (v *graphView) init(name string) *tensorfile.Entry { return v.inv.Lookup(name) }

// passCast reports whether n only converts to float32 or copies.
func passCast(n *onnxpb.NodeProto) bool {
	if n == nil {
		return false
	}
	switch n.GetOpType() {
	case "Identity":
		return true
	case "Cast":
		return attrInt(n, "to", 0) == int64(onnxpb.TensorProto_FLOAT)
	}
	return false
}

// fwd follows v's value forward through single-user Casts to float and
// Identity nodes.
func (v *graphView) fwd(x string) string {
	for {
		us := v.users[x]
		if len(us) != 1 || !passCast(us[0]) || v.outputs[x] {
			return x
		}
		x = us[0].GetOutput()[0]
	}
}

// back follows x backward through Casts to float and Identity nodes.
func (v *graphView) back(x string) string {
	for {
		p := v.producer[x]
		if !passCast(p) {
			return x
		}
		x = p.GetInput()[0]
	}
}

// only returns the single user of x, which must have op type op.
func (v *graphView) only(x string, op string) (*onnxpb.NodeProto, error) {
	us := v.users[x]
	if len(us) != 1 {
		var names []string
		for _, u := range us {
			names = append(names, fmt.Sprintf("%q (%s)", nodeName(u), u.GetOpType()))
		}
		p := v.producer[x]
		if p == nil {
			return nil, v.errorf(nil, "value %q: %d users [%s], want one %s", x, len(us), strings.Join(names, ", "), op)
		}
		return nil, v.errorf(p, "output %q: %d users [%s], want one %s", x, len(us), strings.Join(names, ", "), op)
	}
	if us[0].GetOpType() != op {
		return nil, v.errorf(us[0], "found where the pattern needs %s (reading %q)", op, x)
	}
	return us[0], nil
}

// other returns the input of binary node n that is not x (after back), or
// an error when x is not one of its inputs.
func (v *graphView) other(n *onnxpb.NodeProto, x string) (string, error) {
	in := n.GetInput()
	if len(in) != 2 {
		return "", v.errorf(n, "%d inputs, want 2", len(in))
	}
	switch {
	case in[0] == x || v.back(in[0]) == x:
		return in[1], nil
	case in[1] == x || v.back(in[1]) == x:
		return in[0], nil
	}
	return "", v.errorf(n, "does not read %q", x)
}

// tensorValues decodes a small constant tensor to float64 values.
func tensorValues(t *onnxpb.TensorProto) ([]float64, error) {
	n := int64(1)
	for _, d := range t.GetDims() {
		n *= d
	}
	if n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("constant of %d elements, want at most 65536", n)
	}
	raw := t.GetRawData()
	out := make([]float64, 0, n)
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_FLOAT:
		if raw != nil {
			for i := 0; i+4 <= len(raw); i += 4 {
				out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))))
			}
		} else {
			for _, f := range t.GetFloatData() {
				out = append(out, float64(f))
			}
		}
	case onnxpb.TensorProto_DOUBLE:
		if raw != nil {
			for i := 0; i+8 <= len(raw); i += 8 {
				out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
			}
		} else {
			out = append(out, t.GetDoubleData()...)
		}
	case onnxpb.TensorProto_FLOAT16:
		if raw != nil {
			for i := 0; i+2 <= len(raw); i += 2 {
				out = append(out, float64(ir.F16ToF32(binary.LittleEndian.Uint16(raw[i:]))))
			}
		} else {
			for _, h := range t.GetInt32Data() {
				out = append(out, float64(ir.F16ToF32(uint16(h))))
			}
		}
	case onnxpb.TensorProto_INT64:
		if raw != nil {
			for i := 0; i+8 <= len(raw); i += 8 {
				out = append(out, float64(int64(binary.LittleEndian.Uint64(raw[i:]))))
			}
		} else {
			for _, x := range t.GetInt64Data() {
				out = append(out, float64(x))
			}
		}
	case onnxpb.TensorProto_INT32:
		if raw != nil {
			for i := 0; i+4 <= len(raw); i += 4 {
				out = append(out, float64(int32(binary.LittleEndian.Uint32(raw[i:]))))
			}
		} else {
			for _, x := range t.GetInt32Data() {
				out = append(out, float64(x))
			}
		}
	default:
		return nil, fmt.Errorf("constant of element type %d, want a float or int type", t.GetDataType())
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("constant holds %d values, want %d", len(out), n)
	}
	return out, nil
}

// tensorInts decodes a small integer constant exactly.
func tensorInts(t *onnxpb.TensorProto) ([]int64, error) {
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_INT64:
		if raw := t.GetRawData(); raw != nil {
			if len(raw) > 8<<16 {
				return nil, fmt.Errorf("integer constant of %d bytes is too large", len(raw))
			}
			out := make([]int64, len(raw)/8)
			for i := range out {
				out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
			return out, nil
		}
		return t.GetInt64Data(), nil
	case onnxpb.TensorProto_INT32:
		vals, err := tensorValues(t)
		out := make([]int64, len(vals))
		for i, x := range vals {
			out[i] = int64(x)
		}
		return out, err
	}
	return nil, fmt.Errorf("constant of element type %d, want int64 or int32", t.GetDataType())
}

// floats returns the values of a constant float (or int) value: a Constant
// node or a small initializer, seen through Casts.
func (v *graphView) floats(x string) ([]float64, error) {
	x = v.back(x)
	if e := v.init(x); e != nil {
		if n, _ := e.Shape.NumElements(); n > 1<<16 {
			return nil, fmt.Errorf("initializer %q has %d elements; want a small constant", x, n)
		}
		v.usedInit[x] = true
		b, err := e.Source.Bytes()
		if err != nil {
			return nil, err
		}
		f, err := ir.DecodeFloat32(e.DType, b)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %v", x, err)
		}
		out := make([]float64, len(f))
		for i, y := range f {
			out[i] = float64(y)
		}
		return out, nil
	}
	p := v.producer[x]
	if p == nil || p.GetOpType() != "Constant" {
		return nil, fmt.Errorf("value %q is not a constant", x)
	}
	for _, a := range p.GetAttribute() {
		switch a.GetName() {
		case "value":
			return tensorValues(a.GetT())
		case "value_float":
			return []float64{float64(a.GetF())}, nil
		case "value_floats":
			var out []float64
			for _, f := range a.GetFloats() {
				out = append(out, float64(f))
			}
			return out, nil
		case "value_int":
			return []float64{float64(a.GetI())}, nil
		}
	}
	return nil, fmt.Errorf("constant %q has no value attribute smelt reads", nodeName(p))
}

// scalar returns the single value of a constant.
func (v *graphView) scalar(x string) (float64, error) {
	f, err := v.floats(x)
	if err != nil {
		return 0, err
	}
	if len(f) != 1 {
		return 0, fmt.Errorf("value %q holds %d values, want one", x, len(f))
	}
	return f[0], nil
}

// ints evaluates an integer (shape arithmetic) value. Entries unknown
// until run time (batch, sequence) are dyn.
func (v *graphView) ints(x string) ([]int64, error) {
	return v.evalInts(x, 0)
}

// evalInts memoizes successful evaluations, so that a graph reusing values
// (Add(x, x) chains) costs one evaluation per node.
func (v *graphView) evalInts(x string, depth int) ([]int64, error) {
	if r, ok := v.intsMemo[x]; ok {
		return r, nil
	}
	r, err := v.evalIntsOnce(x, depth)
	if err == nil {
		if len(r) > 1<<16 {
			return nil, fmt.Errorf("value %q: %d integers in shape arithmetic, want at most 65536", x, len(r))
		}
		v.intsMemo[x] = r
	}
	return r, err
}

func (v *graphView) evalIntsOnce(x string, depth int) ([]int64, error) {
	if depth > 64 {
		return nil, fmt.Errorf("value %q: shape arithmetic nested too deeply", x)
	}
	if e := v.init(x); e != nil {
		f, err := v.floats(x)
		out := make([]int64, len(f))
		for i, y := range f {
			out[i] = int64(y)
		}
		return out, err
	}
	p := v.producer[x]
	if p == nil {
		return nil, fmt.Errorf("value %q is not computable from constants and shapes", x)
	}
	in := p.GetInput()
	arg := func(i int) ([]int64, error) {
		if i >= len(in) || in[i] == "" {
			return nil, v.errorf(p, "input %d missing", i)
		}
		return v.evalInts(in[i], depth+1)
	}
	switch p.GetOpType() {
	case "Constant":
		if a := attr(p, "value"); a != nil {
			return tensorInts(a.GetT())
		}
		if a := attr(p, "value_ints"); a != nil {
			return a.GetInts(), nil
		}
		if a := attr(p, "value_int"); a != nil {
			return []int64{a.GetI()}, nil
		}
		return nil, v.errorf(p, "no integer value")
	case "Shape":
		s, ok := v.shapes[in[0]]
		if !ok {
			return nil, v.errorf(p, "shape of %q is not known statically", in[0])
		}
		lo, hi := attrInt(p, "start", 0), attrInt(p, "end", int64(len(s)))
		r := int64(len(s))
		if lo < 0 {
			lo += r
		}
		if hi < 0 {
			hi += r
		}
		lo, hi = max(0, min(lo, r)), max(0, min(hi, r))
		if lo > hi {
			lo = hi
		}
		return append([]int64(nil), s[lo:hi]...), nil
	case "Cast", "Identity", "Unsqueeze", "Squeeze":
		if p.GetOpType() == "Cast" {
			switch onnxpb.TensorProto_DataType(attrInt(p, "to", 0)) {
			case onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT32:
			default:
				return nil, v.errorf(p, "cast to element type %d in shape arithmetic", attrInt(p, "to", 0))
			}
		}
		// Values are kept flat: (un)squeezing a scalar or vector keeps them.
		return arg(0)
	case "Gather":
		data, err := arg(0)
		if err != nil {
			return nil, err
		}
		idx, err := arg(1)
		if err != nil {
			return nil, err
		}
		if attrInt(p, "axis", 0) != 0 {
			return nil, v.errorf(p, "gather on axis %d in shape arithmetic", attrInt(p, "axis", 0))
		}
		var out []int64
		for _, i := range idx {
			if i < 0 {
				i += int64(len(data))
			}
			if i < 0 || i >= int64(len(data)) {
				return nil, v.errorf(p, "index %d outside %d values", i, len(data))
			}
			out = append(out, data[i])
		}
		return out, nil
	case "Concat":
		var out []int64
		for i := range in {
			a, err := arg(i)
			if err != nil {
				return nil, err
			}
			if out = append(out, a...); len(out) > 1<<16 {
				return nil, v.errorf(p, "more than 65536 integers in shape arithmetic")
			}
		}
		return out, nil
	case "Add", "Sub", "Mul", "Div":
		a, err := arg(0)
		if err != nil {
			return nil, err
		}
		b, err := arg(1)
		if err != nil {
			return nil, err
		}
		n := max(len(a), len(b))
		if (len(a) != n && len(a) != 1) || (len(b) != n && len(b) != 1) {
			return nil, v.errorf(p, "operands of %d and %d values", len(a), len(b))
		}
		out := make([]int64, n)
		for i := range out {
			x, y := a[min(i, len(a)-1)], b[min(i, len(b)-1)]
			if x == dyn || y == dyn {
				out[i] = dyn
				continue
			}
			switch p.GetOpType() {
			case "Add":
				out[i] = x + y
			case "Sub":
				out[i] = x - y
			case "Mul":
				out[i] = x * y
			case "Div":
				if y == 0 {
					return nil, v.errorf(p, "division by zero")
				}
				out[i] = x / y
			}
		}
		return out, nil
	}
	return nil, v.errorf(p, "cannot evaluate %s in shape arithmetic", p.GetOpType())
}

// llamaWalk is the state of one MapLlama call.
type llamaWalk struct {
	*graphView
	cfg     ir.Config
	m       *arch.Mapping
	freqsOK map[string]bool // cos/sin sources already checked
}

// linearTensor records a MatMul weight initializer (stored [in, out]) as
// canonical tensor name ([out, in], transposed lazily).
func (w *llamaWalk) linearTensor(name, src string, in, out int) error {
	e := w.init(src)
	if e == nil {
		return w.errorf(nil, "%s: %q is not an initializer", name, src)
	}
	if !e.Shape.Equal(ir.Shape{int64(in), int64(out)}) {
		return w.errorf(nil, "initializer %q (%s): shape %v, config.json implies [%d %d] ([in, out])", src, name, e.Shape, in, out)
	}
	if !e.DType.IsFloat() {
		return w.errorf(nil, "initializer %q (%s): dtype %v, want a float type", src, name, e.DType)
	}
	w.addTensor(&ir.Tensor{Name: name, DType: e.DType, Shape: ir.Shape{int64(out), int64(in)}, Source: e.Source,
		SrcDType: e.DType, SrcShape: e.Shape, Transforms: []ir.Transform{Transpose{}}}, src)
	return nil
}

func (w *llamaWalk) addTensor(t *ir.Tensor, src string) {
	w.m.Tensors = append(w.m.Tensors, t)
	w.m.Source[t.Name] = src
	w.usedInit[src] = true
}

// vectorTensor records a [n] float initializer as canonical tensor name.
func (w *llamaWalk) vectorTensor(name, src string, n int) error {
	e := w.init(src)
	if e == nil {
		return w.errorf(nil, "%s: %q is not an initializer", name, src)
	}
	if !e.Shape.Equal(ir.Shape{int64(n)}) || !e.DType.IsFloat() {
		return w.errorf(nil, "initializer %q (%s): %v %v, want a float vector [%d]", src, name, e.DType, e.Shape, n)
	}
	w.addTensor(&ir.Tensor{Name: name, DType: e.DType, Shape: e.Shape, Source: e.Source, SrcDType: e.DType, SrcShape: e.Shape}, src)
	return nil
}

func (w *llamaWalk) run() error {
	w.freqsOK = map[string]bool{}
	cfg := w.cfg
	d := cfg.HiddenSize
	// Graph input and embedding.
	var ids string
	for _, in := range w.g.GetInput() {
		if w.init(in.GetName()) == nil {
			if ids != "" {
				return w.errorf(nil, "graph inputs %q and %q: want input_ids only (no attention mask, position ids or KV cache)", ids, in.GetName())
			}
			ids = in.GetName()
		}
	}
	if ids == "" {
		return w.errorf(nil, "graph has no input")
	}
	if s := w.shapes[ids]; len(s) != 2 {
		return w.errorf(nil, "graph input %q has shape %v, want [batch, sequence]", ids, s)
	}
	if len(w.g.GetOutput()) != 1 {
		return w.errorf(nil, "graph has %d outputs, want one (logits)", len(w.g.GetOutput()))
	}
	var emb *onnxpb.NodeProto
	for _, u := range w.users[ids] {
		switch {
		case u.GetOpType() == "Shape":
		case u.GetOpType() == "Gather" && len(u.GetInput()) == 2 && u.GetInput()[1] == ids && w.init(u.GetInput()[0]) != nil && attrInt(u, "axis", 0) == 0 && emb == nil:
			emb = u
		default:
			return w.errorf(u, "reads the input %q; want only the embedding Gather (and Shape)", ids)
		}
	}
	if emb == nil {
		return w.errorf(nil, "no embedding Gather(initializer, %q) found", ids)
	}
	embName := emb.GetInput()[0]
	if e := w.init(embName); !e.Shape.Equal(ir.Shape{int64(cfg.VocabSize), int64(d)}) || !e.DType.IsFloat() {
		return w.errorf(emb, "embedding %q is %v %v, config.json implies a float [%d %d]", embName, e.DType, e.Shape, cfg.VocabSize, d)
	}
	e := w.init(embName)
	w.addTensor(&ir.Tensor{Name: ir.TokenEmbedding, DType: e.DType, Shape: e.Shape, Source: e.Source, SrcDType: e.DType, SrcShape: e.Shape}, embName)
	h := w.fwd(emb.GetOutput()[0])
	w.shapes[h] = []int64{dyn, dyn, int64(d)}

	for i := 0; i < cfg.NumLayers; i++ {
		next, err := w.block(i, h)
		if err != nil {
			return fmt.Errorf("%w (block %d)", err, i)
		}
		h = next
	}
	// Final norm and head.
	x, users, err := w.rmsnorm(h, ir.OutputNorm)
	if err != nil {
		return fmt.Errorf("%w (final norm)", err)
	}
	if len(w.users[h]) == 3 {
		if _, err := w.matmuls(x, 3, "q, k, v"); err == nil {
			return w.errorf(w.producer[h], "the graph has another decoder block after %d; config.json num_hidden_layers is %d", cfg.NumLayers, cfg.NumLayers)
		}
	}
	if err := w.onlyUsers(h, users); err != nil {
		return fmt.Errorf("%w (final norm)", err)
	}
	head, err := w.only(x, "MatMul")
	if err != nil {
		return fmt.Errorf("%w (lm_head)", err)
	}
	if head.GetInput()[0] != x {
		return w.errorf(head, "reads the normed hidden state as its right operand")
	}
	wname := head.GetInput()[1]
	if w.init(wname) != nil {
		if err := w.linearTensor(ir.Output, wname, d, cfg.VocabSize); err != nil {
			return err
		}
		w.cfg.TieWordEmbeddings = false
	} else if p := w.producer[w.back(wname)]; p != nil && p.GetOpType() == "Transpose" && p.GetInput()[0] == embName && isPerm(attr(p, "perm"), 1, 0) {
		w.cfg.TieWordEmbeddings = true
	} else {
		return w.errorf(head, "head weight %q is neither an initializer nor the transposed embedding", wname)
	}
	logits := w.fwd(head.GetOutput()[0])
	if !w.outputs[logits] {
		return w.errorf(head, "its result %q is not the graph output %q", logits, w.g.GetOutput()[0].GetName())
	}
	if n := len(w.users[logits]); n != 0 {
		return w.errorf(head, "the logits %q have %d further users", logits, n)
	}
	// Every initializer must have a role.
	for _, e := range w.inv.Entries {
		if !w.usedInit[e.Name] {
			return w.errorf(nil, "initializer %q (%v %v) is not part of the recognized Llama pattern", e.Name, e.DType, e.Shape)
		}
	}
	sort.Slice(w.m.Tensors, func(i, j int) bool { return w.m.Tensors[i].Name < w.m.Tensors[j].Name })
	return nil
}

func isPerm(a *onnxpb.AttributeProto, perm ...int64) bool {
	if a == nil || len(a.GetInts()) != len(perm) {
		return false
	}
	for i, p := range a.GetInts() {
		if p != perm[i] {
			return false
		}
	}
	return true
}

// onlyUsers checks that x has exactly the users in want.
func (w *llamaWalk) onlyUsers(x string, want []*onnxpb.NodeProto) error {
	ok := map[*onnxpb.NodeProto]bool{}
	for _, n := range want {
		ok[n] = true
	}
	for _, u := range w.users[x] {
		if !ok[u] {
			return w.errorf(u, "reads the hidden state %q outside the Llama pattern", x)
		}
	}
	if len(w.users[x]) != len(want) {
		return w.errorf(w.producer[x], "output %q has %d users, want %d", x, len(w.users[x]), len(want))
	}
	return nil
}

// rmsnorm matches the RMSNorm pattern on the stream value h and records
// its weight as canonical tensor name. It returns the normed value and the
// nodes reading h.
func (w *llamaWalk) rmsnorm(h, name string) (string, []*onnxpb.NodeProto, error) {
	var pow *onnxpb.NodeProto
	for _, u := range w.users[h] {
		if u.GetOpType() == "Pow" && u.GetInput()[0] == h {
			if pow != nil {
				return "", nil, w.errorf(u, "second Pow of %q", h)
			}
			pow = u
		}
	}
	if pow == nil {
		return "", nil, w.errorf(w.producer[h], "no RMSNorm Pow(%q, 2) found for %s", h, name)
	}
	if e, err := w.scalar(pow.GetInput()[1]); err != nil || e != 2 {
		return "", nil, w.errorf(pow, "exponent %v (%v), want 2", e, err)
	}
	rm, err := w.only(pow.GetOutput()[0], "ReduceMean")
	if err != nil {
		return "", nil, err
	}
	axes := []int64{}
	if a := attr(rm, "axes"); a != nil {
		axes = a.GetInts()
	} else if len(rm.GetInput()) > 1 {
		if axes, err = w.ints(rm.GetInput()[1]); err != nil {
			return "", nil, err
		}
	}
	if len(axes) != 1 || (axes[0] != -1 && axes[0] != 2) || attrInt(rm, "keepdims", 1) != 1 {
		return "", nil, w.errorf(rm, "axes %v keepdims %d, want [-1] and 1", axes, attrInt(rm, "keepdims", 1))
	}
	add, err := w.only(w.fwd(rm.GetOutput()[0]), "Add")
	if err != nil {
		return "", nil, err
	}
	epsV, err := w.other(add, w.fwd(rm.GetOutput()[0]))
	if err != nil {
		return "", nil, err
	}
	eps, err := w.scalar(epsV)
	if err != nil {
		return "", nil, w.errorf(add, "epsilon: %v", err)
	}
	if float32(eps) != float32(w.cfg.RMSNormEps) {
		return "", nil, w.errorf(add, "RMSNorm epsilon %g, config.json rms_norm_eps is %g", float32(eps), w.cfg.RMSNormEps)
	}
	sq, err := w.only(add.GetOutput()[0], "Sqrt")
	if err != nil {
		return "", nil, err
	}
	us := w.users[sq.GetOutput()[0]]
	if len(us) != 1 {
		return "", nil, w.errorf(sq, "%d users, want one", len(us))
	}
	var scaled string
	var reader *onnxpb.NodeProto // the node reading h
	switch u := us[0]; {
	case u.GetOpType() == "Div" && u.GetInput()[1] == sq.GetOutput()[0] && u.GetInput()[0] == h:
		scaled, reader = u.GetOutput()[0], u
	case u.GetOpType() == "Div" && u.GetInput()[1] == sq.GetOutput()[0], u.GetOpType() == "Reciprocal":
		if u.GetOpType() == "Div" {
			if one, err := w.scalar(u.GetInput()[0]); err != nil || one != 1 {
				return "", nil, w.errorf(u, "numerator %v (%v), want 1", one, err)
			}
		}
		mul, err := w.only(u.GetOutput()[0], "Mul")
		if err != nil {
			return "", nil, err
		}
		if o, err := w.other(mul, u.GetOutput()[0]); err != nil || o != h {
			return "", nil, w.errorf(mul, "does not scale %q", h)
		}
		scaled, reader = mul.GetOutput()[0], mul
	default:
		return "", nil, w.errorf(u, "found where RMSNorm divides by the root mean square")
	}
	scaled = w.fwd(scaled)
	wm, err := w.only(scaled, "Mul")
	if err != nil {
		return "", nil, err
	}
	wn, err := w.other(wm, scaled)
	if err != nil {
		return "", nil, err
	}
	if err := w.vectorTensor(name, wn, w.cfg.HiddenSize); err != nil {
		return "", nil, err
	}
	out := w.fwd(wm.GetOutput()[0])
	w.shapes[out] = []int64{dyn, dyn, int64(w.cfg.HiddenSize)}
	return out, []*onnxpb.NodeProto{pow, reader}, nil
}

// matmuls returns the MatMul nodes reading x as left operand with an
// initializer as right operand, in node order; x must have no other users.
func (w *llamaWalk) matmuls(x string, want int, what string) ([]*onnxpb.NodeProto, error) {
	var out []*onnxpb.NodeProto
	for _, u := range w.users[x] {
		if u.GetOpType() != "MatMul" || u.GetInput()[0] != x || w.init(u.GetInput()[1]) == nil {
			return nil, w.errorf(u, "reads %q where the pattern needs the %s MatMuls", x, what)
		}
		out = append(out, u)
	}
	if len(out) != want {
		return nil, w.errorf(w.producer[x], "%d MatMuls read %q, want %d (%s)", len(out), x, want, what)
	}
	sort.Slice(out, func(i, j int) bool { return w.index[out[i]] < w.index[out[j]] })
	return out, nil
}

// block matches one decoder block reading the stream value h and returns
// the block's output stream value.
func (w *llamaWalk) block(i int, h string) (string, error) {
	cfg := w.cfg
	d, hd := cfg.HiddenSize, cfg.HeadDim
	L := func(name string) string { return ir.LayerTensor(i, name) }
	x, hUsers, err := w.rmsnorm(h, L(ir.AttnNorm))
	if err != nil {
		return "", err
	}
	qkv, err := w.matmuls(x, 3, "q, k, v")
	if err != nil {
		return "", err
	}
	dims := []int{cfg.NumHeads * hd, cfg.NumKVHeads * hd, cfg.NumKVHeads * hd}
	for j, name := range []string{ir.AttnQ, ir.AttnK, ir.AttnV} {
		if err := w.linearTensor(L(name), qkv[j].GetInput()[1], d, dims[j]); err != nil {
			return "", err
		}
	}
	q, err := w.heads(qkv[0], cfg.NumHeads)
	if err != nil {
		return "", err
	}
	k, err := w.heads(qkv[1], cfg.NumKVHeads)
	if err != nil {
		return "", err
	}
	vv, err := w.heads(qkv[2], cfg.NumKVHeads)
	if err != nil {
		return "", err
	}
	qr, err := w.rope(q)
	if err != nil {
		return "", err
	}
	kr, err := w.rope(k)
	if err != nil {
		return "", err
	}
	scores, err := w.only(qr, "MatMul")
	if err != nil {
		return "", err
	}
	if scores.GetInput()[0] != qr {
		return "", w.errorf(scores, "reads the rotated queries as its right operand")
	}
	if err := w.kvPath(scores, scores.GetInput()[1], kr, true); err != nil {
		return "", err
	}
	sc := w.fwd(scores.GetOutput()[0])
	us := w.users[sc]
	if len(us) != 1 {
		return "", w.errorf(scores, "%d users, want the 1/sqrt(head_dim) scaling", len(us))
	}
	c, err := w.other(us[0], sc)
	if err != nil {
		return "", err
	}
	f, err := w.scalar(c)
	want := math.Sqrt(float64(hd))
	switch {
	case err != nil:
		return "", w.errorf(us[0], "attention scale: %v", err)
	case us[0].GetOpType() == "Div" && us[0].GetInput()[0] == sc && math.Abs(f-want) <= 1e-6*want:
	case us[0].GetOpType() == "Mul" && math.Abs(f-1/want) <= 1e-6/want:
	default:
		return "", w.errorf(us[0], "scales the attention scores by %s %g, want division by sqrt(head_dim) = %.6g", us[0].GetOpType(), f, want)
	}
	masked, err := w.only(w.fwd(us[0].GetOutput()[0]), "Add")
	if err != nil {
		return "", err
	}
	mask, err := w.other(masked, w.fwd(us[0].GetOutput()[0]))
	if err != nil {
		return "", err
	}
	if err := w.causalMask(masked, mask); err != nil {
		return "", err
	}
	sm, err := w.only(w.fwd(masked.GetOutput()[0]), "Softmax")
	if err != nil {
		return "", err
	}
	if ax := attrInt(sm, "axis", -1); ax != -1 && ax != 3 {
		return "", w.errorf(sm, "axis %d, want -1", ax)
	}
	pv, err := w.only(w.fwd(sm.GetOutput()[0]), "MatMul")
	if err != nil {
		return "", err
	}
	if pv.GetInput()[0] != w.fwd(sm.GetOutput()[0]) {
		return "", w.errorf(pv, "reads the attention probabilities as its right operand")
	}
	if err := w.kvPath(pv, pv.GetInput()[1], vv, false); err != nil {
		return "", err
	}
	tr, err := w.only(w.fwd(pv.GetOutput()[0]), "Transpose")
	if err != nil {
		return "", err
	}
	if !isPerm(attr(tr, "perm"), 0, 2, 1, 3) {
		return "", w.errorf(tr, "perm %v, want [0 2 1 3]", attr(tr, "perm").GetInts())
	}
	rs, err := w.only(tr.GetOutput()[0], "Reshape")
	if err != nil {
		return "", err
	}
	if t, err := w.ints(rs.GetInput()[1]); err != nil || len(t) != 3 || (t[2] != int64(cfg.NumHeads*hd) && t[2] != -1) {
		return "", w.errorf(rs, "target %v (%v), want [batch, sequence, %d]", t, err, cfg.NumHeads*hd)
	}
	o, err := w.matmuls(rs.GetOutput()[0], 1, "o")
	if err != nil {
		return "", err
	}
	if err := w.linearTensor(L(ir.AttnOutput), o[0].GetInput()[1], cfg.NumHeads*hd, d); err != nil {
		return "", err
	}
	h2, res, err := w.residual(h, o[0])
	if err != nil {
		return "", err
	}
	if err := w.onlyUsers(h, append(hUsers, res)); err != nil {
		return "", err
	}
	// MLP.
	x2, h2Users, err := w.rmsnorm(h2, L(ir.FFNNorm))
	if err != nil {
		return "", err
	}
	gu, err := w.matmuls(x2, 2, "gate, up")
	if err != nil {
		return "", err
	}
	gate, up := gu[0], gu[1]
	isGate := func(n *onnxpb.NodeProto) bool {
		for _, u := range w.users[w.fwd(n.GetOutput()[0])] {
			if u.GetOpType() == "Sigmoid" {
				return true
			}
		}
		return false
	}
	if !isGate(gate) {
		gate, up = up, gate
	}
	if !isGate(gate) || isGate(up) {
		return "", w.errorf(gate, "cannot tell gate from up: want exactly one of the two MatMuls to feed a Sigmoid")
	}
	g := w.fwd(gate.GetOutput()[0])
	var sig, silu *onnxpb.NodeProto
	for _, u := range w.users[g] {
		switch u.GetOpType() {
		case "Sigmoid":
			sig = u
		case "Mul":
			silu = u
		default:
			return "", w.errorf(u, "reads the gate projection; want Sigmoid and Mul (SiLU)")
		}
	}
	if sig == nil || silu == nil || len(w.users[g]) != 2 {
		return "", w.errorf(gate, "output is not used as x·sigmoid(x) (SiLU)")
	}
	if o, err := w.other(silu, g); err != nil || w.back(o) != sig.GetOutput()[0] {
		return "", w.errorf(silu, "is not gate·sigmoid(gate)")
	}
	if n, err := w.only(sig.GetOutput()[0], "Mul"); err != nil || n != silu {
		return "", w.errorf(sig, "is not used by the SiLU Mul only")
	}
	prod, err := w.only(w.fwd(silu.GetOutput()[0]), "Mul")
	if err != nil {
		return "", err
	}
	if o, err := w.other(prod, w.fwd(silu.GetOutput()[0])); err != nil || w.back(o) != up.GetOutput()[0] {
		return "", w.errorf(prod, "is not silu(gate)·up")
	}
	if n, err := w.only(up.GetOutput()[0], "Mul"); err != nil || n != prod {
		return "", w.errorf(up, "output is not used by silu(gate)·up only")
	}
	down, err := w.matmuls(w.fwd(prod.GetOutput()[0]), 1, "down")
	if err != nil {
		return "", err
	}
	im := cfg.IntermediateSize
	if err := w.linearTensor(L(ir.FFNGate), gate.GetInput()[1], d, im); err != nil {
		return "", err
	}
	if err := w.linearTensor(L(ir.FFNUp), up.GetInput()[1], d, im); err != nil {
		return "", err
	}
	if err := w.linearTensor(L(ir.FFNDown), down[0].GetInput()[1], im, d); err != nil {
		return "", err
	}
	h3, res2, err := w.residual(h2, down[0])
	if err != nil {
		return "", err
	}
	if err := w.onlyUsers(h2, append(h2Users, res2)); err != nil {
		return "", err
	}
	return h3, nil
}

// residual matches Add(h, mm) and returns the new stream value.
func (w *llamaWalk) residual(h string, mm *onnxpb.NodeProto) (string, *onnxpb.NodeProto, error) {
	add, err := w.only(w.fwd(mm.GetOutput()[0]), "Add")
	if err != nil {
		return "", nil, err
	}
	if o, err := w.other(add, w.fwd(mm.GetOutput()[0])); err != nil || o != h {
		return "", nil, w.errorf(add, "does not add the projection to the residual stream %q", h)
	}
	out := w.fwd(add.GetOutput()[0])
	w.shapes[out] = []int64{dyn, dyn, int64(w.cfg.HiddenSize)}
	return out, add, nil
}

// heads matches Reshape [*, *, n, head_dim] → Transpose [0 2 1 3] on a
// projection's output and returns the per-head value [batch, n, seq, hd].
func (w *llamaWalk) heads(mm *onnxpb.NodeProto, n int) (string, error) {
	rs, err := w.only(w.fwd(mm.GetOutput()[0]), "Reshape")
	if err != nil {
		return "", err
	}
	t, err := w.ints(rs.GetInput()[1])
	if err != nil {
		return "", err
	}
	if len(t) != 4 || t[2] != int64(n) || t[3] != int64(w.cfg.HeadDim) {
		return "", w.errorf(rs, "target %s, want [batch, sequence, %d, %d] (heads, head_dim from config.json)", fmtInts(t), n, w.cfg.HeadDim)
	}
	tr, err := w.only(rs.GetOutput()[0], "Transpose")
	if err != nil {
		return "", err
	}
	if !isPerm(attr(tr, "perm"), 0, 2, 1, 3) {
		return "", w.errorf(tr, "perm %v, want [0 2 1 3]", attr(tr, "perm").GetInts())
	}
	out := tr.GetOutput()[0]
	w.shapes[out] = []int64{dyn, int64(n), dyn, int64(w.cfg.HeadDim)}
	return out, nil
}

// fmtInts prints evaluated integers, "?" for run-time values.
func fmtInts(t []int64) string {
	s := make([]string, len(t))
	for i, x := range t {
		s[i] = fmtInt(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func fmtInt(x int64) string {
	switch x {
	case dyn:
		return "?"
	case math.MaxInt64:
		return "end"
	}
	return fmt.Sprint(x)
}

// rope matches the rotate_half rotary embedding applied to t and returns
// the rotated value.
func (w *llamaWalk) rope(t string) (string, error) {
	half := int64(w.cfg.HeadDim / 2)
	var cosMul *onnxpb.NodeProto
	var first, second *onnxpb.NodeProto // Slice t[..., :half], t[..., half:]
	for _, u := range w.users[t] {
		switch u.GetOpType() {
		case "Shape":
		case "Mul":
			if cosMul != nil {
				return "", w.errorf(u, "second Mul of %q", t)
			}
			cosMul = u
		case "Slice":
			in := u.GetInput()
			if len(in) < 4 || in[0] != t {
				return "", w.errorf(u, "want Slice(x, starts, ends, axes[, steps])")
			}
			var b [4][]int64
			for j := 1; j < len(in) && j < 5; j++ {
				v, err := w.ints(in[j])
				if err != nil {
					return "", err
				}
				b[j-1] = v
			}
			if len(b[0]) != 1 || len(b[1]) != 1 || len(b[2]) != 1 || (b[2][0] != -1 && b[2][0] != 3) || (b[3] != nil && (len(b[3]) != 1 || b[3][0] != 1)) {
				return "", w.errorf(u, "starts %s ends %s axes %s steps %s, want one slice of the last axis with step 1", fmtInts(b[0]), fmtInts(b[1]), fmtInts(b[2]), fmtInts(b[3]))
			}
			switch {
			case b[0][0] == 0 && b[1][0] == half && first == nil:
				first = u
			case b[0][0] == half && b[1][0] >= 2*half && second == nil:
				second = u
			default:
				return "", w.errorf(u, "slice [%s:%s] of the last axis; rotate_half needs [0:%d] and [%d:]", fmtInt(b[0][0]), fmtInt(b[1][0]), half, half)
			}
		default:
			return "", w.errorf(u, "reads %q where the pattern needs the rotary embedding", t)
		}
	}
	if cosMul == nil || first == nil || second == nil {
		return "", w.errorf(w.producer[t], "no rotate_half rotary embedding of %q (want Mul by cos, and Slices [0:%d] and [%d:] of the last axis)", t, half, half)
	}
	neg, err := w.only(second.GetOutput()[0], "Neg")
	if err != nil {
		return "", err
	}
	cat, err := w.only(neg.GetOutput()[0], "Concat")
	if err != nil {
		return "", err
	}
	if in := cat.GetInput(); len(in) != 2 || in[0] != neg.GetOutput()[0] || in[1] != first.GetOutput()[0] {
		return "", w.errorf(cat, "inputs %v, want [-x[..., %d:], x[..., :%d]] (rotate_half)", cat.GetInput(), half, half)
	}
	if ax := attrInt(cat, "axis", 0); ax != -1 && ax != 3 {
		return "", w.errorf(cat, "axis %d, want -1", ax)
	}
	if n, err := w.only(first.GetOutput()[0], "Concat"); err != nil || n != cat {
		return "", w.errorf(first, "is not used by the rotate_half Concat only")
	}
	sinMul, err := w.only(cat.GetOutput()[0], "Mul")
	if err != nil {
		return "", err
	}
	cosV, err := w.other(cosMul, t)
	if err != nil {
		return "", err
	}
	sinV, err := w.other(sinMul, cat.GetOutput()[0])
	if err != nil {
		return "", err
	}
	add, err := w.only(cosMul.GetOutput()[0], "Add")
	if err != nil {
		return "", err
	}
	if o, err := w.other(add, cosMul.GetOutput()[0]); err != nil || o != sinMul.GetOutput()[0] {
		return "", w.errorf(add, "is not x·cos + rotate_half(x)·sin")
	}
	if err := w.rotaryTables(cosMul, cosV, sinV); err != nil {
		return "", err
	}
	return w.fwd(add.GetOutput()[0]), nil
}

// rotaryTables checks that cos and sin are Cos and Sin of the same angles
// Concat(f, f), f = Range(0, seq, 1) ⊗ inv_freq with inv_freq = theta^(-2i/d).
func (w *llamaWalk) rotaryTables(at *onnxpb.NodeProto, cosV, sinV string) error {
	key := cosV + "\x00" + sinV
	if w.freqsOK[key] {
		return nil
	}
	trace := func(x, op string) (*onnxpb.NodeProto, error) {
		for depth := 0; depth < 16; depth++ {
			p := w.producer[x]
			switch {
			case p == nil:
				return nil, w.errorf(at, "rotary table %q does not come from %s", x, op)
			case p.GetOpType() == op:
				return p, nil
			case passCast(p), p.GetOpType() == "Unsqueeze":
				x = p.GetInput()[0]
			default:
				return nil, w.errorf(p, "found where the rotary %s table should come from %s", strings.ToLower(op), op)
			}
		}
		return nil, w.errorf(at, "rotary table %q: chain too long", x)
	}
	c, err := trace(cosV, "Cos")
	if err != nil {
		return err
	}
	s, err := trace(sinV, "Sin")
	if err != nil {
		return err
	}
	if c.GetInput()[0] != s.GetInput()[0] {
		return w.errorf(s, "Sin reads %q, Cos reads %q: want the same angles", s.GetInput()[0], c.GetInput()[0])
	}
	cat := w.producer[w.back(c.GetInput()[0])]
	if cat == nil || cat.GetOpType() != "Concat" || len(cat.GetInput()) != 2 || cat.GetInput()[0] != cat.GetInput()[1] {
		return w.errorf(c, "angles are not Concat(f, f) (rotate_half duplicates the frequencies)")
	}
	f := w.producer[w.back(cat.GetInput()[0])]
	if f == nil || (f.GetOpType() != "Einsum" && f.GetOpType() != "MatMul" && f.GetOpType() != "Mul") || len(f.GetInput()) != 2 {
		return w.errorf(cat, "frequencies do not come from positions ⊗ inv_freq (Einsum, MatMul or Mul)")
	}
	if f.GetOpType() == "Einsum" {
		if eq := strings.ReplaceAll(string(attr(f, "equation").GetS()), " ", ""); eq != "i,j->ij" {
			return w.errorf(f, "equation %q, want \"i,j->ij\"", eq)
		}
	}
	// One operand is the inv_freq constant, the other the positions.
	var inv []float64
	pos := ""
	for j, in := range f.GetInput() {
		if vals, err := w.floats(in); err == nil {
			inv, pos = vals, f.GetInput()[1-j]
			break
		}
	}
	d := w.cfg.HeadDim
	if len(inv) != d/2 {
		return w.errorf(f, "no inv_freq constant of %d values (head_dim/2) among its inputs", d/2)
	}
	for i, got := range inv {
		want := math.Pow(w.cfg.RopeTheta, -float64(2*i)/float64(d))
		if math.Abs(got-want) > 1e-5*want {
			return w.errorf(f, "inv_freq[%d] = %g, config.json rope_theta %g gives %g", i, got, w.cfg.RopeTheta, want)
		}
	}
	r := w.producer[w.back(pos)]
	for r != nil && (r.GetOpType() == "Unsqueeze" || passCast(r)) {
		r = w.producer[r.GetInput()[0]]
	}
	if r == nil || r.GetOpType() != "Range" {
		return w.errorf(f, "positions do not come from Range(0, sequence, 1)")
	}
	start, err1 := w.ints(r.GetInput()[0])
	delta, err2 := w.ints(r.GetInput()[2])
	if err1 != nil || err2 != nil || len(start) != 1 || len(delta) != 1 || start[0] != 0 || delta[0] != 1 {
		return w.errorf(r, "positions start %s step %s, want 0 and 1", fmtInts(start), fmtInts(delta))
	}
	w.freqsOK[key] = true
	return nil
}

// kvPath checks that operand (of MatMul mm) is the per-head value src seen
// through HF's repeat_kv (Unsqueeze at axis 2, Expand, Reshape) and, for
// keys, a Transpose of the last two axes.
func (w *llamaWalk) kvPath(mm *onnxpb.NodeProto, operand, src string, keys bool) error {
	transposes, unsqueezes, expands := 0, 0, 0
	x := operand
	for depth := 0; x != src; depth++ {
		p := w.producer[x]
		if p == nil || depth > 16 {
			return w.errorf(mm, "operand %q does not come from %q through repeat_kv", operand, src)
		}
		switch op := p.GetOpType(); {
		case passCast(p), op == "Reshape":
		case op == "Expand":
			expands++
		case op == "Unsqueeze":
			axes := attr(p, "axes").GetInts()
			if len(p.GetInput()) > 1 {
				var err error
				if axes, err = w.ints(p.GetInput()[1]); err != nil {
					return err
				}
			}
			if len(axes) != 1 || axes[0] != 2 {
				return w.errorf(p, "axes %v; repeat_kv inserts the repeat axis at 2 (after the kv heads)", axes)
			}
			unsqueezes++
		case op == "Transpose" && keys:
			if !isPerm(attr(p, "perm"), 0, 1, 3, 2) {
				return w.errorf(p, "perm %v, want [0 1 3 2] (kᵀ)", attr(p, "perm").GetInts())
			}
			transposes++
		default:
			return w.errorf(p, "found between %q and the attention MatMul %q", src, nodeName(mm))
		}
		if len(w.users[x]) != 1 {
			return w.errorf(p, "output %q has %d users, want one", x, len(w.users[x]))
		}
		x = p.GetInput()[0]
	}
	if len(w.users[src]) != 1 {
		return w.errorf(w.producer[src], "output %q has %d users, want one", src, len(w.users[src]))
	}
	if keys && transposes != 1 {
		return w.errorf(mm, "keys are transposed %d times, want once", transposes)
	}
	rep := w.cfg.NumHeads / w.cfg.NumKVHeads
	if (rep > 1 && (unsqueezes != 1 || expands != 1)) || unsqueezes > 1 || expands > 1 {
		return w.errorf(mm, "repeat_kv has %d Unsqueeze and %d Expand, want 1 and 1 for %d query heads per kv head", unsqueezes, expands, rep)
	}
	return nil
}

// causalMask checks that mask is Trilu(upper, k=1) of a large negative
// constant: 0 on and below the diagonal, -inf (or -1e9 or lower) above.
func (w *llamaWalk) causalMask(at *onnxpb.NodeProto, mask string) error {
	x := mask
	for {
		p := w.producer[x]
		if p == nil {
			return w.errorf(at, "mask %q does not come from Trilu", mask)
		}
		if p.GetOpType() == "Trilu" {
			if attrInt(p, "upper", 1) != 1 {
				return w.errorf(p, "lower triangle; a causal mask keeps the upper one (above the diagonal)")
			}
			k := []int64{0}
			if len(p.GetInput()) > 1 && p.GetInput()[1] != "" {
				var err error
				if k, err = w.ints(p.GetInput()[1]); err != nil {
					return err
				}
			}
			if len(k) != 1 || k[0] != 1 {
				return w.errorf(p, "diagonal offset %s, want 1 (causal)", fmtInts(k))
			}
			c := w.producer[w.back(p.GetInput()[0])]
			if c == nil || c.GetOpType() != "ConstantOfShape" {
				return w.errorf(p, "input is not a ConstantOfShape")
			}
			a := attr(c, "value")
			if a == nil {
				return w.errorf(c, "value 0; a causal mask needs -inf")
			}
			vals, err := tensorValues(a.GetT())
			if err != nil || len(vals) != 1 || vals[0] > -1e9 {
				return w.errorf(c, "value %v (%v); a causal mask needs -inf or ≤ -1e9", vals, err)
			}
			return nil
		}
		if !passCast(p) && p.GetOpType() != "Unsqueeze" && p.GetOpType() != "Expand" {
			return w.errorf(p, "found where the causal mask should come from Trilu")
		}
		x = p.GetInput()[0]
	}
}

// Transpose is the ir.Transform that turns a stored [rows, cols] matrix
// (an ONNX MatMul right operand, [in, out]) into [cols, rows] ([out, in]):
//
//	out[c*rows + r] = in[r*cols + c]
//
// for any dtype of whole bytes.
type Transpose struct{}

// Name returns "transpose".
func (Transpose) Name() string { return "transpose" }

// Apply transposes the 2-D data.
func (Transpose) Apply(d ir.DType, s ir.Shape, data []byte) (ir.DType, ir.Shape, []byte, error) {
	if len(s) != 2 {
		return d, s, nil, fmt.Errorf("transpose of a %d-D tensor, want 2-D", len(s))
	}
	if d.Bits()%8 != 0 || d.Bits() == 0 {
		return d, s, nil, fmt.Errorf("transpose of %v values (not whole bytes)", d)
	}
	es := d.Bits() / 8
	rows, cols := int(s[0]), int(s[1])
	if len(data) != rows*cols*es {
		return d, s, nil, fmt.Errorf("%d bytes, want %d for %v %v", len(data), rows*cols*es, d, s)
	}
	out := make([]byte, len(data))
	const tile = 32
	for r0 := 0; r0 < rows; r0 += tile {
		for c0 := 0; c0 < cols; c0 += tile {
			for r := r0; r < min(r0+tile, rows); r++ {
				for c := c0; c < min(c0+tile, cols); c++ {
					copy(out[(c*rows+r)*es:(c*rows+r+1)*es], data[(r*cols+c)*es:(r*cols+c+1)*es])
				}
			}
		}
	}
	return d, ir.Shape{s[1], s[0]}, out, nil
}

// mapFile is the convert.GraphMapper for .onnx files.
func mapFile(path string, fam *arch.Family, cfg ir.Config) (*tensorfile.Inventory, *arch.Mapping, ir.Config, error) {
	if fam.Name != "llama" {
		return nil, nil, cfg, fmt.Errorf("convert: %s: ONNX graphs are mapped for the llama family only, config.json names %s (%s)", filepath.Base(path), cfg.Arch, fam.Name)
	}
	m, err := OpenModel(path)
	if err != nil {
		return nil, nil, cfg, err
	}
	mp, out, err := MapLlama(m, cfg)
	if err != nil {
		m.Close()
		return nil, nil, cfg, err
	}
	return m.Inventory, mp, out, nil
}
