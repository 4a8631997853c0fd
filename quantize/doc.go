// Package quantize turns float weights into smelt's packed INT4/INT8
// formats: named schemes (scheme.go), the packed layout and its reference
// dequantization (pack.go), round-to-nearest (rtn.go), GPTQ (gptq.go), AWQ
// scale and clip search (awq.go), and per-tensor rules and plans (rules.go,
// plan.go). It is pure computation over data: no files, no network.
//
// # Packed layout
//
// The layout is a contract shared with the WGSL kernels, the JS runtime and
// bundles, and is byte-compatible with ONNX Runtime's MatMulNBits. A linear
// weight W is logically [N, K] = [out, in], row-major (y = x·Wᵀ). Bits
// b ∈ {4, 8}; group size g divides K (per channel: g = K); nBlocks = K/g;
// K is a multiple of 32/b.
//
//   - qweight: u32 [N, K·b/32]. Code q(n,k) ∈ [0, 2^b) is
//     (qweight[n·(K·b/32) + (k·b)/32] >> ((k·b) % 32)) & (2^b − 1):
//     8 nibbles (int4) or 4 bytes (int8) per word along the input
//     dimension, low bits first. As little-endian bytes this is
//     MatMulNBits' B [N, nBlocks, g·b/8] with the low nibble first.
//   - scales: f16 or f32 [N, nBlocks], row-major.
//   - zeros (asymmetric only): u8 [N, ceil(nBlocks·b/8)]; zero point of
//     block j of row n is (zeros[n·rowBytes + (j·b)/8] >> ((j·b) % 8)) &
//     (2^b − 1), low nibble first, each row padded (with zero bits) to a
//     whole byte — MatMulNBits' zero_points.
//   - symmetric: no zeros tensor; z = 2^(b−1) (8 for int4, 128 for int8).
//   - dequantization, the reference semantics (Quantized.Dequantize):
//     w(n,k) = (float32(q(n,k)) − float32(z(n, k/g))) · scale(n, k/g),
//     in float32, the scale upcast from f16 first.
//
// In the IR the packed tensor keeps the weight's name (e.g.
// "blk.0.attn_q.weight"), has dtype u32, shape [N, K·b/32] and Quant set
// (GroupSize = g, K for per channel); its companions are "<name>.scales"
// and "<name>.zeros".
//
// # Worked example
//
// One row (N = 1, K = 16) of int4-g16-asym:
//
//	w      = -1.0 -0.5 0.0 0.5 1.0 1.5 2.0 2.5 3.0 3.5 4.0 4.5 5.0 5.5 6.0 6.5
//	lo, hi = -1.0, 6.5
//	scale  = (6.5 − (−1.0)) / 15 = 0.5      (f16 0x3800)
//	z      = round(1.0 / 0.5) = 2
//	q      = round(w / 0.5) + 2 = 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
//	qweight = [0x76543210, 0xfedcba98]
//	        bytes 10 32 54 76 98 ba dc fe
//	scales  bytes 00 38
//	zeros   bytes 02
//
// and Dequantize gives back w exactly: (q − 2)·0.5. TestDocExample checks
// these bytes.
package quantize
