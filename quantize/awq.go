package quantize

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// AWQ (Lin et al., 2023; AutoAWQ's defaults) in three pure pieces:
//
//  1. AWQSearch: per-input-channel scales s for the linears that share one
//     input (q,k,v after attn_norm; gate,up after ffn_norm; o after v;
//     down after up). Quantizing W·diag(s) and feeding x/s leaves the float
//     model unchanged but moves quantization error away from channels with
//     large activations.
//  2. AWQClip: per-group clip limits for the (scaled) weights.
//  3. Folding helpers that make the scaling exact in float: the producer
//     of the input is divided by s (FoldScalesIntoNorm, FoldScalesIntoLinear,
//     FoldScalesIntoV for grouped-query attention) and the consumers'
//     columns multiplied by s (ScaleColumns).
//
// The output error of a linear y = x Wᵀ over the calibration rows X is
// ‖X Wᵀ − X Ŵᵀ‖²/n = Σ_n Δw_n G Δw_nᵀ with Δw = W − Ŵ and G = XᵀX/n = H/2
// (Hessian.H), so both searches evaluate every candidate exactly, over all
// calibration tokens, from the Hessian alone (AutoAWQ evaluates on the
// tokens directly and subsamples 512 of them for the clip search).

// AWQOptions are the parameters of the AWQ scale search.
type AWQOptions struct {
	// Grid is the number of exponents α = 0, 1/Grid, ..., (Grid−1)/Grid
	// tried (0 → 20).
	Grid int
	// Duo uses AutoAWQ's duo_scaling candidates
	// s = mean|x|^α / (mean|ŵ|^(1−α) + 1e-4), where mean|ŵ| is the mean
	// over output rows of |w| divided by its group's absmax; otherwise
	// s = mean|x|^α (llm-awq).
	Duo bool
	// Tie, if set, is applied to every candidate after normalization, e.g.
	// TieGQA so that the scales can be folded into v_proj under
	// grouped-query attention.
	Tie func(s []float32)
	// Objective, if set, replaces the built-in output error: it receives
	// the candidate scales and, for every weight, the fake-quantized weight
	// Q(W·s)/s (rows×K, in the original input space) and returns the loss
	// to minimize (e.g. a whole block's output error from the executor).
	Objective func(s []float32, fakeQuant [][]float32) (float64, error)
}

// DefaultAWQOptions returns AutoAWQ's defaults: 20 grid points, duo scaling.
func DefaultAWQOptions() AWQOptions { return AWQOptions{Grid: 20, Duo: true} }

// AWQResult is the outcome of a scale search.
type AWQResult struct {
	Scales []float32 // K per-input-channel scales of the best candidate
	Alpha  float64   // its exponent
	Losses []float64 // loss per grid point (index i: α = i/Grid)
}

// AWQSearch searches AWQ scales for the linears weights[i] (each
// rows_i×K, row-major) that all consume the calibration inputs X
// (nRows×K), minimizing Σ_i ‖X W_iᵀ − (X/s) Q(W_i·s)ᵀ‖² where Q is RTN
// under scheme. It returns the scales and the chosen exponent.
func AWQSearch(X []float32, nRows int, weights [][]float32, scheme Scheme, opts AWQOptions) ([]float32, float64, error) {
	if nRows <= 0 || len(X)%nRows != 0 {
		return nil, 0, fmt.Errorf("quantize: awq: %d inputs is not %d rows", len(X), nRows)
	}
	h := NewHessian(len(X) / nRows)
	if err := h.Add(X, nRows); err != nil {
		return nil, 0, err
	}
	res, err := AWQSearchHessian(h, weights, scheme, opts)
	if err != nil {
		return nil, 0, err
	}
	return res.Scales, res.Alpha, nil
}

// AWQSearchHessian is AWQSearch from accumulated input statistics (the
// loss is exact over every row added to h).
func AWQSearchHessian(h *Hessian, weights [][]float32, scheme Scheme, opts AWQOptions) (AWQResult, error) {
	var res AWQResult
	if err := scheme.Validate(); err != nil {
		return res, err
	}
	if h == nil || h.Count == 0 {
		return res, fmt.Errorf("quantize: awq: no calibration inputs")
	}
	if len(weights) == 0 {
		return res, fmt.Errorf("quantize: awq: no weights")
	}
	k := h.N
	rowsOf := make([]int, len(weights))
	for i, w := range weights {
		if len(w) == 0 || len(w)%k != 0 {
			return res, fmt.Errorf("quantize: awq: weight %d has %d elements, not a multiple of K=%d", i, len(w), k)
		}
		rowsOf[i] = len(w) / k
		if err := scheme.CheckShape(rowsOf[i], k); err != nil {
			return res, fmt.Errorf("quantize: awq: weight %d: %w", i, err)
		}
	}
	grid := opts.Grid
	if grid == 0 {
		grid = 20
	}
	if grid < 0 {
		return res, fmt.Errorf("quantize: awq: grid %d is negative", grid)
	}

	// mean |ŵ| per input channel over all weights' rows (duo scaling).
	wMean := make([]float64, k)
	if opts.Duo {
		g := scheme.Group(k)
		total := 0
		for i, w := range weights {
			for r := 0; r < rowsOf[i]; r++ {
				for j := 0; j < k/g; j++ {
					grp := w[r*k+j*g : r*k+(j+1)*g]
					var am float64
					for _, v := range grp {
						am = math.Max(am, math.Abs(float64(v)))
					}
					for c, v := range grp {
						wMean[j*g+c] += math.Abs(float64(v)) / (am + 1e-6)
					}
				}
			}
			total += rowsOf[i]
		}
		for c := range wMean {
			wMean[c] /= float64(total)
		}
	}

	res.Losses = make([]float64, grid)
	best := math.Inf(1)
	s := make([]float32, k)
	for gi := 0; gi < grid; gi++ {
		alpha := float64(gi) / float64(grid)
		sMax, sMin := math.Inf(-1), math.Inf(1)
		raw := make([]float64, k)
		for c := range raw {
			v := math.Pow(h.AbsMean[c], alpha)
			if opts.Duo {
				v /= math.Pow(wMean[c], 1-alpha) + 1e-4
			}
			v = math.Max(v, 1e-4)
			raw[c] = v
			sMax, sMin = math.Max(sMax, v), math.Min(sMin, v)
		}
		norm := math.Sqrt(sMax * sMin)
		for c := range s {
			s[c] = float32(raw[c] / norm)
		}
		if opts.Tie != nil {
			opts.Tie(s)
		}
		loss, err := awqLoss(h, weights, rowsOf, scheme, s, opts.Objective)
		if err != nil {
			return res, fmt.Errorf("quantize: awq: α=%v: %w", alpha, err)
		}
		res.Losses[gi] = loss
		if loss < best {
			best = loss
			res.Alpha = alpha
			res.Scales = append(res.Scales[:0], s...)
		}
	}
	if res.Scales == nil {
		return res, fmt.Errorf("quantize: awq: every candidate's loss is NaN")
	}
	return res, nil
}

// awqLoss evaluates candidate scales s.
func awqLoss(h *Hessian, weights [][]float32, rowsOf []int, scheme Scheme, s []float32, obj func([]float32, [][]float32) (float64, error)) (float64, error) {
	k := h.N
	fq := make([][]float32, len(weights))
	for i, w := range weights {
		ws := make([]float32, len(w))
		copy(ws, w)
		ScaleColumns(ws, rowsOf[i], k, s)
		q, err := RTN(ws, rowsOf[i], k, scheme, nil)
		if err != nil {
			return 0, err
		}
		d := q.Dequantize()
		for r := 0; r < rowsOf[i]; r++ {
			for c := 0; c < k; c++ {
				d[r*k+c] /= s[c]
			}
		}
		fq[i] = d
	}
	if obj != nil {
		return obj(s, fq)
	}
	var loss float64
	for i, w := range weights {
		loss += outputError(h, w, fq[i], rowsOf[i])
	}
	return loss, nil
}

// outputError returns Σ_n Δw_n G Δw_nᵀ, G = H/2: the mean squared output
// error ‖X Wᵀ − X Ŵᵀ‖²/n summed over output channels.
func outputError(h *Hessian, w, wq []float32, rows int) float64 {
	k := h.N
	d := make([]float64, rows*k)
	for i := range d {
		d[i] = float64(w[i]) - float64(wq[i])
	}
	dg := make([]float64, rows*k)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 0.5,
		blas64.General{Rows: rows, Cols: k, Stride: k, Data: d},
		blas64.General{Rows: k, Cols: k, Stride: k, Data: h.H},
		0, blas64.General{Rows: rows, Cols: k, Stride: k, Data: dg})
	var sum float64
	for i := range d {
		sum += d[i] * dg[i]
	}
	return sum
}

// OutputError returns ‖X Wᵀ − X Ŵᵀ‖²/n for the rows×K weights w and its
// approximation wq, over the inputs accumulated in h (G = H/2).
func OutputError(h *Hessian, w, wq []float32, rows int) (float64, error) {
	if len(w) != rows*h.N || len(wq) != len(w) {
		return 0, fmt.Errorf("quantize: output error: weights %d and %d, want %d×%d", len(w), len(wq), rows, h.N)
	}
	return outputError(h, w, wq, rows), nil
}

// AWQClipOptions are the parameters of AWQClip (AutoAWQ auto_clip).
type AWQClipOptions struct {
	Grid      int     // 0 → 20
	MaxShrink float64 // 0 → 0.5: ratios 1, 1−1/Grid, ... down to > 1−MaxShrink
}

// AWQClip searches, for every group of the rows×K weight w, the clip limit
// c = absmax·(1 − i/Grid), i = 0 .. MaxShrink·Grid − 1, that minimizes the
// group's contribution to the output error Δw_g G_gg Δw_gᵀ (G_gg the
// group's diagonal block of G = H/2, exact over all calibration rows),
// where Δw = w − Q(clamp(w, −c, c)) with Q RTN under scheme. It returns the
// limits, Rows*NBlocks, for RTNOptions.ClipMax or ApplyClip. AutoAWQ skips
// q and k projections (their errors are amplified by the softmax).
func AWQClip(h *Hessian, w []float32, rows int, scheme Scheme, opts AWQClipOptions) ([]float32, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	k := h.N
	if len(w) != rows*k {
		return nil, fmt.Errorf("quantize: awq clip: %d weights, want %d×%d", len(w), rows, k)
	}
	if err := scheme.CheckShape(rows, k); err != nil {
		return nil, fmt.Errorf("quantize: awq clip: %w", err)
	}
	grid := opts.Grid
	if grid == 0 {
		grid = 20
	}
	shrink := opts.MaxShrink
	if shrink == 0 {
		shrink = 0.5
	}
	if grid < 0 || shrink < 0 || shrink >= 1 {
		return nil, fmt.Errorf("quantize: awq clip: grid %d, max shrink %v out of range", grid, shrink)
	}
	steps := max(1, int(shrink*float64(grid)))
	g := scheme.Group(k)
	nb := k / g
	out := make([]float32, rows*nb)
	maxq := float32(scheme.MaxCode())
	err := parallelRows(rows, func(r0, r1 int) error {
		d := make([]float64, g)
		for r := r0; r < r1; r++ {
			for j := 0; j < nb; j++ {
				grp := w[r*k+j*g : r*k+(j+1)*g]
				var am float32
				for _, v := range grp {
					am = max(am, abs32(v))
				}
				best, bestC := math.Inf(1), am
				for i := 0; i < steps; i++ {
					c := am * float32(1-float64(i)/float64(grid))
					scale, zero, err := GroupParams(grp, scheme, c, 0)
					if err != nil {
						return fmt.Errorf("row %d group %d: %w", r, j, err)
					}
					for t, v := range grp {
						cv := min(max(v, -c), c)
						deq := (float32(code(cv, scale, zero, maxq)) - float32(zero)) * scale
						d[t] = float64(v) - float64(deq)
					}
					var e float64
					for a := 0; a < g; a++ {
						row := h.H[(j*g+a)*k+j*g : (j*g+a)*k+(j+1)*g]
						var dot float64
						for b, hv := range row {
							dot += hv * d[b]
						}
						e += d[a] * dot
					}
					if e < best {
						best, bestC = e, c
					}
				}
				out[r*nb+j] = bestC
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quantize: awq clip %s: %w", scheme.Name(), err)
	}
	return out, nil
}

// ApplyClip clamps every group j of row r of the rows×cols weight w to
// [−clip[r*nb+j], clip[r*nb+j]] in place (AutoAWQ apply_clip), so that a
// later algorithm (RTN or GPTQ) quantizes the clipped weights.
func ApplyClip(w []float32, rows, cols, groupSize int, clip []float32) error {
	if groupSize == 0 {
		groupSize = cols
	}
	if cols%groupSize != 0 || len(w) != rows*cols || len(clip) != rows*(cols/groupSize) {
		return fmt.Errorf("quantize: apply clip: %d weights, %d limits for [%d %d] group %d", len(w), len(clip), rows, cols, groupSize)
	}
	nb := cols / groupSize
	for r := 0; r < rows; r++ {
		for j := 0; j < nb; j++ {
			c := clip[r*nb+j]
			if c <= 0 {
				continue
			}
			grp := w[r*cols+j*groupSize : r*cols+(j+1)*groupSize]
			for t, v := range grp {
				grp[t] = min(max(v, -c), c)
			}
		}
	}
	return nil
}

// ScaleColumns multiplies column k of the rows×cols weight w by s[k] in
// place: the consumer side of an AWQ scaling.
func ScaleColumns(w []float32, rows, cols int, s []float32) {
	for r := 0; r < rows; r++ {
		row := w[r*cols : (r+1)*cols]
		for c := range row {
			row[c] *= s[c]
		}
	}
}

// FoldScalesIntoNorm divides the RMSNorm weight by s in place
// (normW[k] /= s[k]): the norm then emits x/s.
func FoldScalesIntoNorm(normW, s []float32) error {
	if len(normW) != len(s) {
		return fmt.Errorf("quantize: fold scales: norm has %d channels, scales %d", len(normW), len(s))
	}
	for k := range normW {
		normW[k] /= s[k]
	}
	return nil
}

// FoldScalesIntoLinear divides row k of the previous linear's rows×cols
// weight (and its bias, if non-nil) by s[k] in place, so its output is y/s:
// e.g. ffn_up rows for ffn_down's input scales (silu(g)·(u/s) = (silu(g)·u)/s).
// rows must equal len(s). For attn_v → attn_output under grouped-query
// attention use FoldScalesIntoV.
func FoldScalesIntoLinear(prevW []float32, rows, cols int, bias, s []float32) error {
	if rows != len(s) || len(prevW) != rows*cols || (bias != nil && len(bias) != rows) {
		return fmt.Errorf("quantize: fold scales: linear [%d %d] (%d values), %d scales", rows, cols, len(prevW), len(s))
	}
	for r := 0; r < rows; r++ {
		row := prevW[r*cols : (r+1)*cols]
		for c := range row {
			row[c] /= s[r]
		}
		if bias != nil {
			bias[r] /= s[r]
		}
	}
	return nil
}

// FoldScalesIntoV folds attn_output's input scales s (heads·headDim) into
// attn_v (kvHeads·headDim rows × cols, and its bias if non-nil). Input
// channel h·headDim+d of attn_output is the attention output of query head
// h, a weighted sum of rows (h/(heads/kvHeads))·headDim+d of v; dividing
// that v row by s divides every query head of its group, so s must be
// equal across the heads of a group (TieGQA makes it so). Any mismatch is
// an error: the fold would not be exact.
func FoldScalesIntoV(vW []float32, cols int, bias, s []float32, heads, kvHeads, headDim int) error {
	if heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads%kvHeads != 0 || len(s) != heads*headDim {
		return fmt.Errorf("quantize: fold scales into v: %d scales for %d heads × %d (kv heads %d)", len(s), heads, headDim, kvHeads)
	}
	rep := heads / kvHeads
	vs := make([]float32, kvHeads*headDim)
	for kv := 0; kv < kvHeads; kv++ {
		for d := 0; d < headDim; d++ {
			v := s[kv*rep*headDim+d]
			for h := kv * rep; h < (kv+1)*rep; h++ {
				if s[h*headDim+d] != v {
					return fmt.Errorf("quantize: fold scales into v: channel %d of head %d is %v, head %d has %v; scales must be tied across the %d query heads of kv head %d", d, h, s[h*headDim+d], kv*rep, v, rep, kv)
				}
			}
			vs[kv*headDim+d] = v
		}
	}
	return FoldScalesIntoLinear(vW, kvHeads*headDim, cols, bias, vs)
}

// TieGQA returns a function that replaces, for every kv head and channel d,
// the scales of the query heads sharing that kv head by their geometric
// mean (for AWQOptions.Tie before FoldScalesIntoV). The function leaves
// scales of any other length than heads·headDim unchanged, which
// FoldScalesIntoV then reports.
func TieGQA(heads, kvHeads, headDim int) (func(s []float32), error) {
	if heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads%kvHeads != 0 {
		return nil, fmt.Errorf("quantize: tie gqa: %d heads, %d kv heads, head dim %d", heads, kvHeads, headDim)
	}
	rep := heads / kvHeads
	return func(s []float32) {
		if len(s) != heads*headDim {
			return
		}
		for kv := 0; kv < kvHeads; kv++ {
			for d := 0; d < headDim; d++ {
				var l float64
				for h := kv * rep; h < (kv+1)*rep; h++ {
					l += math.Log(float64(s[h*headDim+d]))
				}
				m := float32(math.Exp(l / float64(rep)))
				for h := kv * rep; h < (kv+1)*rep; h++ {
					s[h*headDim+d] = m
				}
			}
		}
	}, nil
}
