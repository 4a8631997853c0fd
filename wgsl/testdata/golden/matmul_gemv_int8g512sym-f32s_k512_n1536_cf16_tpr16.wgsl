// matmul_gemv_int8g512sym-f32s_k512_n1536_cf16_tpr16: GEMV y = x · Wᵀ, weights q, rows 0..1536 of 1536.
// 16 invocations per output row, 16 rows per workgroup; workgroup_id.y = token row.
enable f16;
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
@group(0) @binding(3) var<storage, read> scales: array<f32>;

@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const W_K: u32 = 512u;
const W_BITS: u32 = 8u;
const W_MASK: u32 = 255u;
const W_G: u32 = 512u;
const W_NB: u32 = 1u;
const W_WPR: u32 = 128u;

// w_scale is the scale of block j of local row n (f16 scales are upcast).
fn w_scale(n: u32, j: u32) -> f32 {
  return scales[n * W_NB + j];
}

// w_zero is the zero point of block j of local row n.
fn w_zero(n: u32, j: u32) -> f32 {
  return 128.0;
}

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let bit = k * W_BITS;
  let wi = n * W_WPR + (bit >> 5u);
  let q = (qweight[wi >> 2u][wi & 3u] >> (bit & 31u)) & W_MASK;
  let j = k / W_G;
  return (f32(q) - w_zero(n, j)) * w_scale(n, j);
}

const N: u32 = 1536u;
const R0: u32 = 0u;
const RC: u32 = 1536u;
const TPR: u32 = 16u;
const RPW: u32 = 16u;
const WORDS: u32 = 32u;

var<workgroup> red: array<f32, 256>;

// word_dot is the dot product of word wi (16 weights) of local row r with x row t.
fn word_dot(r: u32, wi: u32, t: u32) -> f32 {
  let words = qweight[r * WORDS + wi];
  let j = (wi * 16u) / W_G;
  let s = w_scale(r, j);
  let z = f16(w_zero(r, j));
  var acc = 0.0h;
  let xb = t * (W_K / 4u) + wi * 4u;
  for (var c = 0u; c < 4u; c++) {
    let q = (vec4u(words[c]) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(255u);
    acc += dot(vec4<f16>(q) - z, vec4<f16>(x[xb + c]));
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
