package exec

import (
	"fmt"
	"math"

	"github.com/smeltml/smelt/internal/ir"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// This file holds the op semantics of the Llama family as small functions
// over flat row-major float32 slices. They are the reference the WGSL
// kernels are tested against; every doc comment states the semantics as
// code. Dimensions are passed explicitly; slices may be longer than needed.

// RMSNorm writes y[t,i] = x[t,i] / sqrt(mean_j(x[t,j]^2) + eps) * w[i] for
// the T rows of x ([T, D] row-major). The mean of squares is accumulated in
// float64 (Hugging Face accumulates in float32; the difference is below
// 1e-7 relative). y may alias x.
func RMSNorm(y, x []float32, T, D int, w []float32, eps float64) {
	for t := range T {
		row := x[t*D : (t+1)*D]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(D)+eps))
		out := y[t*D : (t+1)*D]
		for i, v := range row {
			out[i] = v * r * w[i]
		}
	}
}

// Linear writes y = x·Wᵀ + b for the T rows of x: x is [T, K], W is [N, K]
// (out × in, row-major), b is [N] or nil, y is [T, N]:
//
//	y[t,n] = sum_k x[t,k]*W[n,k] + b[n]
//
// Products are accumulated in float32 by BLAS (gonum's blas32, or whatever
// implementation blas32.Use installed). T == 1 uses Sgemv, T > 1 Sgemm;
// both are deterministic whatever GOMAXPROCS is. Built with
// GOEXPERIMENT=simd on an AVX2+FMA CPU, T > 1 with K a multiple of 8 goes
// through the SIMD kernels of linear_simd.go instead (same semantics,
// another deterministic summation order; for T == 1 gonum's Sgemv measured
// faster). y must not alias x.
func Linear(y, x []float32, T int, w []float32, N, K int, b []float32) {
	if simdLinear != nil && K%8 == 0 && T > 1 {
		simdLinear(y[:T*N], x[:T*K], T, w[:N*K], N, K)
	} else if T == 1 {
		blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: N, Cols: K, Stride: K, Data: w[:N*K]},
			blas32.Vector{N: K, Inc: 1, Data: x[:K]}, 0, blas32.Vector{N: N, Inc: 1, Data: y[:N]})
	} else {
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: T, Cols: K, Stride: K, Data: x[:T*K]},
			blas32.General{Rows: N, Cols: K, Stride: K, Data: w[:N*K]},
			0, blas32.General{Rows: T, Cols: N, Stride: N, Data: y[:T*N]})
	}
	if b != nil {
		for t := range T {
			row := y[t*N : (t+1)*N]
			for n := range row {
				row[n] += b[n]
			}
		}
	}
}

// simdLinear, when set (linear_simd.go), computes y = x·Wᵀ without bias.
var simdLinear func(y, x []float32, T int, w []float32, N, K int)

// SiLUMul writes g[i] = silu(g[i]) * u[i] for the first n elements, with
// silu(x) = x / (1 + exp(-x)) evaluated in float64 and rounded once. It is
// the SwiGLU activation: down(silu(gate(x)) * up(x)).
func SiLUMul(g, u []float32, n int) {
	for i := range n {
		x := float64(g[i])
		g[i] = float32(x/(1+math.Exp(-x))) * u[i]
	}
}

// Add writes a[i] += b[i] for the first n elements (the residual connection).
func Add(a, b []float32, n int) {
	for i := range n {
		a[i] += b[i]
	}
}

// RopeInvFreq returns the rotary inverse frequencies inv_freq[i], i in
// [0, headDim/2), with Hugging Face's formulas (transformers
// modeling_rope_utils), computed in float64 and rounded to float32:
//
//	inv_freq[i] = 1 / theta^(2i/headDim)                          (default)
//	inv_freq[i] = inv_freq[i] / factor                            (type "linear")
//
// and for type "llama3", with L = original_max_position_embeddings,
// lowW = L/low_freq_factor, highW = L/high_freq_factor and
// wavelen = 2π/inv_freq[i]:
//
//	wavelen < highW:   inv_freq[i]                       (high frequencies kept)
//	wavelen > lowW:    inv_freq[i] / factor              (low frequencies scaled)
//	otherwise:         s = (L/wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
//	                   (1-s)*inv_freq[i]/factor + s*inv_freq[i]
//
// The attention scaling factor of both types is 1. Other types, a
// non-positive factor or theta, and an odd head dimension are errors.
func RopeInvFreq(headDim int, theta float64, sc *ir.RopeScaling) ([]float32, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("exec: rope: head_dim %d, want a positive even number", headDim)
	}
	if !(theta > 0) {
		return nil, fmt.Errorf("exec: rope: rope_theta %v, want > 0", theta)
	}
	half := headDim / 2
	f := make([]float64, half)
	for i := range f {
		f[i] = 1 / math.Pow(theta, float64(2*i)/float64(headDim))
	}
	if sc != nil {
		if !(sc.Factor > 0) {
			return nil, fmt.Errorf("exec: rope_scaling %q: factor %v, want > 0", sc.Type, sc.Factor)
		}
		switch sc.Type {
		case "linear":
			for i := range f {
				f[i] /= sc.Factor
			}
		case "llama3":
			lo, hi, L := sc.LowFreqFactor, sc.HighFreqFactor, float64(sc.OriginalMaxPositionEmbeddings)
			if !(lo > 0) || !(hi > lo) || !(L > 0) {
				return nil, fmt.Errorf("exec: rope_scaling llama3: low_freq_factor %v, high_freq_factor %v, original_max_position_embeddings %v; want 0 < low < high and a positive length", lo, hi, L)
			}
			lowW, highW := L/lo, L/hi
			for i, v := range f {
				wl := 2 * math.Pi / v
				switch {
				case wl < highW:
				case wl > lowW:
					f[i] = v / sc.Factor
				default:
					s := (L/wl - lo) / (hi - lo)
					f[i] = (1-s)*v/sc.Factor + s*v
				}
			}
		default:
			return nil, fmt.Errorf("exec: rope_scaling type %q is not supported (want linear or llama3)", sc.Type)
		}
	}
	out := make([]float32, half)
	for i, v := range f {
		out[i] = float32(v)
	}
	return out, nil
}

// RopeTable fills cos and sin ([T, len(invFreq)] row-major) for positions
// pos0 .. pos0+T-1, matching Hugging Face's float32 evaluation:
//
//	angle = float32(pos) * invFreq[i]        (a float32 product)
//	cos[t,i] = float32(math.Cos(float64(angle)))
//	sin[t,i] = float32(math.Sin(float64(angle)))
func RopeTable(cos, sin []float32, invFreq []float32, pos0, T int) {
	half := len(invFreq)
	for t := range T {
		p := float32(pos0 + t)
		for i, f := range invFreq {
			a := float64(p * f)
			cos[t*half+i] = float32(math.Cos(a))
			sin[t*half+i] = float32(math.Sin(a))
		}
	}
}

// RoPE rotates x ([T, heads*headDim] row-major) in place with the
// rotate_half convention of Hugging Face Llama: within each head, element i
// pairs with element i+headDim/2, and with c = cos[t,i], s = sin[t,i]
// (from RopeTable, [T, headDim/2]):
//
//	x'[i]           = x[i]*c - x[i+headDim/2]*s
//	x'[i+headDim/2] = x[i+headDim/2]*c + x[i]*s
func RoPE(x []float32, T, heads, headDim int, cos, sin []float32) {
	half := headDim / 2
	for t := range T {
		c := cos[t*half : (t+1)*half]
		s := sin[t*half : (t+1)*half]
		for h := range heads {
			v := x[(t*heads+h)*headDim : (t*heads+h+1)*headDim]
			for i := range half {
				a, b := v[i], v[i+half]
				v[i] = a*c[i] - b*s[i]
				v[i+half] = b*c[i] + a*s[i]
			}
		}
	}
}

// AttentionParams describes one attention call.
type AttentionParams struct {
	T       int // query rows, at positions Pos0 .. Pos0+T-1
	Pos0    int // position of the first query row
	Heads   int // query heads
	KVHeads int // key/value heads; Heads must be a multiple (GQA)
	HeadDim int
	KVCap   int // position capacity of the key/value buffers (their middle dim)
	Window  int // sliding window (keys with pos-j >= Window are masked); 0 = none
}

// Attention computes causal grouped-query attention. q is [T, Heads*HeadDim]
// (after RoPE); k and v are [KVHeads, KVCap, HeadDim] holding the keys and
// values of positions 0 .. Pos0+T-1; out is [T, Heads*HeadDim]; scores is
// scratch of at least min(T, 64)*(Pos0+T) elements. Query head h reads kv head
// h / (Heads/KVHeads) (Hugging Face repeat_kv). For row t at position
// p = Pos0+t:
//
//	s[j] = (q[t,h,:] · k[kvh,j,:]) / sqrt(HeadDim)     for j <= p (and p-j < Window if Window > 0)
//	out[t,h,:] = sum_j softmax(s)[j] * v[kvh,j,:]
//
// Scores are float32 dot products scaled by float32(1/sqrt(HeadDim)); the
// softmax subtracts the row maximum, evaluates exp and the sum in float64
// and rounds the probabilities to float32.
func Attention(out, q, k, v, scores []float32, p AttentionParams) {
	for h := range p.Heads {
		AttentionHead(h, out, q, k, v, scores, p)
	}
}

// attnChunk is the number of query rows whose scores are computed by one
// matrix product: keys past the chunk's last row are not computed, so a
// causal prefill computes about half of the T×T score matrix.
const attnChunk = 64

// AttentionHead is Attention for query head h only (heads are independent,
// so callers may run them concurrently with separate scores scratch).
func AttentionHead(h int, out, q, k, v, scores []float32, p AttentionParams) {
	hd := p.HeadDim
	qStride := p.Heads * hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	kvh := h / (p.Heads / p.KVHeads)
	L := p.Pos0 + p.T
	kh := k[kvh*p.KVCap*hd : (kvh*p.KVCap+L)*hd]
	vh := v[kvh*p.KVCap*hd : (kvh*p.KVCap+L)*hd]
	if p.T == 1 {
		attendOne(out[h*hd:(h+1)*hd], q[h*hd:(h+1)*hd], kh, vh, scores[:L], L, hd, scale, p.Window)
		return
	}
	for t0 := 0; t0 < p.T; t0 += attnChunk {
		t1 := min(t0+attnChunk, p.T)
		n := t1 - t0
		hi := p.Pos0 + t1 // keys visible to the chunk's last row
		lo, _ := visible(p.Pos0+t0, p.Window)
		w := hi - lo
		// S = scale * Q_h[t0:t1] · K_h[lo:hi]ᵀ, [n, w].
		blas32.Gemm(blas.NoTrans, blas.Trans, scale,
			blas32.General{Rows: n, Cols: hd, Stride: qStride, Data: q[t0*qStride+h*hd : (t1-1)*qStride+(h+1)*hd]},
			blas32.General{Rows: w, Cols: hd, Stride: hd, Data: kh[lo*hd : hi*hd]},
			0, blas32.General{Rows: n, Cols: w, Stride: w, Data: scores[:n*w]})
		for t := t0; t < t1; t++ {
			rlo, rhi := visible(p.Pos0+t, p.Window)
			softmaxRange(scores[(t-t0)*w:(t-t0+1)*w], rlo-lo, rhi-lo)
		}
		// O_h[t0:t1] = P · V_h[lo:hi], [n, hd]; masked probabilities are exact zeros.
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
			blas32.General{Rows: n, Cols: w, Stride: w, Data: scores[:n*w]},
			blas32.General{Rows: w, Cols: hd, Stride: hd, Data: vh[lo*hd : hi*hd]},
			0, blas32.General{Rows: n, Cols: hd, Stride: qStride, Data: out[t0*qStride+h*hd : (t1-1)*qStride+(h+1)*hd]})
	}
}

// visible returns the key range [lo, hi) a query at position p attends to.
func visible(p, window int) (lo, hi int) {
	lo = 0
	if window > 0 && p-window+1 > 0 {
		lo = p - window + 1
	}
	return lo, p + 1
}

// attendOne is Attention for one query row of one head (the decode path):
// level-1 BLAS only, no allocation.
func attendOne(out, q, k, v, s []float32, L, hd int, scale float32, window int) {
	lo, hi := visible(L-1, window)
	qv := blas32.Vector{N: hd, Inc: 1, Data: q}
	for j := lo; j < hi; j++ {
		s[j] = scale * blas32.Dot(qv, blas32.Vector{N: hd, Inc: 1, Data: k[j*hd : (j+1)*hd]})
	}
	softmaxRange(s[:L], lo, hi)
	for i := range out[:hd] {
		out[i] = 0
	}
	ov := blas32.Vector{N: hd, Inc: 1, Data: out}
	for j := lo; j < hi; j++ {
		blas32.Axpy(s[j], blas32.Vector{N: hd, Inc: 1, Data: v[j*hd : (j+1)*hd]}, ov)
	}
}

// softmaxRange replaces row[lo:hi] by its softmax and sets the rest of row
// to 0: m = max(row[lo:hi]), e[j] = exp(float64(row[j]-m)) rounded to
// float32, row[j] = e[j] * float32(1/sum_j float64(e[j])).
func softmaxRange(row []float32, lo, hi int) {
	m := float32(math.Inf(-1))
	for _, x := range row[lo:hi] {
		m = max(m, x)
	}
	var sum float64
	for j := lo; j < hi; j++ {
		e := float32(math.Exp(float64(row[j] - m)))
		row[j] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for j := lo; j < hi; j++ {
		row[j] *= inv
	}
	clear(row[:lo])
	clear(row[hi:])
}

// LogSoftmax returns log(softmax(logits)[target]) evaluated in float64:
//
//	m = max(logits); log_softmax[target] = (logits[target] - m) - log(sum_j exp(logits[j] - m))
//
// The negative of it is the token's negative log-likelihood (natural log).
func LogSoftmax(logits []float32, target int) float64 {
	m := math.Inf(-1)
	for _, x := range logits {
		m = math.Max(m, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - m)
	}
	return float64(logits[target]) - m - math.Log(sum)
}

// Argmax returns the index of the largest element (the first one on ties,
// as torch.argmax does on CPU); NaNs are never chosen unless all are NaN,
// in which case it returns 0.
func Argmax(x []float32) int {
	best, bi := float32(math.Inf(-1)), 0
	found := false
	for i, v := range x {
		if v > best || (!found && v == best) {
			best, bi, found = v, i, true
		}
	}
	return bi
}
