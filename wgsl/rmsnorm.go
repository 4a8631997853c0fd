package wgsl

import (
	"fmt"
	"math"
	"strconv"

	"github.com/smeltml/smelt/internal/ir"
)

// RMSNorm normalizes each row of x [T, D] (reference: ref.RMSNorm):
//
//	y[t, i] = (x[t, i] * inverseSqrt(sum_i x[t, i]^2 / D + Eps)) * w[i]
//
// Bindings: 0 step (uniform Step), 1 x f32 [T, D], 2 w [D] (f32, or f16 as
// u32 pairs), 3 y f32 [T, D] (read_write). One workgroup of min(256,
// max(32, nextPow2(D))) invocations per row; Dispatch(T) = T workgroups
// (laid out x then y past 65535).
type RMSNorm struct {
	D      int
	Eps    float32
	Weight ir.DType // F32 or F16 storage of w
}

// Name implements Kernel.
func (p RMSNorm) Name() string {
	return fmt.Sprintf("rmsnorm_d%d_w%v_eps%s", p.D, p.Weight, strconv.FormatFloat(float64(p.Eps), 'e', -1, 32))
}

// Validate implements Kernel.
func (p RMSNorm) Validate() error {
	if p.D <= 0 {
		return fmt.Errorf("wgsl: rmsnorm: dim %d, want > 0", p.D)
	}
	if p.Eps < 0 || math.IsInf(float64(p.Eps), 0) || p.Eps != p.Eps {
		return fmt.Errorf("wgsl: rmsnorm: eps %v, want finite >= 0", p.Eps)
	}
	if p.Weight != ir.F32 && p.Weight != ir.F16 {
		return fmt.Errorf("wgsl: rmsnorm: weight type %v, want f32 or f16", p.Weight)
	}
	return nil
}

func (p RMSNorm) wg() int { return min(256, max(32, nextPow2(p.D))) }

// Bindings implements Kernel.
func (p RMSNorm) Bindings() []Binding {
	wb := int64(4)
	if p.Weight == ir.F16 {
		wb = 2
	}
	d := int64(p.D)
	return []Binding{
		stepBinding(),
		{Index: 1, Name: "x", Access: ReadOnly, Size: Size{PerRow: 4 * d}},
		{Index: 2, Name: "w", Access: ReadOnly, Size: Size{Fixed: wb * d}},
		{Index: 3, Name: "y", Access: ReadWrite, Size: Size{PerRow: 4 * d}},
	}
}

// Requires implements Kernel.
func (p RMSNorm) Requires() Requirements {
	return Requirements{Invocations: p.wg(), WorkgroupStorage: 4 * p.wg()}
}

// Workgroup implements Kernel.
func (p RMSNorm) Workgroup() [3]int { return [3]int{p.wg(), 1, 1} }

// Dispatch implements Kernel.
func (p RMSNorm) Dispatch(rows int) ([3]int, error) { return grid(rows) }

// Render implements Kernel.
func (p RMSNorm) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("rmsnorm", map[string]any{
		"Name": p.Name(), "D": p.D, "WG": p.wg(), "Eps": f32lit(p.Eps), "WF16": p.Weight == ir.F16,
	})
}

// f32lit formats v as a WGSL f32 literal that round-trips.
func f32lit(v float32) string {
	return strconv.FormatFloat(float64(v), 'e', -1, 32) + "f"
}
