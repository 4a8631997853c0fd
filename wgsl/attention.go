package wgsl

import (
	"fmt"
	"math"
)

// KV cache layout, per layer and for K and V separately: f32 [KVHeads,
// MaxCtx, HeadDim]; element (h, pos, d) at (h*MaxCtx + pos)*HeadDim + d.

// KVWrite appends the step's keys or values to a KV cache (reference:
// ref.KVWrite): for t < step.rows with pos = step.pos0 + t < MaxCtx,
//
//	cache[(h*MaxCtx + pos)*HeadDim + d] = src[t*SrcStride + SrcOffset + h*HeadDim + d]
//
// Bindings: 0 step (uniform Step), 1 src f32 [T, SrcStride], 2 cache f32
// [KVHeads, MaxCtx, HeadDim] (read_write). One invocation per element, 256 per
// workgroup: Dispatch(T) = ceil(T*KVHeads*HeadDim/256) workgroups.
type KVWrite struct {
	KVHeads, HeadDim, MaxCtx int
	SrcStride                int // 0 means KVHeads*HeadDim
	SrcOffset                int
}

func (p KVWrite) stride() int {
	if p.SrcStride == 0 {
		return p.KVHeads * p.HeadDim
	}
	return p.SrcStride
}

// Name implements Kernel.
func (p KVWrite) Name() string {
	return fmt.Sprintf("kvwrite_kv%d_hd%d_ctx%d_s%d_o%d", p.KVHeads, p.HeadDim, p.MaxCtx, p.stride(), p.SrcOffset)
}

// Validate implements Kernel.
func (p KVWrite) Validate() error {
	if p.KVHeads <= 0 || p.HeadDim <= 0 || p.MaxCtx <= 0 {
		return fmt.Errorf("wgsl: kvwrite: kv heads %d, head dim %d, context %d: want > 0", p.KVHeads, p.HeadDim, p.MaxCtx)
	}
	if p.SrcOffset < 0 || p.SrcStride < 0 || p.SrcOffset+p.KVHeads*p.HeadDim > p.stride() {
		return fmt.Errorf("wgsl: kvwrite: heads end at element %d, past the row stride %d", p.SrcOffset+p.KVHeads*p.HeadDim, p.stride())
	}
	if b := int64(p.KVHeads) * int64(p.MaxCtx) * int64(p.HeadDim) * 4; b > MaxBindingBytes {
		return fmt.Errorf("wgsl: kvwrite: cache of %d bytes over the %d-byte binding limit", b, MaxBindingBytes)
	}
	return nil
}

// Bindings implements Kernel.
func (p KVWrite) Bindings() []Binding {
	return []Binding{
		stepBinding(),
		{Index: 1, Name: "src", Access: ReadOnly, Size: Size{PerRow: 4 * int64(p.stride())}},
		{Index: 2, Name: "cache", Access: ReadWrite, Size: Size{Fixed: 4 * int64(p.KVHeads) * int64(p.MaxCtx) * int64(p.HeadDim)}},
	}
}

// Requires implements Kernel.
func (p KVWrite) Requires() Requirements { return Requirements{Invocations: 256} }

// Workgroup implements Kernel.
func (p KVWrite) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p KVWrite) Dispatch(rows int) ([3]int, error) {
	return grid(ceilDiv(rows*p.KVHeads*p.HeadDim, 256))
}

// Render implements Kernel.
func (p KVWrite) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("kvwrite", map[string]any{
		"Name": p.Name(), "KVHeads": p.KVHeads, "HD": p.HeadDim, "Ctx": p.MaxCtx,
		"Stride": p.stride(), "Offset": p.SrcOffset,
	})
}

// Attention is causal attention with grouped KV heads against the KV cache
// (reference: ref.Attention), used for prefill (T rows) and decode (T = 1)
// alike, after KVWrite stored the step's keys and values. Query row t
// (position p = step.pos0 + t) of head h reads q[t*QStride + QOffset +
// h*HeadDim + d] and attends cache positions 0..min(p, MaxCtx-1) of kv head
// h / (Heads/KVHeads):
//
//	o[t, h*HeadDim + d] = sum_j softmax_j(Scale * q·k[j]) * v[j][d]
//
// Scale 0 means 1/sqrt(HeadDim). One workgroup of 64 invocations per
// (head, row) walks the keys in chunks of 64 with an online softmax
// (running max and sum, rescaled accumulators), so any context length runs
// in fixed workgroup memory.
//
// Bindings: 0 step (uniform Step), 1 q f32 [T, QStride], 2 k_cache, 3
// v_cache f32 [KVHeads, MaxCtx, HeadDim], 4 o f32 [T, Heads*HeadDim]
// (read_write). Dispatch(T) = (Heads, T, 1).
type Attention struct {
	Heads, KVHeads, HeadDim, MaxCtx int
	QStride                         int // 0 means Heads*HeadDim
	QOffset                         int
	Scale                           float32
}

const attnWG = 64

func (p Attention) stride() int {
	if p.QStride == 0 {
		return p.Heads * p.HeadDim
	}
	return p.QStride
}

func (p Attention) scale() float32 {
	if p.Scale == 0 {
		return float32(1 / math.Sqrt(float64(p.HeadDim)))
	}
	return p.Scale
}

// Name implements Kernel.
func (p Attention) Name() string {
	s := fmt.Sprintf("attention_h%d_kv%d_hd%d_ctx%d_s%d_o%d", p.Heads, p.KVHeads, p.HeadDim, p.MaxCtx, p.stride(), p.QOffset)
	if p.Scale != 0 {
		s += "_scale" + f32lit(p.Scale)
	}
	return s
}

// Validate implements Kernel.
func (p Attention) Validate() error {
	if p.Heads <= 0 || p.KVHeads <= 0 || p.HeadDim <= 0 || p.MaxCtx <= 0 {
		return fmt.Errorf("wgsl: attention: heads %d, kv heads %d, head dim %d, context %d: want > 0", p.Heads, p.KVHeads, p.HeadDim, p.MaxCtx)
	}
	if p.Heads%p.KVHeads != 0 {
		return fmt.Errorf("wgsl: attention: %d heads not a multiple of %d kv heads", p.Heads, p.KVHeads)
	}
	if p.HeadDim > 1024 {
		return fmt.Errorf("wgsl: attention: head dim %d over 1024", p.HeadDim)
	}
	if p.QOffset < 0 || p.QStride < 0 || p.QOffset+p.Heads*p.HeadDim > p.stride() {
		return fmt.Errorf("wgsl: attention: heads end at element %d, past the row stride %d", p.QOffset+p.Heads*p.HeadDim, p.stride())
	}
	if s := p.scale(); !(s > 0) || math.IsInf(float64(s), 0) {
		return fmt.Errorf("wgsl: attention: scale %v, want finite > 0", s)
	}
	if b := int64(p.KVHeads) * int64(p.MaxCtx) * int64(p.HeadDim) * 4; b > MaxBindingBytes {
		return fmt.Errorf("wgsl: attention: cache of %d bytes over the %d-byte binding limit", b, MaxBindingBytes)
	}
	return nil
}

// Bindings implements Kernel.
func (p Attention) Bindings() []Binding {
	cache := Size{Fixed: 4 * int64(p.KVHeads) * int64(p.MaxCtx) * int64(p.HeadDim)}
	return []Binding{
		stepBinding(),
		{Index: 1, Name: "q", Access: ReadOnly, Size: Size{PerRow: 4 * int64(p.stride())}},
		{Index: 2, Name: "k_cache", Access: ReadOnly, Size: cache},
		{Index: 3, Name: "v_cache", Access: ReadOnly, Size: cache},
		{Index: 4, Name: "o", Access: ReadWrite, Size: Size{PerRow: 4 * int64(p.Heads) * int64(p.HeadDim)}},
	}
}

// Requires implements Kernel.
func (p Attention) Requires() Requirements {
	return Requirements{Invocations: attnWG, WorkgroupStorage: 4 * (p.HeadDim + 2*attnWG)}
}

// Workgroup implements Kernel.
func (p Attention) Workgroup() [3]int { return [3]int{attnWG, 1, 1} }

// Dispatch implements Kernel.
func (p Attention) Dispatch(rows int) ([3]int, error) {
	if rows < 0 || rows > MaxWorkgroupsPerDim || p.Heads > MaxWorkgroupsPerDim {
		return [3]int{}, fmt.Errorf("wgsl: attention: %d rows x %d heads exceed the dispatch limit", rows, p.Heads)
	}
	return [3]int{p.Heads, max(rows, 1), 1}, nil
}

// Render implements Kernel.
func (p Attention) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("attention", map[string]any{
		"Name": p.Name(), "Heads": p.Heads, "Group": p.Heads / p.KVHeads, "HD": p.HeadDim,
		"Ctx": p.MaxCtx, "Stride": p.stride(), "Offset": p.QOffset, "Scale": f32lit(p.scale()),
		"WG": attnWG, "DPT": ceilDiv(p.HeadDim, attnWG),
	})
}
