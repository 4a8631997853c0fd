package wgsl

import "fmt"

// SiLUMul is the gated activation of a SwiGLU MLP (reference: ref.SiLUMul):
//
//	out[t, i] = silu(g[t, i]) * u[t, i],  silu(v) = v / (1 + exp(-v)),  i < F
//
// Bindings: 0 step (uniform Step); Fused: 1 gu f32 [T, 2F] (gate in columns
// 0..F-1, up in F..2F-1, as a fused gate_up matmul writes them); otherwise
// 1 g f32 [T, F], 2 u f32 [T, F]; last out f32 [T, F] (read_write). One
// invocation per output, 256 per workgroup: Dispatch(T) = ceil(T*F/256).
type SiLUMul struct {
	F     int
	Fused bool
}

// Name implements Kernel.
func (p SiLUMul) Name() string {
	if p.Fused {
		return fmt.Sprintf("silumul_f%d_fused", p.F)
	}
	return fmt.Sprintf("silumul_f%d", p.F)
}

// Validate implements Kernel.
func (p SiLUMul) Validate() error {
	if p.F <= 0 {
		return fmt.Errorf("wgsl: silumul: width %d, want > 0", p.F)
	}
	return nil
}

// Bindings implements Kernel.
func (p SiLUMul) Bindings() []Binding {
	f := 4 * int64(p.F)
	if p.Fused {
		return []Binding{stepBinding(),
			{Index: 1, Name: "gu", Access: ReadOnly, Size: Size{PerRow: 2 * f}},
			{Index: 2, Name: "out", Access: ReadWrite, Size: Size{PerRow: f}}}
	}
	return []Binding{stepBinding(),
		{Index: 1, Name: "g", Access: ReadOnly, Size: Size{PerRow: f}},
		{Index: 2, Name: "u", Access: ReadOnly, Size: Size{PerRow: f}},
		{Index: 3, Name: "out", Access: ReadWrite, Size: Size{PerRow: f}}}
}

// Requires implements Kernel.
func (p SiLUMul) Requires() Requirements { return Requirements{Invocations: 256} }

// Workgroup implements Kernel.
func (p SiLUMul) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p SiLUMul) Dispatch(rows int) ([3]int, error) { return grid(ceilDiv(rows*p.F, 256)) }

// Render implements Kernel.
func (p SiLUMul) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("silumul", map[string]any{"Name": p.Name(), "F": p.F, "Fused": p.Fused})
}

// Add is the residual add, in place (reference: ref.Add):
//
//	acc[t, i] = acc[t, i] + x[t, i],  i < D
//
// Bindings: 0 step (uniform Step), 1 x f32 [T, D], 2 acc f32 [T, D]
// (read_write). One invocation per element, 256 per workgroup:
// Dispatch(T) = ceil(T*D/256).
type Add struct {
	D int
}

// Name implements Kernel.
func (p Add) Name() string { return fmt.Sprintf("add_d%d", p.D) }

// Validate implements Kernel.
func (p Add) Validate() error {
	if p.D <= 0 {
		return fmt.Errorf("wgsl: add: width %d, want > 0", p.D)
	}
	return nil
}

// Bindings implements Kernel.
func (p Add) Bindings() []Binding {
	return []Binding{stepBinding(),
		{Index: 1, Name: "x", Access: ReadOnly, Size: Size{PerRow: 4 * int64(p.D)}},
		{Index: 2, Name: "acc", Access: ReadWrite, Size: Size{PerRow: 4 * int64(p.D)}}}
}

// Requires implements Kernel.
func (p Add) Requires() Requirements { return Requirements{Invocations: 256} }

// Workgroup implements Kernel.
func (p Add) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p Add) Dispatch(rows int) ([3]int, error) { return grid(ceilDiv(rows*p.D, 256)) }

// Render implements Kernel.
func (p Add) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("add", map[string]any{"Name": p.Name(), "D": p.D})
}

// Softmax normalizes each row of x [T, N] (reference: ref.Softmax):
//
//	y[t, i] = exp(x[t, i] - max_j x[t, j]) / sum_j exp(x[t, j] - max_j x[t, j])
//
// Bindings: 0 step (uniform Step), 1 x f32 [T, N], 2 y f32 [T, N]
// (read_write). One workgroup of min(256, max(32, nextPow2(N))) invocations
// per row: Dispatch(T) = T workgroups (x then y).
type Softmax struct {
	N int
}

func (p Softmax) wg() int { return min(256, max(32, nextPow2(p.N))) }

// Name implements Kernel.
func (p Softmax) Name() string { return fmt.Sprintf("softmax_n%d", p.N) }

// Validate implements Kernel.
func (p Softmax) Validate() error {
	if p.N <= 0 {
		return fmt.Errorf("wgsl: softmax: width %d, want > 0", p.N)
	}
	return nil
}

// Bindings implements Kernel.
func (p Softmax) Bindings() []Binding {
	return []Binding{stepBinding(),
		{Index: 1, Name: "x", Access: ReadOnly, Size: Size{PerRow: 4 * int64(p.N)}},
		{Index: 2, Name: "y", Access: ReadWrite, Size: Size{PerRow: 4 * int64(p.N)}}}
}

// Requires implements Kernel.
func (p Softmax) Requires() Requirements {
	return Requirements{Invocations: p.wg(), WorkgroupStorage: 4 * p.wg()}
}

// Workgroup implements Kernel.
func (p Softmax) Workgroup() [3]int { return [3]int{p.wg(), 1, 1} }

// Dispatch implements Kernel.
func (p Softmax) Dispatch(rows int) ([3]int, error) { return grid(rows) }

// Render implements Kernel.
func (p Softmax) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("softmax", map[string]any{"Name": p.Name(), "N": p.N, "WG": p.wg()})
}
