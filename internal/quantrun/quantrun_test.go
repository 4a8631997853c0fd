package quantrun

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
)

func loadStories(t *testing.T) *ir.Graph {
	t.Helper()
	m, err := convert.Load(testmodels.Path(t, "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.Graph
}

func storiesIDs(t *testing.T) []int {
	t.Helper()
	tok, err := tokenizer.Load(testmodels.Path(t, "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := textdata.Read(testmodels.Path(t, "data", "tinystories_calib.txt"), textdata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func mustScheme(t *testing.T, name string) quantize.Scheme {
	t.Helper()
	s, err := quantize.ParseScheme(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// originals returns every tensor's float32 values before quantization.
func originals(t *testing.T, g *ir.Graph) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, tt := range g.Tensors {
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		out[tt.Name] = v
	}
	return out
}

// TestRunRTNWrittenBundle quantizes stories260K with RTN, writes the
// bundle, opens it, and checks every tensor against an independent
// expectation: packed weights dequantize (from the stored bytes) to exactly
// quantize.RTN of the original weights, kept matrices are the f16 rounding
// of the originals, other tensors are unchanged.
func TestRunRTNWrittenBundle(t *testing.T) {
	g := loadStories(t)
	orig := originals(t, g)
	sch := mustScheme(t, "int4-g32-asym")
	rule, err := quantize.NewRule(`blk\.4\.attn_q\.weight`, "int8-channel-sym", "test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(g, []quantize.Rule{rule}, sch, quantize.AlgoRTN)
	if err != nil {
		t.Fatal(err)
	}
	if NeedsCalibration(p) {
		t.Fatal("an rtn plan needs calibration")
	}
	res, err := Run(g, p, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 5 blocks x 6 linears of 64 columns; ffn_down (172 columns) kept.
	if got, want := len(res.Quantized), 30; got != want {
		t.Fatalf("%d tensors quantized, want %d", got, want)
	}
	dir := filepath.Join(t.TempDir(), "b")
	if err := bundle.Write(dir, res.Graph, bundle.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	bg, _, err := bundle.Open(dir, bundle.OpenOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Entries {
		bt := bg.Tensor(e.Name)
		if bt == nil {
			t.Fatalf("tensor %q missing from the bundle", e.Name)
		}
		w := orig[e.Name]
		switch {
		case e.Quantize:
			s := sch
			if e.Name == "blk.4.attn_q.weight" {
				s = mustScheme(t, "int8-channel-sym")
			}
			if e.Scheme != s {
				t.Errorf("%s: scheme %v, want %v", e.Name, e.Scheme, s)
			}
			q, err := quantize.RTN(w, int(e.Shape[0]), int(e.Shape[1]), s, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := quantize.DequantizeTensor(bg, bt)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(q.Dequantize(), got); diff != "" {
				t.Errorf("%s: dequantized bundle weights differ from RTN (-want +got):\n%s", e.Name, diff)
			}
			if diff := cmp.Diff(res.Quantized[e.Name].Dequantize(), got); diff != "" {
				t.Errorf("%s: dequantized bundle weights differ from the quantizer's result", e.Name)
			}
			if bt.Quant.Algorithm != "rtn" {
				t.Errorf("%s: algorithm %q, want rtn", e.Name, bt.Quant.Algorithm)
			}
		case len(e.Shape) == 2:
			if bt.DType != ir.F16 {
				t.Errorf("kept matrix %s stored as %v, want f16", e.Name, bt.DType)
			}
			got, err := bt.Float32()
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(w))
			for i, v := range w {
				want[i] = roundF16(v)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: kept matrix is not the f16 rounding of the original", e.Name)
			}
		default:
			got, err := bt.Float32()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("%s changed", e.Name)
			}
		}
	}
}

func roundF16(v float32) float32 {
	b, err := ir.EncodeFloat32(ir.F16, []float32{v})
	if err != nil {
		panic(err)
	}
	f, err := ir.DecodeFloat32(ir.F16, b)
	if err != nil {
		panic(err)
	}
	return f[0]
}

// TestRunAWQFloatExact checks the AWQ path: the written bundle's norms are
// the folded f32 norms calibration produced, its packed weights dequantize
// to exactly the quantizer's output, and the float model with the folded
// norms and scaled (unquantized) linears computes what the original does —
// the folding is exact in float.
func TestRunAWQFloatExact(t *testing.T) {
	g := loadStories(t)
	orig, err := exec.Load(g, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := storiesIDs(t)
	seqs, err := textdata.Sample(ids, 4, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(g, nil, mustScheme(t, "int4-g32-asym"), quantize.AlgoAWQ)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(g, p, seqs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calib == nil || len(res.Calib.AWQAlpha) == 0 {
		t.Fatal("awq ran no scale search")
	}
	dir := filepath.Join(t.TempDir(), "b")
	if err := bundle.Write(dir, res.Graph, bundle.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	bg, _, err := bundle.Open(dir, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	folded, err := exec.Load(g, exec.Options{}) // original weights, then the folded floats
	if err != nil {
		t.Fatal(err)
	}
	nNorm := 0
	for name, w := range res.Calib.Float {
		if err := folded.SetWeight(name, w); err != nil {
			t.Fatal(err)
		}
		if q := res.Quantized[name]; q != nil {
			got, err := quantize.DequantizeTensor(bg, bg.Tensor(name))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(q.Dequantize(), got); diff != "" {
				t.Errorf("%s: bundle weights differ from the quantizer's output", name)
			}
			continue
		}
		nNorm++
		bt := bg.Tensor(name)
		if bt.DType != ir.F32 {
			t.Errorf("folded %s stored as %v, want f32", name, bt.DType)
		}
		got, err := bt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s: stored folded weights differ", name)
		}
	}
	if nNorm == 0 {
		t.Error("awq folded no norm")
	}
	a, err := orig.Forward(ids[:64])
	if err != nil {
		t.Fatal(err)
	}
	b, err := folded.Forward(ids[:64])
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	if worst > 1e-3 {
		t.Errorf("folded float model differs from the original by %g in the logits, want <= 1e-3", worst)
	}
}

// TestGPTQBeatsRTN is the compact version of the ref29m acceptance check:
// on stories260K (int4-g32-asym; ffn_down kept), GPTQ calibrated on the
// head of the TinyStories text gives a lower perplexity increase than RTN
// on its held-out tail.
func TestGPTQBeatsRTN(t *testing.T) {
	ids := storiesIDs(t)
	calib, held, err := textdata.Split(ids, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	held = held[:2048]
	seqs, err := textdata.Sample(calib, 32, 128, 0)
	if err != nil {
		t.Fatal(err)
	}
	inc := map[quantize.Algorithm]float64{}
	for _, algo := range []quantize.Algorithm{quantize.AlgoRTN, quantize.AlgoGPTQ} {
		g := loadStories(t)
		ref, err := LoadModel(g)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPlan(g, nil, mustScheme(t, "int4-g32-asym"), algo)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(g, p, seqs, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cand, err := LoadModel(res.Graph)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Compare(ref, cand, held, 512, 512, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ppl %.4f -> %.4f (%+.2f%%), mean KL %.4f, top-1 %.4f", algo, r.PPLReference, r.PPLCandidate, 100*r.PPLIncrease, r.MeanKL, r.Top1Agreement)
		inc[algo] = r.PPLIncrease
	}
	if !(inc[quantize.AlgoGPTQ] < inc[quantize.AlgoRTN]) {
		t.Errorf("GPTQ perplexity increase %+.3f%% is not below RTN's %+.3f%%", 100*inc[quantize.AlgoGPTQ], 100*inc[quantize.AlgoRTN])
	}
}

// TestCompareSelf checks Compare against exec's own perplexity (the
// protocol of smelt eval) and the identities of a model compared with
// itself, with overlapping and non-overlapping windows.
func TestCompareSelf(t *testing.T) {
	g := loadStories(t)
	m, err := LoadModel(g)
	if err != nil {
		t.Fatal(err)
	}
	ids := storiesIDs(t)[:700]
	for _, tc := range []struct{ ctx, stride int }{{512, 512}, {256, 100}} {
		r, err := Compare(m, m, ids, tc.ctx, tc.stride, nil)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := m.Perplexity(ids, tc.ctx, tc.stride, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Tokens != pr.Scored || math.Abs(r.PPLReference/pr.PPL-1) > 1e-9 {
			t.Errorf("ctx %d stride %d: %d tokens, ppl %.9f; exec.Perplexity: %d, %.9f", tc.ctx, tc.stride, r.Tokens, r.PPLReference, pr.Scored, pr.PPL)
		}
		if r.PPLCandidate != r.PPLReference || r.PPLIncrease != 0 || r.MeanKL != 0 || r.Top1Agreement != 1 || r.MaxAbsDeltaLogit != 0 {
			t.Errorf("ctx %d stride %d: self comparison %+v", tc.ctx, tc.stride, r)
		}
	}
	if _, err := Compare(m, m, []int{1, 600}, 512, 512, nil); err == nil {
		t.Error("an id outside the vocabulary was accepted")
	}
}

// TestLoadCalibration checks the held-out split, the windows and the
// digest.
func TestLoadCalibration(t *testing.T) {
	path := testmodels.Path(t, "data", "tinystories_calib.txt")
	tok, err := tokenizer.Load(testmodels.Path(t, "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	ids := storiesIDs(t)
	c, err := LoadCalibration(path, tok, DataOptions{NSamples: 5, SeqLen: 100, Seed: 3, Holdout: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	cut := len(ids) - int(math.Floor(float64(len(ids))*0.25))
	want, err := textdata.Sample(ids[:cut], 5, 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.SHA256 != hex.EncodeToString(sum[:]) || c.NBytes != int64(len(b)) || c.Tokens != len(ids) || c.CalibTokens != cut || c.HeldOutTokens != len(ids)-cut || c.Format != textdata.FormatText {
		t.Errorf("calibration %+v, want sha256 %x, %d bytes, %d tokens, %d calib", c, sum, len(b), len(ids), cut)
	}
	if diff := cmp.Diff(want, c.Seqs); diff != "" {
		t.Errorf("windows differ from textdata.Sample of the head (-want +got):\n%s", diff)
	}
	for _, bad := range []DataOptions{
		{NSamples: 1, SeqLen: len(ids) + 1},        // longer than the stream
		{NSamples: 0, SeqLen: 10},                  // no windows
		{NSamples: 1, SeqLen: 10, Holdout: 1},      // everything held out
		{NSamples: 1, SeqLen: 10, Holdout: -0.125}, // negative
	} {
		if _, err := LoadCalibration(path, tok, bad); err == nil {
			t.Errorf("LoadCalibration(%+v) succeeded", bad)
		}
	}
	if _, err := LoadCalibration(filepath.Join(t.TempDir(), "missing.txt"), tok, DataOptions{NSamples: 1, SeqLen: 1}); err == nil {
		t.Error("a missing file was accepted")
	}
}

// TestNewPlanSkipsCompanions re-plans a quantized graph: packed tensors are
// "already quantized" and their scales and zero points are not planned.
func TestNewPlanSkipsCompanions(t *testing.T) {
	g := loadStories(t)
	p, err := NewPlan(g, nil, mustScheme(t, "int8-channel-sym"), quantize.AlgoRTN)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(g, p, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewPlan(res.Graph, nil, mustScheme(t, "int8-channel-sym"), quantize.AlgoRTN)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p2.Entries {
		if e.Quantize {
			t.Errorf("re-plan quantizes %s (%s)", e.Name, e.Reason)
		}
		if bytes.HasSuffix([]byte(e.Name), []byte(".scales")) || bytes.HasSuffix([]byte(e.Name), []byte(".zeros")) {
			t.Errorf("re-plan has an entry for companion %s", e.Name)
		}
	}
	if len(p2.Entries) != len(p.Entries) {
		t.Errorf("re-plan has %d entries, want %d", len(p2.Entries), len(p.Entries))
	}
	res2, err := Run(res.Graph, p2, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Quantized) != 0 || len(res2.Graph.Tensors) != len(res.Graph.Tensors) {
		t.Errorf("re-run quantized %d tensors, %d tensors (want 0, %d)", len(res2.Quantized), len(res2.Graph.Tensors), len(res.Graph.Tensors))
	}
}

// TestGram checks the executor-based Gram kernel against a float64 sum
// (upper triangle), for widths around the panel size and row counts that
// do and do not take the SIMD path, and that Hessians accumulated with it
// match gonum's.
func TestGram(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ rows, n int }{{16, 24}, {37, 130}, {512, 256}, {8, 300}} {
		x := make([]float32, tc.rows*tc.n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		g := make([]float32, tc.n*tc.n)
		Gram(g, x, tc.rows, tc.n)
		for i := 0; i < tc.n; i++ {
			for j := i; j < tc.n; j++ {
				var want, mag float64
				for r := 0; r < tc.rows; r++ {
					a, b := float64(x[r*tc.n+i]), float64(x[r*tc.n+j])
					want += a * b
					mag += math.Abs(a * b)
				}
				if d := math.Abs(float64(g[i*tc.n+j]) - want); d > 1e-5*mag {
					t.Fatalf("rows %d n %d: G[%d,%d] = %v, want %v", tc.rows, tc.n, i, j, g[i*tc.n+j], want)
				}
			}
		}
		a, b := quantize.NewHessian(tc.n), quantize.NewHessian(tc.n)
		if err := a.Add(x, tc.rows); err != nil {
			t.Fatal(err)
		}
		if err := b.AddGram(x, tc.rows, Gram); err != nil {
			t.Fatal(err)
		}
		for i := range a.H {
			if d := math.Abs(a.H[i] - b.H[i]); d > 1e-5*(math.Abs(a.H[i])+1) {
				t.Fatalf("rows %d n %d: H[%d] = %v with Gram, %v with gonum", tc.rows, tc.n, i, b.H[i], a.H[i])
			}
		}
		if diff := cmp.Diff(a.AbsMean, b.AbsMean); diff != "" {
			t.Errorf("AbsMean differs:\n%s", diff)
		}
	}
}
