package codegen

// Interim kernels: the ops whose kernels package wgsl does not provide yet
// (embedding, rope, kv write, attention, silu·mul, add, argmax). They
// implement wgsl.Kernel with the same conventions (binding 0 is the Step
// uniform; workgroups laid out x then y; rows >= step.rows skipped) so that
// lower_ops.go switches to package wgsl's kernels by changing constructors
// only. Their semantics are those of internal/exec (ops.go).

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

const stepDecl = `struct Step {
  rows: u32,
  pos0: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
`

func stepBinding() wgsl.Binding {
	return wgsl.Binding{Index: 0, Name: "step", Access: wgsl.Uniform, Size: wgsl.Size{Fixed: wgsl.StepUniformBytes}}
}

// grid lays n workgroups out in x then y (kernels use wid.y*nwg.x + wid.x).
func grid(n int) ([3]int, error) {
	const m = wgsl.MaxWorkgroupsPerDim
	if n <= m {
		return [3]int{max(n, 1), 1, 1}, nil
	}
	y := (n + m - 1) / m
	if y > m {
		return [3]int{}, fmt.Errorf("codegen: %d workgroups exceed %d x %d", n, m, m)
	}
	return [3]int{(n + y - 1) / y, y, 1}, nil
}

func f32lit(v float32) string { return strconv.FormatFloat(float64(v), 'e', -1, 32) + "f" }

// embedKernel gathers rows of an f32 or f16 table [V, D] bound from row
// R0 on (rows R0 .. R0+RC-1, RC = V - R0 when 0): for ids in that range,
// y[t, d] = table[ids[t], d]; rows with other ids are left alone (another
// range writes them), and ids >= V give zeros in the range holding V-1.
// Bindings: 0 step, 1 ids u32 [T], 2 table rows, 3 y f32 [T, D].
type embedKernel struct {
	V, D   int
	Table  ir.DType
	R0, RC int
}

func (k embedKernel) rc() int {
	if k.RC == 0 {
		return k.V - k.R0
	}
	return k.RC
}

func (k embedKernel) Name() string {
	s := fmt.Sprintf("embedding_v%d_d%d_%v", k.V, k.D, k.Table)
	if k.R0 != 0 || k.rc() != k.V {
		s += fmt.Sprintf("_r%d+%d", k.R0, k.rc())
	}
	return s
}
func (k embedKernel) Validate() error {
	if k.V <= 0 || k.D <= 0 || (k.Table != ir.F32 && k.Table != ir.F16) || (k.Table == ir.F16 && k.D%2 != 0) ||
		k.R0 < 0 || k.rc() <= 0 || k.R0+k.rc() > k.V {
		return fmt.Errorf("codegen: embedding: v=%d d=%d table %v rows %d+%d unsupported", k.V, k.D, k.Table, k.R0, k.rc())
	}
	return nil
}
func (k embedKernel) Bindings() []wgsl.Binding {
	eb := int64(k.Table.Bits() / 8)
	return []wgsl.Binding{stepBinding(),
		{Index: 1, Name: "ids", Access: wgsl.ReadOnly, Size: wgsl.Size{PerRow: 4}},
		{Index: 2, Name: "table", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: int64(k.rc()) * int64(k.D) * eb}},
		{Index: 3, Name: "y", Access: wgsl.ReadWrite, Size: wgsl.Size{PerRow: 4 * int64(k.D)}}}
}
func (k embedKernel) Requires() wgsl.Requirements       { return wgsl.Requirements{Invocations: 64} }
func (k embedKernel) Workgroup() [3]int                 { return [3]int{64, 1, 1} }
func (k embedKernel) Dispatch(rows int) ([3]int, error) { return grid(rows) }
func (k embedKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	elem := "return table[e];"
	tt := "f32"
	if k.Table == ir.F16 {
		elem = "return unpack2x16float(table[e >> 1u])[e & 1u];"
		tt = "u32"
	}
	return fmt.Sprintf(`// %s: y[t, d] = table[ids[t], d] for ids in rows [R0, R0+RC); one workgroup per row t < step.rows.
%s@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<%s>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const V: u32 = %du;
const D: u32 = %du;
const R0: u32 = %du;
const RC: u32 = %du;

fn elem(e: u32) -> f32 {
  %s
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * nwg.x + wid.x;
  if (t >= step.rows) {
    return;
  }
  let id = ids[t];
  let last = R0 + RC == V;
  if ((id < R0 || id >= R0 + RC) && !(last && id >= V)) {
    return;
  }
  for (var d = lid; d < D; d += 64u) {
    var v = 0.0;
    if (id < V) {
      v = elem((id - R0) * D + d);
    }
    y[t * D + d] = v;
  }
}
`, k.Name(), stepDecl, tt, k.V, k.D, k.R0, k.rc(), elem), nil
}

// ropeKernel rotates x [T, Heads*HeadDim] in place (rotate_half), row t at
// position step.pos0 + t, with angle = f32(pos) * invFreq[i].
// Bindings: 0 step, 1 x f32 [T, Heads*HeadDim] (read_write).
type ropeKernel struct {
	Heads, HeadDim int
	InvFreq        []float32
}

func (k ropeKernel) Name() string {
	return fmt.Sprintf("rope_h%d_d%d_f%s", k.Heads, k.HeadDim, strings.TrimSuffix(f32lit(k.InvFreq[len(k.InvFreq)-1]), "f"))
}
func (k ropeKernel) Validate() error {
	if k.Heads <= 0 || k.HeadDim <= 0 || k.HeadDim%2 != 0 || len(k.InvFreq) != k.HeadDim/2 {
		return fmt.Errorf("codegen: rope: heads %d head_dim %d with %d frequencies", k.Heads, k.HeadDim, len(k.InvFreq))
	}
	return nil
}
func (k ropeKernel) Bindings() []wgsl.Binding {
	return []wgsl.Binding{stepBinding(),
		{Index: 1, Name: "x", Access: wgsl.ReadWrite, Size: wgsl.Size{PerRow: 4 * int64(k.Heads*k.HeadDim)}}}
}
func (k ropeKernel) Requires() wgsl.Requirements { return wgsl.Requirements{Invocations: 64} }
func (k ropeKernel) Workgroup() [3]int           { return [3]int{64, 1, 1} }
func (k ropeKernel) Dispatch(rows int) ([3]int, error) {
	return grid((rows*k.Heads*k.HeadDim/2 + 63) / 64)
}
func (k ropeKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	fs := make([]string, len(k.InvFreq))
	for i, f := range k.InvFreq {
		fs[i] = f32lit(f)
	}
	return fmt.Sprintf(`// %s: rotate_half RoPE in place; one invocation per (row, head, i < HeadDim/2).
%s@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const H: u32 = %du;
const HD: u32 = %du;
const HALF: u32 = %du;
const INV_FREQ = array<f32, %d>(%s);

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * nwg.x + wid.x) * 64u + lid;
  let i = g %% HALF;
  let h = (g / HALF) %% H;
  let t = g / (HALF * H);
  if (t >= step.rows) {
    return;
  }
  let a = f32(step.pos0 + t) * INV_FREQ[i];
  let c = cos(a);
  let s = sin(a);
  let b = t * H * HD + h * HD;
  let x0 = x[b + i];
  let x1 = x[b + i + HALF];
  x[b + i] = x0 * c - x1 * s;
  x[b + i + HALF] = x1 * c + x0 * s;
}
`, k.Name(), stepDecl, k.Heads, k.HeadDim, k.HeadDim/2, len(fs), strings.Join(fs, ", ")), nil
}

// kvWriteKernel copies k [T, KVHeads*HeadDim] into a cache [KVHeads, Ctx,
// HeadDim] at positions step.pos0 + t (dropped at or past Ctx).
// Bindings: 0 step, 1 src f32, 2 cache f32 (read_write).
type kvWriteKernel struct {
	KVHeads, HeadDim, Ctx int
}

func (k kvWriteKernel) Name() string {
	return fmt.Sprintf("kvwrite_h%d_d%d_c%d", k.KVHeads, k.HeadDim, k.Ctx)
}
func (k kvWriteKernel) Validate() error {
	if k.KVHeads <= 0 || k.HeadDim <= 0 || k.Ctx <= 0 {
		return fmt.Errorf("codegen: kvwrite: bad shape")
	}
	return nil
}
func (k kvWriteKernel) Bindings() []wgsl.Binding {
	w := int64(k.KVHeads * k.HeadDim)
	return []wgsl.Binding{stepBinding(),
		{Index: 1, Name: "src", Access: wgsl.ReadOnly, Size: wgsl.Size{PerRow: 4 * w}},
		{Index: 2, Name: "cache", Access: wgsl.ReadWrite, Size: wgsl.Size{Fixed: 4 * w * int64(k.Ctx)}}}
}
func (k kvWriteKernel) Requires() wgsl.Requirements { return wgsl.Requirements{Invocations: 64} }
func (k kvWriteKernel) Workgroup() [3]int           { return [3]int{64, 1, 1} }
func (k kvWriteKernel) Dispatch(rows int) ([3]int, error) {
	return grid((rows*k.KVHeads*k.HeadDim + 63) / 64)
}
func (k kvWriteKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	return fmt.Sprintf(`// %s: cache[(h*CTX + pos0 + t)*HD + d] = src[t, h*HD + d].
%s@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<f32>;

const KVH: u32 = %du;
const HD: u32 = %du;
const CTX: u32 = %du;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * nwg.x + wid.x) * 64u + lid;
  let d = g %% HD;
  let h = (g / HD) %% KVH;
  let t = g / (HD * KVH);
  let pos = step.pos0 + t;
  if (t >= step.rows || pos >= CTX) {
    return;
  }
  cache[(h * CTX + pos) * HD + d] = src[t * KVH * HD + h * HD + d];
}
`, k.Name(), stepDecl, k.KVHeads, k.HeadDim, k.Ctx), nil
}

// attnKernel is causal grouped-query attention of q [T, Heads*HeadDim]
// against caches [KVHeads, Ctx, HeadDim] holding positions 0 ..
// step.pos0+T-1: query row t (position p = pos0+t) of head h attends keys
// 0..p of kv head h / (Heads/KVHeads), scale 1/sqrt(HeadDim), online
// softmax over blocks of WG keys. One workgroup per (row, head).
// Bindings: 0 step, 1 q, 2 kcache, 3 vcache, 4 out f32 [T, Heads*HeadDim].
type attnKernel struct {
	Heads, KVHeads, HeadDim, Ctx int
}

func (k attnKernel) wg() int { return min(256, max(32, nextPow2(k.HeadDim))) }

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func (k attnKernel) Name() string {
	return fmt.Sprintf("attention_h%d_kv%d_d%d_c%d", k.Heads, k.KVHeads, k.HeadDim, k.Ctx)
}
func (k attnKernel) Validate() error {
	if k.Heads <= 0 || k.KVHeads <= 0 || k.Heads%k.KVHeads != 0 || k.HeadDim <= 0 || k.HeadDim > 256 || k.Ctx <= 0 {
		return fmt.Errorf("codegen: attention: heads %d kv %d head_dim %d ctx %d unsupported", k.Heads, k.KVHeads, k.HeadDim, k.Ctx)
	}
	return nil
}
func (k attnKernel) Bindings() []wgsl.Binding {
	q := int64(k.Heads * k.HeadDim)
	c := 4 * int64(k.KVHeads*k.HeadDim) * int64(k.Ctx)
	return []wgsl.Binding{stepBinding(),
		{Index: 1, Name: "q", Access: wgsl.ReadOnly, Size: wgsl.Size{PerRow: 4 * q}},
		{Index: 2, Name: "kc", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: c}},
		{Index: 3, Name: "vc", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: c}},
		{Index: 4, Name: "o", Access: wgsl.ReadWrite, Size: wgsl.Size{PerRow: 4 * q}}}
}
func (k attnKernel) Requires() wgsl.Requirements {
	return wgsl.Requirements{Invocations: k.wg(), WorkgroupStorage: 4 * (k.HeadDim + 2*k.wg())}
}
func (k attnKernel) Workgroup() [3]int                 { return [3]int{k.wg(), 1, 1} }
func (k attnKernel) Dispatch(rows int) ([3]int, error) { return grid(rows * k.Heads) }
func (k attnKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	return fmt.Sprintf(`// %s: causal GQA attention, one workgroup per (row, head).
%s@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

const H: u32 = %du;
const KVH: u32 = %du;
const HD: u32 = %du;
const CTX: u32 = %du;
const WG: u32 = %du;
const SCALE: f32 = %s;

var<workgroup> qs: array<f32, HD>;
var<workgroup> ps: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x;
  let t = g / H;
  let h = g %% H;
  if (t >= step.rows) {
    return;
  }
  let kvh = h / (H / KVH);
  let n = min(step.pos0 + t + 1u, CTX);
  let qb = t * H * HD + h * HD;
  for (var d = lid; d < HD; d += WG) {
    qs[d] = q[qb + d];
  }
  workgroupBarrier();
  var m = bitcast<f32>(0xff7fffffu);
  var l = 0.0;
  var acc = 0.0;
  let cb = kvh * CTX * HD;
  for (var j0 = 0u; j0 < n; j0 += WG) {
    let j = j0 + lid;
    var s = bitcast<f32>(0xff7fffffu);
    if (j < n) {
      var dot = 0.0;
      for (var d = 0u; d < HD; d++) {
        dot += qs[d] * kc[cb + j * HD + d];
      }
      s = dot * SCALE;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) {
        red[lid] = max(red[lid], red[lid + st]);
      }
      workgroupBarrier();
    }
    let mn = max(m, red[0]);
    workgroupBarrier();
    var p = 0.0;
    if (j < n) {
      p = exp(s - mn);
    }
    ps[lid] = p;
    red[lid] = p;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) {
        red[lid] += red[lid + st];
      }
      workgroupBarrier();
    }
    let corr = exp(m - mn);
    l = l * corr + red[0];
    m = mn;
    if (lid < HD) {
      var a = 0.0;
      let cnt = min(WG, n - j0);
      for (var i = 0u; i < cnt; i++) {
        a += ps[i] * vc[cb + (j0 + i) * HD + lid];
      }
      acc = acc * corr + a;
    }
    workgroupBarrier();
  }
  if (lid < HD) {
    o[qb + lid] = acc / l;
  }
}
`, k.Name(), stepDecl, k.Heads, k.KVHeads, k.HeadDim, k.Ctx, k.wg(), f32lit(float32(1/math.Sqrt(float64(k.HeadDim))))), nil
}

// eltKernel is an elementwise op over rows of W: "add" (y = a + b) or
// "silu_mul" (y = silu(a) * b, silu(x) = x / (1 + exp(-x))).
// Bindings: 0 step, 1 a, 2 b, 3 y (f32 [T, W]).
type eltKernel struct {
	Op string
	W  int
}

func (k eltKernel) Name() string { return fmt.Sprintf("%s_w%d", k.Op, k.W) }
func (k eltKernel) Validate() error {
	if (k.Op != "add" && k.Op != "silu_mul") || k.W <= 0 {
		return fmt.Errorf("codegen: elementwise %q width %d unsupported", k.Op, k.W)
	}
	return nil
}
func (k eltKernel) Bindings() []wgsl.Binding {
	s := wgsl.Size{PerRow: 4 * int64(k.W)}
	return []wgsl.Binding{stepBinding(),
		{Index: 1, Name: "a", Access: wgsl.ReadOnly, Size: s},
		{Index: 2, Name: "b", Access: wgsl.ReadOnly, Size: s},
		{Index: 3, Name: "y", Access: wgsl.ReadWrite, Size: s}}
}
func (k eltKernel) Requires() wgsl.Requirements       { return wgsl.Requirements{Invocations: 256} }
func (k eltKernel) Workgroup() [3]int                 { return [3]int{256, 1, 1} }
func (k eltKernel) Dispatch(rows int) ([3]int, error) { return grid((rows*k.W + 255) / 256) }
func (k eltKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	expr := "a[i] + b[i]"
	if k.Op == "silu_mul" {
		expr = "(a[i] / (1.0 + exp(-a[i]))) * b[i]"
	}
	return fmt.Sprintf(`// %s: y[i] = %s over step.rows rows of %d.
%s@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (i >= step.rows * %du) {
    return;
  }
  y[i] = %s;
}
`, k.Name(), expr, k.W, stepDecl, k.W, expr), nil
}

// argmaxKernel writes the smallest index of the largest of N logits (NaN
// counts as -Inf) to token[0]. One workgroup of 256.
// Bindings: 0 logits f32 [N], 1 token u32 [4] (read_write).
type argmaxKernel struct{ N int }

func (k argmaxKernel) Name() string { return fmt.Sprintf("argmax_n%d", k.N) }
func (k argmaxKernel) Validate() error {
	if k.N <= 0 {
		return fmt.Errorf("codegen: argmax: n %d", k.N)
	}
	return nil
}
func (k argmaxKernel) Bindings() []wgsl.Binding {
	return []wgsl.Binding{
		{Index: 0, Name: "logits", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: 4 * int64(k.N)}},
		{Index: 1, Name: "token", Access: wgsl.ReadWrite, Size: wgsl.Size{Fixed: 16}}}
}
func (k argmaxKernel) Requires() wgsl.Requirements {
	return wgsl.Requirements{Invocations: 256, WorkgroupStorage: 2048}
}
func (k argmaxKernel) Workgroup() [3]int            { return [3]int{256, 1, 1} }
func (k argmaxKernel) Dispatch(int) ([3]int, error) { return [3]int{1, 1, 1}, nil }
func (k argmaxKernel) Render() (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	return fmt.Sprintf(`// %s: token[0] = smallest index of the largest logit (NaN as -Inf).
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> token: array<u32>;

const N: u32 = %du;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  var v = bitcast<f32>(0xff7fffffu);
  var vi = 0xffffffffu;
  for (var i = lid; i < N; i += 256u) {
    var x = logits[i];
    if (x != x) {
      x = bitcast<f32>(0xff7fffffu);
    }
    if (vi == 0xffffffffu || better(x, i, v, vi)) {
      v = x;
      vi = i;
    }
  }
  bv[lid] = v;
  bi[lid] = vi;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s && bi[lid + s] != 0xffffffffu && (bi[lid] == 0xffffffffu || better(bv[lid + s], bi[lid + s], bv[lid], bi[lid]))) {
      bv[lid] = bv[lid + s];
      bi[lid] = bi[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    token[0] = bi[0];
  }
}
`, k.Name(), k.N), nil
}
