// embedding_int4g128sym-f32s_v4096_d512: embedding gather, table rows 0..4096 of 4096, weights q.
// out[t, d] = w(ids[t], d); one invocation per output element.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> ids: array<u32>;

@group(0) @binding(2) var<storage, read> qweight: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;

@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const W_K: u32 = 512u;
const W_BITS: u32 = 4u;
const W_MASK: u32 = 15u;
const W_G: u32 = 128u;
const W_NB: u32 = 4u;
const W_WPR: u32 = 64u;

// w_scale is the scale of block j of local row n (f16 scales are upcast).
fn w_scale(n: u32, j: u32) -> f32 {
  return scales[n * W_NB + j];
}

// w_zero is the zero point of block j of local row n.
fn w_zero(n: u32, j: u32) -> f32 {
  return 8.0;
}

// w_elem is the dequantized weight w(n, k) of local row n.
fn w_elem(n: u32, k: u32) -> f32 {
  let bit = k * W_BITS;
  let q = (qweight[n * W_WPR + (bit >> 5u)] >> (bit & 31u)) & W_MASK;
  let j = k / W_G;
  return (f32(q) - w_zero(n, j)) * w_scale(n, j);
}

const VOCAB: u32 = 4096u;
const R0: u32 = 0u;
const RC: u32 = 4096u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (e >= step.rows * W_K) {
    return;
  }
  let t = e / W_K;
  let d = e % W_K;
  let id = ids[t];
  if (id >= R0 && id - R0 < RC) {
    out[e] = w_elem(id - R0, d);
  } else if (id >= VOCAB) {
    out[e] = 0.0;
  }
}
