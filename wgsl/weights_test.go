package wgsl_test

import (
	"math/rand/v2"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
	"github.com/smeltml/smelt/wgsl/ref"
)

// randMatrix returns a random [rows, cols] weight in format w: f32/f16
// values uniform in [-1, 1); quantized words, zero points (padding bits
// included) uniformly random, scales uniform in [0.01, 0.11) (rounded to
// f16 when the format stores f16 scales).
func randMatrix(r *rand.Rand, w wgsl.Weights, rows, cols int) *ref.Matrix {
	m := &ref.Matrix{Rows: rows, Cols: cols}
	switch w.Type {
	case ir.F32:
		m.F32 = randF32(r, rows*cols, 1)
	case ir.F16:
		m.F16, _ = randF16(r, rows*cols, 1)
	default:
		m.Bits, m.GroupSize = w.Bits, w.GroupSize
		m.QWeight = make([]uint32, rows*cols*w.Bits/32)
		for i := range m.QWeight {
			m.QWeight[i] = r.Uint32()
		}
		m.Scales = make([]float32, rows*m.Blocks())
		for i := range m.Scales {
			s := 0.01 + 0.1*r.Float32()
			if w.Scale == ir.F16 {
				s = ref.HalfToFloat(ref.FloatToHalf(s))
			}
			m.Scales[i] = s
		}
		if !w.Symmetric {
			m.Zeros = make([]uint8, rows*m.ZeroRowBytes())
			for i := range m.Zeros {
				m.Zeros[i] = uint8(r.Uint32())
			}
		}
	}
	return m
}

// matrixBytes returns the GPU bytes of rows [r0, r0+rc) of m by binding name.
func matrixBytes(m *ref.Matrix, w wgsl.Weights, r0, rc int) map[string][]byte {
	c := m.Cols
	switch w.Type {
	case ir.F32:
		return map[string][]byte{"w": f32bytes(m.F32[r0*c : (r0+rc)*c])}
	case ir.F16:
		return map[string][]byte{"w": f16bytes(m.F16[r0*c : (r0+rc)*c])}
	}
	wpr := c * w.Bits / 32
	nb := m.Blocks()
	out := map[string][]byte{"qweight": u32bytes(m.QWeight[r0*wpr : (r0+rc)*wpr])}
	sc := m.Scales[r0*nb : (r0+rc)*nb]
	if w.Scale == ir.F16 {
		h := make([]uint16, len(sc))
		for i, s := range sc {
			h[i] = ref.FloatToHalf(s)
		}
		out["scales"] = f16bytes(h)
	} else {
		out["scales"] = f32bytes(sc)
	}
	if !w.Symmetric {
		zrb := m.ZeroRowBytes()
		out["zeros"] = append([]byte(nil), m.Zeros[r0*zrb:(r0+rc)*zrb]...)
	}
	return out
}
