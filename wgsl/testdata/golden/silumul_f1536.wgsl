// silumul_f1536: out[t, i] = silu(g[t, i]) * u[t, i], silu(v) = v / (1 + exp(-v)), width 1536.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const F: u32 = 1536u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (e >= step.rows * F) {
    return;
  }
  let gv = g[e];
  let uv = u[e];
  out[e] = gv / (1.0 + exp(-gv)) * uv;
}
