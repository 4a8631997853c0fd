// matmul_gemm_f16_k64_n172_cf32: tiled GEMM y = x · Wᵀ, weights f16, rows 0..172 of 172.
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

@group(0) @binding(2) var<storage, read> w: array<u32>;

@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const W_K: u32 = 64u;

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let e = n * W_K + k;
  return unpack2x16float(w[e >> 1u])[e & 1u];
}

const N: u32 = 172u;
const R0: u32 = 0u;
const RC: u32 = 172u;
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
        y[t * N + R0 + r] = acc[i][j];
      }
    }
  }
}
