package wgsl

import "fmt"

// RoPE rotates heads in place in HF's rotate_half convention (reference:
// ref.RoPE). Row t of x (RowStride elements) holds Heads heads of HeadDim
// from element Offset; its position is step.pos0 + t. For i < HeadDim/2:
//
//	a = f32(pos) * inv_freq[i]
//	x'[i]           = x[i]*cos(a) - x[i+HeadDim/2]*sin(a)
//	x'[i+HeadDim/2] = x[i+HeadDim/2]*cos(a) + x[i]*sin(a)
//
// The angle is reduced to [-π, π] (Cody-Waite, 2π = 6.28125 + 1.9353072e-3)
// before cos/sin, since WGSL bounds their error only there. inv_freq
// [HeadDim/2] is computed by the host (default theta^(-2i/HeadDim); linear or
// llama3 scaling folded in).
//
// Bindings: 0 step (uniform Step), 1 inv_freq f32 [HeadDim/2], 2 x f32 [T,
// RowStride] (read_write). One invocation per rotated pair, 256 per
// workgroup: Dispatch(T) = ceil(T*Heads*HeadDim/2 / 256) workgroups.
type RoPE struct {
	Heads, HeadDim int
	RowStride      int // 0 means Heads*HeadDim
	Offset         int
}

func (p RoPE) stride() int {
	if p.RowStride == 0 {
		return p.Heads * p.HeadDim
	}
	return p.RowStride
}

// Name implements Kernel.
func (p RoPE) Name() string {
	return fmt.Sprintf("rope_h%d_hd%d_s%d_o%d", p.Heads, p.HeadDim, p.stride(), p.Offset)
}

// Validate implements Kernel.
func (p RoPE) Validate() error {
	if p.Heads <= 0 || p.HeadDim <= 0 || p.HeadDim%2 != 0 {
		return fmt.Errorf("wgsl: rope: heads %d, head dim %d: want heads > 0 and an even head dim > 0", p.Heads, p.HeadDim)
	}
	if p.Offset < 0 || p.RowStride < 0 || p.Offset+p.Heads*p.HeadDim > p.stride() {
		return fmt.Errorf("wgsl: rope: heads end at element %d, past the row stride %d", p.Offset+p.Heads*p.HeadDim, p.stride())
	}
	return nil
}

// Bindings implements Kernel.
func (p RoPE) Bindings() []Binding {
	return []Binding{
		stepBinding(),
		{Index: 1, Name: "inv_freq", Access: ReadOnly, Size: Size{Fixed: 2 * int64(p.HeadDim)}},
		{Index: 2, Name: "x", Access: ReadWrite, Size: Size{PerRow: 4 * int64(p.stride())}},
	}
}

// Requires implements Kernel.
func (p RoPE) Requires() Requirements { return Requirements{Invocations: 256} }

// Workgroup implements Kernel.
func (p RoPE) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p RoPE) Dispatch(rows int) ([3]int, error) {
	return grid(ceilDiv(rows*p.Heads*p.HeadDim/2, 256))
}

// Render implements Kernel.
func (p RoPE) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("rope", map[string]any{
		"Name": p.Name(), "Heads": p.Heads, "Half": p.HeadDim / 2, "HD": p.HeadDim,
		"Stride": p.stride(), "Offset": p.Offset,
	})
}
