package codegen

import (
	"encoding/binary"
	"fmt"

	"github.com/smeltml/smelt/internal/ir"
)

// CastBF16 makes every unquantized bf16 tensor of g read as f32, in place:
// it appends a transform to the tensor (applied when the bundle writer reads
// the bytes) and updates the dtype of the tensor and of the graph values
// that hold it. It returns the names of the tensors cast, in g's order.
//
// Why f32 and not f16: bf16 is the upper half of an f32, so the cast is
// exact (w = float32frombits(uint32(bits) << 16)), whereas f16 has 5
// exponent bits and would overflow above 65504 and flush small weights to
// zero. The price is twice the bytes of the bf16 source; quantize the
// weights (smelt quantize) to make the bundle small. No WebGPU kernel reads
// bf16 (WGSL has no bf16 type), so Plan rejects graphs that still hold bf16
// tensors; Generate calls CastBF16 first.
func CastBF16(g *ir.Graph) []string {
	var cast []string
	byTensor := map[*ir.Tensor]bool{}
	for _, t := range g.Tensors {
		if t.DType != ir.BF16 || t.Quant != nil {
			continue
		}
		t.Transforms = append(t.Transforms, bf16ToF32{})
		if t.SrcDType == ir.Invalid {
			t.SrcDType, t.SrcShape = t.DType, t.Shape
		}
		t.DType = ir.F32
		byTensor[t] = true
		cast = append(cast, t.Name)
	}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil && v.Tensor != nil && byTensor[v.Tensor] {
				v.DType = ir.F32
			}
		}
	}
	return cast
}

// bf16ToF32 is the transform CastBF16 adds.
type bf16ToF32 struct{}

func (bf16ToF32) Name() string { return "cast-bf16-f32" }

func (bf16ToF32) Apply(d ir.DType, s ir.Shape, data []byte) (ir.DType, ir.Shape, []byte, error) {
	if d != ir.BF16 || len(data)%2 != 0 {
		return d, s, nil, fmt.Errorf("cast-bf16-f32: input is %v with %d bytes, want bf16", d, len(data))
	}
	out := make([]byte, 2*len(data))
	for i := 0; i < len(data); i += 2 {
		binary.LittleEndian.PutUint32(out[2*i:], uint32(binary.LittleEndian.Uint16(data[i:]))<<16)
	}
	return ir.F32, s, out, nil
}
