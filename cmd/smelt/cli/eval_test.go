package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/npy"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/quantize"
)

func evalJSON(t *testing.T, args ...string) EvalReport {
	t.Helper()
	code, out, errOut := smelt(t, append([]string{"eval", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("smelt eval %v: exit %d: %s", args, code, errOut)
	}
	var rep EvalReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	return rep
}

// TestEvalTextAndIDs checks that eval --text (tokenizer.json, one BOS)
// scores the same ids as the reference calib_ids.npy on a prefix, and the
// report's arithmetic. The full-text numbers against torch are checked in
// internal/exec.
func TestEvalTextAndIDs(t *testing.T) {
	dir := testmodels.Path(t, "stories260K")
	ids := testmodels.Path(t, "refs", "stories260K", "calib_ids.npy")
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	for _, stride := range []string{"512", "256"} {
		a := evalJSON(t, dir, "--text", text, "--max-tokens", "1500", "--stride", stride)
		b := evalJSON(t, dir, "--ids", ids, "--max-tokens", "1500", "--stride", stride)
		if a.NLLSum != b.NLLSum || a.Scored != b.Scored || a.Tokens != 1500 {
			t.Errorf("stride %s: --text gives %d tokens, %d scored, NLL %v; --ids %d scored, NLL %v", stride, a.Tokens, a.Scored, a.NLLSum, b.Scored, b.NLLSum)
		}
		want := map[string]int{"512": 1500 - 3, "256": 1499}[stride] // 3 windows of 512 / every target
		if b.Scored != want || b.Context != 512 {
			t.Errorf("stride %s: %d scored with context %d, want %d with 512", stride, b.Scored, b.Context, want)
		}
		if got := math.Exp(b.NLLSum / float64(b.Scored)); math.Abs(got-b.PPL) > 1e-12*got || b.PPL < 2 || b.PPL > 8 {
			t.Errorf("stride %s: ppl %v, exp(nll_sum/scored) = %v (a stories260K ppl is about 4)", stride, b.PPL, got)
		}
	}
	code, out, errOut := smelt(t, "eval", dir, "--ids", ids, "--max-tokens", "600")
	if code != 0 || !strings.Contains(out, "perplexity") || !strings.Contains(out, "scored tokens     598") {
		t.Errorf("table output: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestEvalErrors(t *testing.T) {
	dir := testmodels.Path(t, "stories260K")
	ids := testmodels.Path(t, "refs", "stories260K", "calib_ids.npy")
	twoD := filepath.Join(t.TempDir(), "logits.npy")
	if err := os.WriteFile(twoD, npy.Encode(&npy.Array{Descr: "<i4", Shape: []int{2, 2}, Data: make([]byte, 16)}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{dir}, "exactly one of --text and --ids"},
		{[]string{dir, "--ids", ids, "--text", ids}, "exactly one of --text and --ids"},
		{[]string{dir, "--ids", ids, "--stride", "513"}, "stride 513"},
		{[]string{dir, "--ids", twoD}, "shape [2 2]"},
		{[]string{dir, "--text", "/nonexistent/text.txt"}, "no such file"},
		{[]string{dir, "--ids", testmodels.Path(t, "refs", "ref29m", "calib_ids.npy"), "--max-tokens", "5000"}, "outside the vocabulary [0, 512)"},
	} {
		code, out, errOut := smelt(t, append([]string{"eval"}, tc.args...)...)
		if code != ExitBadInput || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("smelt eval %v: exit %d, stdout %q, stderr %q; want exit 2, no stdout, an error containing %q", tc.args[1:], code, out, errOut, tc.want)
		}
	}
}

// TestEvalBundle writes stories260K as a bundle, with blk.0.ffn_down.weight
// quantized to int8-channel-sym, and checks that eval and generate read it
// (quantized tensors dequantized through package quantize) and give the
// numbers of the executor on the same weights.
func TestEvalBundle(t *testing.T) {
	src := testmodels.Path(t, "stories260K")
	cm, err := convert.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	g := cm.Graph
	name := ir.LayerTensor(0, ir.FFNDown)
	old := g.Tensor(name)
	w, err := old.Float32()
	if err != nil {
		t.Fatal(err)
	}
	sch, err := quantize.ParseScheme("int8-channel-sym")
	if err != nil {
		t.Fatal(err)
	}
	q, err := quantize.RTN(w, int(old.Shape[0]), int(old.Shape[1]), sch, nil)
	if err != nil {
		t.Fatal(err)
	}
	qts, _, err := q.Tensors(name)
	if err != nil {
		t.Fatal(err)
	}
	replaceTensor(g, name, qts)
	tok, err := os.ReadFile(filepath.Join(src, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := bundle.Write(dir, g, bundle.WriteOptions{ExtraFiles: []bundle.File{{Path: "tokenizer.json", Data: tok}}, Tokenizer: "tokenizer.json"}); err != nil {
		t.Fatal(err)
	}
	// The executor on the in-memory graph is the expectation.
	m, err := exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
	if err != nil {
		t.Fatal(err)
	}
	idsFile := testmodels.Path(t, "refs", "stories260K", "calib_ids.npy")
	a, err := npy.ReadFile(idsFile)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := a.Ints()
	want, err := m.Perplexity(ids[:1200], 512, 512, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := evalJSON(t, dir, "--ids", idsFile, "--max-tokens", "1200")
	if got.NLLSum != want.NLLSum {
		t.Errorf("bundle: NLL sum %v, executor on the graph %v", got.NLLSum, want.NLLSum)
	}
	plain := evalJSON(t, src, "--ids", idsFile, "--max-tokens", "1200")
	if plain.NLLSum == got.NLLSum || math.Abs(plain.PPL-got.PPL) > 0.01*plain.PPL {
		t.Errorf("int8 blk.0.ffn_down: ppl %v, float model %v: want different but within 1%%", got.PPL, plain.PPL)
	}
	code, out, errOut := smelt(t, "generate", dir, "--prompt", "Once upon a time", "-n", "8")
	if code != 0 || !strings.HasPrefix(out, "Once upon a time") || len(out) <= len("Once upon a time\n") {
		t.Errorf("generate on the bundle: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// replaceTensor swaps the tensor called name for ts (the quantized weight
// first, then its companions) in g's table and in the nodes that use it.
func replaceTensor(g *ir.Graph, name string, ts []*ir.Tensor) {
	var keep []*ir.Tensor
	for _, t := range g.Tensors {
		if t.Name != name {
			keep = append(keep, t)
		}
	}
	g.Tensors = append(keep, ts...)
	g.SortTensors()
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != nil && in.Tensor != nil && in.Tensor.Name == name {
				in.Tensor, in.DType, in.Shape = ts[0], ts[0].DType, ts[0].Shape
			}
		}
	}
}
