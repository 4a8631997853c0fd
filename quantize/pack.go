package quantize

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/x448/float16"
)

// Pack packs codes q (rows×cols, row-major, each < 2^bits) into u32 words,
// cols*bits/32 words per row, code k of a row at bit (k*bits)%32 of word
// (k*bits)/32, low bits first:
//
//	p[r*W + (k*bits)/32] |= uint32(q[r*cols+k]) << ((k*bits) % 32)   // W = cols*bits/32
//
// bits is 4 or 8 and cols a multiple of 32/bits. Written as little-endian
// bytes the result is byte-identical to ONNX Runtime MatMulNBits' B.
func Pack(q []uint8, rows, cols, bits int) ([]uint32, error) {
	if err := checkPackShape(rows, cols, bits); err != nil {
		return nil, err
	}
	if len(q) != rows*cols {
		return nil, fmt.Errorf("quantize: pack: %d codes, want %d for [%d %d]", len(q), rows*cols, rows, cols)
	}
	maxq := uint8(1<<bits - 1)
	per := 32 / bits
	out := make([]uint32, rows*cols/per)
	for w := range out {
		var v uint32
		src := q[w*per : w*per+per]
		for j, c := range src {
			if c > maxq {
				return nil, fmt.Errorf("quantize: pack: code %d at index %d exceeds %d-bit range", c, w*per+j, bits)
			}
			v |= uint32(c) << (j * bits)
		}
		out[w] = v
	}
	return out, nil
}

// Unpack is the inverse of Pack: it returns the rows×cols codes stored in p.
func Unpack(p []uint32, rows, cols, bits int) ([]uint8, error) {
	if err := checkPackShape(rows, cols, bits); err != nil {
		return nil, err
	}
	per := 32 / bits
	if len(p) != rows*cols/per {
		return nil, fmt.Errorf("quantize: unpack: %d words, want %d for [%d %d] at %d bits", len(p), rows*cols/per, rows, cols, bits)
	}
	out := make([]uint8, rows*cols)
	mask := uint32(1<<bits - 1)
	for w, v := range p {
		dst := out[w*per : w*per+per]
		for j := range dst {
			dst[j] = uint8(v >> (j * bits) & mask)
		}
	}
	return out, nil
}

func checkPackShape(rows, cols, bits int) error {
	if bits != 4 && bits != 8 {
		return fmt.Errorf("quantize: bits %d, want 4 or 8", bits)
	}
	if rows < 0 || cols < 0 {
		return fmt.Errorf("quantize: negative shape [%d %d]", rows, cols)
	}
	if cols%(32/bits) != 0 {
		return fmt.Errorf("quantize: dim 1 (%d) not divisible by %d (%d-bit codes per u32)", cols, 32/bits, bits)
	}
	if cols > 0 && rows > math.MaxInt32/cols {
		return fmt.Errorf("quantize: shape [%d %d] too large", rows, cols)
	}
	return nil
}

// ZeroRowBytes is the number of bytes per row of packed zero points for
// nBlocks groups of bits-bit zero points: ceil(nBlocks*bits/8).
func ZeroRowBytes(nBlocks, bits int) int { return (nBlocks*bits + 7) / 8 }

// PackZeros packs zero points z (rows×nBlocks, each < 2^bits) into bytes,
// ZeroRowBytes(nBlocks, bits) per row, low bits first, each row padded with
// zero bits to a whole byte (the MatMulNBits zero_points layout):
//
//	out[r*RB + (j*bits)/8] |= z[r*nBlocks+j] << ((j*bits) % 8)   // RB = ZeroRowBytes
func PackZeros(z []uint8, rows, nBlocks, bits int) ([]byte, error) {
	if bits != 4 && bits != 8 {
		return nil, fmt.Errorf("quantize: bits %d, want 4 or 8", bits)
	}
	if rows < 0 || nBlocks < 0 || len(z) != rows*nBlocks {
		return nil, fmt.Errorf("quantize: pack zeros: %d zero points, want %d×%d", len(z), rows, nBlocks)
	}
	rb := ZeroRowBytes(nBlocks, bits)
	out := make([]byte, rows*rb)
	maxq := uint8(1<<bits - 1)
	for r := 0; r < rows; r++ {
		for j := 0; j < nBlocks; j++ {
			v := z[r*nBlocks+j]
			if v > maxq {
				return nil, fmt.Errorf("quantize: pack zeros: zero point %d at row %d block %d exceeds %d-bit range", v, r, j, bits)
			}
			out[r*rb+(j*bits)/8] |= v << ((j * bits) % 8)
		}
	}
	return out, nil
}

// UnpackZeros is the inverse of PackZeros. Padding bits must be zero: a
// nonzero pad is an error, so that one set of zero points has exactly one
// encoding.
func UnpackZeros(b []byte, rows, nBlocks, bits int) ([]uint8, error) {
	if bits != 4 && bits != 8 {
		return nil, fmt.Errorf("quantize: bits %d, want 4 or 8", bits)
	}
	rb := ZeroRowBytes(nBlocks, bits)
	if rows < 0 || nBlocks < 0 || len(b) != rows*rb {
		return nil, fmt.Errorf("quantize: unpack zeros: %d bytes, want %d for %d rows of %d blocks at %d bits", len(b), rows*rb, rows, nBlocks, bits)
	}
	out := make([]uint8, rows*nBlocks)
	mask := byte(1<<bits - 1)
	for r := 0; r < rows; r++ {
		row := b[r*rb : r*rb+rb]
		for j := 0; j < nBlocks; j++ {
			out[r*nBlocks+j] = row[(j*bits)/8] >> ((j * bits) % 8) & mask
		}
		if bits == 4 && nBlocks%2 == 1 && row[rb-1]>>4 != 0 {
			return nil, fmt.Errorf("quantize: unpack zeros: row %d: padding nibble is %d, want 0", r, row[rb-1]>>4)
		}
	}
	return out, nil
}

// Quantized is a quantized [Rows, Cols] weight with unpacked codes. Its
// Dequantize method is the reference semantics of every packed weight.
type Quantized struct {
	Scheme    Scheme
	Algorithm Algorithm // provenance; "" when unknown
	Rows      int       // N, output features
	Cols      int       // K, input features
	Q         []uint8   // Rows*Cols codes in [0, 2^Bits), row-major
	Scales    []float32 // Rows*NBlocks() scales, row-major; each exactly representable in Scheme.ScaleType
	Zeros     []uint8   // Rows*NBlocks() zero points in [0, 2^Bits); nil when Scheme.Symmetric
}

// NBlocks is the number of groups per row, Cols / group size.
func (q *Quantized) NBlocks() int { return q.Cols / q.Scheme.Group(q.Cols) }

// Zero returns the zero point of group j of row r.
func (q *Quantized) Zero(r, j int) uint8 {
	if q.Scheme.Symmetric {
		return q.Scheme.Zero()
	}
	return q.Zeros[r*q.NBlocks()+j]
}

// Validate checks the invariants of q: a valid scheme and shape, slice
// lengths, codes and zero points in range, finite scales exactly
// representable in the scale dtype.
func (q *Quantized) Validate() error {
	if err := q.Scheme.Validate(); err != nil {
		return err
	}
	if err := q.Scheme.CheckShape(q.Rows, q.Cols); err != nil {
		return fmt.Errorf("quantize: %s: %w", q.Scheme.Name(), err)
	}
	nb := q.NBlocks()
	if len(q.Q) != q.Rows*q.Cols {
		return fmt.Errorf("quantize: %d codes, want %d", len(q.Q), q.Rows*q.Cols)
	}
	if len(q.Scales) != q.Rows*nb {
		return fmt.Errorf("quantize: %d scales, want %d", len(q.Scales), q.Rows*nb)
	}
	maxq := uint8(q.Scheme.MaxCode())
	for i, c := range q.Q {
		if c > maxq {
			return fmt.Errorf("quantize: code %d at index %d exceeds %d-bit range", c, i, q.Scheme.Bits)
		}
	}
	for i, s := range q.Scales {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("quantize: scale %d is %v", i, s)
		}
		if q.Scheme.ScaleType == ir.F16 && float16.Fromfloat32(s).Float32() != s {
			return fmt.Errorf("quantize: scale %d (%v) is not an f16 value", i, s)
		}
	}
	if q.Scheme.Symmetric {
		if q.Zeros != nil {
			return fmt.Errorf("quantize: symmetric scheme %s has %d zero points, want none", q.Scheme.Name(), len(q.Zeros))
		}
		return nil
	}
	if len(q.Zeros) != q.Rows*nb {
		return fmt.Errorf("quantize: %d zero points, want %d", len(q.Zeros), q.Rows*nb)
	}
	for i, z := range q.Zeros {
		if z > maxq {
			return fmt.Errorf("quantize: zero point %d at index %d exceeds %d-bit range", z, i, q.Scheme.Bits)
		}
	}
	return nil
}

// Dequantize returns the Rows×Cols float32 weight that q encodes. This is
// THE reference semantics of smelt's quantized weights (kernels, the
// executor and bundles are tested against it):
//
//	w[n,k] = (float32(Q[n,k]) - float32(z(n, k/g))) * Scales[n*NBlocks + k/g]
//
// computed in float32, with z = Zeros[n*NBlocks + k/g] (asymmetric) or
// 2^(Bits-1) (symmetric) and g the group size (Cols when per channel).
func (q *Quantized) Dequantize() []float32 {
	out := make([]float32, q.Rows*q.Cols)
	q.dequantizeInto(out)
	return out
}

func (q *Quantized) dequantizeInto(out []float32) {
	g := q.Scheme.Group(q.Cols)
	nb := q.NBlocks()
	for r := 0; r < q.Rows; r++ {
		for j := 0; j < nb; j++ {
			s := q.Scales[r*nb+j]
			z := float32(q.Zero(r, j))
			base := r*q.Cols + j*g
			codes := q.Q[base : base+g]
			dst := out[base : base+g]
			for k, c := range codes {
				dst[k] = (float32(c) - z) * s
			}
		}
	}
}

// ScalesName and ZerosName are the companion tensor names of a packed
// weight named name: "<name>.scales" and "<name>.zeros".
func ScalesName(name string) string { return name + ".scales" }

// ZerosName: see ScalesName.
func ZerosName(name string) string { return name + ".zeros" }

// Info returns the ir.QuantInfo describing q stored under name. GroupSize
// is the effective group (Cols for per-channel schemes), as the packed
// layout contract records it.
func (q *Quantized) Info(name string) *ir.QuantInfo {
	info := &ir.QuantInfo{
		Scheme:    q.Scheme.Name(),
		Bits:      q.Scheme.Bits,
		GroupSize: q.Scheme.Group(q.Cols),
		Symmetric: q.Scheme.Symmetric,
		ScaleType: q.Scheme.ScaleType,
		Rows:      int64(q.Rows),
		Cols:      int64(q.Cols),
		Scales:    ScalesName(name),
		Algorithm: string(q.Algorithm),
	}
	if !q.Scheme.Symmetric {
		info.Zeros = ZerosName(name)
	}
	return info
}

// Tensors converts q into IR tensors with in-memory data: the packed u32
// weight named name (shape [Rows, Cols*Bits/32], Quant set), "<name>.scales"
// ([Rows, NBlocks], ScaleType) and, for asymmetric schemes, "<name>.zeros"
// ([Rows, ZeroRowBytes(NBlocks, Bits)], u8). The layout is described in the
// package documentation. FromTensors is the inverse.
func (q *Quantized) Tensors(name string) ([]*ir.Tensor, *ir.QuantInfo, error) {
	if err := q.Validate(); err != nil {
		return nil, nil, fmt.Errorf("quantize: tensor %q: %w", name, err)
	}
	words, err := Pack(q.Q, q.Rows, q.Cols, q.Scheme.Bits)
	if err != nil {
		return nil, nil, fmt.Errorf("quantize: tensor %q: %w", name, err)
	}
	data := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(data[4*i:], w)
	}
	info := q.Info(name)
	nb := q.NBlocks()
	main := &ir.Tensor{
		Name:   name,
		DType:  ir.U32,
		Shape:  ir.Shape{int64(q.Rows), int64(q.Cols * q.Scheme.Bits / 32)},
		Source: &ir.BytesSource{Data: data, Loc: "quantize:" + name},
		Quant:  info,
	}
	sdata, err := ir.EncodeFloat32(q.Scheme.ScaleType, q.Scales)
	if err != nil {
		return nil, nil, fmt.Errorf("quantize: tensor %q: scales: %w", name, err)
	}
	scales := &ir.Tensor{
		Name:   info.Scales,
		DType:  q.Scheme.ScaleType,
		Shape:  ir.Shape{int64(q.Rows), int64(nb)},
		Source: &ir.BytesSource{Data: sdata, Loc: "quantize:" + info.Scales},
	}
	out := []*ir.Tensor{main, scales}
	if !q.Scheme.Symmetric {
		zdata, err := PackZeros(q.Zeros, q.Rows, nb, q.Scheme.Bits)
		if err != nil {
			return nil, nil, fmt.Errorf("quantize: tensor %q: %w", name, err)
		}
		out = append(out, &ir.Tensor{
			Name:   info.Zeros,
			DType:  ir.U8,
			Shape:  ir.Shape{int64(q.Rows), int64(ZeroRowBytes(nb, q.Scheme.Bits))},
			Source: &ir.BytesSource{Data: zdata, Loc: "quantize:" + info.Zeros},
		})
	}
	return out, info, nil
}

// maxQuantElems caps Rows*Cols accepted by FromTensors (2^31 codes), so
// that a corrupt header cannot request an absurd allocation.
const maxQuantElems = 1 << 31

// FromTensors reads a packed weight back from its IR tensors (main carries
// Quant; zeros is nil for symmetric schemes). It validates strictly: the
// Quant metadata against the scheme its name spells, every tensor's dtype,
// shape and byte size, zero-point padding, and that scales are finite. The
// result dequantizes from exactly the stored bytes.
func FromTensors(main, scales, zeros *ir.Tensor) (*Quantized, error) {
	if main == nil {
		return nil, fmt.Errorf("quantize: nil tensor")
	}
	fail := func(format string, args ...any) (*Quantized, error) {
		return nil, fmt.Errorf("quantize: tensor %q: "+format, append([]any{main.Name}, args...)...)
	}
	info := main.Quant
	if info == nil {
		return fail("has no quantization info")
	}
	sch, algo, err := ParseSchemeAlgo(info.Scheme)
	if err != nil {
		return fail("%v", err)
	}
	if err := sch.Validate(); err != nil {
		return fail("%v", err)
	}
	if info.Rows <= 0 || info.Cols <= 0 || info.Rows > maxQuantElems || info.Cols > maxQuantElems || info.Rows*info.Cols > maxQuantElems {
		return fail("logical shape [%d %d] out of range", info.Rows, info.Cols)
	}
	rows, cols := int(info.Rows), int(info.Cols)
	if err := sch.CheckShape(rows, cols); err != nil {
		return fail("%s: %v", sch.Name(), err)
	}
	if info.Bits != sch.Bits || info.Symmetric != sch.Symmetric || info.ScaleType != sch.ScaleType {
		return fail("quant info (bits %d, symmetric %v, scales %v) disagrees with scheme %s", info.Bits, info.Symmetric, info.ScaleType, sch.Name())
	}
	if g := sch.Group(cols); info.GroupSize != g && !(sch.GroupSize == 0 && info.GroupSize == 0) {
		return fail("quant info group size %d, scheme %s wants %d", info.GroupSize, sch.Name(), g)
	}
	if main.DType != ir.U32 || !main.Shape.Equal(ir.Shape{info.Rows, info.Cols * int64(sch.Bits) / 32}) {
		return fail("packed tensor is %v %v, want u32 [%d %d]", main.DType, main.Shape, rows, cols*sch.Bits/32)
	}
	q := &Quantized{Scheme: sch, Algorithm: algo, Rows: rows, Cols: cols}
	if q.Algorithm == "" && info.Algorithm != "" {
		a, err := ParseAlgorithm(info.Algorithm)
		if err != nil {
			return fail("%v", err)
		}
		q.Algorithm = a
	}
	nb := q.NBlocks()

	data, err := main.Data()
	if err != nil {
		return fail("%v", err)
	}
	if len(data) != rows*cols*sch.Bits/8 {
		return fail("%d bytes, want %d", len(data), rows*cols*sch.Bits/8)
	}
	words := make([]uint32, len(data)/4)
	for i := range words {
		words[i] = binary.LittleEndian.Uint32(data[4*i:])
	}
	if q.Q, err = Unpack(words, rows, cols, sch.Bits); err != nil {
		return fail("%v", err)
	}

	if scales == nil {
		return fail("scales tensor %q missing", info.Scales)
	}
	if scales.Name != info.Scales {
		return fail("scales tensor is %q, quant info names %q", scales.Name, info.Scales)
	}
	if scales.DType != sch.ScaleType || !scales.Shape.Equal(ir.Shape{info.Rows, int64(nb)}) {
		return fail("scales %q are %v %v, want %v [%d %d]", scales.Name, scales.DType, scales.Shape, sch.ScaleType, rows, nb)
	}
	sdata, err := scales.Data()
	if err != nil {
		return fail("%v", err)
	}
	if want := rows * nb * sch.ScaleType.Bits() / 8; len(sdata) != want {
		return fail("scales %q: %d bytes, want %d", scales.Name, len(sdata), want)
	}
	if q.Scales, err = ir.DecodeFloat32(sch.ScaleType, sdata); err != nil {
		return fail("scales %q: %v", scales.Name, err)
	}
	for i, s := range q.Scales {
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return fail("scales %q: element %d is %v", scales.Name, i, s)
		}
	}

	if sch.Symmetric {
		if zeros != nil {
			return fail("symmetric scheme %s but zero-point tensor %q given", sch.Name(), zeros.Name)
		}
		return q, nil
	}
	if zeros == nil {
		return fail("zero-point tensor %q missing", info.Zeros)
	}
	if zeros.Name != info.Zeros {
		return fail("zero-point tensor is %q, quant info names %q", zeros.Name, info.Zeros)
	}
	rb := ZeroRowBytes(nb, sch.Bits)
	if zeros.DType != ir.U8 || !zeros.Shape.Equal(ir.Shape{info.Rows, int64(rb)}) {
		return fail("zero points %q are %v %v, want u8 [%d %d]", zeros.Name, zeros.DType, zeros.Shape, rows, rb)
	}
	zdata, err := zeros.Data()
	if err != nil {
		return fail("%v", err)
	}
	if q.Zeros, err = UnpackZeros(zdata, rows, nb, sch.Bits); err != nil {
		return fail("zero points %q: %v", zeros.Name, err)
	}
	return q, nil
}

// DequantizeTensor returns the float32 weight [Quant.Rows, Quant.Cols]
// encoded by the packed tensor t of graph g, reading its scales and zero
// points from g by the names in t.Quant. The executor calls it for every
// tensor with Quant != nil, so evaluation sees exactly the stored bytes.
func DequantizeTensor(g *ir.Graph, t *ir.Tensor) ([]float32, error) {
	if t == nil || t.Quant == nil {
		return nil, fmt.Errorf("quantize: dequantize: tensor is not quantized")
	}
	scales := g.Tensor(t.Quant.Scales)
	if scales == nil {
		return nil, fmt.Errorf("quantize: tensor %q: scales tensor %q not in graph", t.Name, t.Quant.Scales)
	}
	var zeros *ir.Tensor
	if !t.Quant.Symmetric {
		if zeros = g.Tensor(t.Quant.Zeros); zeros == nil {
			return nil, fmt.Errorf("quantize: tensor %q: zero-point tensor %q not in graph", t.Name, t.Quant.Zeros)
		}
	}
	q, err := FromTensors(t, scales, zeros)
	if err != nil {
		return nil, err
	}
	return q.Dequantize(), nil
}
