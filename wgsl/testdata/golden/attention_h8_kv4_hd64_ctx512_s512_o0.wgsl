// attention_h8_kv4_hd64_ctx512_s512_o0: causal GQA attention against the KV cache, 8 heads (2 per kv head) of 64, scale 1.25e-01f.
// Workgroup (h, t): query row t at position step.pos0 + t attends cache positions 0..min(pos, 512 - 1)
// in chunks of 64 keys with an online softmax.
// Step: rows = tokens of this step (T), pos0 = position of its first token.
struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

const HEADS: u32 = 8u;
const GROUP: u32 = 2u;
const HD: u32 = 64u;
const CTX: u32 = 512u;
const QSTRIDE: u32 = 512u;
const QOFFSET: u32 = 0u;
const SCALE: f32 = 1.25e-01f;
const WG: u32 = 64u;
const DPT: u32 = 1u; // head dims per invocation

var<workgroup> qs: array<f32, HD>;
var<workgroup> sc: array<f32, WG>;
var<workgroup> ps: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= step.rows) {
    return;
  }
  let kvh = h / GROUP;
  let n = min(step.pos0 + t + 1u, CTX);
  let qb = t * QSTRIDE + QOFFSET + h * HD;
  for (var d = lid; d < HD; d += WG) {
    qs[d] = q[qb + d] * SCALE;
  }
  let cb = kvh * CTX * HD;
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, DPT>;
  workgroupBarrier();
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let j = j0 + lid;
    var s = -3.0e38;
    if (j < n) {
      let kb = cb + j * HD;
      s = 0.0;
      for (var d = 0u; d < HD; d++) {
        s += qs[d] * k_cache[kb + d];
      }
    }
    sc[lid] = s;
    workgroupBarrier();
    let cnt = min(WG, n - j0);
    var cm = m;
    for (var jj = 0u; jj < cnt; jj++) {
      cm = max(cm, sc[jj]);
    }
    let alpha = exp(m - cm);
    ps[lid] = exp(s - cm);
    m = cm;
    workgroupBarrier();
    l *= alpha;
    for (var i = 0u; i < DPT; i++) {
      acc[i] *= alpha;
    }
    for (var jj = 0u; jj < cnt; jj++) {
      let p = ps[jj];
      l += p;
      let vb = cb + (j0 + jj) * HD;
      for (var i = 0u; i < DPT; i++) {
        let d = lid + i * WG;
        if (d < HD) {
          acc[i] += p * v_cache[vb + d];
        }
      }
    }
    workgroupBarrier();
  }
  let ob = (t * HEADS + h) * HD;
  for (var i = 0u; i < DPT; i++) {
    let d = lid + i * WG;
    if (d < HD) {
      o[ob + d] = acc[i] / l;
    }
  }
}
