// matmul_gemv_int4g128asym_k4096_n14336_cf32_tpr32: GEMV y = x · Wᵀ, weights q, rows 0..14336 of 14336.
// 32 invocations per output row, 8 rows per workgroup; workgroup_id.y = token row.
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
@group(0) @binding(4) var<storage, read> zeros: array<u32>;

@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const W_K: u32 = 4096u;
const W_BITS: u32 = 4u;
const W_MASK: u32 = 15u;
const W_G: u32 = 128u;
const W_NB: u32 = 32u;
const W_WPR: u32 = 512u;

// w_scale is the scale of block j of local row n (f16 scales are upcast).
fn w_scale(n: u32, j: u32) -> f32 {
  let e = n * W_NB + j;
  return unpack2x16float(scales[e >> 1u])[e & 1u];
}

// w_zero is the zero point of block j of local row n.
fn w_zero(n: u32, j: u32) -> f32 {
  let b = n * 16u + (j * W_BITS) / 8u;
  let shift = (b & 3u) * 8u + (j * W_BITS) % 8u;
  return f32((zeros[b >> 2u] >> shift) & W_MASK);
}

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let bit = k * W_BITS;
  let wi = n * W_WPR + (bit >> 5u);
  let q = (qweight[wi >> 2u][wi & 3u] >> (bit & 31u)) & W_MASK;
  let j = k / W_G;
  return (f32(q) - w_zero(n, j)) * w_scale(n, j);
}

const N: u32 = 14336u;
const R0: u32 = 0u;
const RC: u32 = 14336u;
const TPR: u32 = 32u;
const RPW: u32 = 8u;
const WORDS: u32 = 128u;

var<workgroup> red: array<f32, 256>;

// word_dot is the dot product of word wi (32 weights) of local row r with x row t.
fn word_dot(r: u32, wi: u32, t: u32) -> f32 {
  let words = qweight[r * WORDS + wi];
  let j = (wi * 32u) / W_G;
  let s = w_scale(r, j);
  let z = w_zero(r, j);
  var acc = 0.0;
  let xb = t * (W_K / 4u) + wi * 8u;
  for (var c = 0u; c < 4u; c++) {
    let q0 = (vec4u(words[c]) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u);
    let q1 = (vec4u(words[c]) >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u);
    acc += dot(vec4f(q0) - z, x[xb + 2u * c]) + dot(vec4f(q1) - z, x[xb + 2u * c + 1u]);
  }
  return s * f32(acc);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y;
  if (t >= step.rows) {
    return;
  }
  let yrow = t;
  let lane = lid % TPR;
  let r = wid.x * RPW + lid / TPR;
  var acc = 0.0;
  if (r < RC) {
    for (var wi = lane; wi < WORDS; wi += TPR) {
      acc += word_dot(r, wi, t);
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  acc = red[lid];
  if (lane == 0u && r < RC) {
    y[yrow * N + R0 + r] = acc;
  }
}
