package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gonum.org/v1/gonum/mat"
)

// correlatedInputs returns n rows of k correlated features: i.i.d. noise
// plus a rank-16 shared component, with a few channels of much larger
// magnitude, like transformer activations.
func correlatedInputs(rng *rand.Rand, n, k int) []float32 {
	const rank = 16
	u := make([]float64, rank*k)
	for i := range u {
		u[i] = rng.NormFloat64() * 0.7
	}
	x := make([]float32, n*k)
	y := make([]float64, rank)
	for r := 0; r < n; r++ {
		for i := range y {
			y[i] = rng.NormFloat64()
		}
		for j := 0; j < k; j++ {
			v := rng.NormFloat64() * 0.5
			for l, yl := range y {
				v += yl * u[l*k+j]
			}
			if j%37 == 0 {
				v *= 8 // outlier channels
			}
			x[r*k+j] = float32(v)
		}
	}
	return x
}

func hessianOf(t testing.TB, x []float32, n, k int) *Hessian {
	h := NewHessian(k)
	if err := h.Add(x, n); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHessian(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 21))
	n, k := 1300, 24
	x := correlatedInputs(rng, n, k)
	h := NewHessian(k)
	// Uneven batches: running mean must equal the one-shot formula.
	for _, b := range [][2]int{{0, 7}, {7, 700}, {700, 1300}} {
		if err := h.Add(x[b[0]*k:b[1]*k], b[1]-b[0]); err != nil {
			t.Fatal(err)
		}
	}
	if h.Count != n {
		t.Fatalf("Count = %d, want %d", h.Count, n)
	}
	for i := 0; i < k; i++ {
		var am float64
		for r := 0; r < n; r++ {
			am += math.Abs(float64(x[r*k+i]))
		}
		if want := am / float64(n); math.Abs(h.AbsMean[i]-want) > 1e-9*want {
			t.Errorf("AbsMean[%d] = %v, want %v", i, h.AbsMean[i], want)
		}
		for j := 0; j < k; j++ {
			var s float64
			for r := 0; r < n; r++ {
				s += float64(x[r*k+i]) * float64(x[r*k+j])
			}
			want := 2 * s / float64(n)
			if math.Abs(h.H[i*k+j]-want) > 1e-5*(math.Abs(want)+1) {
				t.Fatalf("H[%d,%d] = %v, want %v", i, j, h.H[i*k+j], want)
			}
		}
	}
}

func TestCholeskyInverseUpper(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 23))
	for _, n := range []int{1, 5, 64, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a := mat.NewDense(n, n, nil)
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					a.Set(i, j, rng.NormFloat64())
				}
			}
			var hd mat.Dense
			hd.Mul(a, a.T())
			h := make([]float64, n*n)
			for i := 0; i < n; i++ {
				hd.Set(i, i, hd.At(i, i)+0.1*float64(n))
				for j := 0; j < n; j++ {
					h[i*n+j] = hd.At(i, j)
				}
			}
			// gonum reference: invert, symmetrize, Cholesky (upper).
			var inv mat.Dense
			if err := inv.Inverse(&hd); err != nil {
				t.Fatal(err)
			}
			sym := mat.NewSymDense(n, nil)
			for i := 0; i < n; i++ {
				for j := i; j < n; j++ {
					sym.SetSym(i, j, (inv.At(i, j)+inv.At(j, i))/2)
				}
			}
			var ch mat.Cholesky
			if !ch.Factorize(sym) {
				t.Fatal("gonum: inverse not positive definite")
			}
			var ref mat.TriDense
			ch.UTo(&ref)
			u, ok := CholeskyInverseUpper(h, n)
			if !ok {
				t.Fatal("CholeskyInverseUpper failed on an SPD matrix")
			}
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					want := ref.At(i, j)
					if d := math.Abs(u[i*n+j] - want); d > 1e-9*(math.Abs(want)+1e-3) {
						t.Fatalf("U[%d,%d] = %v, gonum %v", i, j, u[i*n+j], want)
					}
				}
			}
		})
	}
	if _, ok := CholeskyInverseUpper([]float64{1, 2, 2, 1}, 2); ok {
		t.Error("CholeskyInverseUpper accepted an indefinite matrix")
	}
}

// refGPTQ is a plain GPTQ: explicit inverse with gonum, no lazy batches,
// every update applied to all later columns at once (IST-DASLab/gptq with
// blocksize = 1), static groups from the full-precision weights.
func refGPTQ(t *testing.T, w []float32, rows, cols int, H []float64, s Scheme, damp float64) *Quantized {
	h := make([]float64, len(H))
	copy(h, H)
	wk := make([]float64, len(w))
	for i, v := range w {
		wk[i] = float64(v)
	}
	var mean float64
	for i := 0; i < cols; i++ {
		mean += h[i*cols+i]
	}
	mean /= float64(cols)
	hs := mat.NewSymDense(cols, nil)
	for i := 0; i < cols; i++ {
		for j := i; j < cols; j++ {
			v := h[i*cols+j]
			if i == j {
				v += damp * mean
			}
			hs.SetSym(i, j, v)
		}
	}
	var c mat.Cholesky
	if !c.Factorize(hs) {
		t.Fatal("ref: not PD")
	}
	var inv mat.SymDense
	if err := c.InverseTo(&inv); err != nil {
		t.Fatal(err)
	}
	var c2 mat.Cholesky
	if !c2.Factorize(&inv) {
		t.Fatal("ref: inverse not PD")
	}
	var u mat.TriDense
	c2.UTo(&u)
	q, err := RTN(w, rows, cols, s, nil) // static group params (scales, zeros) from full precision
	if err != nil {
		t.Fatal(err)
	}
	q.Algorithm = AlgoGPTQ
	g, nb := s.Group(cols), q.NBlocks()
	for i := 0; i < cols; i++ {
		for r := 0; r < rows; r++ {
			sc, z := q.Scales[r*nb+i/g], q.Zero(r, i/g)
			x := wk[r*cols+i]
			cd := code(float32(x), sc, z, float32(s.MaxCode()))
			q.Q[r*cols+i] = cd
			e := (x - float64((float32(cd)-float32(z))*sc)) / u.At(i, i)
			for j := i + 1; j < cols; j++ {
				wk[r*cols+j] -= e * u.At(i, j)
			}
		}
	}
	return q
}

func TestGPTQMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 25))
	rows, cols, n := 48, 256, 2048
	x := correlatedInputs(rng, n, cols)
	h := hessianOf(t, x, n, cols)
	w := randWeights(rng, rows*cols, 0.05)
	for _, name := range []string{"int4-g32-asym", "int8-channel-sym", "int4-g128-sym"} {
		t.Run(name, func(t *testing.T) {
			s := mustScheme(t, name)
			want := refGPTQ(t, w, rows, cols, h.H, s, 0.01)
			got, err := GPTQ(w, rows, cols, h.H, GPTQOptions{Scheme: s, StaticGroups: true, BlockSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Scales, got.Scales); diff != "" {
				t.Fatalf("scales differ:\n%s", diff)
			}
			var differ int
			for i := range got.Q {
				if got.Q[i] != want.Q[i] {
					differ++
				}
			}
			// Lazy batches reorder float64 sums; only rounding ties may flip.
			if differ > len(got.Q)/1000 {
				t.Errorf("%d of %d codes differ from the unblocked reference", differ, len(got.Q))
			}
			eGot, _ := OutputError(h, w, got.Dequantize(), rows)
			eWant, _ := OutputError(h, w, want.Dequantize(), rows)
			if math.Abs(eGot-eWant) > 1e-3*eWant {
				t.Errorf("output error %v, reference %v", eGot, eWant)
			}
		})
	}
}

func TestGPTQBeatsRTN(t *testing.T) {
	rng := rand.New(rand.NewPCG(26, 27))
	rows, cols, n := 64, 512, 4096
	x := correlatedInputs(rng, n, cols)
	h := hessianOf(t, x, n, cols)
	w := randWeights(rng, rows*cols, 0.05)
	tests := []struct {
		scheme string
		opts   GPTQOptions
		ratio  float64 // GPTQ error must be below ratio × RTN error
	}{
		{"int4-g128-asym", GPTQOptions{}, 0.5},
		{"int4-g32-sym", GPTQOptions{}, 0.5},
		{"int4-g128-asym", GPTQOptions{ActOrder: true}, 0.5},
		{"int4-g128-asym", GPTQOptions{StaticGroups: true}, 0.5},
		{"int8-channel-sym", GPTQOptions{}, 0.5},
		{"int4-channel-asym", GPTQOptions{ActOrder: true, BlockSize: 32}, 0.5},
		{"int4-g128-asym", GPTQOptions{MSE: true}, 0.5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/act=%v/static=%v/mse=%v", tt.scheme, tt.opts.ActOrder, tt.opts.StaticGroups, tt.opts.MSE), func(t *testing.T) {
			s := mustScheme(t, tt.scheme)
			r, err := RTN(w, rows, cols, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.opts.Scheme = s
			g, rep, err := GPTQWithReport(w, rows, cols, h.H, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Validate(); err != nil {
				t.Fatal(err)
			}
			eR, _ := OutputError(h, w, r.Dequantize(), rows)
			eG, _ := OutputError(h, w, g.Dequantize(), rows)
			t.Logf("output error RTN %.4g, GPTQ %.4g (%.2fx), damp %v", eR, eG, eG/eR, rep.Damp)
			if eG >= tt.ratio*eR {
				t.Errorf("GPTQ output error %.4g not below %.2f × RTN %.4g", eG, tt.ratio, eR)
			}
		})
	}
}

// TestMSEGroupParams checks MSEGroupParams against a float64 transcription
// of GPTQ's Quantizer.find_params with mse=True (grid 100, shrink 0.8,
// norm 2.4, math.Pow) over the ranges GroupParams gives for each ratio, on
// groups with and without an outlier: the chosen parameters' error must be
// the smallest up to rounding of the power.
func TestMSEGroupParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(40, 41))
	for _, name := range []string{"int4-g32-asym", "int4-g128-sym", "int8-g64-asym"} {
		s := mustScheme(t, name)
		g := s.GroupSize
		for trial := 0; trial < 20; trial++ {
			v := randWeights(rng, g, 0.1)
			if trial%2 == 1 {
				v[rng.IntN(g)] = 1.5 // outlier
			}
			errOf := func(sc float32, z uint8) float64 {
				var e float64
				for _, x := range v {
					c := math.Min(math.Max(math.RoundToEven(float64(x/sc))+float64(z), 0), float64(s.MaxCode()))
					e += math.Pow(math.Abs((c-float64(z))*float64(sc)-float64(x)), 2.4)
				}
				return e
			}
			best := math.Inf(1)
			for i := 0; i < 80; i++ {
				p := float32(1 - float64(i)/100)
				lo, hi := float32(0), float32(0)
				for _, x := range v {
					lo, hi = min(lo, x), max(hi, x)
				}
				sc, z, err := rangeParams(lo, hi, s, p)
				if err != nil {
					t.Fatal(err)
				}
				best = math.Min(best, errOf(sc, z))
			}
			sc, z, err := MSEGroupParams(v, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := errOf(sc, z); got > best*(1+1e-12) {
				t.Errorf("%s trial %d: MSEGroupParams error %v, best ratio's %v", name, trial, got, best)
			}
		}
	}
}

func TestGPTQDiagonalHessianIsRTN(t *testing.T) {
	// With a diagonal H no error is propagated: GPTQ must equal RTN for
	// every option combination (act-order visits columns in another order
	// but static groups make the result order-independent).
	rng := rand.New(rand.NewPCG(28, 29))
	rows, cols := 16, 128
	w := randWeights(rng, rows*cols, 0.1)
	h := make([]float64, cols*cols)
	for i := 0; i < cols; i++ {
		h[i*cols+i] = 0.5 + rng.Float64()
	}
	for _, name := range []string{"int4-g32-asym", "int4-channel-sym"} {
		s := mustScheme(t, name)
		want, err := RTN(w, rows, cols, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []GPTQOptions{{}, {StaticGroups: true}, {ActOrder: true}, {ActOrder: true, BlockSize: 16}} {
			o.Scheme = s
			got, err := GPTQ(w, rows, cols, h, o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Q, got.Q); diff != "" {
				t.Errorf("%s %+v: codes differ from RTN:\n%s", name, o, diff)
			}
			if diff := cmp.Diff(want.Scales, got.Scales); diff != "" {
				t.Errorf("%s %+v: scales differ from RTN:\n%s", name, o, diff)
			}
		}
	}
}

func TestGPTQActOrderEquivalence(t *testing.T) {
	// If diag(H) is already decreasing, act-order visits columns in natural
	// order, so it must equal static groups without act-order exactly.
	rng := rand.New(rand.NewPCG(30, 31))
	rows, cols, n := 24, 128, 1024
	x := correlatedInputs(rng, n, cols)
	hs := hessianOf(t, x, n, cols)
	// Reorder the features by decreasing diag(H).
	idx := make([]int, cols)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return hs.H[idx[a]*cols+idx[a]] > hs.H[idx[b]*cols+idx[b]] })
	xp := make([]float32, len(x))
	for r := 0; r < n; r++ {
		for i, p := range idx {
			xp[r*cols+i] = x[r*cols+p]
		}
	}
	h := hessianOf(t, xp, n, cols)
	w := randWeights(rng, rows*cols, 0.05)
	s := mustScheme(t, "int4-g32-asym")
	a, err := GPTQ(w, rows, cols, h.H, GPTQOptions{Scheme: s, ActOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := GPTQ(w, rows, cols, h.H, GPTQOptions{Scheme: s, StaticGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("act-order with identity permutation differs from static groups:\n%s", diff)
	}
}

func TestGPTQDeadColumnsAndDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 33))
	rows, cols, n := 32, 256, 1024
	x := correlatedInputs(rng, n, cols)
	for r := 0; r < n; r++ {
		x[r*cols+3] = 0 // a dead input channel
		x[r*cols+200] = 0
	}
	h := hessianOf(t, x, n, cols)
	w := randWeights(rng, rows*cols, 0.05)
	o := GPTQOptions{Scheme: mustScheme(t, "int4-g64-asym"), ActOrder: true}
	prev := runtime.GOMAXPROCS(1)
	a, rep, err := GPTQWithReport(w, rows, cols, h.H, o)
	runtime.GOMAXPROCS(max(prev, 3))
	b, _, err2 := GPTQWithReport(w, rows, cols, h.H, o)
	runtime.GOMAXPROCS(prev)
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("GPTQ depends on GOMAXPROCS:\n%s", diff)
	}
	if rep.DeadCols != 2 {
		t.Errorf("DeadCols = %d, want 2", rep.DeadCols)
	}
	d := a.Dequantize()
	for r := 0; r < rows; r++ {
		if d[r*cols+3] != 0 || d[r*cols+200] != 0 {
			t.Fatalf("row %d: dead columns dequantize to %v, %v; want 0", r, d[r*cols+3], d[r*cols+200])
		}
	}
}

func TestGPTQErrors(t *testing.T) {
	s := mustScheme(t, "int4-g32-asym")
	w := make([]float32, 4*64)
	h := make([]float64, 64*64)
	if _, err := GPTQ(w, 4, 64, h[:10], GPTQOptions{Scheme: s}); err == nil {
		t.Error("GPTQ accepted a short hessian")
	}
	h[5] = math.NaN()
	if _, err := GPTQ(w, 4, 64, h, GPTQOptions{Scheme: s}); err == nil {
		t.Error("GPTQ accepted a NaN hessian")
	}
	h[5] = 0
	if _, err := GPTQ(w, 4, 64, h, GPTQOptions{Scheme: s, Damp: 2}); err == nil {
		t.Error("GPTQ accepted damp 2")
	}
	// All-dead H is fine: identity after the dead-column rule.
	if _, err := GPTQ(w, 4, 64, h, GPTQOptions{Scheme: s}); err != nil {
		t.Errorf("GPTQ on an all-zero hessian: %v", err)
	}
}

func BenchmarkGPTQLayer(b *testing.B) {
	for _, sz := range []struct{ rows, cols int }{{512, 1536}, {1536, 512}, {512, 512}, {4096, 4096}} {
		b.Run(fmt.Sprintf("%dx%d", sz.rows, sz.cols), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			n := 2 * sz.cols
			x := correlatedInputs(rng, n, sz.cols)
			h := hessianOf(b, x, n, sz.cols)
			w := randWeights(rng, sz.rows*sz.cols, 0.05)
			s := mustScheme(b, "int4-g128-asym")
			b.ResetTimer()
			for b.Loop() {
				if _, err := GPTQ(w, sz.rows, sz.cols, h.H, GPTQOptions{Scheme: s}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHessianAdd(b *testing.B) {
	for _, k := range []int{512, 1536} {
		b.Run(fmt.Sprintf("512x%d", k), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			x := randWeights(rng, 512*k, 1)
			h := NewHessian(k)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := h.Add(x, 512); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
