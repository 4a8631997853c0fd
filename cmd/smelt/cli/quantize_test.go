package cli

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/testmodels"
)

// readTree returns every file under dir by slash-separated relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQuantizeDeterministic quantizes stories260K twice per algorithm
// with the same seed, once with GOMAXPROCS=1, and compares every byte of
// the two bundles; the provenance records the recipe and the calibration
// file's digest.
func TestQuantizeDeterministic(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	calib := testmodels.Path(t, "data", "tinystories_calib.txt")
	for _, algo := range [][]string{
		{"--algo", "gptq", "--act-order"},
		{"--algo", "awq", "--awq-gptq"},
	} {
		t.Run(algo[1], func(t *testing.T) {
			var trees []map[string][]byte
			for i, procs := range []int{1, runtime.GOMAXPROCS(0)} {
				out := filepath.Join(t.TempDir(), "q")
				args := append([]string{"quantize", model, out, "--scheme", "int4-g32-sym", "--calib", calib,
					"--nsamples", "8", "--seqlen", "64", "--seed", "7", "--no-progress"}, algo...)
				old := runtime.GOMAXPROCS(procs)
				code, stdout, stderr := smelt(t, args...)
				runtime.GOMAXPROCS(old)
				if code != 0 {
					t.Fatalf("run %d: exit %d: %s", i, code, stderr)
				}
				if !strings.Contains(stdout, "wrote "+out+": 30 tensors quantized") {
					t.Errorf("summary: %s", stdout)
				}
				trees = append(trees, readTree(t, out))
			}
			if diff := cmp.Diff(trees[0], trees[1]); diff != "" {
				t.Errorf("two runs with the same seed differ:\n%s", diff)
			}
			var m struct {
				Tokenizer  string `json:"tokenizer"`
				Provenance struct {
					Recipe      QuantizeRecipe
					Calibration struct {
						SHA256 string `json:"sha256"`
					} `json:"calibration"`
				} `json:"provenance"`
			}
			if err := json.Unmarshal(trees[0]["manifest.json"], &m); err != nil {
				t.Fatal(err)
			}
			r := m.Provenance.Recipe
			if m.Tokenizer != "tokenizer.json" || trees[0]["tokenizer.json"] == nil {
				t.Errorf("bundle tokenizer %q", m.Tokenizer)
			}
			if m.Provenance.Calibration.SHA256 != "7512fc518a5786b0ac200788781ff939a7b38514a3bd8eb6853f1b24550b97be" {
				t.Errorf("calibration sha256 %q", m.Provenance.Calibration.SHA256)
			}
			if r.Scheme != "int4-g32-sym" || r.Algorithm != algo[1] || r.Calibration == nil || r.Calibration.Seed != 7 ||
				r.Calibration.NSamples != 8 || r.Calibration.SeqLen != 64 || r.Calibration.Format != "text" || r.GPTQ == nil || r.Quantized != 30 {
				t.Errorf("recipe %+v", r)
			}
		})
	}
}

// TestQuantizeEvaluates checks that a quantized bundle runs in smelt eval,
// and that its quantized tensors are read back by the executor (the
// perplexity moves, but not far).
func TestQuantizeEvaluates(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	out := filepath.Join(t.TempDir(), "q8")
	if code, _, stderr := smelt(t, "quantize", model, out, "--scheme", "int8-channel-sym", "--no-progress"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	g, _, err := bundle.Open(out, bundle.OpenOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if q := g.Tensor("blk.0.ffn_down.weight"); q == nil || q.Quant == nil || q.Quant.Scheme != "int8-channel-sym" {
		t.Fatalf("blk.0.ffn_down.weight is not int8-channel-sym: %+v", q)
	}
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	a := evalJSON(t, model, "--text", text, "--max-tokens", "1025")
	b := evalJSON(t, out, "--text", text, "--max-tokens", "1025")
	if a.PPL == b.PPL || b.PPL > a.PPL*1.02 || b.Scored != a.Scored {
		t.Errorf("int8 ppl %.5f over %d tokens, float %.5f over %d", b.PPL, b.Scored, a.PPL, a.Scored)
	}
}

func TestQuantizeExplain(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	out := filepath.Join(t.TempDir(), "never")
	rules := filepath.Join(t.TempDir(), "rules.txt")
	if err := os.WriteFile(rules, []byte("# test\nblk\\.1\\..* = int8-channel-sym-gptq\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := smelt(t, "quantize", model, out, "--explain", "--scheme", "int4-g32-asym",
		"--rule", `blk\.0\.attn_q\.weight=keep`, "--rules", rules, "--rule", `output\.weight=int8-channel-sym`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"quantize plan: default int4-g32-asym (rtn)",
		"rule --rule[1]: blk\\.0\\.attn_q\\.weight = keep",
		rules + ":2: blk\\.1\\..* = int8-channel-sym-gptq",
		"int4-g32-asym: dim 1 (172) not divisible by group size 32; kept",
		"rule default: token_embd\\.weight = keep",
		"int8-channel-sym gptq", // blk.1.ffn_down: 172 columns fit int8 per channel
		"total: 30 tensors quantized",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--explain output lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--explain wrote %s", out)
	}
}

func TestQuantizeErrors(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	out := filepath.Join(t.TempDir(), "q")
	g32 := []string{"--scheme", "int4-g32-asym"} // fits stories260K's 64-wide rows
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{model}, "missing OUT"},
		{[]string{model, out, "--scheme", "int3-g32-asym"}, `unknown scheme "int3-g32-asym"`},
		{[]string{model, out, "--algo", "smoothquant"}, `unknown algorithm "smoothquant"`},
		{append([]string{model, out, "--algo", "gptq"}, g32...), "need --calib FILE"},
		{[]string{model, out, "--algo", "gptq", "--awq-gptq"}, "--awq-gptq needs --algo awq"},
		{[]string{model, out, "--rule", "blk(=keep"}, "bad pattern"},
		{[]string{model, out, "--rule", "nothing"}, "want 'regex=target'"},
		{[]string{model, out, "--damp", "0"}, "--damp must be in (0, 1)"},
		{append([]string{model, out, "--algo", "gptq", "--calib", filepath.Join(t.TempDir(), "none.txt")}, g32...), "no such file"},
		{append([]string{model, out, "--algo", "gptq", "--calib", testmodels.Path(t, "data", "tinystories_calib.txt"), "--holdout", "1"}, g32...), "holdout fraction 1 is not in [0, 1)"},
		{[]string{filepath.Join(t.TempDir(), "nomodel"), out}, "no such file"},
	} {
		code, _, stderr := smelt(t, append([]string{"quantize"}, tc.args...)...)
		if code != ExitBadInput || !strings.Contains(stderr, tc.want) {
			t.Errorf("quantize %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed quantize left %s", out)
	}
}

// TestQuantizeBundleInput re-quantizes a quantized bundle: packed tensors
// stay as they are and a rule can still quantize a kept matrix.
func TestQuantizeBundleInput(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	first := filepath.Join(t.TempDir(), "q1")
	second := filepath.Join(t.TempDir(), "q2")
	if code, _, stderr := smelt(t, "quantize", model, first, "--scheme", "int4-g32-asym", "--no-progress"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, stdout, stderr := smelt(t, "quantize", first, second, "--scheme", "int8-channel-sym", "--rule", `token_embd\.weight=int8-channel-sym`, "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// token_embd plus the five ffn_down kept by the first pass.
	if !strings.Contains(stdout, "6 tensors quantized") {
		t.Errorf("summary: %s", stdout)
	}
	a, b := readTree(t, first), readTree(t, second)
	ga, _, err := bundle.Open(first, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gb, _, err := bundle.Open(second, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blk.0.attn_q.weight", "blk.0.attn_q.weight.scales", "blk.0.attn_q.weight.zeros"} {
		da, err := ga.Tensor(name).Data()
		if err != nil {
			t.Fatal(err)
		}
		db, err := gb.Tensor(name).Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s changed on re-quantization", name)
		}
	}
	if e := gb.Tensor("token_embd.weight"); e.Quant == nil || e.Quant.Scheme != "int8-channel-sym" {
		t.Errorf("token_embd.weight: %+v", e)
	}
	if len(a) == 0 || len(b) == 0 {
		t.Fatal("empty bundle")
	}
}

// TestQuantizeMSE: --mse reaches GPTQ (the packed bytes change) and is
// recorded in the bundle's provenance recipe.
func TestQuantizeMSE(t *testing.T) {
	dir := t.TempDir()
	calib := filepath.Join(testmodels.RepoRoot(), "testdata", "demo", "tinystories_excerpt.txt")
	model := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	outs := map[bool]string{false: filepath.Join(dir, "minmax"), true: filepath.Join(dir, "mse")}
	for mse, out := range outs {
		args := []string{"quantize", model, out, "--scheme", "int4-g32-asym", "--algo", "gptq", "--calib", calib, "--nsamples", "8", "--seqlen", "64", "--no-progress"}
		if mse {
			args = append(args, "--mse")
		}
		if code, _, errOut := smelt(t, args...); code != 0 {
			t.Fatalf("quantize (mse=%v): exit %d: %s", mse, code, errOut)
		}
	}
	a, b := readTree(t, outs[false]), readTree(t, outs[true])
	if bytes.Equal(a["shards/00000.bin"], b["shards/00000.bin"]) {
		t.Error("--mse produced the same packed weights as min/max ranges")
	}
	if !bytes.Contains(b["manifest.json"], []byte(`"mse":true`)) || bytes.Contains(a["manifest.json"], []byte(`"mse":true`)) {
		t.Error("provenance does not record --mse (only) where it was given")
	}
}
