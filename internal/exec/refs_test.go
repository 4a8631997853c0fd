package exec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/npy"
	"github.com/smeltml/smelt/internal/testmodels"
)

// These tests check the executor against the torch references in
// ../shared/models/refs (README.md there describes how they were made).

// refModel is a model folder and the reference folder it is checked against.
type refModel struct {
	dir, ref string
	tol      float64 // max|Δ| / max|logit| allowed
}

var refModels = []refModel{
	{"stories260K", "stories260K", 1e-4},
	{"stories260K-fp16", "stories260K", 2e-3}, // fp16 weights vs fp32 refs
	{"ref29m", "ref29m", 1e-4},
}

type refPrompts struct {
	Prompts []struct {
		Index      int    `json:"index"`
		Text       string `json:"text"`
		IDs        []int  `json:"ids"`
		Argmax     []int  `json:"argmax_per_position"`
		LogitsFile string `json:"logits_file"`
		LastFile   string `json:"last_logits_file"`
	} `json:"prompts"`
	Greedy    refGreedy   `json:"greedy"`
	GreedyAll []refGreedy `json:"greedy_all_prompts"`
}

type refGreedy struct {
	PromptIndex int   `json:"prompt_index"`
	PromptIDs   []int `json:"prompt_ids"`
	NewTokens   []int `json:"new_tokens"`
}

type refPPL struct {
	Context int `json:"context"`
	Results []struct {
		Stride int     `json:"stride"`
		Scored int     `json:"scored_tokens"`
		NLLSum float64 `json:"nll_sum"`
		PPL    float64 `json:"ppl"`
	} `json:"results"`
	FP16PPL float64 `json:"fp16_weights_stride_ctx_ppl"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readNpyF32(t testing.TB, path string) ([]float32, []int) {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.Float32s()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v, a.Shape
}

func readNpyInts(t testing.TB, path string) []int {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.Ints()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// loadRef loads a shared model folder through convert.Load.
func loadRef(t testing.TB, dir string) *Model {
	t.Helper()
	cm, err := convert.Load(testmodels.Path(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	m, err := Load(cm.Graph, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRefLogits checks the logits of every position of the 5 reference
// prompts (and the stored last-position logits) against torch, and the
// argmax at every position.
func TestRefLogits(t *testing.T) {
	for _, rm := range refModels {
		t.Run(rm.dir, func(t *testing.T) {
			m := loadRef(t, rm.dir)
			refDir := testmodels.Path(t, "refs", rm.ref)
			var rp refPrompts
			readJSON(t, filepath.Join(refDir, "prompts.json"), &rp)
			if len(rp.Prompts) != 5 {
				t.Fatalf("prompts.json has %d prompts, want 5", len(rp.Prompts))
			}
			V := m.Config.VocabSize
			var worst float64
			for _, p := range rp.Prompts {
				got, err := m.Forward(p.IDs)
				if err != nil {
					t.Fatal(err)
				}
				want, shape := readNpyF32(t, filepath.Join(refDir, p.LogitsFile))
				if len(shape) != 2 || shape[0] != len(p.IDs) || shape[1] != V {
					t.Fatalf("prompt %d: %s has shape %v, want [%d %d]", p.Index, p.LogitsFile, shape, len(p.IDs), V)
				}
				last, _ := readNpyF32(t, filepath.Join(refDir, p.LastFile))
				T := len(p.IDs)
				for _, c := range []struct {
					what      string
					got, want []float32
				}{
					{"all positions", got, want},
					{"last position", got[(T-1)*V:], last},
				} {
					var d, ref float64
					for i := range c.want {
						d = math.Max(d, math.Abs(float64(c.got[i]-c.want[i])))
						ref = math.Max(ref, math.Abs(float64(c.want[i])))
					}
					worst = math.Max(worst, d/ref)
					if d > rm.tol*ref {
						t.Errorf("prompt %d %s: max|Δ| = %.4g, max|logit| = %.4g: ratio %.3g > %g", p.Index, c.what, d, ref, d/ref, rm.tol)
					}
				}
				for pos := range T {
					if a := Argmax(got[pos*V : (pos+1)*V]); a != p.Argmax[pos] {
						t.Errorf("prompt %d position %d: argmax %d, torch %d", p.Index, pos, a, p.Argmax[pos])
					}
				}
			}
			t.Logf("%s: worst max|Δ|/max|logit| over 5 prompts = %.3g", rm.dir, worst)
		})
	}
}

// TestRefGreedy checks the 32-token greedy continuations (KV-cache decode)
// against torch's, and for a few steps that the cached logits equal a
// full recompute.
func TestRefGreedy(t *testing.T) {
	for _, rm := range refModels {
		t.Run(rm.dir, func(t *testing.T) {
			m := loadRef(t, rm.dir)
			var rp refPrompts
			readJSON(t, testmodels.Path(t, "refs", rm.ref, "prompts.json"), &rp)
			runs := rp.GreedyAll
			if len(runs) == 0 {
				runs = []refGreedy{rp.Greedy}
			}
			for _, g := range runs {
				if len(g.NewTokens) != 32 {
					t.Fatalf("prompt %d: %d reference tokens, want 32", g.PromptIndex, len(g.NewTokens))
				}
				got, err := greedy(m, g.PromptIDs, len(g.NewTokens))
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(g.NewTokens) {
					t.Errorf("prompt %d: greedy\n got %v\nwant %v", g.PromptIndex, got, g.NewTokens)
				}
			}
			// KV-cache decode vs full recompute, 8 steps of prompt 1.
			p := rp.Prompts[1].IDs
			s, err := m.NewSession(len(p) + 8)
			if err != nil {
				t.Fatal(err)
			}
			seq := append([]int{}, p...)
			logits, err := s.Prefill(p)
			if err != nil {
				t.Fatal(err)
			}
			V := m.Config.VocabSize
			for step := range 8 {
				full, err := m.Forward(seq)
				if err != nil {
					t.Fatal(err)
				}
				want := full[(len(seq)-1)*V:]
				var d, ref float64
				for i := range want {
					d = math.Max(d, math.Abs(float64(logits[i]-want[i])))
					ref = math.Max(ref, math.Abs(float64(want[i])))
				}
				if d > 1e-5*ref {
					t.Errorf("step %d: cached vs recomputed logits: max|Δ| %.3g, max|logit| %.3g", step, d, ref)
				}
				next := Argmax(logits)
				seq = append(seq, next)
				if logits, err = s.Decode(next); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// greedy generates n tokens after prompt with a KV-cache session.
func greedy(m *Model, prompt []int, n int) ([]int, error) {
	s, err := m.NewSession(len(prompt) + n)
	if err != nil {
		return nil, err
	}
	logits, err := s.Prefill(prompt)
	if err != nil {
		return nil, err
	}
	var out []int
	for len(out) < n {
		id := Argmax(logits)
		out = append(out, id)
		if logits, err = s.Decode(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TestRefPerplexityStories260K checks the calibration perplexity of
// stories260K (193,800 ids, windows of 512, stride 512) against
// ppl_calib.json within 0.05%. Stride 256, the fp16 weights and ref29m's
// full-text perplexity are in refs_large_test.go (build tag large: make
// test-large), because they take minutes on 2 cores.
func TestRefPerplexityStories260K(t *testing.T) {
	var rp refPPL
	readJSON(t, refPath(t, "stories260K", "ppl_calib.json"), &rp)
	ids := readNpyInts(t, refPath(t, "stories260K", "calib_ids.npy"))
	m := loadRef(t, "stories260K")
	want := rp.Results[0]
	if want.Stride != rp.Context {
		t.Fatalf("ppl_calib.json: first result has stride %d, want %d", want.Stride, rp.Context)
	}
	checkPPL(t, m, ids, rp.Context, want.Stride, want.Scored, want.PPL)
}

func checkPPL(t *testing.T, m *Model, ids []int, ctx, stride, scored int, want float64) {
	t.Helper()
	r, err := m.Perplexity(ids, ctx, stride, nil)
	if err != nil {
		t.Fatal(err)
	}
	rel := math.Abs(r.PPL-want) / want
	t.Logf("ctx %d stride %d: ppl %.6f (torch %.6f, rel %.2g), %d scored, %d windows", ctx, stride, r.PPL, want, rel, r.Scored, r.Windows)
	if r.Scored != scored {
		t.Errorf("stride %d: %d tokens scored, torch scored %d", stride, r.Scored, scored)
	}
	if rel > 5e-4 {
		t.Errorf("stride %d: ppl %.6f, torch %.6f: relative difference %.3g > 0.05%%", stride, r.PPL, want, rel)
	}
}

func refPath(t testing.TB, model string, elem ...string) string {
	t.Helper()
	return testmodels.Path(t, append([]string{"refs", model}, elem...)...)
}
