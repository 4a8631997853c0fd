// argmax_n100: out[0] = index of the largest of 100 logits (lowest index on ties, NaN as -Inf).
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

const N: u32 = 100u;

// INF_BITS is a private variable, not a constant: WGSL constant
// expressions cannot hold an infinity.
var<private> INF_BITS: u32 = 0x7f800000u;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

// logit reads logits[i], NaN as -Inf (tested on the bits: compilers may
// fold v != v to false).
fn logit(i: u32) -> f32 {
  let v = logits[i];
  if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) {
    return -bitcast<f32>(INF_BITS);
  }
  return v;
}

// before reports whether (va, ia) comes first: greater value, then lower index.
fn before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
  return va > vb || (va == vb && ia < ib);
}

// select_best returns the first logit in (value desc, index asc) order that
// comes strictly after (pv, pi), or the first of all when first is true;
// every invocation of the workgroup must call it.
fn select_best(lid: u32, first: bool, pv: f32, pi: u32) -> vec2u {
  var v = -bitcast<f32>(INF_BITS);
  var idx = 0xffffffffu;
  for (var i = lid; i < N; i += 256u) {
    let x = logit(i);
    if ((first || before(pv, pi, x, i)) && before(x, i, v, idx)) {
      v = x;
      idx = i;
    }
  }
  bv[lid] = v;
  bi[lid] = idx;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s && before(bv[lid + s], bi[lid + s], bv[lid], bi[lid])) {
      bv[lid] = bv[lid + s];
      bi[lid] = bi[lid + s];
    }
    workgroupBarrier();
  }
  let r = vec2u(bitcast<u32>(bv[0]), bi[0]);
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  let best = select_best(lid, true, 0.0, 0u);
  if (lid == 0u) {
    out[0] = select(best.y, 0u, best.y == 0xffffffffu);
  }
}
