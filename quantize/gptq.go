package quantize

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// Hessian accumulates the GPTQ proxy Hessian of one linear layer's inputs,
// H = 2/Count · Σ x xᵀ over every input row x seen so far (a running mean,
// so H stays O(1) however many rows are added), plus the mean absolute
// value of every input channel (AWQ's activation magnitude). Count counts
// rows (tokens); IST-DASLab/gptq divides by sequences instead, which scales
// H by a constant that GPTQ's result does not depend on.
type Hessian struct {
	N       int       // input features (K)
	H       []float64 // N×N, row-major, symmetric
	Count   int       // rows added
	AbsMean []float64 // N: mean |x[k]| over all rows

	gram []float32 // N×N scratch of AddGram
}

// NewHessian returns an empty accumulator for n input features.
func NewHessian(n int) *Hessian {
	return &Hessian{N: n, H: make([]float64, n*n), AbsMean: make([]float64, n)}
}

// hessianChunk is the number of rows whose Gram matrix is summed in float32
// (one Sgemm) before being folded into the float64 running mean.
const hessianChunk = 512

// GramFunc writes at least the upper triangle (j ≥ i) of the Gram matrix
// of the rows×n row-major x into g (n×n, row-major):
//
//	g[i*n+j] = Σ_r x[r*n+i]·x[r*n+j]   accumulated in float32
//
// Entries below the diagonal may hold anything (Hessian.AddGram mirrors
// the upper triangle). It lets a caller supply a faster kernel than
// gonum's (the CLI uses the executor's SIMD linear kernel); the result
// must not depend on GOMAXPROCS.
type GramFunc func(g, x []float32, rows, n int)

// Add accumulates rows input rows x (rows×N, row-major). The Gram matrix of
// each chunk of at most 512 rows is computed in float32 (as GPTQ does) and
// accumulated in float64.
func (h *Hessian) Add(x []float32, rows int) error { return h.AddGram(x, rows, nil) }

// AddGram is Add with the chunks' Gram matrices computed by gram (nil:
// gonum's blas32 Gemm of the whole matrix).
func (h *Hessian) AddGram(x []float32, rows int, gram GramFunc) error {
	if rows < 0 || len(x) != rows*h.N {
		return fmt.Errorf("quantize: hessian: %d values, want %d rows × %d", len(x), rows, h.N)
	}
	n := h.N
	if len(h.gram) != n*n {
		h.gram = make([]float32, n*n)
	}
	g := h.gram
	abs := make([]float64, n)
	for r0 := 0; r0 < rows; r0 += hessianChunk {
		m := min(hessianChunk, rows-r0)
		chunk := x[r0*n : (r0+m)*n]
		for _, v := range chunk {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("quantize: hessian: input contains %v", v)
			}
		}
		if gram == nil {
			blas32.Gemm(blas.Trans, blas.NoTrans, 1,
				blas32.General{Rows: m, Cols: n, Stride: n, Data: chunk},
				blas32.General{Rows: m, Cols: n, Stride: n, Data: chunk},
				0, blas32.General{Rows: n, Cols: n, Stride: n, Data: g})
		} else {
			gram(g, chunk, m, n)
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					g[i*n+j] = g[j*n+i]
				}
			}
		}
		total := h.Count + m
		keep := float64(h.Count) / float64(total)
		add := 2 / float64(total)
		for i, v := range g {
			h.H[i] = h.H[i]*keep + add*float64(v)
		}
		clear(abs)
		for r := 0; r < m; r++ {
			for k, v := range chunk[r*n : (r+1)*n] {
				abs[k] += math.Abs(float64(v))
			}
		}
		for k := range abs {
			h.AbsMean[k] = h.AbsMean[k]*keep + abs[k]/float64(total)
		}
		h.Count = total
	}
	return nil
}

// ScaleInputs returns the accumulator the inputs x/s would have produced
// (H[i,j]/(s_i s_j), AbsMean[i]/s_i): the statistics of a layer after AWQ
// scales s were folded into the producer of its input.
func (h *Hessian) ScaleInputs(s []float32) (*Hessian, error) {
	if len(s) != h.N {
		return nil, fmt.Errorf("quantize: hessian: %d scales, want %d", len(s), h.N)
	}
	o := &Hessian{N: h.N, H: make([]float64, len(h.H)), Count: h.Count, AbsMean: make([]float64, h.N)}
	for i := 0; i < h.N; i++ {
		for j := 0; j < h.N; j++ {
			o.H[i*h.N+j] = h.H[i*h.N+j] / (float64(s[i]) * float64(s[j]))
		}
		o.AbsMean[i] = h.AbsMean[i] / float64(s[i])
	}
	return o, nil
}

// GPTQOptions are the parameters of GPTQ. Zero values take the defaults of
// IST-DASLab/gptq and GPTQModel.
type GPTQOptions struct {
	Scheme Scheme
	// Damp is the dampening added to H's diagonal as a fraction of its
	// mean (0 → 0.01). When H+damp is not positive definite the fraction is
	// increased by 0.01 until it is (GPTQModel's damp_auto_increment), up to
	// 1; GPTQReport.Damp records the value used.
	Damp float64
	// BlockSize is the number of columns per lazy batch update (0 → 128).
	// For grouped schemes without static groups it is rounded up to a
	// multiple of the group size, so that every group's parameters are
	// computed from fully updated weights.
	BlockSize int
	// ActOrder processes columns in decreasing order of diag(H)
	// (desc_act). It implies StaticGroups.
	ActOrder bool
	// StaticGroups computes every group's scale and zero point from the
	// full-precision weights before the sweep (GPTQModel static_groups),
	// instead of from the error-updated weights when the sweep reaches the
	// group's first column.
	StaticGroups bool
	// MSE chooses every group's range by GPTQ's MSE grid (MSEGroupParams)
	// instead of its min and max (GPTQModel mse, off in IST-DASLab/gptq's
	// experiments).
	MSE bool
}

// GPTQReport describes one GPTQ solve.
type GPTQReport struct {
	Damp     float64 // dampening fraction actually used
	DeadCols int     // input columns with diag(H) = 0 (never activated), zeroed
	// Loss is GPTQ's own objective Σ (w − ŵ)² / (2·U[i,i]²) over all
	// weights, in the units of H (comparable between runs on the same H).
	Loss float64
}

// GPTQ quantizes the rows×cols row-major weight W with the GPTQ algorithm
// (Frantar et al., 2022, as in IST-DASLab/gptq) given the proxy Hessian H
// (cols×cols, row-major, e.g. Hessian.H). H is not modified.
//
// Steps: dead columns (H[i,i] = 0) get H[i,i] = 1 and W[:,i] = 0; H += λI
// with λ = Damp·mean(diag H); U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU,
// all float64); then columns are quantized one at a time, each error
// e = (w − ŵ)/U[i,i] being propagated to the not yet quantized columns
// of the same row, W[:,j] −= e·U[i,j], inside blocks of BlockSize columns
// and to the later columns once per block (lazy batch updates, one GEMM).
//
// Act-order without g_idx. With ActOrder the columns are visited in
// decreasing order of diag(H), but codes, scales and zero points are
// stored in natural column order with natural groups (column k in group
// k/g), so the packed layout and the runtime need no g_idx permutation.
// This is only consistent if a group's parameters do not depend on the
// visiting order, hence static groups: every group's scale and zero point
// are computed before the sweep from the full-precision weights of its
// natural columns, and each column is quantized with its natural group's
// parameters whenever the sweep reaches it. (GPTQ's original desc_act
// computes parameters for groups of *visited* columns, which scatters each
// group over the input and requires g_idx at inference.)
//
// Rows are independent given H and are processed in parallel; the result
// does not depend on GOMAXPROCS.
func GPTQ(W []float32, rows, cols int, H []float64, opts GPTQOptions) (*Quantized, error) {
	q, _, err := GPTQWithReport(W, rows, cols, H, opts)
	return q, err
}

// GPTQWithReport is GPTQ that also returns the solve's report.
func GPTQWithReport(W []float32, rows, cols int, H []float64, opts GPTQOptions) (*Quantized, GPTQReport, error) {
	var rep GPTQReport
	s := opts.Scheme
	if err := s.Validate(); err != nil {
		return nil, rep, err
	}
	if err := s.CheckShape(rows, cols); err != nil {
		return nil, rep, fmt.Errorf("quantize: gptq %s: %w", s.Name(), err)
	}
	if len(W) != rows*cols {
		return nil, rep, fmt.Errorf("quantize: gptq: %d weights, want %d for [%d %d]", len(W), rows*cols, rows, cols)
	}
	if len(H) != cols*cols {
		return nil, rep, fmt.Errorf("quantize: gptq: hessian has %d entries, want %d×%d", len(H), cols, cols)
	}
	damp := opts.Damp
	if damp == 0 {
		damp = 0.01
	}
	if damp < 0 || damp > 1 || math.IsNaN(damp) {
		return nil, rep, fmt.Errorf("quantize: gptq: damp %v outside (0, 1]", opts.Damp)
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = 128
	}
	if bs < 0 {
		return nil, rep, fmt.Errorf("quantize: gptq: block size %d is negative", bs)
	}
	g := s.Group(cols)
	static := opts.StaticGroups || opts.ActOrder
	if !static && g < cols && bs%g != 0 {
		bs = (bs + g - 1) / g * g
	}
	for i, v := range H {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, rep, fmt.Errorf("quantize: gptq: hessian entry %d is %v", i, v)
		}
	}

	h := make([]float64, len(H))
	copy(h, H)
	w := make([]float64, len(W))
	for i, v := range W {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, rep, fmt.Errorf("quantize: gptq: weight %d is %v", i, v)
		}
		w[i] = float64(v)
	}
	for i := 0; i < cols; i++ {
		if h[i*cols+i] == 0 {
			h[i*cols+i] = 1
			rep.DeadCols++
			for r := 0; r < rows; r++ {
				w[r*cols+i] = 0
			}
		}
	}

	q := newQuantized(s, rows, cols)
	q.Algorithm = AlgoGPTQ
	nb := q.NBlocks()
	maxq := float32(s.MaxCode())

	// Per-channel schemes and static groups: parameters from the
	// (dead-column-zeroed) full-precision weights, before any update.
	if static || g == cols {
		if err := parallelRows(rows, func(r0, r1 int) error {
			row := make([]float32, cols)
			for r := r0; r < r1; r++ {
				for k := range row {
					row[k] = float32(w[r*cols+k])
				}
				if err := q.groupParamsRow(r, row, opts.MSE); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, rep, fmt.Errorf("quantize: gptq %s: %w", s.Name(), err)
		}
	}

	// perm[i] is the natural column visited i-th.
	perm := make([]int, cols)
	for i := range perm {
		perm[i] = i
	}
	if opts.ActOrder {
		sort.SliceStable(perm, func(a, b int) bool { return h[perm[a]*cols+perm[a]] > h[perm[b]*cols+perm[b]] })
		w = permuteCols(w, rows, cols, perm)
		hp := make([]float64, len(h))
		for i, pi := range perm {
			for j, pj := range perm {
				hp[i*cols+j] = h[pi*cols+pj]
			}
		}
		h = hp
	}

	var mean float64
	for i := 0; i < cols; i++ {
		mean += h[i*cols+i]
	}
	mean /= float64(cols)
	var u []float64
	for {
		hd := make([]float64, len(h))
		copy(hd, h)
		for i := 0; i < cols; i++ {
			hd[i*cols+i] += damp * mean
		}
		var ok bool
		if u, ok = CholeskyInverseUpper(hd, cols); ok {
			break
		}
		if damp += 0.01; damp > 1+1e-9 {
			return nil, rep, fmt.Errorf("quantize: gptq: hessian is not positive definite even with dampening 1.0")
		}
	}
	rep.Damp = damp

	// Sweep. err holds the scaled errors of the current block (rows×bs).
	errs := make([]float64, rows*bs)
	losses := make([]float64, rows)
	for i1 := 0; i1 < cols; i1 += bs {
		i2 := min(i1+bs, cols)
		cnt := i2 - i1
		err := parallelRows(rows, func(r0, r1 int) error {
			buf := make([]float32, g)
			for r := r0; r < r1; r++ {
				wr := w[r*cols : (r+1)*cols]
				er := errs[r*bs : r*bs+cnt]
				for i := i1; i < i2; i++ {
					nat := perm[i]
					j := nat / g
					if !static && g < cols && nat%g == 0 {
						for k := range buf {
							buf[k] = float32(wr[i+k])
						}
						if err := q.setGroupParams(r, j, buf, opts.MSE); err != nil {
							return err
						}
					}
					scale := q.Scales[r*nb+j]
					zero := q.Zero(r, j)
					x := wr[i]
					c := code(float32(x), scale, zero, maxq)
					q.Q[r*cols+nat] = c
					deq := float64((float32(c) - float32(zero)) * scale)
					d := u[i*cols+i]
					losses[r] += (x - deq) * (x - deq) / (2 * d * d)
					e := (x - deq) / d
					er[i-i1] = e
					if i+1 < i2 {
						blas64.Implementation().Daxpy(i2-i-1, -e, u[i*cols+i+1:i*cols+i2], 1, wr[i+1:i2], 1)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, rep, fmt.Errorf("quantize: gptq %s: %w", s.Name(), err)
		}
		if i2 < cols {
			// W[:, i2:] -= Err · U[i1:i2, i2:]
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas64.General{Rows: rows, Cols: cnt, Stride: bs, Data: errs},
				blas64.General{Rows: cnt, Cols: cols - i2, Stride: cols, Data: u[i1*cols+i2:]},
				1, blas64.General{Rows: rows, Cols: cols - i2, Stride: cols, Data: w[i2:]})
		}
	}
	for _, l := range losses {
		rep.Loss += l
	}
	return q, rep, nil
}

// groupParamsRow sets the parameters of every group of row r from row.
func (q *Quantized) groupParamsRow(r int, row []float32, mse bool) error {
	g := q.Scheme.Group(q.Cols)
	for j := 0; j < q.NBlocks(); j++ {
		if err := q.setGroupParams(r, j, row[j*g:(j+1)*g], mse); err != nil {
			return err
		}
	}
	return nil
}

func (q *Quantized) setGroupParams(r, j int, v []float32, mse bool) error {
	nb := q.NBlocks()
	var (
		scale float32
		zero  uint8
		err   error
	)
	if mse {
		scale, zero, err = MSEGroupParams(v, q.Scheme)
	} else {
		scale, zero, err = GroupParams(v, q.Scheme, 0, 0)
	}
	if err != nil {
		return fmt.Errorf("row %d group %d: %w", r, j, err)
	}
	q.Scales[r*nb+j] = scale
	if q.Zeros != nil {
		q.Zeros[r*nb+j] = zero
	}
	return nil
}

// MSE grid of GPTQ's Quantizer (IST-DASLab/gptq quant.py, GPTQModel
// mse=True): shrink ratios p = 1, 0.99, ..., 0.21 of the group's range,
// error Σ|ŵ − w|^2.4.
const (
	mseGrid      = 100
	mseMaxShrink = 0.8
	mseNorm      = 2.4
)

// MSEGroupParams returns the group parameters of v under scheme s whose
// range, shrunk by p = 1 − i/100 for i = 0 .. 79 (GroupParams with ratio
// p), minimizes Σ_k |ŵ_k − v_k|^2.4 (GPTQ's Quantizer with mse=True); the
// first (least shrunk) wins ties. d^2.4 is evaluated as d²·exp(0.4·ln d),
// so a near-tie between ratios may resolve differently than with
// math.Pow (or torch's float32 pow).
func MSEGroupParams(v []float32, s Scheme) (scale float32, zero uint8, err error) {
	var lo, hi float32
	for _, x := range v {
		lo = min(lo, x)
		hi = max(hi, x)
	}
	maxq := float32(s.MaxCode())
	best := math.Inf(1)
	for i := 0; i < int(mseMaxShrink*mseGrid); i++ {
		p := float32(1 - float64(i)/mseGrid)
		sc, z, err := rangeParams(lo, hi, s, p)
		if err != nil {
			return 0, 0, err
		}
		var e float64
		for _, x := range v {
			d := math.Abs(float64((float32(code(x, sc, z, maxq))-float32(z))*sc - x))
			if d != 0 {
				e += d * d * math.Exp((mseNorm-2)*math.Log(d)) // d^2.4, twice as fast as math.Pow
			}
			if e >= best {
				break // this ratio cannot win
			}
		}
		if e < best {
			best, scale, zero = e, sc, z
		}
	}
	return scale, zero, nil
}

// permuteCols returns w with columns reordered: out[:, i] = w[:, perm[i]].
func permuteCols(w []float64, rows, cols int, perm []int) []float64 {
	out := make([]float64, len(w))
	for r := 0; r < rows; r++ {
		for i, p := range perm {
			out[r*cols+i] = w[r*cols+p]
		}
	}
	return out
}

// CholeskyInverseUpper returns the upper-triangular U with H⁻¹ = UᵀU for a
// symmetric positive definite n×n row-major H (H is not modified; the
// strictly lower part of U is zero), and false when H is not positive
// definite. This is torch.linalg.cholesky(torch.cholesky_inverse(
// torch.linalg.cholesky(H)), upper=True), computed without forming H⁻¹:
// with J the reversal permutation, J H J = L Lᵀ gives
// H⁻¹ = (J L⁻ᵀ J)(J L⁻¹ J), and U = J L⁻¹ J is upper triangular — one
// Cholesky and one triangular inverse instead of two Cholesky
// factorizations and an inverse.
func CholeskyInverseUpper(H []float64, n int) ([]float64, bool) {
	if len(H) != n*n {
		return nil, false
	}
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			a[i*n+j] = H[(n-1-i)*n+(n-1-j)]
		}
	}
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: n, Stride: n, Data: a})
	if !ok {
		return nil, false
	}
	if !lapack64.Trtri(t) {
		return nil, false
	}
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			u[i*n+j] = a[(n-1-i)*n+(n-1-j)]
		}
	}
	for _, v := range u {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
	}
	return u, true
}
