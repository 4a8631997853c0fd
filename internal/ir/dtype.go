package ir

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// DType is the element type of a tensor or value.
type DType uint8

// Element types. I4 and U4 are packed two per byte (low nibble first) when
// stored as a plain tensor; quantized weights use the layouts in package quantize.
const (
	Invalid DType = iota
	F64
	F32
	F16
	BF16
	I64
	I32
	I16
	I8
	U8
	U32
	I4
	U4
	Bool
)

var dtypeNames = [...]string{
	Invalid: "invalid", F64: "f64", F32: "f32", F16: "f16", BF16: "bf16",
	I64: "i64", I32: "i32", I16: "i16", I8: "i8", U8: "u8", U32: "u32",
	I4: "i4", U4: "u4", Bool: "bool",
}

// String returns the lowercase name used in manifests and reports ("f16").
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType parses a name as returned by String (case-insensitive).
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != 0 && strings.EqualFold(n, s) {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("ir: unknown dtype %q", s)
}

// Bits is the number of bits per element (4 for I4/U4, 8 for Bool).
func (d DType) Bits() int {
	switch d {
	case F64, I64:
		return 64
	case F32, I32, U32:
		return 32
	case F16, BF16, I16:
		return 16
	case I8, U8, Bool:
		return 8
	case I4, U4:
		return 4
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// MarshalText implements encoding.TextMarshaler.
func (d DType) MarshalText() ([]byte, error) {
	if d == Invalid || int(d) >= len(dtypeNames) {
		return nil, fmt.Errorf("ir: cannot marshal dtype %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Shape is a list of dimensions, outermost first. A dimension of -1 is
// dynamic (batch or sequence length) and only appears on graph values,
// never on stored tensors.
type Shape []int64

// NumElements returns the product of the dimensions, with overflow and
// negative-dimension checks. The empty shape is a scalar (1 element).
func (s Shape) NumElements() (int64, error) {
	n := int64(1)
	for i, d := range s {
		if d < 0 {
			return 0, fmt.Errorf("ir: shape %v: dim %d is negative (%d)", []int64(s), i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("ir: shape %v: element count overflows int64", []int64(s))
		}
		n = int64(lo)
	}
	return n, nil
}

// ByteSize returns the number of bytes a dense tensor of this shape and
// dtype occupies (4-bit types round up to whole bytes), overflow-checked.
func (s Shape) ByteSize(d DType) (int64, error) {
	n, err := s.NumElements()
	if err != nil {
		return 0, err
	}
	b := int64(d.Bits())
	if b == 0 {
		return 0, fmt.Errorf("ir: dtype %v has no size", d)
	}
	if n > math.MaxInt64/b {
		return 0, fmt.Errorf("ir: shape %v of %v: byte size overflows int64", []int64(s), d)
	}
	return (n*b + 7) / 8, nil
}

// Equal reports whether two shapes are identical.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// String formats the shape as [a b c]; dynamic dims print as ?.
func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		if d < 0 {
			b.WriteByte('?')
		} else {
			fmt.Fprint(&b, d)
		}
	}
	b.WriteByte(']')
	return b.String()
}
