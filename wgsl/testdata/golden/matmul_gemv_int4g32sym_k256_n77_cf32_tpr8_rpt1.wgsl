// matmul_gemv_int4g32sym_k256_n77_cf32_tpr8_rpt1: int4 GEMV y = x · Wᵀ, weights q, rows 0..77 of 77.
// 32 groups of 8 invocations; each group computes 1 rows (r, r + RG, ...), each invocation
// reading one vec4<u32> (32 weights of one scale group) of each row per step, with x loads shared by the rows.
// Nibbles become f32 without int-to-float conversion: bitcast(m | 0x4b000000) = 2^23 + m exactly for m < 2^23,
// so the nibble at bits 4p..4p+3 (p <= 4) masked in place gives 2^23 + q*16^p, and subtracting
// 2^23 + z*16^p leaves (q - z)*16^p exactly; the five per-position sums are scaled by 16^-p (exact).
// workgroup_id.y = token row.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;

@group(0) @binding(2) var<storage, read> qweight: array<vec4u>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const W_K: u32 = 256u;
const W_BITS: u32 = 4u;
const W_MASK: u32 = 15u;
const W_G: u32 = 32u;
const W_NB: u32 = 8u;
const W_WPR: u32 = 32u;

// w_scale is the scale of block j of local row n (f16 scales are upcast).
fn w_scale(n: u32, j: u32) -> f32 {
  let e = n * W_NB + j;
  return unpack2x16float(scales[e >> 1u])[e & 1u];
}

// w_zero is the zero point of block j of local row n.
fn w_zero(n: u32, j: u32) -> f32 {
  return 8.0;
}

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let bit = k * W_BITS;
  let wi = n * W_WPR + (bit >> 5u);
  let q = (qweight[wi >> 2u][wi & 3u] >> (bit & 31u)) & W_MASK;
  let j = k / W_G;
  return (f32(q) - w_zero(n, j)) * w_scale(n, j);
}

const N: u32 = 77u;
const R0: u32 = 0u;
const RC: u32 = 77u;
const TPR: u32 = 8u;
const RG: u32 = 32u;
const RPW: u32 = 32u;
const VECS: u32 = 8u;
const XV: u32 = 64u;
const MAGIC: u32 = 0x4b000000u;
const TWO23: f32 = 8388608.0;

var<workgroup> red: array<f32, 256>;

// nib returns 2^23 + (w & mask) per component (mask within bits 0..22).
fn nib(w: vec4u, mask: u32) -> vec4f {
  return bitcast<vec4f>((w & vec4u(mask)) | vec4u(MAGIC));
}

// qdot is scale * sum over the 32 weights of w (vec4 word of block j of
// local row r) of (q - z) * x; xi holds the x values of nibble i of the 4 words.
fn qdot(w: vec4u, r: u32, j: u32, x0: vec4f, x1: vec4f, x2: vec4f, x3: vec4f, x4: vec4f, x5: vec4f, x6: vec4f, x7: vec4f) -> f32 {
  let s = w_scale(r, j);
  let z = 8.0;
  let c0 = TWO23 + z;
  let c1 = fma(z, 16.0, TWO23);
  let c2 = fma(z, 256.0, TWO23);
  let c3 = fma(z, 4096.0, TWO23);
  let c4 = fma(z, 65536.0, TWO23);
  let h = w >> vec4u(12u);
  let d0 = dot(nib(w, 0xfu) - c0, x0);
  let d1 = dot(nib(w, 0xf0u) - c1, x1);
  let d2 = dot(nib(w, 0xf00u) - c2, x2) + dot(nib(h, 0xf00u) - c2, x5);
  let d3 = dot(nib(w, 0xf000u) - c3, x3) + dot(nib(h, 0xf000u) - c3, x6);
  let d4 = dot(nib(w, 0xf0000u) - c4, x4) + dot(nib(h, 0xf0000u) - c4, x7);
  return s * (d0 + d1 * 0.0625 + d2 * 0.00390625 + d3 * 0.000244140625 + d4 * 0.0000152587890625);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y;
  if (t >= step.rows) {
    return;
  }
  let yrow = t;
  let lane = lid % TPR;
  let base = wid.x * RPW + lid / TPR;
  let r0 = min(base + 0u * RG, RC - 1u);
  var acc0 = 0.0;
  let xb = t * XV;
  for (var c = lane; c < VECS; c += TPR) {
    let w0 = qweight[r0 * VECS + c];
    let xo = xb + c * 8u;
    let v0 = x[xo];
    let v1 = x[xo + 1u];
    let v2 = x[xo + 2u];
    let v3 = x[xo + 3u];
    let v4 = x[xo + 4u];
    let v5 = x[xo + 5u];
    let v6 = x[xo + 6u];
    let v7 = x[xo + 7u];
    let x0 = vec4f(v0.x, v2.x, v4.x, v6.x);
    let x1 = vec4f(v0.y, v2.y, v4.y, v6.y);
    let x2 = vec4f(v0.z, v2.z, v4.z, v6.z);
    let x3 = vec4f(v0.w, v2.w, v4.w, v6.w);
    let x4 = vec4f(v1.x, v3.x, v5.x, v7.x);
    let x5 = vec4f(v1.y, v3.y, v5.y, v7.y);
    let x6 = vec4f(v1.z, v3.z, v5.z, v7.z);
    let x7 = vec4f(v1.w, v3.w, v5.w, v7.w);
    let j = (c * 32u) / W_G;
    acc0 += qdot(w0, r0, j, x0, x1, x2, x3, x4, x5, x6, x7);
  }
  red[0u * 256u + lid] = acc0;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      red[0u * 256u + lid] += red[0u * 256u + lid + s];
    }
    workgroupBarrier();
  }
  acc0 = red[0u * 256u + lid];
  if (lane == 0u) {
    let o0 = base + 0u * RG;
    if (o0 < RC) {
      y[yrow * N + R0 + o0] = acc0;
    }
  }
}
