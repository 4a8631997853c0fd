package cli

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/codegen"
	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
	"github.com/smeltml/smelt/wgsl/ref"
)

// linearWeight matches the per-block linear weights the e2e tests quantize;
// embedWeight adds the embedding table (tied to the logits head in
// stories260K) and the untied head.
var (
	linearWeight = regexp.MustCompile(`^blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$`)
	embedWeight  = regexp.MustCompile(`^(blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)|token_embd|output)\.weight$`)
)

// quantizeGraph replaces every linear weight whose shape the scheme takes
// by its RTN-packed form (quantize.RTN + Quantized.Tensors), updating the
// graph's constant values; others stay as they are.
func quantizeGraph(t *testing.T, g *ir.Graph, scheme string) {
	quantizeMatching(t, g, scheme, linearWeight)
}

// quantizeMatching quantizes the tensors whose names match re.
func quantizeMatching(t *testing.T, g *ir.Graph, scheme string, re *regexp.Regexp) {
	t.Helper()
	s, err := quantize.ParseScheme(scheme)
	if err != nil {
		t.Fatal(err)
	}
	repl := map[string][]*ir.Tensor{}
	for _, tn := range g.Tensors {
		if !re.MatchString(tn.Name) {
			continue
		}
		rows, cols := int(tn.Shape[0]), int(tn.Shape[1])
		if s.CheckShape(rows, cols) != nil {
			continue
		}
		w, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		q, err := quantize.RTN(w, rows, cols, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		ts, _, err := q.Tensors(tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		repl[tn.Name] = ts
	}
	if len(repl) == 0 {
		t.Fatalf("scheme %s quantized no tensor", scheme)
	}
	var out []*ir.Tensor
	for _, tn := range g.Tensors {
		if ts, ok := repl[tn.Name]; ok {
			out = append(out, ts...)
		} else {
			out = append(out, tn)
		}
	}
	g.Tensors = out
	g.SortTensors()
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil && v.Tensor != nil {
				if ts, ok := repl[v.Tensor.Name]; ok {
					v.Tensor, v.DType, v.Shape = ts[0], ts[0].DType, ts[0].Shape
				}
			}
		}
	}
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
}

// writeBundle runs codegen.Generate and bundle.Write.
func writeBundle(t *testing.T, g *ir.Graph, opts codegen.Options, tok []byte) string {
	t.Helper()
	out, err := codegen.Generate(g, opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := bundle.Write(dir, g, out.WriteOptions()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goGreedy runs the Go executor on the bundle at dir: n greedy tokens after
// ids, and the last-position logits of ids.
func goGreedy(t *testing.T, dir string, ids []int, n int) ([]int, []float32) {
	t.Helper()
	g, _, err := bundle.Open(dir, bundle.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession(len(ids) + n)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := s.Prefill(ids)
	if err != nil {
		t.Fatal(err)
	}
	last := append([]float32(nil), lg...)
	var out []int
	for range n {
		id := argmax(lg)
		out = append(out, id)
		if lg, err = s.Decode(id); err != nil {
			t.Fatal(err)
		}
	}
	return out, last
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// jsGreedy runs the bundle's JS runtime on Dawn: n greedy tokens after ids
// (EOS ignored) and the last-position logits of ids.
func jsGreedy(t *testing.T, dir string, ids []int, n int) ([]int, []float32) {
	t.Helper()
	var got []int
	var logits []float32
	err := RunNode("node", filepath.Join(testmodels.RepoRoot(), "node_modules"), dir, nil,
		[]NodeJob{{IDs: ids, MaxTokens: n, IgnoreEOS: true}, {IDs: ids, Logits: true}},
		func(ev NodeEvent) error {
			switch ev.Event {
			case "loaded":
				t.Logf("js runtime: bundle loaded in %.0f ms", ev.Ms)
			case "done":
				t.Logf("js runtime: prefill %.0f ms, %d decode steps %.0f ms", ev.PrefillMs, len(ev.IDs)-1, ev.DecodeMs)
				got = ev.IDs
			case "logits":
				var err error
				logits, err = decodeF32(ev.Data)
				return err
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return got, logits
}

// checkSame compares the JS runtime's greedy tokens and logits with the Go
// executor's: identical tokens, logits within 1e-3·max|logit|.
func checkSame(t *testing.T, dir string, ids []int) {
	t.Helper()
	const n = 32
	t0 := time.Now()
	want, wantL := goGreedy(t, dir, ids, n)
	t1 := time.Now()
	got, gotL := jsGreedy(t, dir, ids, n)
	t.Logf("go executor %v, js runtime on dawn (load + prefill + decode) %v", t1.Sub(t0), time.Since(t1))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("greedy tokens after %v:\n js %v\n go %v", ids, got, want)
	}
	if len(gotL) != len(wantL) {
		t.Fatalf("js logits: %d values, want %d", len(gotL), len(wantL))
	}
	var maxAbs, maxDiff float64
	worst := 0
	for i := range wantL {
		maxAbs = math.Max(maxAbs, math.Abs(float64(wantL[i])))
		if d := math.Abs(float64(gotL[i] - wantL[i])); d > maxDiff || math.IsNaN(d) {
			maxDiff, worst = d, i
		}
	}
	t.Logf("last-position logits: max |diff| %.3g (at %d), max |logit| %.3g", maxDiff, worst, maxAbs)
	if !(maxDiff <= 1e-3*maxAbs) {
		t.Errorf("logits differ by %.3g at %d (js %v, go %v), over 1e-3·max|logit| = %.3g", maxDiff, worst, gotL[worst], wantL[worst], 1e-3*maxAbs)
	}
}

func promptIDs(t *testing.T, dir, text string) []int {
	t.Helper()
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.EncodeWithSpecial(text)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestRunMatchesExecutorStories260K: the JS runtime on Dawn + lavapipe
// produces the Go executor's greedy tokens and logits on the same bundle,
// for f32, int8 and int4 weights (the "+embd" cases quantize the embedding
// table too, which stories260K ties to the logits head), and for a prompt
// longer than one prefill chunk.
func TestRunMatchesExecutorStories260K(t *testing.T) {
	src := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	ids := promptIDs(t, src, "Once upon a time, there was a little girl named Lily")
	tests := []struct {
		name   string
		scheme string
		which  *regexp.Regexp
		opts   codegen.Options
	}{
		{"f32", "", nil, codegen.Options{ContextLength: 128}},
		{"f32-chunked-prefill", "", nil, codegen.Options{ContextLength: 128, MaxRows: 5}},
		{"int8-channel-sym", "int8-channel-sym", linearWeight, codegen.Options{ContextLength: 128}},
		{"int8-channel-sym+embd", "int8-channel-sym", embedWeight, codegen.Options{ContextLength: 128}},
		{"int4-g32-asym", "int4-g32-asym", linearWeight, codegen.Options{ContextLength: 128}},
		{"int4-g32-asym+embd", "int4-g32-asym", embedWeight, codegen.Options{ContextLength: 128}},
		{"int4-g32-sym-f32", "int4-g32-sym-f32", linearWeight, codegen.Options{ContextLength: 128}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := convert.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if tt.scheme != "" {
				quantizeMatching(t, m.Graph, tt.scheme, tt.which)
			}
			if tt.which == embedWeight {
				if q := m.Graph.Tensor(ir.TokenEmbedding).Quant; q == nil {
					t.Fatalf("%s is not quantized", ir.TokenEmbedding)
				}
			}
			dir := writeBundle(t, m.Graph, tt.opts, nil)
			checkSame(t, dir, ids)
		})
	}
}

// TestRunSamplesOnGPU: with temperature, top-k and top-p, every token the
// GPU sample pass picks is the one the reference sampler (wgsl/ref.Sample)
// picks from the same logits and uniform draw; the same seed gives the same
// tokens with and without tracing, and another seed other tokens.
func TestRunSamplesOnGPU(t *testing.T) {
	src := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	ids := promptIDs(t, src, "Once upon a time")
	m, err := convert.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := writeBundle(t, m.Graph, codegen.Options{ContextLength: 64, SampleMaxK: 40}, nil)
	const n = 24
	tests := []NodeJob{
		{IDs: ids, MaxTokens: n, IgnoreEOS: true, Temperature: 1.3, TopK: 0, TopP: 1, Seed: 7, Trace: true},
		{IDs: ids, MaxTokens: n, IgnoreEOS: true, Temperature: 0.8, TopK: 12, TopP: 0.9, Seed: 7, Trace: true},
		{IDs: ids, MaxTokens: n, IgnoreEOS: true, Temperature: 0.8, TopK: 12, TopP: 0.9, Seed: 7},
		{IDs: ids, MaxTokens: n, IgnoreEOS: true, Temperature: 0.8, TopK: 12, TopP: 0.9, Seed: 8},
	}
	type step struct {
		id     int
		r      *float64
		logits []float32
	}
	steps := make([][]step, len(tests))
	done := make([][]int, len(tests))
	err = RunNode("node", filepath.Join(testmodels.RepoRoot(), "node_modules"), dir, nil, tests, func(ev NodeEvent) error {
		switch ev.Event {
		case "step":
			l, err := decodeF32(ev.Data)
			if err != nil {
				return err
			}
			steps[ev.Job] = append(steps[ev.Job], step{ev.ID, ev.Rand, l})
		case "done":
			done[ev.Job] = ev.IDs
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const maxK = 40
	for j, job := range tests[:2] {
		if len(steps[j]) != n {
			t.Fatalf("job %d: %d traced steps, want %d", j, len(steps[j]), n)
		}
		greedyDiffers := false
		for i, st := range steps[j] {
			if st.r == nil {
				t.Fatalf("job %d step %d: no uniform draw (the greedy pass ran)", j, i)
			}
			want := int(ref.Sample(st.logits, float32(job.Temperature), job.TopK, float32(job.TopP), float32(*st.r), maxK))
			if st.id != want {
				t.Errorf("job %d step %d: GPU sampled %d, reference %d (r %v)", j, i, st.id, want, *st.r)
			}
			if st.id != int(ref.Argmax(st.logits)) {
				greedyDiffers = true
			}
		}
		if !greedyDiffers {
			t.Errorf("job %d: every sampled token is the argmax: sampling had no effect", j)
		}
	}
	if fmt.Sprint(done[1]) != fmt.Sprint(done[2]) {
		t.Errorf("seed 7 traced %v, untraced %v: want the same tokens", done[1], done[2])
	}
	if fmt.Sprint(done[2]) == fmt.Sprint(done[3]) {
		t.Errorf("seeds 7 and 8 gave the same %d tokens %v", n, done[2])
	}
}

func decodeF32(s string) ([]float32, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// TestRunMatchesExecutorRef29m does the same for ref29m (f16 weights, GQA,
// untied head) as stored, and with int8 per-channel and int4-g128 linears.
func TestRunMatchesExecutorRef29m(t *testing.T) {
	src := testmodels.Path(t, "ref29m")
	ids := promptIDs(t, src, "Once upon a time, there was a little girl named")
	for _, scheme := range []string{"", "int8-channel-sym", "int4-g128-asym"} {
		name := scheme
		if name == "" {
			name = "f16"
		}
		t.Run(name, func(t *testing.T) {
			m, err := convert.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if scheme != "" {
				quantizeGraph(t, m.Graph, scheme)
			}
			dir := writeBundle(t, m.Graph, codegen.Options{ContextLength: 64}, nil)
			checkSame(t, dir, ids)
		})
	}
}

// TestRunCLI runs `smelt codegen` on the embedded model (with its
// tokenizer.json, so the bundle gets runtime/tokenizer.js) and `smelt run
// --json`, and compares with `smelt generate --json` on the source model:
// the same prompt ids (the JS tokenizer), generated ids and streamed text.
func TestRunCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "b")
	src := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	var stdout, stderr strings.Builder
	if code := Main([]string{"codegen", src, out, "--context", "64"}, &stdout, &stderr); code != 0 {
		t.Fatalf("codegen exit %d: %s", code, stderr.String())
	}
	const prompt = "Once upon a time, Lily saw a big dog"
	report := func(args ...string) GenerateReport {
		t.Helper()
		var stdout, stderr strings.Builder
		if code := Main(args, &stdout, &stderr); code != 0 {
			t.Fatalf("%s exit %d: %s", args[0], code, stderr.String())
		}
		var r GenerateReport
		if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
			t.Fatalf("%s --json: %v in %q", args[0], err, stdout.String())
		}
		return r
	}
	nm := filepath.Join(testmodels.RepoRoot(), "node_modules")
	got := report("run", out, "--prompt", prompt, "-n", "24", "--json", "--node-modules", nm)
	want := report("generate", src, "--prompt", prompt, "-n", "24", "--json")
	if len(want.IDs) < 2 || want.Text == "" {
		t.Fatalf("smelt generate gave %d ids, text %q: want a non-trivial reference", len(want.IDs), want.Text)
	}
	if diff := cmp.Diff(want.PromptIDs, got.PromptIDs); diff != "" {
		t.Errorf("prompt ids: JS tokenizer differs from the Go one (-generate +run):\n%s", diff)
	}
	if diff := cmp.Diff(want.IDs, got.IDs); diff != "" {
		t.Errorf("generated ids (-generate +run):\n%s", diff)
	}
	if got.Text != want.Text {
		t.Errorf("text:\n run      %q\n generate %q", got.Text, want.Text)
	}
	// Sampling flags reach the GPU sample pass: top-k 1 is greedy whatever
	// the temperature; a hot temperature with a seed leaves the greedy path.
	top1 := report("run", out, "--prompt", prompt, "-n", "24", "--json", "--node-modules", nm, "--temperature", "0.9", "--top-k", "1", "--seed", "5")
	if diff := cmp.Diff(want.IDs, top1.IDs); diff != "" {
		t.Errorf("--top-k 1 ids differ from greedy (-greedy +top-k 1):\n%s", diff)
	}
	hot := report("run", out, "--prompt", prompt, "-n", "24", "--json", "--node-modules", nm, "--temperature", "1.5", "--top-p", "0.95", "--seed", "5", "--ignore-eos")
	if len(hot.IDs) != 24 || cmp.Equal(hot.IDs, want.IDs) {
		t.Errorf("--temperature 1.5 --seed 5 gave ids %v: want 24 ids that differ from greedy %v", hot.IDs, want.IDs)
	}
	// Plain output: the prompt, the streamed text and a newline.
	stdout.Reset()
	stderr.Reset()
	if code := Main([]string{"run", out, "--prompt", prompt, "-n", "24", "--node-modules", nm}, &stdout, &stderr); code != 0 {
		t.Fatalf("run exit %d: %s", code, stderr.String())
	}
	if w := prompt + want.Text + "\n"; stdout.String() != w {
		t.Errorf("run stdout %q, want %q", stdout.String(), w)
	}
	if !strings.Contains(stderr.String(), "tokens/s (WebGPU)") {
		t.Errorf("run stderr %q lacks the timings line", stderr.String())
	}
}
