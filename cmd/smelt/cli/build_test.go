package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/buildrun"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/recipe"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/tokenizer"
)

// buildChildEnv makes the test binary act as the smelt binary: its value
// is the JSON list of arguments (TestBuildCrashSIGKILL's child process).
const buildChildEnv = "SMELT_BUILD_TEST_CHILD_ARGS"

func init() {
	if v := os.Getenv(buildChildEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(ExitInternal)
		}
		os.Exit(Main(args, os.Stdout, os.Stderr))
	}
}

func buildFixture(name string) string {
	return filepath.Join(testmodels.RepoRoot(), "cmd", "smelt", "cli", "testdata", "build", name)
}

func demoRecipe() string {
	return filepath.Join(testmodels.RepoRoot(), "testdata", "demo.recipe.yaml")
}

// newKey writes an Ed25519 key pair with smelt keygen and returns the
// private key's path (the public key is path + ".pub").
func newKey(t *testing.T) string {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "key")
	if code, _, stderr := smelt(t, "keygen", "--out", prefix); code != ExitOK {
		t.Fatalf("keygen exit %d: %s", code, stderr)
	}
	return prefix
}

// treeDiff names the files that differ between two trees.
func treeDiff(a, b map[string][]byte) []string {
	var diff []string
	for p, x := range a {
		if y, ok := b[p]; !ok || !bytes.Equal(x, y) {
			diff = append(diff, p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diff = append(diff, p+" (extra)")
		}
	}
	sort.Strings(diff)
	return diff
}

func decodeBuildReport(t *testing.T, stdout string) *buildrun.Report {
	t.Helper()
	var rep buildrun.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output is not a report: %v\n%s", err, stdout)
	}
	return &rep
}

func stageNames(rep *buildrun.Report) []string {
	var s []string
	for _, st := range rep.Stages {
		s = append(s, st.Name)
	}
	return s
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBuildDemoRecipeDeterministic builds testdata/demo.recipe.yaml twice
// — once with GOMAXPROCS=1 and the key from $SMELT_SIGNING_KEY, once with
// the default GOMAXPROCS and --key — and requires byte-identical bundles
// that verify, a provenance that pins the sources and calibration data by
// digest and holds no absolute path, and a report that matches the
// manifest.
func TestBuildDemoRecipeDeterministic(t *testing.T) {
	key := newKey(t)
	pemText, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")

	procs := runtime.GOMAXPROCS(1)
	t.Setenv(SigningKeyEnv, string(pemText))
	code, stdoutA, stderr := smelt(t, "build", demoRecipe(), "--out", a, "--json", "--no-progress")
	runtime.GOMAXPROCS(procs)
	if code != ExitOK {
		t.Fatalf("build with GOMAXPROCS=1: exit %d: %s", code, stderr)
	}
	os.Unsetenv(SigningKeyEnv)
	code, _, stderr = smelt(t, "build", demoRecipe(), "--out", b, "--key", key, "--json", "--no-progress")
	if code != ExitOK {
		t.Fatalf("build with GOMAXPROCS=%d: exit %d: %s", procs, code, stderr)
	}
	ta, tb := readTree(t, a), readTree(t, b)
	if d := treeDiff(ta, tb); len(d) > 0 {
		t.Errorf("GOMAXPROCS=1 and GOMAXPROCS=%d builds differ in %v", procs, d)
	}
	for _, dir := range []string{a, b} {
		if code, stdout, stderr := smelt(t, "verify", dir, "--pubkey", key+".pub"); code != ExitOK {
			t.Errorf("verify %s: exit %d %s %s", dir, code, stdout, stderr)
		}
	}

	rep := decodeBuildReport(t, stdoutA)
	m, mb, err := manifest.ReadManifest(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stageNames(rep), []string{"source", "quantize", "codegen", "validate", "write"}; !cmp.Equal(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	if !rep.Published || rep.BundleID != m.ID || !cmp.Equal(rep.Files, m.Files) {
		t.Errorf("report: published %v, id %s, %d files; manifest: id %s, %d files", rep.Published, rep.BundleID, len(rep.Files), m.ID, len(m.Files))
	}
	pub, _ := os.ReadFile(key + ".pub")
	pk, err := manifest.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Signature == nil || rep.Signature.KeyID != pk.KeyID() {
		t.Errorf("report signature %+v, want key %s", rep.Signature, pk.KeyID())
	}
	if v := rep.Validate; v == nil || !v.Pass || v.Tokens == 0 {
		t.Errorf("validation %+v, want a passing measurement", v)
	}
	if q := rep.Quantize; q == nil || q.Algorithm != "gptq" || q.Quantized != 30 || q.Kept != 6 {
		t.Errorf("quantize report %+v, want gptq with 30 quantized (q/k/v/o/gate/up of 5 blocks) and 6 kept (5 ffn_down of K=172, the tied embedding)", q)
	}
	if n := len(rep.Warnings); n != 5 {
		t.Errorf("%d warnings (%v), want 5 W-QUANT-KEEP-F16 for ffn_down", n, rep.Warnings)
	}
	var stored int64
	for _, mt := range m.Tensors {
		stored += mt.NBytes
	}
	var byScheme int64
	for _, n := range rep.Bytes.ByScheme {
		byScheme += n
	}
	if rep.Bytes.Total != stored || byScheme != stored || rep.Bytes.ByScheme["int4-g32-asym"] == 0 || rep.Bytes.ByScheme["f16"] == 0 {
		t.Errorf("bytes %+v; the manifest's tensors hold %d bytes", rep.Bytes, stored)
	}

	// Provenance: what built it, by digest, with no absolute path.
	root := testmodels.RepoRoot()
	if bytes.Contains(mb, []byte(root)) || bytes.Contains(mb, []byte(tmp)) {
		t.Errorf("manifest.json holds an absolute path (%s or %s)", root, tmp)
	}
	pv := m.Provenance
	if pv.Smelt != Version {
		t.Errorf("provenance.smelt %q, want %q", pv.Smelt, Version)
	}
	src := filepath.Join(root, "testdata", "stories260K")
	var names []string
	for _, f := range pv.Sources {
		names = append(names, f.Path)
		if got := sha256File(t, filepath.Join(src, f.Path)); got != f.SHA256 {
			t.Errorf("provenance source %s: sha256 %s, the file's is %s", f.Path, f.SHA256, got)
		}
	}
	wantNames := []string{"config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"}
	if !cmp.Equal(names, wantNames) {
		t.Errorf("provenance sources %v, want %v", names, wantNames)
	}
	calib := filepath.Join(root, "testdata", "demo", "tinystories_excerpt.txt")
	if c := pv.Calibration; c == nil || c.Path != "demo/tinystories_excerpt.txt" || c.SHA256 != sha256File(t, calib) {
		t.Errorf("provenance calibration %+v, want demo/tinystories_excerpt.txt with its sha256", c)
	}
	r, err := recipe.Load(demoRecipe())
	if err != nil {
		t.Fatal(err)
	}
	var got recipe.Recipe
	if err := json.Unmarshal(pv.Recipe, &got); err != nil {
		t.Fatalf("provenance.recipe: %v", err)
	}
	got.Dir = r.Dir
	if diff := cmp.Diff(r, &got); diff != "" {
		t.Errorf("provenance.recipe differs from the recipe (-file +provenance):\n%s", diff)
	}
}

// TestBuildValidatesWhatIsWritten: the numbers the build's gates saw are
// exactly those of comparing the source with the published bundle (its
// stored bytes, dequantized) over the same tokens; the report's files and
// bytes are the manifest's, and an unsigned build says so.
func TestBuildValidatesWhatIsWritten(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := smelt(t, "build", buildFixture("rtn.recipe.yaml"), "--out", out, "--json", "--no-progress")
	if code != ExitOK {
		t.Fatalf("build exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "is not signed") {
		t.Errorf("unsigned build: stderr %q does not say so", stderr)
	}
	rep := decodeBuildReport(t, stdout)
	g, m, err := bundle.Open(out, bundle.OpenOptions{Verify: true})
	if err != nil {
		t.Fatalf("the bundle does not check: %v", err)
	}
	if len(m.Shards) < 2 {
		t.Errorf("%d shards, want several with shard_size 64KiB", len(m.Shards))
	}
	for _, f := range m.Files {
		if f.Path == "index.html" {
			t.Errorf("codegen.demo false, but the bundle has index.html")
		}
	}
	if _, err := os.Stat(filepath.Join(out, manifest.SignatureFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unsigned build wrote %s (%v)", manifest.SignatureFile, err)
	}
	if rep.BundleID != m.ID || rep.Signature != nil {
		t.Errorf("report id %s signature %+v, want %s and none", rep.BundleID, rep.Signature, m.ID)
	}
	int8Rows := 0
	for _, mt := range m.Tensors {
		if mt.Quant != nil && mt.Quant.Scheme == "int8-channel-sym" {
			int8Rows++
		}
	}
	if int8Rows != 7 {
		t.Errorf("%d int8-channel-sym tensors, want the 7 matrices of block 0 (rule quantize.rules[0]; per-channel int8 fits ffn_down's K=172)", int8Rows)
	}

	src := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	sm, err := convert.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	ref, err := quantrun.LoadModel(sm.Graph)
	if err != nil {
		t.Fatal(err)
	}
	cand, err := quantrun.LoadModel(g)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := textdata.Read(filepath.Join(testmodels.RepoRoot(), "testdata", "demo", "tinystories_excerpt.txt"), textdata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	want, err := quantrun.Compare(ref, cand, ids[:384], 128, 128, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Validate == nil {
		t.Fatal("no validation in the report")
	}
	if diff := cmp.Diff(want, rep.Validate.Report); diff != "" {
		t.Errorf("validation of the build differs from comparing the written bundle (-bundle +build):\n%s", diff)
	}
	if rep.Validate.Windows != 3 || rep.Validate.Tokens != 381 {
		t.Errorf("validated %d windows, %d tokens; want 3 windows of 128, each scoring 127 targets", rep.Validate.Windows, rep.Validate.Tokens)
	}
}

// TestBuildPruneGPTQEnvKey runs Wanda pruning and GPTQ (act-order) from
// calibration text, signed with the key named by the recipe's key_env.
func TestBuildPruneGPTQEnvKey(t *testing.T) {
	key := newKey(t)
	pemText, _ := os.ReadFile(key)
	t.Setenv("SMELT_TEST_BUILD_KEY", string(pemText))
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := smelt(t, "build", buildFixture("gptq.recipe.yaml"), "--out", out, "--json", "--no-progress")
	if code != ExitOK {
		t.Fatalf("build exit %d: %s", code, stderr)
	}
	rep := decodeBuildReport(t, stdout)
	if got, want := stageNames(rep), []string{"source", "prune", "quantize", "codegen", "validate", "write"}; !cmp.Equal(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	if p := rep.Prune; p == nil || p.Method != "wanda" || p.Tensors == 0 {
		t.Errorf("prune report %+v, want wanda changing tensors", p)
	}
	if code, stdout, stderr := smelt(t, "verify", out, "--pubkey", key+".pub"); code != ExitOK {
		t.Errorf("verify: exit %d %s %s", code, stdout, stderr)
	}
	m, _, err := manifest.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	// Prune and quantize read the same file: one calibration digest.
	if c := m.Provenance.Calibration; c == nil || !strings.HasSuffix(c.Path, "tinystories_excerpt.txt") {
		t.Errorf("provenance calibration %+v", c)
	}
	for _, s := range m.Provenance.Sources {
		if strings.HasPrefix(s.Path, "calibration:") {
			t.Errorf("provenance lists the calibration file twice: %+v", s)
		}
	}
	for _, mt := range m.Tensors {
		if mt.Quant != nil && mt.Quant.Algorithm != "gptq" {
			t.Errorf("tensor %s: algorithm %q, want gptq", mt.Name, mt.Quant.Algorithm)
		}
	}
}

// TestBuildGateFailure: a failed gate exits 1 after printing the report,
// publishes nothing and leaves a previous bundle at the output untouched.
func TestBuildGateFailure(t *testing.T) {
	tmp := t.TempDir()
	root := testmodels.RepoRoot()
	failing := filepath.Join(tmp, "fail.recipe.yaml")
	err := os.WriteFile(failing, []byte(fmt.Sprintf(`version: 1
source: %s
quantize:
  scheme: int4-g32-sym
codegen:
  context: 64
validate:
  text: %s
  ctx: 64
  max_tokens: 128
  max_kl: 0
  min_top1: 1
`, filepath.Join(root, "testdata", "stories260K"), filepath.Join(root, "testdata", "demo", "tinystories_excerpt.txt"))), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			var before map[string][]byte
			if existing {
				if code, _, stderr := smelt(t, "build", buildFixture("rtn.recipe.yaml"), "--out", out, "--no-progress"); code != ExitOK {
					t.Fatalf("build exit %d: %s", code, stderr)
				}
				before = readTree(t, out)
			}
			code, stdout, stderr := smelt(t, "build", failing, "--out", out, "--json", "--no-progress")
			if code != ExitCheck {
				t.Fatalf("build with failing gates: exit %d, want 1; stderr %s", code, stderr)
			}
			if !strings.Contains(stderr, "nothing was published") || !strings.Contains(stderr, "top-1 agreement") {
				t.Errorf("stderr %q does not name the failed gate and that nothing was published", stderr)
			}
			rep := decodeBuildReport(t, stdout)
			if rep.Published || rep.Validate == nil || rep.Validate.Pass || len(rep.Validate.Failures) != 2 {
				t.Errorf("report: published %v, validate %+v; want unpublished with 2 failed gates", rep.Published, rep.Validate)
			}
			if existing {
				if d := treeDiff(before, readTree(t, out)); len(d) > 0 {
					t.Errorf("a failed build changed the previous bundle: %v", d)
				}
			} else if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed build left %s (%v)", out, err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) > 1 {
				t.Errorf("the parent folder holds %d entries, want at most the previous bundle", len(ents))
			}
			// The human summary says it too.
			code, stdout, _ = smelt(t, "build", failing, "--out", out, "--no-progress")
			if code != ExitCheck || !strings.Contains(stdout, "FAIL") || !strings.Contains(stdout, "not published") {
				t.Errorf("human summary of a failed gate: exit %d\n%s", code, stdout)
			}
		})
	}
}

// TestBuildBadInput: bad recipes, sources, keys and outputs exit 2 with
// one line naming the problem (recipe errors with line:column).
func TestBuildBadInput(t *testing.T) {
	tmp := t.TempDir()
	root := testmodels.RepoRoot()
	model := filepath.Join(root, "testdata", "stories260K")
	write := func(name, text string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		args  []string
		env   string
		wants []string
	}{
		{"unknown field", []string{write("a.yaml", "version: 1\nsource: "+model+"\nquantise:\n  scheme: int4-g32-asym\n")}, "", []string{"a.yaml", "[3:1]", "quantise"}},
		{"bad value", []string{write("b.yaml", "version: 1\nsource: "+model+"\nquantize:\n  scheme: int4-g32-asym\n  algo: hqq\n")}, "", []string{"b.yaml", "[5:9]", "hqq"}},
		{"bad size", []string{write("c.yaml", "version: 1\nsource: "+model+"\nshard_size: 3 bushels\n")}, "", []string{"[3:13]", "bushels"}},
		{"unknown scheme", []string{write("d.yaml", "version: 1\nsource: "+model+"\nquantize:\n  scheme: int3-g7\n")}, "", []string{"int3-g7"}},
		{"missing source", []string{write("e.yaml", "version: 1\nsource: nowhere\n")}, "", []string{"nowhere"}},
		{"missing recipe", []string{filepath.Join(tmp, "none.yaml")}, "", []string{"none.yaml"}},
		{"empty key env", []string{write("f.yaml", "version: 1\nsource: "+model+"\nsign:\n  key_env: SMELT_TEST_NO_SUCH_KEY\n")}, "", []string{"SMELT_TEST_NO_SUCH_KEY", "--key"}},
		{"bad key", []string{write("g.yaml", "version: 1\nsource: "+model+"\nsign:\n  key_env: SMELT_TEST_BAD_KEY\n")}, "not a key", []string{"SMELT_TEST_BAD_KEY"}},
		{"missing calibration", []string{write("h.yaml", "version: 1\nsource: "+model+"\nquantize:\n  scheme: int4-g32-asym\n  algo: gptq\n  calibration:\n    text: no-such.txt\n")}, "", []string{"no-such.txt"}},
		{"missing validation text", []string{write("i.yaml", "version: 1\nsource: "+model+"\nvalidate:\n  text: no-such-text.txt\n")}, "", []string{"no-such-text.txt"}},
		{"output is the source", []string{write("j.yaml", "version: 1\nsource: "+model+"\n"), "--out", model}, "", []string{"would replace the source"}},
		{"no --out", []string{write("k.yaml", "version: 1\nsource: "+model+"\n"), "--out", ""}, "", []string{"--out"}},
		{"output holds other files", []string{write("l.yaml", "version: 1\nsource: "+model+"\n"), "--out", tmp}, "", []string{"not empty", "refusing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SMELT_TEST_BAD_KEY", tt.env)
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"build", "--no-progress", "--out", out}, tt.args...)
			code, stdout, stderr := smelt(t, args...)
			if code != ExitBadInput {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed build left %s", out)
			}
		})
	}
}

// TestBuildCrashSIGKILL runs `smelt build` (this test binary acting as
// smelt) in a child process and kills it with SIGKILL at several points
// of its run: at the output path there is then either nothing or the
// complete bundle a finished build writes — never something else, let
// alone something that verifies — and the next build succeeds, verifies
// and leaves no temporary folder behind.
func TestBuildCrashSIGKILL(t *testing.T) {
	key := newKey(t)
	recipePath := buildFixture("rtn.recipe.yaml")
	child := func(out string) *exec.Cmd {
		args, _ := json.Marshal([]string{"build", recipePath, "--out", out, "--key", key})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), buildChildEnv+"="+string(args))
		return cmd
	}
	// A complete run in a child process: the reference bundle and the
	// time a build takes.
	refDir := filepath.Join(t.TempDir(), "ref")
	t0 := time.Now()
	if b, err := child(refDir).CombinedOutput(); err != nil {
		t.Fatalf("child build: %v\n%s", err, b)
	}
	full := time.Since(t0)
	ref := readTree(t, refDir)
	t.Logf("a whole build in a child process takes %v", full)

	delays := []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond,
		full * 3 / 10, full * 6 / 10, full * 8 / 10, full * 9 / 10, full * 97 / 100}
	killed := 0
	for _, delay := range delays {
		t.Run(fmt.Sprint(delay.Round(time.Millisecond)), func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			cmd := child(out)
			var buf bytes.Buffer
			cmd.Stdout, cmd.Stderr = &buf, &buf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			var ee *exec.ExitError
			wasKilled := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if wasKilled {
				killed++
				// The child's plain progress lines say which stage it was in.
				stage := "start-up"
				for _, l := range strings.Split(buf.String(), "\n") {
					if s, _, ok := strings.Cut(l, ": started ("); ok {
						stage = s
					}
				}
				t.Logf("killed after %v, in stage %q", delay.Round(time.Millisecond), stage)
			} else if err != nil {
				t.Fatalf("child build failed: %v\n%s", err, buf.Bytes())
			} else {
				t.Logf("the child finished within %v", delay.Round(time.Millisecond))
			}
			if _, err := os.Stat(out); err == nil {
				if d := treeDiff(ref, readTree(t, out)); len(d) > 0 {
					t.Errorf("killed=%v: the output holds something other than the complete bundle (differs in %v)", wasKilled, d)
				}
				if code, _, _ := smelt(t, "verify", out, "--pubkey", key+".pub"); code != ExitOK {
					t.Errorf("killed=%v: the output exists but does not verify", wasKilled)
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if code, _, stderr := smelt(t, "build", recipePath, "--out", out, "--key", key, "--no-progress"); code != ExitOK {
				t.Fatalf("build after the kill: exit %d: %s", code, stderr)
			}
			if code, stdout, stderr := smelt(t, "verify", out, "--pubkey", key+".pub"); code != ExitOK {
				t.Errorf("the build after the kill does not verify: %s %s", stdout, stderr)
			}
			if d := treeDiff(ref, readTree(t, out)); len(d) > 0 {
				t.Errorf("the build after the kill differs from the reference in %v", d)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("after the next build the parent holds %v, want only out", names)
			}
		})
	}
	if killed < 3 {
		t.Errorf("only %d of %d children were killed before finishing; the test did not exercise crashes", killed, len(delays))
	}
	t.Logf("%d of %d children killed mid-build", killed, len(delays))
}
