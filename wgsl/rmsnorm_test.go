package wgsl_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
	"github.com/smeltml/smelt/wgsl/ref"
)

// TestRMSNorm: tolerance |got - want| <= 1e-5 * |want| + 1e-6 (f32 sums
// of squares in a tree, inverseSqrt within 2 ULP).
func TestRMSNorm(t *testing.T) {
	tests := []struct {
		name string
		p    wgsl.RMSNorm
		rows int
	}{
		{"stories260K", wgsl.RMSNorm{D: 64, Eps: 1e-5, Weight: ir.F32}, 7},
		{"ref29m", wgsl.RMSNorm{D: 512, Eps: 1e-5, Weight: ir.F32}, 5},
		{"ref29m-f16w", wgsl.RMSNorm{D: 512, Eps: 1e-5, Weight: ir.F16}, 1},
		{"odd", wgsl.RMSNorm{D: 173, Eps: 1e-6, Weight: ir.F32}, 3},
		{"wide", wgsl.RMSNorm{D: 2050, Eps: 0, Weight: ir.F16}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tt.p.D)))
			x := randF32(r, tt.rows*tt.p.D, 3)
			var w []float32
			in := map[string][]byte{"x": f32bytes(x)}
			if tt.p.Weight == ir.F16 {
				var h []uint16
				h, w = randF16(r, tt.p.D, 2)
				in["w"] = f16bytes(h)
			} else {
				w = randF32(r, tt.p.D, 2)
				in["w"] = f32bytes(w)
			}
			out, _ := run(t, launch{k: tt.p, rows: tt.rows, in: in})
			want := ref.RMSNorm(x, w, tt.p.D, tt.p.Eps)
			checkClose(t, "y", bytesF32(out["y"]), want, func(i int) float64 { return 1e-5*math.Abs(float64(want[i])) + 1e-6 })
		})
	}
}

func TestRMSNormValidate(t *testing.T) {
	for _, p := range []wgsl.RMSNorm{
		{D: 0, Eps: 1e-5, Weight: ir.F32},
		{D: 64, Eps: float32(math.NaN()), Weight: ir.F32},
		{D: 64, Eps: -1, Weight: ir.F32},
		{D: 64, Eps: 1e-5, Weight: ir.BF16},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: Validate() = nil, want an error", p)
		}
		if _, err := p.Render(); err == nil {
			t.Errorf("%+v: Render() = nil error, want an error", p)
		}
	}
}
