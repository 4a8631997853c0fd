package quantize

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var usedGoldens = map[string]bool{}

// TestMain fails when a golden file under testdata/ has no test (only on
// full runs, so that -run subsets still work).
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		files, _ := filepath.Glob(filepath.Join("testdata", "*.golden"))
		for _, f := range files {
			if !usedGoldens[filepath.Base(f)] {
				fmt.Fprintf(os.Stderr, "orphaned golden file %s (no test uses it)\n", f)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	usedGoldens[name] = true
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./quantize -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got), rerun with -update if intended:\n%s", name, diff)
	}
}

// configTensors lists a Llama model's canonical tensors, shapes only, from
// its config.json (dtype from torch_dtype).
func configTensors(t *testing.T, path string) []*ir.Tensor {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Hidden  int64  `json:"hidden_size"`
		Inter   int64  `json:"intermediate_size"`
		Layers  int    `json:"num_hidden_layers"`
		Heads   int64  `json:"num_attention_heads"`
		KV      int64  `json:"num_key_value_heads"`
		HeadDim int64  `json:"head_dim"`
		Vocab   int64  `json:"vocab_size"`
		Tie     bool   `json:"tie_word_embeddings"`
		DType   string `json:"torch_dtype"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.HeadDim == 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	dt := ir.F32
	if c.DType == "float16" {
		dt = ir.F16
	}
	var ts []*ir.Tensor
	add := func(name string, shape ...int64) {
		ts = append(ts, &ir.Tensor{Name: name, DType: dt, Shape: shape})
	}
	add(convert.TokenEmbedding, c.Vocab, c.Hidden)
	for i := 0; i < c.Layers; i++ {
		l := func(n string) string { return convert.Layer(i, n) }
		add(l(convert.AttnNorm), c.Hidden)
		add(l(convert.AttnQ), c.Heads*c.HeadDim, c.Hidden)
		add(l(convert.AttnK), c.KV*c.HeadDim, c.Hidden)
		add(l(convert.AttnV), c.KV*c.HeadDim, c.Hidden)
		add(l(convert.AttnOutput), c.Hidden, c.Heads*c.HeadDim)
		add(l(convert.FFNNorm), c.Hidden)
		add(l(convert.FFNGate), c.Inter, c.Hidden)
		add(l(convert.FFNUp), c.Inter, c.Hidden)
		add(l(convert.FFNDown), c.Hidden, c.Inter)
	}
	add(convert.OutputNorm, c.Hidden)
	if !c.Tie {
		add(convert.Output, c.Vocab, c.Hidden)
	}
	return ts
}

func TestPlanGolden(t *testing.T) {
	tests := []struct {
		golden, model, scheme string
		algo                  Algorithm
		rules                 string
	}{
		{"ref29m_int4-g128-asym_gptq.golden", "ref29m", "int4-g128-asym", AlgoGPTQ, ""},
		{"ref29m_int8-channel-sym_rtn.golden", "ref29m", "int8-channel-sym", AlgoRTN, ""},
		{"ref29m_mixed_rules.golden", "ref29m", "int4-g32-sym", AlgoAWQ,
			"# keep the first block's down projection in int8\nblk\\.0\\.ffn_down\\.weight = int8-channel-sym-rtn\noutput\\.weight = int8-g128-asym\nblk\\.7\\..* = keep\n"},
		{"stories260K_int4-g32-asym_rtn.golden", "stories260K", "int4-g32-asym", AlgoRTN, ""},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			ts := configTensors(t, testmodels.Path(t, tt.model, "config.json"))
			rules, err := ParseRules("rules.txt", []byte(tt.rules))
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewPlan(ts, append(rules, DefaultRules()...), mustScheme(t, tt.scheme), tt.algo)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Explain(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, b.Bytes())
		})
	}
}

func TestPlanDecisions(t *testing.T) {
	ts := configTensors(t, testmodels.Path(t, "stories260K", "config.json"))
	p, err := NewPlan(ts, DefaultRules(), mustScheme(t, "int4-g32-asym"), AlgoGPTQ)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		quantize bool
		to       ir.DType
		diag     string
		reason   string
	}{
		{"token_embd.weight", false, ir.F16, "", "keep"},
		{"blk.0.attn_norm.weight", false, ir.F32, "", "1-D"},
		{"blk.0.attn_q.weight", true, ir.U32, "", "default scheme"},
		{"blk.4.ffn_down.weight", false, ir.F16, DiagKeepShape, "dim 1 (172) not divisible by group size 32"},
		{"blk.4.ffn_up.weight", true, ir.U32, "", "default scheme"},
	}
	for _, tt := range tests {
		e := p.Entry(tt.name)
		if e == nil {
			t.Fatalf("no entry for %s", tt.name)
		}
		if e.Quantize != tt.quantize || e.To != tt.to || e.Diag != tt.diag || !strings.Contains(e.Reason, tt.reason) {
			t.Errorf("%s: quantize %v to %v diag %q reason %q; want %v %v %q %q", tt.name, e.Quantize, e.To, e.Diag, e.Reason, tt.quantize, tt.to, tt.diag, tt.reason)
		}
	}
	q := p.Entry("blk.0.attn_q.weight")
	// [64, 64] int4-g32-asym: 64*64/2 codes + 64*2 f16 scales + 64 zero bytes.
	if want := int64(64*32 + 64*2*2 + 64); q.BytesAfter != want || q.Algorithm != AlgoGPTQ {
		t.Errorf("attn_q: %d bytes after, algo %s; want %d, gptq", q.BytesAfter, q.Algorithm, want)
	}
	var sum int64
	for _, e := range p.Entries {
		sum += e.BytesAfter
	}
	if sum != p.BytesAfter {
		t.Errorf("BytesAfter %d, entries sum to %d", p.BytesAfter, sum)
	}
	// Already-quantized and integer tensors are left alone.
	p2, err := NewPlan([]*ir.Tensor{
		{Name: "a", DType: ir.U32, Shape: ir.Shape{4, 8}, Quant: &ir.QuantInfo{Scheme: "int4-g32-asym"}},
		{Name: "b", DType: ir.I32, Shape: ir.Shape{4, 64}},
	}, nil, mustScheme(t, "int4-g32-asym"), AlgoRTN)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p2.Entries {
		if e.Quantize || e.To != e.From {
			t.Errorf("%s: %+v, want left as is", e.Name, e)
		}
	}
	if _, err := NewPlan(ts, nil, mustScheme(t, "int4-g32-asym"), "fast"); err == nil {
		t.Error("NewPlan accepted algorithm \"fast\"")
	}
}

func TestParseRules(t *testing.T) {
	rules, err := ParseRules("r.txt", []byte("# comment\n\n  blk\\.[0-3]\\..* = int8-channel-sym  \nfoo=bar = keep\r\noutput\\.weight = int4-g128-asym-gptq\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.Source+" "+r.Pattern+" -> "+r.Target())
	}
	want := []string{
		"r.txt:3 blk\\.[0-3]\\..* -> int8-channel-sym",
		"r.txt:4 foo=bar -> keep",
		"r.txt:5 output\\.weight -> int4-g128-asym-gptq",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseRules mismatch:\n%s", diff)
	}
	if !rules[0].Match("blk.2.attn_q.weight") || rules[0].Match("blk.4.attn_q.weight") || rules[0].Match("xblk.2.attn_q.weight") {
		t.Error("rule 0 matches wrongly (patterns are anchored)")
	}
	for _, tt := range []struct{ text, want string }{
		{"a = keep\nno equals sign\n", "r.txt:2: want"},
		{"a = int4-g100-asym\n", "r.txt:1: rule \"a\": unknown scheme"},
		{"a( = keep\n", "r.txt:1: rule \"a(\": bad pattern"},
		{" = keep\n", "r.txt:1: empty pattern"},
		{"a = \n", "r.txt:1: empty pattern or target"},
	} {
		_, err := ParseRules("r.txt", []byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRules(%q) = %v, want error containing %q", tt.text, err, tt.want)
		}
	}
}
