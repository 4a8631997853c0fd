// rope_h2_hd128_s256_o0: RoPE (rotate_half) in place on 2 heads of 128 per row, row stride 256, offset 0.
// Row t has position step.pos0 + t; one invocation per rotated pair.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

const HEADS: u32 = 2u;
const HALF: u32 = 64u;
const HD: u32 = 128u;
const STRIDE: u32 = 256u;
const OFFSET: u32 = 0u;
const INV_2PI: f32 = 0.15915494309189535f;
const TWO_PI_HI: f32 = 6.28125f;
const TWO_PI_LO: f32 = 1.9353071795864769e-3f;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (e >= step.rows * HEADS * HALF) {
    return;
  }
  let i = e % HALF;
  let h = (e / HALF) % HEADS;
  let t = e / (HALF * HEADS);
  let a = f32(step.pos0 + t) * inv_freq[i];
  let k = round(a * INV_2PI);
  let r = (a - k * TWO_PI_HI) - k * TWO_PI_LO;
  let c = cos(r);
  let s = sin(r);
  let b = t * STRIDE + OFFSET + h * HD + i;
  let x0 = x[b];
  let x1 = x[b + HALF];
  x[b] = x0 * c - x1 * s;
  x[b + HALF] = x1 * c + x0 * s;
}
