package codegen

import (
	"fmt"
	"math"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// lower appends the dispatches of node n to the current pass.
func (b *builder) lower(n *ir.Node) error {
	switch n.Op {
	case "RMSNorm":
		return b.lowerRMSNorm(n)
	case "Linear":
		return b.lowerLinear(n)
	case "Embedding":
		return b.lowerEmbedding(n)
	case "RoPE":
		return b.lowerRoPE(n)
	case "Attention":
		return b.lowerAttention(n)
	case "SiLUMul":
		return b.lowerSiLUMul(n)
	case "Add":
		return b.lowerAdd(n)
	}
	return fmt.Errorf("no kernel lowers op %s", n.Op)
}

// width returns the per-row element count of an activation value [?, W].
func width(v *ir.Value) (int64, error) {
	if len(v.Shape) != 2 || v.Shape[1] <= 0 {
		return 0, fmt.Errorf("value %q has shape %v, want [?, width]", v.Name, v.Shape)
	}
	if v.DType != ir.F32 {
		return 0, fmt.Errorf("value %q is %v, want f32 activations", v.Name, v.DType)
	}
	return v.Shape[1], nil
}

// constTensor returns the tensor behind constant input i of n.
func constTensor(n *ir.Node, i int) (*ir.Tensor, error) {
	if i >= len(n.Inputs) || n.Inputs[i] == nil || n.Inputs[i].Tensor == nil {
		return nil, fmt.Errorf("input %d is not a stored tensor", i)
	}
	return n.Inputs[i].Tensor, nil
}

// floatStorage returns F32 or F16 for a plain (unquantized) tensor.
func floatStorage(t *ir.Tensor) (ir.DType, error) {
	if t.Quant == nil && (t.DType == ir.F32 || t.DType == ir.F16) {
		return t.DType, nil
	}
	if t.DType == ir.BF16 {
		return ir.Invalid, fmt.Errorf("tensor %q is bf16, which no WebGPU kernel reads: cast it first (codegen.CastBF16; Generate does)", t.Name)
	}
	return ir.Invalid, fmt.Errorf("tensor %q is %v, want f32 or f16", t.Name, t.DType)
}

func (b *builder) lowerRMSNorm(n *ir.Node) error {
	d, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	w, err := constTensor(n, 1)
	if err != nil {
		return err
	}
	wt, err := floatStorage(w)
	if err != nil {
		return err
	}
	eps, err := floatAttr(n, "eps")
	if err != nil {
		return err
	}
	k := wgsl.RMSNorm{D: int(d), Eps: float32(eps), Weight: wt}
	x, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	wb, err := b.weight(w.Name, 0)
	if err != nil {
		return err
	}
	y := buf(b.alloc(n.Outputs[0], d))
	return b.emit(n.Name, k, []Bind{buf(bufStep), x, wb, y})
}

// matrix describes a Linear weight: its logical shape and storage format.
type matrix struct {
	t       *ir.Tensor
	rows    int // N
	cols    int // K
	weights wgsl.Weights
	names   []string // tensors of the weight bindings, in binding order
	rowB    []int64  // bytes per row of each of those tensors
}

func (b *builder) matrix(t *ir.Tensor) (*matrix, error) {
	m := &matrix{t: t}
	if q := t.Quant; q != nil {
		if t.DType != ir.U32 {
			return nil, fmt.Errorf("quantized tensor %q is %v, want u32 packed words", t.Name, t.DType)
		}
		m.rows, m.cols = int(q.Rows), int(q.Cols)
		m.weights = wgsl.WeightsFromQuant(q)
		nb := int64(m.cols / m.weights.GroupSize)
		sb := int64(2)
		if q.ScaleType == ir.F32 {
			sb = 4
		}
		m.names = []string{t.Name, q.Scales}
		m.rowB = []int64{int64(m.cols) * int64(q.Bits) / 8, nb * sb}
		if !q.Symmetric {
			m.names = append(m.names, q.Zeros)
			m.rowB = append(m.rowB, (nb*int64(q.Bits)+7)/8)
		}
		for _, name := range m.names[1:] {
			if b.g.Tensor(name) == nil {
				return nil, fmt.Errorf("tensor %q: companion tensor %q missing", t.Name, name)
			}
		}
		return m, nil
	}
	if len(t.Shape) != 2 {
		return nil, fmt.Errorf("weight %q has shape %v, want [out, in]", t.Name, t.Shape)
	}
	dt, err := floatStorage(t)
	if err != nil {
		return nil, err
	}
	m.rows, m.cols = int(t.Shape[0]), int(t.Shape[1])
	m.weights = wgsl.Weights{Type: dt}
	m.names = []string{t.Name}
	m.rowB = []int64{int64(m.cols) * int64(dt.Bits()) / 8}
	return m, nil
}

// splits returns the row ranges [start, start+count) a weight of m is bound
// in: one range when every binding fits the limit, otherwise ranges whose
// bindings fit and whose start offsets are multiples of BindingAlignment in
// every tensor (and in the bias, 4 bytes per row).
func (b *builder) splits(m *matrix, bias bool) ([][2]int, error) {
	fits := func(r int64) bool {
		for _, rb := range m.rowB {
			if (rb*r+3)&^3 > b.o.MaxBindingSize {
				return false
			}
		}
		return true
	}
	if fits(int64(m.rows)) {
		return [][2]int{{0, m.rows}}, nil
	}
	align := int64(1)
	rbs := append([]int64(nil), m.rowB...)
	if bias {
		rbs = append(rbs, 4)
	}
	for _, rb := range rbs {
		a := BindingAlignment / gcd(BindingAlignment, rb)
		align = align / gcd(align, a) * a
	}
	maxRB := int64(0)
	for _, rb := range m.rowB {
		maxRB = max(maxRB, rb)
	}
	chunk := b.o.MaxBindingSize / maxRB / align * align
	if chunk == 0 || !fits(chunk) {
		return nil, fmt.Errorf("weight %q: a row range of %d rows (the alignment step) exceeds the binding limit %d", m.t.Name, align, b.o.MaxBindingSize)
	}
	var out [][2]int
	for s := 0; s < m.rows; s += int(chunk) {
		out = append(out, [2]int{s, min(int(chunk), m.rows-s)})
	}
	return out, nil
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (b *builder) lowerLinear(n *ir.Node) error {
	t, err := constTensor(n, 1)
	if err != nil {
		return err
	}
	m, err := b.matrix(t)
	if err != nil {
		return err
	}
	in, err := width(n.Inputs[0])
	if err != nil {
		return err
	}
	outW, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	if int(in) != m.cols || int(outW) != m.rows {
		return fmt.Errorf("weight %q is [%d, %d] but the node maps %d to %d features", t.Name, m.rows, m.cols, in, outW)
	}
	var bias *ir.Tensor
	if len(n.Inputs) > 2 {
		if bias, err = constTensor(n, 2); err != nil {
			return err
		}
		if bias.DType != ir.F32 || bias.Quant != nil {
			return fmt.Errorf("bias %q is %v, want f32", bias.Name, bias.DType)
		}
	}
	head := n.Outputs[0] == b.output
	mode := wgsl.GEMV
	if b.prefill && !head {
		mode = wgsl.GEMM
	}
	compute := ir.F32
	if b.o.F16 && mode == wgsl.GEMV {
		compute = ir.F16
	}
	x, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	var y Bind
	if head {
		y = buf(bufLogits)
	} else {
		y = buf(b.alloc(n.Outputs[0], outW))
	}
	parts, err := b.splits(m, bias != nil)
	if err != nil {
		return err
	}
	for _, p := range parts {
		k := wgsl.MatMul{Mode: mode, K: m.cols, N: m.rows, Weights: m.weights, Bias: bias != nil,
			Compute: compute, LastRow: head}
		if len(parts) > 1 {
			k.RowStart, k.RowCount = p[0], p[1]
		}
		binds := []Bind{buf(bufStep), x}
		for i, name := range m.names {
			wb, err := b.weight(name, int64(p[0])*m.rowB[i])
			if err != nil {
				return err
			}
			binds = append(binds, wb)
		}
		if bias != nil {
			bb, err := b.weight(bias.Name, int64(p[0])*4)
			if err != nil {
				return err
			}
			binds = append(binds, bb)
		}
		binds = append(binds, y)
		if err := b.emit(n.Name, k, binds); err != nil {
			return err
		}
	}
	return nil
}

func floatAttr(n *ir.Node, name string) (float64, error) {
	switch v := n.Attrs[name].(type) {
	case float64:
		return v, nil
	case float32:
		return float64(v), nil
	case int:
		return float64(v), nil
	}
	return math.NaN(), fmt.Errorf("attribute %q missing or not a number (%T)", name, n.Attrs[name])
}

func intAttr(n *ir.Node, name string) (int, error) {
	switch v := n.Attrs[name].(type) {
	case int:
		return v, nil
	case int64:
		return int(v), nil
	case float64:
		if v == math.Trunc(v) {
			return int(v), nil
		}
	}
	return 0, fmt.Errorf("attribute %q missing or not an integer (%T)", name, n.Attrs[name])
}
