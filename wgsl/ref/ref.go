// Package ref holds the reference semantics of every WGSL kernel in package
// wgsl, as plain Go over float32 slices. It is the oracle of the kernels'
// conformance tests, and the CPU executor implements the same semantics.
//
// Conventions shared by all functions:
//   - Activations are row-major float32 with T rows ("tokens").
//   - Sums (dot products, sums of squares, softmax denominators) accumulate
//     in float64 and are rounded to float32 once at the end; GPU kernels
//     accumulate in f32 (or f16) and are compared with explicit tolerances
//     (see the conformance tests of package wgsl).
//   - Transcendentals (exp, sqrt, sin, cos) are evaluated in float64 on
//     float32 arguments and rounded to float32.
//
// Functions never panic on well-formed sizes; they panic on slices shorter
// than the sizes given (a programming error of the caller, not bad input).
package ref

import (
	"math"
	"sort"
)

// Matrix is a logical weight W[Rows, Cols] ([out, in]) in one of the
// formats the kernels read. Exactly one representation is set:
//   - F32: row-major float32 values.
//   - F16: row-major IEEE half bits.
//   - QWeight (with Bits, GroupSize, Scales, Zeros): smelt's packed layout
//     (MatMulNBits-compatible): q(n,k) = (QWeight[n*(Cols*Bits/32) +
//     k*Bits/32] >> (k*Bits%32)) & (2^Bits-1); Scales[n*nBlocks + k/GroupSize]
//     (already upcast to float32 when stored as f16); Zeros is the packed
//     zero-point tensor [Rows, ceil(nBlocks*Bits/8)] bytes, low nibble first,
//     or nil for symmetric (z = 2^(Bits-1)).
type Matrix struct {
	Rows, Cols int
	F32        []float32
	F16        []uint16
	Bits       int
	GroupSize  int
	QWeight    []uint32
	Scales     []float32
	Zeros      []uint8
}

// Blocks is the number of scale groups per row (Cols / GroupSize).
func (m *Matrix) Blocks() int { return m.Cols / m.GroupSize }

// ZeroRowBytes is the byte length of one row of the packed zero points.
func (m *Matrix) ZeroRowBytes() int { return (m.Blocks()*m.Bits + 7) / 8 }

// Q returns the quantized value q(n,k).
func (m *Matrix) Q(n, k int) uint32 {
	wpr := m.Cols * m.Bits / 32
	bit := k * m.Bits
	return (m.QWeight[n*wpr+bit/32] >> (bit % 32)) & (1<<m.Bits - 1)
}

// Zero returns the zero point z(n, j) of block j of row n.
func (m *Matrix) Zero(n, j int) uint32 {
	if m.Zeros == nil {
		return 1 << (m.Bits - 1)
	}
	bit := j * m.Bits
	return uint32(m.Zeros[n*m.ZeroRowBytes()+bit/8]>>(bit%8)) & (1<<m.Bits - 1)
}

// At returns the dequantized weight w(n,k) as float32:
//
//	f32:   F32[n*Cols+k]
//	f16:   float32(half(F16[n*Cols+k]))
//	quant: (float32(q(n,k)) - float32(z(n,k/g))) * Scales[n*nBlocks + k/g]   (in float32)
func (m *Matrix) At(n, k int) float32 {
	switch {
	case m.F32 != nil:
		return m.F32[n*m.Cols+k]
	case m.F16 != nil:
		return HalfToFloat(m.F16[n*m.Cols+k])
	}
	j := k / m.GroupSize
	return (float32(m.Q(n, k)) - float32(m.Zero(n, j))) * m.Scales[n*m.Blocks()+j]
}

// Embedding gathers rows of the table m: out[t, d] = m.At(ids[t], d) for
// d < m.Cols; an id >= m.Rows gives a row of zeros. out is [len(ids), Cols].
func Embedding(m *Matrix, ids []uint32) []float32 {
	out := make([]float32, len(ids)*m.Cols)
	for t, id := range ids {
		if int64(id) >= int64(m.Rows) {
			continue
		}
		for d := 0; d < m.Cols; d++ {
			out[t*m.Cols+d] = m.At(int(id), d)
		}
	}
	return out
}

// RMSNorm normalizes each row of x [T, d] by its root mean square and scales
// by w [d]:
//
//	ss := sum_i float64(x[i])^2                  (float64)
//	inv := float32(1 / sqrt(ss/d + eps))
//	y[i] = (x[i] * inv) * w[i]                    (float32)
func RMSNorm(x, w []float32, d int, eps float32) []float32 {
	rows := len(x) / d
	y := make([]float32, len(x))
	for t := 0; t < rows; t++ {
		r := x[t*d : (t+1)*d]
		var ss float64
		for _, v := range r {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(d)+float64(eps)))
		for i, v := range r {
			y[t*d+i] = (v * inv) * w[i]
		}
	}
	return y
}

// MatMul computes y[t, n] = sum_k x[t, k] * m.At(n, k) (+ bias[n]) for x
// [T, m.Cols] and y [T, m.Rows]; products and the sum are float64, rounded
// once. bias may be nil.
func MatMul(x []float32, m *Matrix, bias []float32) []float32 {
	k := m.Cols
	rows := len(x) / k
	y := make([]float32, rows*m.Rows)
	w := make([]float32, k)
	for n := 0; n < m.Rows; n++ {
		for i := range w {
			w[i] = m.At(n, i)
		}
		for t := 0; t < rows; t++ {
			var s float64
			for i, xv := range x[t*k : (t+1)*k] {
				s += float64(xv) * float64(w[i])
			}
			if bias != nil {
				s += float64(bias[n])
			}
			y[t*m.Rows+n] = float32(s)
		}
	}
	return y
}

// InvFreq returns the default RoPE inverse frequencies for a head of
// headDim: inv[i] = float32(theta^(-2i/headDim)), i < headDim/2. Scaled
// variants (linear, llama3) are computed by the host into the same table.
func InvFreq(theta float64, headDim int) []float32 {
	inv := make([]float32, headDim/2)
	for i := range inv {
		inv[i] = float32(math.Pow(theta, -float64(2*i)/float64(headDim)))
	}
	return inv
}

// RoPE rotates, in place, heads of x in HF's rotate_half convention. Row t of
// x (stride rowStride elements) holds heads at elements offset + h*headDim,
// h < heads; row t has position pos0 + t. For i < headDim/2:
//
//	a := float32(pos) * invFreq[i]             (float32 product)
//	c, s := float32(cos(a)), float32(sin(a))   (float64 cos/sin of a)
//	x'[i]          = x[i]*c - x[i+headDim/2]*s
//	x'[i+headDim/2] = x[i+headDim/2]*c + x[i]*s
func RoPE(x []float32, rows, rowStride, offset, heads, headDim int, invFreq []float32, pos0 int) {
	half := headDim / 2
	for t := 0; t < rows; t++ {
		pos := float32(pos0 + t)
		for h := 0; h < heads; h++ {
			b := t*rowStride + offset + h*headDim
			for i := 0; i < half; i++ {
				a := pos * invFreq[i]
				c, s := float32(math.Cos(float64(a))), float32(math.Sin(float64(a)))
				x0, x1 := x[b+i], x[b+i+half]
				x[b+i] = x0*c - x1*s
				x[b+i+half] = x1*c + x0*s
			}
		}
	}
}

// KVWrite copies rows of src into a KV cache laid out [kvHeads, maxCtx,
// headDim]: for t < rows, h < kvHeads, d < headDim with pos = pos0 + t <
// maxCtx, cache[(h*maxCtx + pos)*headDim + d] = src[t*srcStride + offset +
// h*headDim + d]. Positions at or past maxCtx are dropped.
func KVWrite(cache, src []float32, rows, srcStride, offset, kvHeads, headDim, maxCtx, pos0 int) {
	for t := 0; t < rows; t++ {
		pos := pos0 + t
		if pos >= maxCtx {
			continue
		}
		for h := 0; h < kvHeads; h++ {
			copy(cache[(h*maxCtx+pos)*headDim:(h*maxCtx+pos+1)*headDim],
				src[t*srcStride+offset+h*headDim:])
		}
	}
}

// Attention is causal multi-head attention with grouped KV heads over a KV
// cache [kvHeads, maxCtx, headDim] that already holds positions 0 .. pos0 +
// rows - 1. Query row t (position p = pos0 + t) of q (stride qStride,
// heads at offset qOffset + h*headDim) attends keys 0..p of kv head
// h / (heads/kvHeads):
//
//	s[j] = scale * sum_d q[d]*k[j][d]           (float64)
//	p[j] = exp(s[j] - max_j s) / sum_j exp(...)  (float64)
//	o[d] = float32(sum_j p[j] * v[j][d])
//
// o is [rows, heads*headDim]. Positions p >= maxCtx attend keys 0..maxCtx-1.
func Attention(q, kc, vc []float32, rows, qStride, qOffset, heads, kvHeads, headDim, maxCtx, pos0 int, scale float32) []float32 {
	o := make([]float32, rows*heads*headDim)
	group := heads / kvHeads
	for t := 0; t < rows; t++ {
		n := pos0 + t + 1
		if n > maxCtx {
			n = maxCtx
		}
		for h := 0; h < heads; h++ {
			kvh := h / group
			qv := q[t*qStride+qOffset+h*headDim:]
			s := make([]float64, n)
			m := math.Inf(-1)
			for j := 0; j < n; j++ {
				kr := kc[(kvh*maxCtx+j)*headDim:]
				var d float64
				for i := 0; i < headDim; i++ {
					d += float64(qv[i]) * float64(kr[i])
				}
				s[j] = d * float64(scale)
				m = math.Max(m, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			for i := 0; i < headDim; i++ {
				var acc float64
				for j := 0; j < n; j++ {
					acc += s[j] * float64(vc[(kvh*maxCtx+j)*headDim+i])
				}
				o[(t*heads+h)*headDim+i] = float32(acc / sum)
			}
		}
	}
	return o
}

// SiLU returns float32(x / (1 + exp(-x))) evaluated in float64.
func SiLU(x float32) float32 { return float32(float64(x) / (1 + math.Exp(-float64(x)))) }

// SiLUMul returns out[i] = SiLU(g[i]) * u[i] (float32 product).
func SiLUMul(g, u []float32) []float32 {
	out := make([]float32, len(g))
	for i := range g {
		out[i] = SiLU(g[i]) * u[i]
	}
	return out
}

// Add returns out[i] = a[i] + b[i] (float32).
func Add(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// Softmax normalizes each row of x [T, n]: y[i] = exp(x[i] - max) / sum_j
// exp(x[j] - max), in float64, rounded to float32. A row whose max is -Inf
// (all -Inf) gives NaN, as the kernel does.
func Softmax(x []float32, n int) []float32 {
	y := make([]float32, len(x))
	for t := 0; t < len(x)/n; t++ {
		r := x[t*n : (t+1)*n]
		m := math.Inf(-1)
		for _, v := range r {
			m = math.Max(m, float64(v))
		}
		var sum float64
		for _, v := range r {
			sum += math.Exp(float64(v) - m)
		}
		for i, v := range r {
			y[t*n+i] = float32(math.Exp(float64(v)-m) / sum)
		}
	}
	return y
}

// less orders logits for selection: a greater value first, then the lower
// index; NaN counts as -Inf.
func less(x []float32, i, j int) bool {
	a, b := x[i], x[j]
	if a != a {
		a = float32(math.Inf(-1))
	}
	if b != b {
		b = float32(math.Inf(-1))
	}
	if a != b {
		return a > b
	}
	return i < j
}

// Argmax returns the smallest index of the largest value of x (NaN counts
// as -Inf; an all-NaN or all -Inf input gives 0).
func Argmax(x []float32) uint32 {
	best := 0
	for i := range x {
		if less(x, i, best) {
			best = i
		}
	}
	return uint32(best)
}

// Sample draws a token from logits with temperature, top-k and top-p, given
// a uniform r in [0, 1):
//
//  1. temperature <= 0 or topK == 1: return Argmax(logits).
//  2. Candidates: the k = min(topK, maxK) best logits (topK == 0 means maxK),
//     ordered by value descending then index ascending (NaN = -Inf).
//  3. p[i] = exp((c[i] - c[0]) / temperature) in float32 arithmetic order:
//     float32((c[i] - c[0]) / temperature), exp in float64 rounded to float32.
//  4. top-p: keep the shortest prefix whose float32 running sum of p reaches
//     topP * sum(p) (all when topP >= 1; at least one).
//  5. Return the first kept candidate i whose float32 running sum of p
//     exceeds r * sum(kept p); the last kept candidate if none does.
func Sample(logits []float32, temperature float32, topK int, topP, r float32, maxK int) uint32 {
	if temperature <= 0 || topK == 1 {
		return Argmax(logits)
	}
	k := maxK
	if topK > 0 && topK < k {
		k = topK
	}
	if k > len(logits) {
		k = len(logits)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return less(logits, idx[a], idx[b]) })
	idx = idx[:k]
	p := SampleWeights(logits, idx, temperature)
	var total float32
	for _, v := range p {
		total += v
	}
	kept := len(p)
	if topP < 1 {
		var c float32
		for i, v := range p {
			c += v
			if c >= topP*total {
				kept = i + 1
				break
			}
		}
	}
	var mass float32
	for _, v := range p[:kept] {
		mass += v
	}
	var c float32
	for i, v := range p[:kept] {
		c += v
		if c > r*mass {
			return uint32(idx[i])
		}
	}
	return uint32(idx[kept-1])
}

// SampleWeights returns the unnormalized probabilities of step 3 of Sample
// for the ordered candidates idx.
func SampleWeights(logits []float32, idx []int, temperature float32) []float32 {
	p := make([]float32, len(idx))
	top := logits[idx[0]]
	for i, j := range idx {
		v := logits[j]
		if v != v || math.IsInf(float64(v), -1) {
			continue
		}
		p[i] = float32(math.Exp(float64((v - top) / temperature)))
	}
	return p
}

// HalfToFloat converts IEEE 754 half bits to float32 (exact).
func HalfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(man) / (1 << 24)
		if sign != 0 {
			return -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// FloatToHalf rounds f to the nearest IEEE 754 half (ties to even).
func FloatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127
	man := b & 0x7fffff
	switch {
	case f != f:
		return sign | 0x7e00
	case exp > 15:
		return sign | 0x7c00
	case exp >= -14:
		// normal: round 23-bit mantissa to 10 bits
		h := uint32(exp+15)<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	case exp >= -25:
		// subnormal
		man |= 0x800000
		shift := uint(-14-exp) + 13
		h := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	return sign
}
