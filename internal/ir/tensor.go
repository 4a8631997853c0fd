package ir

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Source is a lazy byte range in some file: nothing is read until Bytes is
// called. Bytes returns the tensor's raw little-endian data in its stored
// dtype and shape; the slice may alias an mmap and must not be modified.
type Source interface {
	Bytes() ([]byte, error)
	// Location names where the bytes live, for errors and reports
	// ("model-00001-of-00004.safetensors", "pytorch_model.bin:archive/data/3").
	Location() string
}

// BytesSource is an in-memory Source (tests, transformed or quantized data).
type BytesSource struct {
	Data []byte
	Loc  string
}

// Bytes returns the data.
func (b *BytesSource) Bytes() ([]byte, error) { return b.Data, nil }

// Location returns Loc, or "memory".
func (b *BytesSource) Location() string {
	if b.Loc == "" {
		return "memory"
	}
	return b.Loc
}

// Transform rewrites a tensor's bytes once, at read/write time (a row
// permutation, a dtype cast). Apply gets and returns dense little-endian data.
type Transform interface {
	// Name is a short printable description ("permute-rope(heads=8)").
	Name() string
	// Apply maps (dtype, shape, data) to the transformed triple.
	Apply(d DType, s Shape, data []byte) (DType, Shape, []byte, error)
}

// QuantInfo describes how a packed tensor encodes a logical float matrix.
// The logical weight is [Rows, Cols] ([out, in]); the packed bytes, scales
// and zero points live in the tensors named by the fields (see package
// quantize for the bit layouts).
type QuantInfo struct {
	Scheme    string `json:"scheme"`              // full scheme name, e.g. "int4-g128-asym"
	Bits      int    `json:"bits"`                // 4 or 8
	GroupSize int    `json:"group_size"`          // elements per group along Cols; 0 = per channel
	Symmetric bool   `json:"symmetric"`           // no zero points when true
	ScaleType DType  `json:"scale_dtype"`         // F16 or F32
	Rows      int64  `json:"rows"`                // logical out dim
	Cols      int64  `json:"cols"`                // logical in dim
	Scales    string `json:"scales"`              // name of the scales tensor
	Zeros     string `json:"zeros,omitempty"`     // name of the packed zero-point tensor
	Algorithm string `json:"algorithm,omitempty"` // rtn, gptq, awq (provenance only)
}

// Tensor is a named constant (a weight) with lazy data.
type Tensor struct {
	Name       string
	DType      DType // dtype after Transforms
	Shape      Shape // shape after Transforms
	Source     Source
	SrcDType   DType // dtype of the bytes Source returns
	SrcShape   Shape // shape of the bytes Source returns
	Transforms []Transform
	Quant      *QuantInfo // non-nil for packed quantized weights
}

// Data reads the source bytes and applies the transforms, returning data in
// t.DType/t.Shape. The result may alias an mmap when there are no transforms.
func (t *Tensor) Data() ([]byte, error) {
	if t.Source == nil {
		return nil, fmt.Errorf("ir: tensor %q has no source", t.Name)
	}
	b, err := t.Source.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ir: tensor %q: %w", t.Name, err)
	}
	d, s := t.SrcDType, t.SrcShape
	if d == Invalid {
		d, s = t.DType, t.Shape
	}
	want, err := s.ByteSize(d)
	if err != nil {
		return nil, fmt.Errorf("ir: tensor %q: %w", t.Name, err)
	}
	if int64(len(b)) != want {
		return nil, fmt.Errorf("ir: tensor %q from %s: %d bytes, want %d for %v %v", t.Name, t.Source.Location(), len(b), want, d, s)
	}
	for _, tr := range t.Transforms {
		d, s, b, err = tr.Apply(d, s, b)
		if err != nil {
			return nil, fmt.Errorf("ir: tensor %q: transform %s: %w", t.Name, tr.Name(), err)
		}
	}
	if d != t.DType || !s.Equal(t.Shape) {
		return nil, fmt.Errorf("ir: tensor %q: transforms give %v %v, declared %v %v", t.Name, d, s, t.DType, t.Shape)
	}
	return b, nil
}

// Float32 returns the tensor's values converted to float32 (f64, f32, f16,
// bf16, and integer types). Quantized tensors are dequantized by package
// quantize, not here: Float32 on a packed tensor is an error.
func (t *Tensor) Float32() ([]float32, error) {
	if t.Quant != nil {
		return nil, fmt.Errorf("ir: tensor %q is quantized (%s); dequantize it with package quantize", t.Name, t.Quant.Scheme)
	}
	b, err := t.Data()
	if err != nil {
		return nil, err
	}
	out, err := DecodeFloat32(t.DType, b)
	if err != nil {
		return nil, fmt.Errorf("ir: tensor %q: %w", t.Name, err)
	}
	return out, nil
}

// DecodeFloat32 converts little-endian data of dtype d to float32.
func DecodeFloat32(d DType, b []byte) ([]float32, error) {
	switch d {
	case F32:
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case F16:
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = f16Table[binary.LittleEndian.Uint16(b[2*i:])]
		}
		return out, nil
	case BF16:
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return out, nil
	case F64:
		out := make([]float32, len(b)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
		return out, nil
	case I64:
		out := make([]float32, len(b)/8)
		for i := range out {
			out[i] = float32(int64(binary.LittleEndian.Uint64(b[8*i:])))
		}
		return out, nil
	case I32:
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = float32(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return out, nil
	case U32:
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = float32(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case I16:
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = float32(int16(binary.LittleEndian.Uint16(b[2*i:])))
		}
		return out, nil
	case I8:
		out := make([]float32, len(b))
		for i := range out {
			out[i] = float32(int8(b[i]))
		}
		return out, nil
	case U8, Bool:
		out := make([]float32, len(b))
		for i := range out {
			out[i] = float32(b[i])
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot convert %v to f32", d)
}

// EncodeFloat32 converts float32 values to little-endian data of dtype d
// (F32, F16 with round-to-nearest-even, BF16 with round-to-nearest-even).
func EncodeFloat32(d DType, v []float32) ([]byte, error) {
	switch d {
	case F32:
		out := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return out, nil
	case F16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
		}
		return out, nil
	case BF16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToBF16(x))
		}
		return out, nil
	}
	return nil, fmt.Errorf("ir: cannot encode f32 as %v", d)
}

// F32ToBF16 rounds x to bfloat16 (round to nearest, ties to even; NaN kept quiet).
func F32ToBF16(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// f16Table maps every half-precision bit pattern to float32 (256 KiB, built
// once): a table lookup is ~8x faster than float16.Float32 per element.
var f16Table = func() *[65536]float32 {
	var t [65536]float32
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return &t
}()

// F16ToF32 converts one half-precision bit pattern to float32.
func F16ToF32(h uint16) float32 { return f16Table[h] }
