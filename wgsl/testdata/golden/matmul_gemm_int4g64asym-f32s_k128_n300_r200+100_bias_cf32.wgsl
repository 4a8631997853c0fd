// matmul_gemm_int4g64asym-f32s_k128_n300_r200+100_bias_cf32: tiled GEMM y = x · Wᵀ + bias, weights q, rows 200..300 of 300.
// 16x16 invocations compute a 32-token x 64-output tile; workgroup (x, y) = (output tile, token tile).
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<f32>;

@group(0) @binding(2) var<storage, read> qweight: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;

@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

const W_K: u32 = 128u;
const W_BITS: u32 = 4u;
const W_MASK: u32 = 15u;
const W_G: u32 = 64u;
const W_NB: u32 = 2u;
const W_WPR: u32 = 16u;

// w_scale is the scale of block j of local row n (f16 scales are upcast).
fn w_scale(n: u32, j: u32) -> f32 {
  return scales[n * W_NB + j];
}

// w_zero is the zero point of block j of local row n.
fn w_zero(n: u32, j: u32) -> f32 {
  let b = n * 1u + (j * W_BITS) / 8u;
  let shift = (b & 3u) * 8u + (j * W_BITS) % 8u;
  return f32((zeros[b >> 2u] >> shift) & W_MASK);
}

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let bit = k * W_BITS;
  let q = (qweight[n * W_WPR + (bit >> 5u)] >> (bit & 31u)) & W_MASK;
  let j = k / W_G;
  return (f32(q) - w_zero(n, j)) * w_scale(n, j);
}

const N: u32 = 300u;
const R0: u32 = 200u;
const RC: u32 = 100u;
const TM: u32 = 32u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> xs: array<array<f32, TK>, TM>;
var<workgroup> ws: array<array<f32, TN>, TK>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let rows = step.rows;
  let n0 = wid.x * TN;
  let t0 = wid.y * TM;
  if (t0 >= rows) {
    return;
  }
  var acc: array<array<f32, 4>, 2>;
  for (var k0 = 0u; k0 < W_K; k0 += TK) {
    for (var e = lid; e < TM * TK; e += 256u) {
      let tt = e / TK;
      let kk = e % TK;
      var v = 0.0;
      if (t0 + tt < rows && k0 + kk < W_K) {
        v = x[(t0 + tt) * W_K + k0 + kk];
      }
      xs[tt][kk] = v;
    }
    for (var e = lid; e < TN * TK; e += 256u) {
      let nn = e / TK;
      let kk = e % TK;
      var v = 0.0;
      if (n0 + nn < RC && k0 + kk < W_K) {
        v = w_elem(n0 + nn, k0 + kk);
      }
      ws[kk][nn] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a0 = xs[lid3.y][kk];
      let a1 = xs[lid3.y + 16u][kk];
      for (var j = 0u; j < 4u; j++) {
        let b = ws[kk][lid3.x + 16u * j];
        acc[0][j] += a0 * b;
        acc[1][j] += a1 * b;
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 2u; i++) {
    let t = t0 + lid3.y + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let r = n0 + lid3.x + 16u * j;
      if (t < rows && r < RC) {
        y[t * N + R0 + r] = acc[i][j] + bias[r];
      }
    }
  }
}
