package compare

import (
	"math"
	"math/rand/v2"
	"testing"
)

func softmax64(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(x))
	s := 0.0
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// TestAgainstDirectFormulas checks the accumulator against the textbook
// definitions computed separately (softmax then log).
func TestAgainstDirectFormulas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var acc Accumulator
	var nllA, nllB float64
	var kls []float64
	agree := 0
	const n, v = 200, 37
	for i := 0; i < n; i++ {
		a, b := make([]float32, v), make([]float32, v)
		for j := range a {
			a[j] = float32(rng.NormFloat64() * 3)
			b[j] = a[j] + float32(rng.NormFloat64()*0.3)
		}
		y := rng.IntN(v)
		if err := acc.Add(a, b, y); err != nil {
			t.Fatal(err)
		}
		pa, pb := softmax64(a), softmax64(b)
		nllA -= math.Log(pa[y])
		nllB -= math.Log(pb[y])
		kl := 0.0
		ia, ib := 0, 0
		for j := range pa {
			kl += pa[j] * math.Log(pa[j]/pb[j])
			if pa[j] > pa[ia] {
				ia = j
			}
			if pb[j] > pb[ib] {
				ib = j
			}
		}
		kls = append(kls, kl)
		if ia == ib {
			agree++
		}
	}
	r := acc.Report()
	meanKL := 0.0
	for _, k := range kls {
		meanKL += k / n
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"ppl ref", r.PPLReference, math.Exp(nllA / n)},
		{"ppl cand", r.PPLCandidate, math.Exp(nllB / n)},
		{"mean kl", r.MeanKL, meanKL},
		{"top1", r.Top1Agreement, float64(agree) / n},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s = %.12g, want %.12g", c.name, c.got, c.want)
		}
	}
	if r.P99KL < r.MeanKL || r.Tokens != n {
		t.Errorf("p99 %g < mean %g or tokens %d", r.P99KL, r.MeanKL, r.Tokens)
	}
}

func TestIdenticalModels(t *testing.T) {
	var acc Accumulator
	a := []float32{1, 2, 3, -1}
	for y := range a {
		if err := acc.Add(a, a, y); err != nil {
			t.Fatal(err)
		}
	}
	r := acc.Report()
	if r.MeanKL != 0 || r.PPLIncrease != 0 || r.Top1Agreement != 1 || r.MaxAbsDeltaLogit != 0 {
		t.Errorf("identical models report %+v", r)
	}
}

func TestGates(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	r := Report{PPLIncrease: 0.03, MeanKL: 0.01, Top1Agreement: 0.95}
	if fails := (Gates{MaxPPLIncrease: f(0.02), MaxKL: f(0.05), MinTop1: f(0.9)}).Check(r); len(fails) != 1 {
		t.Errorf("want exactly the ppl gate to fail, got %q", fails)
	}
	if fails := (Gates{MaxPPLIncrease: f(0.05), MinTop1: f(0.96)}).Check(r); len(fails) != 1 {
		t.Errorf("want exactly the top1 gate to fail, got %q", fails)
	}
	if fails := (Gates{}).Check(r); len(fails) != 0 {
		t.Errorf("no gates, got failures %q", fails)
	}
}

func TestAddErrors(t *testing.T) {
	var acc Accumulator
	if err := acc.Add([]float32{1}, []float32{1, 2}, 0); err == nil {
		t.Error("length mismatch accepted")
	}
	if err := acc.Add([]float32{1, 2}, []float32{1, 2}, 5); err == nil {
		t.Error("target out of range accepted")
	}
}
