// kvwrite_kv4_hd64_ctx128_s1024_o768: KV-cache write of 4 heads of 64 (row stride 1024, offset 768) at positions step.pos0 + t.
// Cache layout [4, 128, 64]; positions >= 128 are dropped.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;

const KVH: u32 = 4u;
const HD: u32 = 64u;
const CTX: u32 = 128u;
const STRIDE: u32 = 1024u;
const OFFSET: u32 = 768u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (e >= step.rows * KVH * HD) {
    return;
  }
  let d = e % HD;
  let h = (e / HD) % KVH;
  let t = e / (HD * KVH);
  let pos = step.pos0 + t;
  if (pos < CTX) {
    cache[(h * CTX + pos) * HD + d] = src[t * STRIDE + OFFSET + h * HD + d];
  }
}
