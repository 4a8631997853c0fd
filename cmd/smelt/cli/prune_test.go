package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/codegen"
	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
)

// stories260K is the in-repo copy of the model (testdata/stories260K).
func stories260K() string { return filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K") }

func pruneJSON(t *testing.T, args ...string) PruneReport {
	t.Helper()
	code, out, errOut := smelt(t, append([]string{"prune", "--json", "--no-progress"}, args...)...)
	if code != 0 {
		t.Fatalf("smelt prune %v: exit %d: %s", args, code, errOut)
	}
	var rep PruneReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	return rep
}

func openBundle(t *testing.T, dir string) *ir.Graph {
	t.Helper()
	g, _, err := bundle.Open(dir, bundle.OpenOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// forwardFinite runs the Go executor on g over ids and checks the logits'
// shape and that they are finite.
func forwardFinite(t *testing.T, g *ir.Graph, ids []int) []float32 {
	t.Helper()
	m, err := exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
	if err != nil {
		t.Fatal(err)
	}
	logits, err := m.Forward(ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != len(ids)*g.Config.VocabSize {
		t.Fatalf("%d logits for %d tokens of a %d vocabulary", len(logits), len(ids), g.Config.VocabSize)
	}
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %v", i, v)
		}
	}
	return logits
}

// TestPruneStructuredMLPBundle: smelt prune --method structured-mlp 25%
// (align 4: stories260K's 172 channels become 128) writes a bundle whose
// config and ffn shapes are the pruned ones, whose weight bytes dropped by
// exactly 5 layers × 3 matrices × 44 channels × 64 × 4 bytes, which keeps
// the tokenizer and the recipe, and which the Go executor runs with finite
// logits; smelt generate runs it too.
func TestPruneStructuredMLPBundle(t *testing.T) {
	out := filepath.Join(t.TempDir(), "mlp")
	rep := pruneJSON(t, stories260K(), out, "--method", "structured-mlp", "--sparsity", "0.25", "--align", "4")
	if got, want := rep.Report.BytesBefore-rep.Report.BytesAfter, int64(5*3*44*64*4); got != want {
		t.Errorf("report: bytes drop %d, want %d", got, want)
	}
	g := openBundle(t, out)
	if g.Config.IntermediateSize != 128 || g.Config.NumLayers != 5 {
		t.Errorf("bundle config: intermediate %d, layers %d; want 128, 5", g.Config.IntermediateSize, g.Config.NumLayers)
	}
	var total int64
	for _, tn := range g.Tensors {
		b, _ := tn.Shape.ByteSize(tn.DType)
		total += b
		switch {
		case strings.HasSuffix(tn.Name, "ffn_down.weight"):
			if !tn.Shape.Equal(ir.Shape{64, 128}) {
				t.Errorf("%s shape %v", tn.Name, tn.Shape)
			}
		case strings.HasSuffix(tn.Name, "ffn_gate.weight"), strings.HasSuffix(tn.Name, "ffn_up.weight"):
			if !tn.Shape.Equal(ir.Shape{128, 64}) {
				t.Errorf("%s shape %v", tn.Name, tn.Shape)
			}
		}
	}
	if total != rep.Report.BytesAfter {
		t.Errorf("bundle holds %d tensor bytes, report says %d", total, rep.Report.BytesAfter)
	}
	ids := promptIDs(t, stories260K(), "Once upon a time, there was a little girl named Lily")
	forwardFinite(t, g, ids)
	_, m, err := bundle.Open(out, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var recipe PruneRecipe
	if err := json.Unmarshal(m.Provenance.Recipe, &recipe); err != nil || recipe.Method != "structured-mlp" || recipe.Align != 4 || recipe.Importance != "magnitude" {
		t.Errorf("provenance recipe %s (%v)", m.Provenance.Recipe, err)
	}
	if m.Tokenizer != "tokenizer.json" {
		t.Errorf("bundle tokenizer %q", m.Tokenizer)
	}
	code, stdout, stderr := smelt(t, "generate", out, "--prompt", "Once upon a time", "-n", "8")
	if code != 0 || !strings.HasPrefix(stdout, "Once upon a time") {
		t.Errorf("smelt generate on the pruned bundle: exit %d, %q, %s", code, stdout, stderr)
	}
}

// TestPruneExplainWritesNothing: --explain prints the plan (the same
// shapes and bytes a run reports) and creates no OUT.
func TestPruneExplainWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "never")
	for _, args := range [][]string{
		{"--method", "structured-heads", "--sparsity", "0.5"},
		{"--method", "wanda", "--sparsity", "0.5"}, // no --calib needed for a plan
		{"--method", "layers", "--sparsity", "0.4"},
	} {
		plan := pruneJSON(t, append([]string{stories260K(), out, "--explain"}, args...)...)
		if !plan.Report.Planned || plan.Output != "" {
			t.Errorf("%v: report not marked as a plan", args)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("%v: --explain created %s (%v)", args, out, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%v: --explain wrote %d entries", args, len(entries))
		}
		if args[1] == "structured-heads" {
			run := pruneJSON(t, append([]string{stories260K(), out}, args...)...)
			if run.Report.BytesAfter != plan.Report.BytesAfter || run.Report.Config.NumHeads != 4 || plan.Report.Config.NumKVHeads != 2 {
				t.Errorf("heads: plan %d bytes (heads %d/%d), run %d bytes (heads %d/%d)", plan.Report.BytesAfter, plan.Report.Config.NumHeads,
					plan.Report.Config.NumKVHeads, run.Report.BytesAfter, run.Report.Config.NumHeads, run.Report.Config.NumKVHeads)
			}
			forwardFinite(t, openBundle(t, out), []int{1, 5, 9, 200})
			os.RemoveAll(out)
		}
	}
	code, stdout, _ := smelt(t, "prune", stories260K(), "--method", "nm", "--explain")
	if code != 0 || !strings.Contains(stdout, "plan: nm 2:4") || !strings.Contains(stdout, "50.00%") {
		t.Errorf("table plan: exit %d\n%s", code, stdout)
	}
}

// TestPruneWandaValidate: wanda with calibration on the first 80% of the
// TinyStories text, validated on the held-out 20%: the report has the
// perplexity before (the dense model's, as smelt eval computes it on the
// same ids) and after, every linear at 50%, and the calibration recorded
// in the provenance.
func TestPruneWandaValidate(t *testing.T) {
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	out := filepath.Join(t.TempDir(), "wanda")
	rep := pruneJSON(t, stories260K(), out, "--method", "wanda", "--sparsity", "0.5", "--calib", text,
		"--nsamples", "8", "--seqlen", "128", "--holdout", "0.2", "--validate", text, "--validate-tokens", "1024")
	v := rep.Validation
	if v == nil {
		t.Fatal("no validation in the report")
	}
	if v.Tokens != 1024-2 || v.Windows != 2 || v.Context != 512 {
		t.Errorf("validation scored %d tokens in %d windows of %d, want 1022 in 2 of 512", v.Tokens, v.Windows, v.Context)
	}
	if !(v.PPLCandidate > v.PPLReference && v.PPLReference > 2 && v.PPLReference < 10) || v.Top1Agreement >= 1 {
		t.Errorf("validation %+v", v.Report)
	}
	for _, tr := range rep.Report.Tensors {
		if math.Abs(tr.Sparsity-0.5) > 0.01 {
			t.Errorf("%s: sparsity %.4f, want 0.5", tr.Name, tr.Sparsity)
		}
	}
	if len(rep.Report.Tensors) != 35 {
		t.Errorf("%d tensors pruned, want 35", len(rep.Report.Tensors))
	}
	c := rep.Recipe.Calibration
	if c == nil || c.NSamples != 8 || c.SeqLen != 128 || c.HeldOutTokens != c.Tokens-c.CalibTokens || c.HeldOutTokens == 0 {
		t.Errorf("recipe calibration %+v", c)
	}
	_, m, err := bundle.Open(out, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Provenance.Calibration == nil || m.Provenance.Calibration.SHA256 == "" {
		t.Errorf("no calibration digest in the provenance")
	}
	// The reference perplexity is the dense model's on the held-out tail's
	// first 1024 ids, by the executor's perplexity protocol.
	tok, err := tokenizer.Load(stories260K())
	if err != nil {
		t.Fatal(err)
	}
	d, err := textdata.Read(text, textdata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	_, held, _ := textdata.Split(ids, 0.2)
	cm, err := convert.Load(stories260K())
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	em, err := exec.Load(cm.Graph, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dense, err := em.Perplexity(held[:1024], 512, 512, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(dense.PPL-v.PPLReference) > 1e-9*dense.PPL {
		t.Errorf("reference perplexity %v, the dense model's on the held-out ids %v", v.PPLReference, dense.PPL)
	}
}

// TestPruneThenQuantize: prune, then quantize the pruned bundle to INT4
// with RTN: the result verifies, runs in the executor and generates.
func TestPruneThenQuantize(t *testing.T) {
	dir := t.TempDir()
	pruned, q := filepath.Join(dir, "pruned"), filepath.Join(dir, "q4")
	pruneJSON(t, stories260K(), pruned, "--method", "structured-mlp", "--sparsity", "0.25", "--align", "32")
	code, _, stderr := smelt(t, "quantize", pruned, q, "--scheme", "int4-g32-asym", "--algo", "rtn", "--no-progress")
	if code != 0 {
		t.Fatalf("smelt quantize on the pruned bundle: exit %d: %s", code, stderr)
	}
	g := openBundle(t, q)
	n := 0
	for _, tn := range g.Tensors {
		if tn.Quant != nil {
			n++
			if strings.HasSuffix(tn.Name, "ffn_down.weight") && tn.Quant.Cols != 128 {
				t.Errorf("%s: quantized with %d columns, want the pruned 128", tn.Name, tn.Quant.Cols)
			}
		}
	}
	if n != 35 {
		t.Errorf("%d quantized tensors, want the 35 block linears", n)
	}
	forwardFinite(t, g, []int{1, 403, 407, 261})
	code, stdout, stderr := smelt(t, "generate", q, "--prompt", "Once upon a time", "-n", "8")
	if code != 0 || !strings.HasPrefix(stdout, "Once upon a time") {
		t.Errorf("smelt generate on the pruned int4 bundle: exit %d, %q, %s", code, stdout, stderr)
	}
	// pruning a quantized bundle is refused
	code, _, stderr = smelt(t, "prune", q, filepath.Join(dir, "again"), "--method", "magnitude", "--sparsity", "0.5")
	if code != ExitBadInput || !strings.Contains(stderr, "prune before quantizing") {
		t.Errorf("pruning a quantized bundle: exit %d, %s", code, stderr)
	}
}

// TestPruneErrors: bad flags and inputs exit 2 with one message.
func TestPruneErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{stories260K(), out}, "--method is required"},
		{[]string{stories260K(), out, "--method", "bogus", "--sparsity", "0.5"}, "unknown method"},
		{[]string{stories260K(), out, "--method", "wanda", "--sparsity", "0.5"}, "needs --calib"},
		{[]string{stories260K(), out, "--method", "magnitude", "--sparsity", "1"}, "want in (0, 1)"},
		{[]string{stories260K(), out, "--method", "nm", "--n", "2", "--m", "3"}, "not a multiple of 3"},
		{[]string{stories260K(), out, "--method", "nm", "--sparsity", "0.5"}, "no use with --method nm"},
		{[]string{stories260K(), out, "--method", "layers", "--sparsity", "0.1"}, "removes no layer"},
		{[]string{stories260K(), out, "--method", "magnitude", "--sparsity", "0.5", "--scope", "block"}, "want row, tensor or global"},
		{[]string{stories260K(), out, "--method", "structured-mlp", "--sparsity", "0.5", "--importance", "activations"}, "needs --calib"},
		{[]string{stories260K(), stories260K(), "--method", "magnitude", "--sparsity", "0.5"}, "is IN"},
		{[]string{stories260K()}, "missing OUT"},
	} {
		code, _, stderr := smelt(t, append([]string{"prune"}, tt.args...)...)
		if code != ExitBadInput || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("prune %v: exit %d, stderr %q; want exit 2 and %q", tt.args[1:], code, stderr, tt.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed prune left %s", out)
	}
}

// TestPruneMatchesJSRuntime: a structured-mlp 25% bundle of stories260K
// (128 MLP channels), through smelt codegen, gives the same 32 greedy
// tokens and logits in the JS runtime on Dawn as in the Go executor.
func TestPruneMatchesJSRuntime(t *testing.T) {
	pruned := filepath.Join(t.TempDir(), "pruned")
	pruneJSON(t, stories260K(), pruned, "--method", "structured-mlp", "--sparsity", "0.25", "--align", "4")
	dir := writeBundle(t, openBundle(t, pruned), codegen.Options{ContextLength: 128}, nil)
	checkSame(t, dir, promptIDs(t, stories260K(), "Once upon a time, there was a little girl named Lily"))
}

// TestPruneExplainGolden pins --explain output (plans from shapes alone,
// the ref29m ones at full size). Every file in testdata/prune must belong
// to a case here; -update rewrites them.
func TestPruneExplainGolden(t *testing.T) {
	ref29m := testmodels.Path(t, "ref29m")
	tests := []struct {
		golden string
		model  string
		args   []string
	}{
		{"stories260K-mlp25-align4.txt", stories260K(), []string{"--method", "structured-mlp", "--sparsity", "0.25", "--align", "4"}},
		{"ref29m-mlp25.txt", ref29m, []string{"--method", "structured-mlp", "--sparsity", "0.25"}},
		{"ref29m-heads25.txt", ref29m, []string{"--method", "structured-heads", "--sparsity", "0.25"}},
		{"ref29m-layers25.txt", ref29m, []string{"--method", "layers", "--sparsity", "0.25"}},
		{"ref29m-nm24.json", ref29m, []string{"--method", "nm", "--json"}},
	}
	dir := filepath.Join("testdata", "prune")
	known := map[string]bool{}
	for _, tt := range tests {
		known[tt.golden] = true
		t.Run(tt.golden, func(t *testing.T) {
			code, out, errOut := smelt(t, append([]string{"prune", tt.model, "--explain"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			out = strings.ReplaceAll(out, tt.model, "$MODEL")
			p := filepath.Join(dir, tt.golden)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (go test ./cmd/smelt/cli -run TestPruneExplainGolden -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), out); diff != "" {
				t.Errorf("%s (-golden +got; -update rewrites):\n%s", p, diff)
			}
		})
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if !known[f.Name()] {
			t.Errorf("golden %s is read by no test", filepath.Join(dir, f.Name()))
		}
	}
}

// TestPruneDeterministic prunes stories260K twice per method, once with
// GOMAXPROCS=1, and compares every byte of the two bundles (calibration
// statistics included).
func TestPruneDeterministic(t *testing.T) {
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	for _, args := range [][]string{
		{"--method", "wanda", "--sparsity", "0.5", "--calib", text, "--nsamples", "4", "--seqlen", "64", "--seed", "3"},
		{"--method", "layers", "--sparsity", "0.4", "--calib", text, "--nsamples", "4", "--seqlen", "64"},
		{"--method", "magnitude", "--sparsity", "0.3", "--scope", "global"},
	} {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		pruneJSON(t, append([]string{stories260K(), a}, args...)...)
		prev := runtime.GOMAXPROCS(1)
		pruneJSON(t, append([]string{stories260K(), b}, args...)...)
		runtime.GOMAXPROCS(prev)
		ta, tb := readTree(t, a), readTree(t, b)
		if len(ta) != len(tb) {
			t.Fatalf("%v: %d files vs %d", args, len(ta), len(tb))
		}
		for p, da := range ta {
			if string(da) != string(tb[p]) {
				t.Errorf("%v: %s differs between GOMAXPROCS=%d and 1", args[1], p, prev)
			}
		}
	}
}
