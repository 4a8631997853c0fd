package quantrun

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
)

// istGPTQ is a float64 transcription of IST-DASLab/gptq's
// GPTQ.fasterquant (gptq.py) with its asymmetric/symmetric Quantizer
// (quant.py), for groupsize g (cols: per channel), act-order off:
//
//	dead = diag(H) == 0; H[dead,dead] = 1; W[:, dead] = 0
//	H += percdamp·mean(diag H)·I
//	Hinv = cholesky(cholesky_inverse(cholesky(H)), upper=True)
//	for each block [i1, i2) of blocksize columns:
//	  W1 = W[:, i1:i2].clone()
//	  for i in block: if (i1+i) % g == 0: find_params(W[:, i1+i : i1+i+g])
//	    q = quantize(W1[:, i]); err = (W1[:, i] − q)/Hinv[i,i]
//	    W1[:, i:] −= err ⊗ Hinv1[i, i:]; Err1[:, i] = err
//	  W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]
//
// The group's scale is rounded to the scheme's scale dtype before the zero
// point is computed (as smelt stores it), the only deviation from the
// reference; with an -f32 scheme only float32 vs float64 rounding differs.
// It returns the dequantized weights.
func istGPTQ(t testing.TB, W []float32, rows, cols int, H []float64, s quantize.Scheme, percdamp float64, blocksize int) []float32 {
	t.Helper()
	g := s.Group(cols)
	maxq := float64(s.MaxCode())
	w := make([]float64, len(W))
	for i, v := range W {
		w[i] = float64(v)
	}
	h := append([]float64(nil), H...)
	// Per-channel parameters come from W before dead columns are zeroed.
	scale := make([]float64, rows)
	zero := make([]float64, rows)
	findParams := func(c0, c1 int) {
		for r := 0; r < rows; r++ {
			xmin, xmax := 0.0, 0.0
			for c := c0; c < c1; c++ {
				xmin = math.Min(xmin, w[r*cols+c])
				xmax = math.Max(xmax, w[r*cols+c])
			}
			if s.Symmetric {
				xmax = math.Max(math.Abs(xmin), xmax)
				if xmin < 0 {
					xmin = -xmax
				}
			}
			if xmin == 0 && xmax == 0 {
				xmin, xmax = -1, 1
			}
			sc := float64(float32((xmax - xmin) / maxq))
			if s.ScaleType == ir.F16 {
				sc = float64(roundF16(float32(sc)))
			}
			scale[r] = sc
			if s.Symmetric {
				zero[r] = (maxq + 1) / 2
			} else {
				zero[r] = math.RoundToEven(-xmin / sc)
			}
		}
	}
	if g == cols {
		findParams(0, cols)
	}
	for i := 0; i < cols; i++ {
		if h[i*cols+i] == 0 {
			h[i*cols+i] = 1
			for r := 0; r < rows; r++ {
				w[r*cols+i] = 0
			}
		}
	}
	var mean float64
	for i := 0; i < cols; i++ {
		mean += h[i*cols+i]
	}
	damp := percdamp * mean / float64(cols)
	hs := mat.NewSymDense(cols, nil)
	for i := 0; i < cols; i++ {
		for j := i; j < cols; j++ {
			v := h[i*cols+j]
			if i == j {
				v += damp
			}
			hs.SetSym(i, j, v)
		}
	}
	var c mat.Cholesky
	if !c.Factorize(hs) {
		t.Fatal("istGPTQ: H is not positive definite")
	}
	var inv mat.SymDense
	if err := c.InverseTo(&inv); err != nil {
		t.Fatal(err)
	}
	var c2 mat.Cholesky
	if !c2.Factorize(&inv) {
		t.Fatal("istGPTQ: H⁻¹ is not positive definite")
	}
	var ut mat.TriDense
	c2.UTo(&ut)
	raw := ut.RawTriangular()
	uAt := func(i, j int) float64 { return raw.Data[i*raw.Stride+j] }
	out := make([]float32, len(W))
	for i1 := 0; i1 < cols; i1 += blocksize {
		i2 := min(i1+blocksize, cols)
		cnt := i2 - i1
		w1 := make([]float64, rows*cnt)
		for r := 0; r < rows; r++ {
			copy(w1[r*cnt:(r+1)*cnt], w[r*cols+i1:r*cols+i2])
		}
		errs := make([]float64, rows*cnt)
		for i := 0; i < cnt; i++ {
			if g < cols && (i1+i)%g == 0 {
				findParams(i1+i, i1+i+g) // from W, not W1
			}
			d := uAt(i1+i, i1+i)
			for r := 0; r < rows; r++ {
				x := w1[r*cnt+i]
				q := math.Min(math.Max(math.RoundToEven(x/scale[r])+zero[r], 0), maxq)
				deq := scale[r] * (q - zero[r])
				out[r*cols+i1+i] = float32(deq)
				e := (x - deq) / d
				errs[r*cnt+i] = e
				for j := i; j < cnt; j++ {
					w1[r*cnt+j] -= e * uAt(i1+i, i1+j)
				}
			}
		}
		for r := 0; r < rows; r++ {
			for j := i2; j < cols; j++ {
				var sum float64
				for i := 0; i < cnt; i++ {
					sum += errs[r*cnt+i] * uAt(i1+i, j)
				}
				w[r*cols+j] -= sum
			}
		}
	}
	return out
}

// TestGPTQMatchesISTOnRef29m captures the inputs of two ref29m linears
// (block 1's attn_output and ffn_down, through the executor's stages) on
// real calibration windows and checks quantize.GPTQ with default options
// against istGPTQ: int4-g128-asym gives the same weights bit for bit, and
// a layer output error ‖XWᵀ − XŴᵀ‖² well below RTN's (ref29m measures
// 0.29-0.47× RTN over its block-1 linears); with int4-g32 (groups smaller
// than GPTQ's block) GPTQ's group parameters come from the updated
// weights, where IST-DASLab/gptq reads the block's stale copy, so only the
// error is compared.
func TestGPTQMatchesISTOnRef29m(t *testing.T) {
	dir := testmodels.Path(t, "ref29m")
	src, err := convert.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, err := LoadModel(src.Graph)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := textdata.Read(testmodels.Path(t, "data", "ref29m_calib.txt"), textdata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := textdata.Sample(ids, 3, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	const blk = 1
	// Group inputs of block blk: stage s's output is group s's input.
	acc := map[int]*quantize.Hessian{1: nil, 3: nil}
	for _, s := range seqs {
		h, err := m.Embed(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.RunBlock(0, h, 0, nil); err != nil {
			t.Fatal(err)
		}
		var in []float32
		for st := 0; st < exec.BlockStages-1; st++ {
			_, wo := m.StageWidths(st)
			out := make([]float32, len(s)*wo)
			if err := m.RunStage(blk, st, h, in, out); err != nil {
				t.Fatal(err)
			}
			if _, ok := acc[st]; ok {
				if acc[st] == nil {
					acc[st] = quantize.NewHessian(wo)
				}
				if err := acc[st].AddGram(out, len(s), Gram); err != nil {
					t.Fatal(err)
				}
			}
			in = out
		}
	}
	layers := []struct {
		name  string
		stage int
	}{{ir.LayerTensor(blk, ir.AttnOutput), 1}, {ir.LayerTensor(blk, ir.FFNDown), 3}}
	for _, sn := range []string{"int4-g128-asym", "int4-g32-asym"} {
		s := mustScheme(t, sn)
		for _, l := range layers {
			if s.GroupSize != 128 && l.stage == 3 {
				continue // the reference's ffn_down solve takes seconds; attn_output covers g32
			}
			t.Run(sn+"/"+l.name, func(t *testing.T) {
				hs := acc[l.stage]
				w := m.Weight(l.name)
				rows, cols := len(w)/hs.N, hs.N
				want := istGPTQ(t, w, rows, cols, hs.H, s, 0.01, 128)
				q, err := quantize.GPTQ(w, rows, cols, hs.H, quantize.GPTQOptions{Scheme: s})
				if err != nil {
					t.Fatal(err)
				}
				got := q.Dequantize()
				rq, err := quantize.RTN(w, rows, cols, s, nil)
				if err != nil {
					t.Fatal(err)
				}
				var differ int
				for i := range got {
					if got[i] != want[i] {
						differ++
					}
				}
				eG, _ := quantize.OutputError(hs, w, got, rows)
				eW, _ := quantize.OutputError(hs, w, want, rows)
				eR, _ := quantize.OutputError(hs, w, rq.Dequantize(), rows)
				t.Logf("%d of %d weights differ from IST-DASLab's; output error GPTQ %.4g, IST %.4g, RTN %.4g (GPTQ/RTN %.3f)", differ, len(got), eG, eW, eR, eG/eR)
				if s.GroupSize == 128 && differ != 0 {
					t.Errorf("%d of %d weights differ from IST-DASLab's GPTQ", differ, len(got))
				}
				if eG > 1.001*eW {
					t.Errorf("output error %.5g above IST-DASLab's %.5g", eG, eW)
				}
				if eG > 0.6*eR {
					t.Errorf("output error %.4g is not below 0.6 × RTN's %.4g", eG, eR)
				}
			})
		}
	}
}
