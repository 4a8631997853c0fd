// rmsnorm_d173_wf32_eps1e-06: RMSNorm over rows of 173.
// y[t, i] = (x[t, i] * inverseSqrt(sum_i x[t, i]^2 / D + eps)) * w[i]
// One workgroup per row t < step.rows.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const D: u32 = 173u;
const WG: u32 = 256u;
const EPS: f32 = 1e-06f;

var<workgroup> red: array<f32, WG>;

fn weight(i: u32) -> f32 {
  return w[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * nwg.x + wid.x;
  if (t >= step.rows) {
    return;
  }
  let base = t * D;
  var ss = 0.0;
  for (var i = lid; i < D; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] / f32(D) + EPS);
  for (var i = lid; i < D; i += WG) {
    y[base + i] = (x[base + i] * inv) * weight(i);
  }
}
