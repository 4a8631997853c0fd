package quantize

import (
	"math"
	"math/rand/v2"
	"testing"
)

// directOutputError is ‖X Wᵀ − X Ŵᵀ‖²/n computed on the rows.
func directOutputError(x []float32, n int, w, wq []float32, rows, k int) float64 {
	var sum float64
	for t := 0; t < n; t++ {
		for r := 0; r < rows; r++ {
			var d float64
			for c := 0; c < k; c++ {
				d += float64(x[t*k+c]) * (float64(w[r*k+c]) - float64(wq[r*k+c]))
			}
			sum += d * d
		}
	}
	return sum / float64(n)
}

func TestOutputError(t *testing.T) {
	rng := rand.New(rand.NewPCG(40, 41))
	n, k, rows := 300, 64, 8
	x := correlatedInputs(rng, n, k)
	w := randWeights(rng, rows*k, 0.1)
	q, err := RTN(w, rows, k, mustScheme(t, "int4-g32-asym"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OutputError(hessianOf(t, x, n, k), w, q.Dequantize(), rows)
	if err != nil {
		t.Fatal(err)
	}
	want := directOutputError(x, n, w, q.Dequantize(), rows, k)
	if math.Abs(got-want) > 1e-4*want {
		t.Errorf("OutputError = %v, direct %v", got, want)
	}
}

func TestAWQSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 43))
	n, k := 512, 128
	x := correlatedInputs(rng, n, k)
	ws := [][]float32{randWeights(rng, 32*k, 0.05), randWeights(rng, 16*k, 0.05)}
	s := mustScheme(t, "int4-g32-asym")
	h := hessianOf(t, x, n, k)
	var rtnErr float64
	for _, w := range ws {
		q, err := RTN(w, len(w)/k, k, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := OutputError(h, w, q.Dequantize(), len(w)/k)
		rtnErr += e
	}
	for _, duo := range []bool{false, true} {
		res, err := AWQSearchHessian(h, ws, s, AWQOptions{Grid: 20, Duo: duo})
		if err != nil {
			t.Fatal(err)
		}
		best := res.Losses[int(math.Round(res.Alpha*20))]
		t.Logf("duo=%v: RTN %.4g, AWQ α=%.2f loss %.4g", duo, rtnErr, res.Alpha, best)
		if !duo && math.Abs(res.Losses[0]-rtnErr) > 1e-9*rtnErr {
			t.Errorf("α=0 loss %v, want the RTN output error %v (s = 1)", res.Losses[0], rtnErr)
		}
		for i, l := range res.Losses {
			if l < best {
				t.Errorf("loss[%d] = %v below the chosen %v", i, l, best)
			}
		}
		if best >= 0.9*rtnErr {
			t.Errorf("AWQ loss %.4g not below 0.9 × RTN %.4g with outlier channels", best, rtnErr)
		}
		// The scales really realize the loss: quantize W·s, compare.
		var e float64
		for _, w := range ws {
			rows := len(w) / k
			sw := append([]float32(nil), w...)
			ScaleColumns(sw, rows, k, res.Scales)
			q, err := RTN(sw, rows, k, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := q.Dequantize()
			for i := range d {
				d[i] /= res.Scales[i%k]
			}
			e += directOutputError(x, n, w, d, rows, k)
		}
		if math.Abs(e-best) > 1e-3*best {
			t.Errorf("re-evaluated loss %v, search reported %v", e, best)
		}
	}
	// The convenience form from raw rows agrees.
	sc, alpha, err := AWQSearch(x, n, ws, s, AWQOptions{Grid: 20})
	if err != nil || len(sc) != k || alpha < 0 || alpha >= 1 {
		t.Errorf("AWQSearch = %d scales, α %v, %v", len(sc), alpha, err)
	}
	// A custom objective decides.
	calls := 0
	res, err := AWQSearchHessian(h, ws, s, AWQOptions{Grid: 10, Objective: func(sc []float32, fq [][]float32) (float64, error) {
		calls++
		if len(fq) != 2 || len(fq[0]) != 32*k || len(sc) != k {
			t.Errorf("objective got %d weights, %d scales", len(fq), len(sc))
		}
		return math.Abs(float64(calls - 8)), nil // minimum at the 8th candidate
	}})
	if err != nil || calls != 10 || res.Alpha != 0.7 {
		t.Errorf("objective: %d calls, α = %v, %v; want 10 calls, α = 0.7", calls, res.Alpha, err)
	}
}

func TestFoldScalesIntoNormIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(44, 45))
	k, rows := 32, 8
	x := randWeights(rng, k, 1)
	norm := randWeights(rng, k, 1)
	w := randWeights(rng, rows*k, 1)
	s := make([]float32, k)
	for i := range s {
		s[i] = float32(math.Exp(rng.NormFloat64()))
	}
	out := func(norm, w []float32) []float64 {
		y := make([]float64, rows)
		for r := 0; r < rows; r++ {
			for c := 0; c < k; c++ {
				y[r] += float64(x[c]*norm[c]) * float64(w[r*k+c])
			}
		}
		return y
	}
	want := out(norm, w)
	n2, w2 := append([]float32(nil), norm...), append([]float32(nil), w...)
	if err := FoldScalesIntoNorm(n2, s); err != nil {
		t.Fatal(err)
	}
	ScaleColumns(w2, rows, k, s)
	got := out(n2, w2)
	for r := range want {
		if math.Abs(got[r]-want[r]) > 1e-5*(math.Abs(want[r])+1) {
			t.Errorf("output %d: %v after folding, %v before", r, got[r], want[r])
		}
	}
}

func TestFoldScalesIntoVGQA(t *testing.T) {
	rng := rand.New(rand.NewPCG(46, 47))
	heads, kv, hd, hidden, T := 4, 2, 8, 16, 5
	vW := randWeights(rng, kv*hd*hidden, 1)
	oW := randWeights(rng, hidden*heads*hd, 1)
	xs := randWeights(rng, T*hidden, 1)
	attn := make([]float64, heads*T) // fixed attention weights of the last query
	for i := range attn {
		attn[i] = rng.Float64()
	}
	forward := func(vW, oW []float32) []float64 {
		v := make([]float64, T*kv*hd)
		for t := 0; t < T; t++ {
			for r := 0; r < kv*hd; r++ {
				for c := 0; c < hidden; c++ {
					v[t*kv*hd+r] += float64(xs[t*hidden+c]) * float64(vW[r*hidden+c])
				}
			}
		}
		a := make([]float64, heads*hd)
		for h := 0; h < heads; h++ {
			g := h / (heads / kv)
			for d := 0; d < hd; d++ {
				for t := 0; t < T; t++ {
					a[h*hd+d] += attn[h*T+t] * v[t*kv*hd+g*hd+d]
				}
			}
		}
		y := make([]float64, hidden)
		for r := 0; r < hidden; r++ {
			for c := 0; c < heads*hd; c++ {
				y[r] += a[c] * float64(oW[r*heads*hd+c])
			}
		}
		return y
	}
	want := forward(vW, oW)
	s := make([]float32, heads*hd)
	for i := range s {
		s[i] = float32(math.Exp(rng.NormFloat64() / 2))
	}
	if err := FoldScalesIntoV(append([]float32(nil), vW...), hidden, nil, s, heads, kv, hd); err == nil {
		t.Error("FoldScalesIntoV accepted scales not tied across a kv group")
	}
	tie, err := TieGQA(heads, kv, hd)
	if err != nil {
		t.Fatal(err)
	}
	tie(s)
	v2, o2 := append([]float32(nil), vW...), append([]float32(nil), oW...)
	if err := FoldScalesIntoV(v2, hidden, nil, s, heads, kv, hd); err != nil {
		t.Fatal(err)
	}
	ScaleColumns(o2, hidden, heads*hd, s)
	got := forward(v2, o2)
	for r := range want {
		if math.Abs(got[r]-want[r]) > 1e-4*(math.Abs(want[r])+1) {
			t.Errorf("output %d: %v after folding, %v before", r, got[r], want[r])
		}
	}
	// FoldScalesIntoLinear: up → down.
	up := randWeights(rng, 4*3, 1)
	if err := FoldScalesIntoLinear(up, 4, 3, nil, []float32{1, 2}); err == nil {
		t.Error("FoldScalesIntoLinear accepted 2 scales for 4 rows")
	}
}

func TestAWQClip(t *testing.T) {
	rng := rand.New(rand.NewPCG(48, 49))
	n, k, rows := 256, 64, 6
	x := correlatedInputs(rng, n, k)
	w := randWeights(rng, rows*k, 0.05)
	for r := 0; r < rows; r++ {
		w[r*k+r] = 0.6 // one large weight per row: clipping it may pay
	}
	s := mustScheme(t, "int4-g32-asym")
	h := hessianOf(t, x, n, k)
	clip, err := AWQClip(h, w, rows, s, AWQClipOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Brute force on the tokens: per group, the ratio minimizing Σ_t (x_g·Δ_g)².
	g, nb := 32, 2
	for r := 0; r < rows; r++ {
		for j := 0; j < nb; j++ {
			grp := w[r*k+j*g : r*k+(j+1)*g]
			var am float32
			for _, v := range grp {
				am = max(am, abs32(v))
			}
			best, bestC := math.Inf(1), float32(0)
			for i := 0; i < 10; i++ {
				c := am * float32(1-float64(i)/20)
				cw := make([]float32, g)
				for t, v := range grp {
					cw[t] = min(max(v, -c), c)
				}
				q, err := RTN(cw, 1, g, mustScheme(t, "int4-g32-asym"), nil)
				if err != nil {
					t.Fatal(err)
				}
				d := q.Dequantize()
				var e float64
				for tk := 0; tk < n; tk++ {
					var dot float64
					for c2 := 0; c2 < g; c2++ {
						dot += float64(x[tk*k+j*g+c2]) * float64(grp[c2]-d[c2])
					}
					e += dot * dot
				}
				if e < best*(1-1e-9) {
					best, bestC = e, c
				}
			}
			if got := clip[r*nb+j]; got != bestC {
				t.Errorf("row %d group %d: clip %v, brute force %v", r, j, got, bestC)
			}
		}
	}
	// Clipped RTN never has a larger output error than plain RTN.
	q0, _ := RTN(w, rows, k, s, nil)
	q1, err := RTN(w, rows, k, s, &RTNOptions{ClipMax: clip})
	if err != nil {
		t.Fatal(err)
	}
	e0, _ := OutputError(h, w, q0.Dequantize(), rows)
	e1, _ := OutputError(h, w, q1.Dequantize(), rows)
	if e1 > e0 {
		t.Errorf("clipped error %v > unclipped %v", e1, e0)
	}
	// ApplyClip then RTN equals RTN with ClipMax.
	wc := append([]float32(nil), w...)
	if err := ApplyClip(wc, rows, k, 32, clip); err != nil {
		t.Fatal(err)
	}
	q2, _ := RTN(wc, rows, k, s, nil)
	for i := range q2.Q {
		if q2.Q[i] != q1.Q[i] {
			t.Fatalf("ApplyClip+RTN code %d = %d, RTN ClipMax %d", i, q2.Q[i], q1.Q[i])
		}
	}
}
