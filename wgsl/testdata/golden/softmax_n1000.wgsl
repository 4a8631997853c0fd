// softmax_n1000: row softmax over 1000 values; one workgroup per row t < step.rows.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const N: u32 = 1000u;
const WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * nwg.x + wid.x;
  if (t >= step.rows) {
    return;
  }
  let base = t * N;
  var m = -3.4028234663852886e38f;
  for (var i = lid; i < N; i += WG) {
    m = max(m, x[base + i]);
  }
  red[lid] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  m = red[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var i = lid; i < N; i += WG) {
    sum += exp(x[base + i] - m);
  }
  red[lid] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red[lid] += red[lid + s];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];
  for (var i = lid; i < N; i += WG) {
    y[base + i] = exp(x[base + i] - m) * inv;
  }
}
