// matmul_gemv_f32_k64_n64_cf32_tpr8: GEMV y = x · Wᵀ, weights f32, rows 0..64 of 64.
// 8 invocations per output row, 32 rows per workgroup; workgroup_id.y = token row.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;

@group(0) @binding(2) var<storage, read> w: array<vec4f>;

@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const W_K: u32 = 64u;

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let e = n * W_K + k;
  return w[e >> 2u][e & 3u];
}

const N: u32 = 64u;
const R0: u32 = 0u;
const RC: u32 = 64u;
const TPR: u32 = 8u;
const RPW: u32 = 32u;
const WORDS: u32 = 16u;

var<workgroup> red: array<f32, 256>;

// word_dot is the dot product of word wi (4 weights) of local row r with x row t.
fn word_dot(r: u32, wi: u32, t: u32) -> f32 {
  let wv = w[r * WORDS + wi];
  let xv = x[t * WORDS + wi];
  return dot(wv, xv);
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
