package wgsl

import "fmt"

// Argmax writes the index of the largest logit (reference: ref.Argmax: the
// smallest such index; NaN counts as -Inf; 0 for an all-NaN/-Inf row):
//
//	out[0] = argmax_i logits[i],  i < N
//
// Bindings: 0 logits f32 [N], 1 out u32 [1] (read_write). One workgroup of
// 256 invocations: Dispatch = (1, 1, 1) whatever the rows.
type Argmax struct {
	N int
}

// Name implements Kernel.
func (p Argmax) Name() string { return fmt.Sprintf("argmax_n%d", p.N) }

// Validate implements Kernel.
func (p Argmax) Validate() error {
	if p.N <= 0 {
		return fmt.Errorf("wgsl: argmax: %d logits, want > 0", p.N)
	}
	return nil
}

// Bindings implements Kernel.
func (p Argmax) Bindings() []Binding {
	return []Binding{
		{Index: 0, Name: "logits", Access: ReadOnly, Size: Size{Fixed: 4 * int64(p.N)}},
		{Index: 1, Name: "out", Access: ReadWrite, Size: Size{Fixed: 4}},
	}
}

// Requires implements Kernel.
func (p Argmax) Requires() Requirements {
	return Requirements{Invocations: 256, WorkgroupStorage: 2 * 4 * 256}
}

// Workgroup implements Kernel.
func (p Argmax) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p Argmax) Dispatch(rows int) ([3]int, error) { return [3]int{1, 1, 1}, nil }

// Render implements Kernel.
func (p Argmax) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("argmax", map[string]any{"Name": p.Name(), "N": p.N})
}

// SamplingUniformBytes is the size of the Sampling uniform of Sample:
//
//	struct Sampling { temperature: f32, top_k: u32, top_p: f32, rand: f32 }
//
// rand is a uniform draw in [0, 1) made by the host for this token.
const SamplingUniformBytes = 16

// Sample draws a token from logits on the GPU with temperature, top-k and
// top-p (reference: ref.Sample with maxK = MaxK; read its steps for the
// exact arithmetic). temperature <= 0 or top_k == 1 is greedy (Argmax).
// Otherwise the kernel selects the min(top_k or MaxK, MaxK, N) best logits
// (value descending, index ascending) by repeated workgroup arg-max passes,
// then invocation 0 applies temperature, top-p and the draw serially, in
// the reference's order. Tokens outside the MaxK best are never drawn.
//
// Bindings: 0 sampling (uniform Sampling), 1 logits f32 [N], 2 out u32 [1]
// (read_write). One workgroup of 256: Dispatch = (1, 1, 1).
type Sample struct {
	N    int
	MaxK int // candidates considered, 1..256
}

// Name implements Kernel.
func (p Sample) Name() string { return fmt.Sprintf("sample_n%d_k%d", p.N, p.MaxK) }

// Validate implements Kernel.
func (p Sample) Validate() error {
	if p.N <= 0 {
		return fmt.Errorf("wgsl: sample: %d logits, want > 0", p.N)
	}
	if p.MaxK < 1 || p.MaxK > 256 {
		return fmt.Errorf("wgsl: sample: max k %d, want 1..256", p.MaxK)
	}
	return nil
}

// Bindings implements Kernel.
func (p Sample) Bindings() []Binding {
	return []Binding{
		{Index: 0, Name: "sampling", Access: Uniform, Size: Size{Fixed: SamplingUniformBytes}},
		{Index: 1, Name: "logits", Access: ReadOnly, Size: Size{Fixed: 4 * int64(p.N)}},
		{Index: 2, Name: "out", Access: ReadWrite, Size: Size{Fixed: 4}},
	}
}

// Requires implements Kernel.
func (p Sample) Requires() Requirements {
	return Requirements{Invocations: 256, WorkgroupStorage: 2*4*256 + 2*4*p.MaxK}
}

// Workgroup implements Kernel.
func (p Sample) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p Sample) Dispatch(rows int) ([3]int, error) { return [3]int{1, 1, 1}, nil }

// Render implements Kernel.
func (p Sample) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("sample", map[string]any{"Name": p.Name(), "N": p.N, "MaxK": p.MaxK})
}
