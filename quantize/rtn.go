package quantize

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/x448/float16"
)

// Group parameters (the convention every algorithm in this package uses).
//
// Asymmetric (ONNX Runtime MLAS and GPTQ convention): the range always
// contains 0,
//
//	lo = min(min(v), 0), hi = max(max(v), 0)
//	scale = round_to_scale_dtype((hi - lo) / (2^b - 1))
//	z = clamp(round(-lo / scale), 0, 2^b - 1)
//
// Symmetric (ONNX Runtime MLAS convention, MatMulNBits-compatible): the
// value of largest magnitude e (signed; lo on a tie) maps to code 0, so the
// whole code range [-2^(b-1), 2^(b-1)-1] is used and the scale may be
// negative:
//
//	scale = round_to_scale_dtype(e / -2^(b-1)),  z = 2^(b-1)
//
// (GPTQModel's symmetric convention, scale = 2·absmax/(2^b-1), wastes half
// a step: its largest code is never reached from the data; ORT's gives a
// 6% finer int4 grid for the same format.)
//
// Codes, for either: q = clamp(round(v / scale) + z, 0, 2^b - 1), with
// round half to even (torch.round) computed against the already-rounded
// scale, so that Dequantize reproduces the quantizer's own
// reconstruction exactly. A zero scale (an all-zero group, or a range that
// underflows the scale dtype) gives q = z and dequantizes to 0.
//
// A clip limit c > 0 first clamps the group's values to [-c, c] (AutoAWQ's
// clip search); a ratio p in (0, 1] scales lo and hi by p (GPTQ's MSE grid).

// GroupParams returns the scale and zero point of one group of values v
// under scheme s (see the convention above); clip ≤ 0 and ratio 0 mean
// neither. It fails only when the scale overflows the scale dtype.
func GroupParams(v []float32, s Scheme, clip, ratio float32) (scale float32, zero uint8, err error) {
	var lo, hi float32
	for _, x := range v {
		if clip > 0 {
			x = min(max(x, -clip), clip)
		}
		lo = min(lo, x)
		hi = max(hi, x)
	}
	return rangeParams(lo, hi, s, ratio)
}

// rangeParams computes group parameters from a range with lo ≤ 0 ≤ hi.
func rangeParams(lo, hi float32, s Scheme, ratio float32) (float32, uint8, error) {
	if ratio > 0 && ratio != 1 {
		lo *= ratio
		hi *= ratio
	}
	if math.IsNaN(float64(lo)) || math.IsNaN(float64(hi)) || math.IsInf(float64(lo), 0) || math.IsInf(float64(hi), 0) {
		return 0, 0, fmt.Errorf("weights contain a non-finite value")
	}
	maxq := float32(s.MaxCode())
	var scale float32
	if s.Symmetric {
		e := lo
		if abs32(hi) > abs32(lo) {
			e = hi
		}
		scale = e / -float32(int(1)<<(s.Bits-1))
	} else {
		scale = (hi - lo) / maxq
	}
	scale, err := roundScale(scale, s.ScaleType)
	if err != nil {
		return 0, 0, err
	}
	if s.Symmetric {
		return scale, s.Zero(), nil
	}
	if scale == 0 {
		return 0, 0, nil
	}
	z := roundEven32(-lo / scale)
	return scale, uint8(min(max(z, 0), maxq)), nil
}

// roundScale rounds a scale to the scale dtype (f16 round-to-nearest-even)
// and rejects overflow.
func roundScale(x float32, d ir.DType) (float32, error) {
	if d == ir.F16 {
		r := float16.Fromfloat32(x).Float32()
		if math.IsInf(float64(r), 0) {
			return 0, fmt.Errorf("scale %g overflows f16 (max 65504); use an -f32 scheme", x)
		}
		return r, nil
	}
	return x, nil
}

// code quantizes one value against (scale, zero): clamp(round(v/scale)+z).
func code(v, scale float32, zero uint8, maxq float32) uint8 {
	if scale == 0 {
		return zero
	}
	c := roundEven32(v/scale) + float32(zero)
	return uint8(min(max(c, 0), maxq))
}

func roundEven32(x float32) float32 { return float32(math.RoundToEven(float64(x))) }

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// RTNOptions are optional parameters of RTN.
type RTNOptions struct {
	// ClipMax, when non-nil, holds one clip limit per group (Rows*NBlocks,
	// row-major), as AWQClip returns; values ≤ 0 mean no clip.
	ClipMax []float32
	// Ratio in (0, 1] shrinks every group's range (1 or 0: none).
	Ratio float32
}

// RTN quantizes the rows×cols row-major weight w by rounding to nearest
// under scheme s (group parameters as documented on GroupParams). opts may
// be nil. Rows are processed in parallel; the result does not depend on
// GOMAXPROCS.
func RTN(w []float32, rows, cols int, s Scheme, opts *RTNOptions) (*Quantized, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := s.CheckShape(rows, cols); err != nil {
		return nil, fmt.Errorf("quantize: rtn %s: %w", s.Name(), err)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quantize: rtn: %d weights, want %d for [%d %d]", len(w), rows*cols, rows, cols)
	}
	var o RTNOptions
	if opts != nil {
		o = *opts
	}
	if o.Ratio < 0 || o.Ratio > 1 {
		return nil, fmt.Errorf("quantize: rtn: ratio %v outside (0, 1]", o.Ratio)
	}
	q := newQuantized(s, rows, cols)
	q.Algorithm = AlgoRTN
	nb := q.NBlocks()
	if o.ClipMax != nil && len(o.ClipMax) != rows*nb {
		return nil, fmt.Errorf("quantize: rtn: %d clip limits, want %d", len(o.ClipMax), rows*nb)
	}
	err := parallelRows(rows, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			if err := q.quantizeRow(r, w[r*cols:(r+1)*cols], o.ClipMax, o.Ratio); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quantize: rtn %s: %w", s.Name(), err)
	}
	return q, nil
}

func newQuantized(s Scheme, rows, cols int) *Quantized {
	q := &Quantized{Scheme: s, Rows: rows, Cols: cols, Q: make([]uint8, rows*cols)}
	nb := q.NBlocks()
	q.Scales = make([]float32, rows*nb)
	if !s.Symmetric {
		q.Zeros = make([]uint8, rows*nb)
	}
	return q
}

// quantizeRow sets the codes and group parameters of row r from row.
func (q *Quantized) quantizeRow(r int, row []float32, clipMax []float32, ratio float32) error {
	g := q.Scheme.Group(q.Cols)
	nb := q.NBlocks()
	maxq := float32(q.Scheme.MaxCode())
	for j := 0; j < nb; j++ {
		var clip float32
		if clipMax != nil {
			clip = clipMax[r*nb+j]
		}
		v := row[j*g : (j+1)*g]
		scale, zero, err := GroupParams(v, q.Scheme, clip, ratio)
		if err != nil {
			return fmt.Errorf("row %d group %d: %w", r, j, err)
		}
		q.Scales[r*nb+j] = scale
		if q.Zeros != nil {
			q.Zeros[r*nb+j] = zero
		}
		dst := q.Q[r*q.Cols+j*g : r*q.Cols+(j+1)*g]
		if clip > 0 || scale == 0 {
			for k, x := range v {
				if clip > 0 {
					x = min(max(x, -clip), clip)
				}
				dst[k] = code(x, scale, zero, maxq)
			}
			continue
		}
		// Hot path, same arithmetic as code().
		zf := float32(zero)
		for k, x := range v {
			c := float32(math.RoundToEven(float64(x/scale))) + zf
			if c < 0 {
				c = 0
			} else if c > maxq {
				c = maxq
			}
			dst[k] = uint8(c)
		}
	}
	return nil
}

// parallelRows runs f over [0, n) split into contiguous chunks, one per
// available CPU, and returns the first error by chunk order. Callers make
// each row's result independent of the chunking, so results are
// deterministic.
func parallelRows(n int, f func(lo, hi int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		return f(0, n)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		lo, hi := i*n/workers, (i+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
