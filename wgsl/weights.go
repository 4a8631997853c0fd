package wgsl

import (
	"fmt"

	"github.com/smeltml/smelt/internal/ir"
)

// Weights is the storage format of a weight matrix W[N, K] ([out, in]) read
// by the matmul and embedding kernels. Type is ir.F32, ir.F16 or ir.U32; U32
// means smelt's packed quantized layout (MatMulNBits-compatible):
//
//	qweight u32 [N, K*Bits/32]: q(n,k) = (qweight[n*(K*Bits/32) + k*Bits/32] >> (k*Bits%32)) & (2^Bits-1)
//	scales  f16|f32 [N, K/GroupSize]
//	zeros   u8 [N, ceil(nBlocks*Bits/8)] (asymmetric only), low nibble first
//	w(n,k) = (f32(q(n,k)) - f32(z(n,k/GroupSize))) * f32(scale(n,k/GroupSize)),  z = 2^(Bits-1) when Symmetric
//
// GPU buffers hold f16 data and u8 zero points as u32 words (little-endian,
// padded to a multiple of 4 bytes); a kernel reads element e of an f16 array
// as unpack2x16float(buf[e/2])[e%2], so f16 storage needs no shader-f16.
type Weights struct {
	Type      ir.DType // F32, F16, or U32 (quantized)
	Bits      int      // U32: 4 or 8
	GroupSize int      // U32: elements per scale group along K (K for per-channel)
	Symmetric bool     // U32: no zeros binding, z = 2^(Bits-1)
	Scale     ir.DType // U32: F16 or F32 scales
}

// WeightsFromQuant returns the Weights of a packed tensor described by q
// (GroupSize 0 means per channel: q.Cols).
func WeightsFromQuant(q *ir.QuantInfo) Weights {
	g := q.GroupSize
	if g == 0 {
		g = int(q.Cols)
	}
	return Weights{Type: ir.U32, Bits: q.Bits, GroupSize: g, Symmetric: q.Symmetric, Scale: q.ScaleType}
}

// Quantized reports whether w is a packed quantized format.
func (w Weights) Quantized() bool { return w.Type == ir.U32 }

// String spells the format: "f32", "f16", "int4g32sym", "int8g64asym-f32s"
// (scales f16 unless suffixed -f32s).
func (w Weights) String() string {
	if !w.Quantized() {
		return w.Type.String()
	}
	s := fmt.Sprintf("int%dg%d", w.Bits, w.GroupSize)
	if w.Symmetric {
		s += "sym"
	} else {
		s += "asym"
	}
	if w.Scale == ir.F32 {
		s += "-f32s"
	}
	return s
}

// validate checks the format for rows of k elements.
func (w Weights) validate(op string, k int) error {
	switch w.Type {
	case ir.F32:
	case ir.F16:
		if k%2 != 0 {
			return fmt.Errorf("wgsl: %s: f16 weights need an even row length, got %d", op, k)
		}
	case ir.U32:
		if w.Bits != 4 && w.Bits != 8 {
			return fmt.Errorf("wgsl: %s: %d-bit weights, want 4 or 8", op, w.Bits)
		}
		per := 32 / w.Bits
		if w.GroupSize <= 0 || k%w.GroupSize != 0 {
			return fmt.Errorf("wgsl: %s: group size %d does not divide row length %d", op, w.GroupSize, k)
		}
		if w.GroupSize%per != 0 {
			return fmt.Errorf("wgsl: %s: group size %d is not a multiple of %d (%d-bit values per u32)", op, w.GroupSize, per, w.Bits)
		}
		if w.Scale != ir.F16 && w.Scale != ir.F32 {
			return fmt.Errorf("wgsl: %s: scale type %v, want f16 or f32", op, w.Scale)
		}
	default:
		return fmt.Errorf("wgsl: %s: weight type %v, want f32, f16 or u32 (quantized)", op, w.Type)
	}
	return nil
}

// bindings returns the weight bindings for rows rows of k elements, numbered
// from first: "w" for f32/f16; "qweight", "scales" and (asymmetric) "zeros"
// for quantized formats.
func (w Weights) bindings(first, rows, k int) []Binding {
	r, kk := int64(rows), int64(k)
	switch w.Type {
	case ir.F32:
		return []Binding{{Index: first, Name: "w", Access: ReadOnly, Size: Size{Fixed: r * kk * 4}}}
	case ir.F16:
		return []Binding{{Index: first, Name: "w", Access: ReadOnly, Size: Size{Fixed: r * kk * 2}}}
	}
	nb := int64(k / w.GroupSize)
	sb := int64(2)
	if w.Scale == ir.F32 {
		sb = 4
	}
	bs := []Binding{
		{Index: first, Name: "qweight", Access: ReadOnly, Size: Size{Fixed: r * kk * int64(w.Bits) / 8}},
		{Index: first + 1, Name: "scales", Access: ReadOnly, Size: Size{Fixed: r * nb * sb}},
	}
	if !w.Symmetric {
		zrb := (nb*int64(w.Bits) + 7) / 8
		bs = append(bs, Binding{Index: first + 2, Name: "zeros", Access: ReadOnly, Size: Size{Fixed: r * zrb}})
	}
	return bs
}

// templateData returns the template fields of the weights template.
func (w Weights) templateData(first, k int) map[string]any {
	d := map[string]any{
		"WBind": first, "WType": w.Type.String(), "K": k, "WVec4": false, "QVec": false,
		"Bits": 0, "Mask": 0, "G": 0, "NB": 0, "WPR": 0, "ZRB": 0, "Sym": true, "ScaleF16": false, "ZDef": 0,
	}
	if w.Quantized() {
		nb := k / w.GroupSize
		d["WType"] = "q"
		d["Bits"] = w.Bits
		d["Mask"] = 1<<w.Bits - 1
		d["G"] = w.GroupSize
		d["NB"] = nb
		d["WPR"] = k * w.Bits / 32
		d["ZRB"] = (nb*w.Bits + 7) / 8
		d["Sym"] = w.Symmetric
		d["ScaleF16"] = w.Scale == ir.F16
		d["ZDef"] = 1 << (w.Bits - 1)
	}
	return d
}

func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
