package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/testmodels"
)

// jsDriver runs codegen/runtime/tokenizer.js under Node on a batch of
// cases read from stdin and writes, per case and text, the ids without and
// with special tokens, the decoding of the given ids, and the streamed
// decoding; or the load error.
const jsDriver = `
import { loadTokenizer } from %q;
import { readFileSync } from 'node:fs';
const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = [];
for (const c of cases) {
  let tok;
  try {
    tok = loadTokenizer(c.json);
  } catch (e) {
    out.push({ error: String(e.message) });
    continue;
  }
  const res = { texts: [] };
  c.texts.forEach((text, i) => {
    const r = {};
    try {
      r.ids = tok.encode(text);
      r.special = tok.encode(text, { addSpecial: true });
    } catch (e) {
      r.error = String(e.message);
    }
    const ids = c.ids[i];
    r.decoded = tok.decode(ids);
    const dec = tok.streamDecoder();
    let s = '';
    for (const id of ids) s += dec.push(id);
    r.streamed = s + dec.flush();
    res.texts.push(r);
  });
  out.push(res);
}
process.stdout.write(JSON.stringify(out));
`

type jsCase struct {
	JSON  string   `json:"json"`
	Texts []string `json:"texts"`
	IDs   [][]int  `json:"ids"` // Go's ids of each text, for decoding
}

type jsResult struct {
	Error string `json:"error"`
	Texts []struct {
		IDs      []int  `json:"ids"`
		Special  []int  `json:"special"`
		Error    string `json:"error"`
		Decoded  string `json:"decoded"`
		Streamed string `json:"streamed"`
	} `json:"texts"`
}

// runJS runs the driver on cases.
func runJS(t *testing.T, cases []jsCase) []jsResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to test codegen/runtime/tokenizer.js: %v", err)
	}
	js := filepath.Join(testmodels.RepoRoot(), "codegen", "runtime", "tokenizer.js")
	driver := filepath.Join(t.TempDir(), "driver.mjs")
	src := strings.Replace(jsDriver, "%q", "'file://"+filepath.ToSlash(js)+"'", 1)
	if err := os.WriteFile(driver, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, driver)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", driver, err, stderr.String())
	}
	var res []jsResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("driver output: %v", err)
	}
	if len(res) != len(cases) {
		t.Fatalf("driver returned %d results for %d cases", len(res), len(cases))
	}
	return res
}

// jsEdgeTexts are the tricky strings: whitespace runs, tabs, CRLF, special
// token text, accents, CJK, emoji, combining marks, U+2581 itself.
var jsEdgeTexts = []string{
	"", " ", "  ", "a  b", "a   ", "\t\tx\r\n", "  def f(x):\n\treturn x  ", "C<s>, x", "</s><unk><s>",
	"naïve café — 日本語 🙂 x", "e\u0301", "\u2581a", "12345 3.14", "the cat's", "Hello<|endoftext|> the",
	"It's ALL'S WE'LL", "x\u00a0y\u2003z", "\ufeffBOM",
}

// TestJSTokenizer: the JS tokenizer gives the Go tokenizer's ids, decoding
// and streaming for both models' prompts, every paragraph of both
// calibration texts, the whole texts, edge cases, and the hand-made
// byte-level and Metaspace fixtures.
func TestJSTokenizer(t *testing.T) {
	type source struct {
		name  string
		json  []byte
		tok   *Tokenizer
		texts []string
	}
	var sources []source
	for _, m := range refModels {
		b, err := os.ReadFile(testmodels.Path(t, m.dir, "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		// The template (not tokenizer_config.json) decides JS's special
		// tokens; for these models both give one BOS.
		tok, err := NewFromJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		texts := append([]string{}, jsEdgeTexts...)
		for _, p := range refPrompts(t, m) {
			texts = append(texts, p.Text)
		}
		calib := readCalib(t, m)
		for _, para := range strings.Split(calib, "\n\n") {
			if para != "" {
				texts = append(texts, para)
			}
		}
		texts = append(texts, calib)
		sources = append(sources, source{m.dir, b, tok, texts})
	}
	for _, fx := range []struct {
		name string
		json []byte
	}{
		{"byte-level fixture", byteLevelFixture(t)},
		{"metaspace fixture first", metaspaceFixture(t, true, "first")},
		{"metaspace fixture always", metaspaceFixture(t, true, "always")},
		{"metaspace fixture unk", metaspaceFixture(t, false, "never")},
	} {
		tok, err := NewFromJSON(fx.json)
		if err != nil {
			t.Fatal(err)
		}
		texts := append([]string{"ab c", "é", "<s>ab", "€€a", "xyz", "Ġ"}, jsEdgeTexts...)
		sources = append(sources, source{fx.name, fx.json, tok, texts})
	}

	var cases []jsCase
	total := 0
	for _, s := range sources {
		c := jsCase{JSON: string(s.json), Texts: s.texts}
		for _, text := range s.texts {
			ids, err := s.tok.Encode(text)
			if err != nil {
				t.Fatal(err)
			}
			c.IDs = append(c.IDs, orEmpty(ids))
		}
		cases = append(cases, c)
		total += len(s.texts)
	}
	res := runJS(t, cases)
	bad := 0
	for i, s := range sources {
		if res[i].Error != "" {
			t.Fatalf("%s: JS load error: %s", s.name, res[i].Error)
		}
		for j, text := range s.texts {
			r := res[i].Texts[j]
			want := cases[i].IDs[j]
			wantSpecial, _ := s.tok.EncodeWithSpecial(text)
			fail := func(format string, args ...any) {
				if bad++; bad <= 10 {
					t.Errorf("%s text %d %s: "+format, append([]any{s.name, j, shortText(text)}, args...)...)
				}
			}
			switch {
			case r.Error != "":
				fail("JS error: %s", r.Error)
			case !cmp.Equal(orEmpty(r.IDs), orEmpty(want)):
				fail("ids differ: %s", firstDiff(want, r.IDs))
			case !cmp.Equal(orEmpty(r.Special), orEmpty(wantSpecial)):
				fail("ids with special tokens differ: %s", firstDiff(wantSpecial, r.Special))
			}
			if goText := s.tok.Decode(want); r.Decoded != goText {
				fail("decode: JS %s, Go %s", shortText(r.Decoded), shortText(goText))
			}
			if r.Streamed != r.Decoded {
				fail("JS streamed %s, decoded %s", shortText(r.Streamed), shortText(r.Decoded))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d texts differ between JS and Go", bad, total)
	}
	t.Logf("%d texts compared", total)
}

func orEmpty(ids []int) []int {
	if ids == nil {
		return []int{}
	}
	return ids
}

func firstDiff(want, got []int) string {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return "at " + jsonString(i) + ": Go " + jsonString(want[i:min(i+6, len(want))]) + ", JS " + jsonString(got[i:min(i+6, len(got))])
		}
	}
	return "lengths Go " + jsonString(len(want)) + ", JS " + jsonString(len(got))
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestJSTokenizerUnsupported: the JS loader refuses what the Go one does,
// naming the type.
func TestJSTokenizerUnsupported(t *testing.T) {
	var base map[string]any
	if err := json.Unmarshal(metaspaceFixture(t, true, "first"), &base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		value any
		want  string
	}{
		{"model", map[string]any{"type": "Unigram", "vocab": []any{}}, `unsupported model type "Unigram"`},
		{"normalizer", map[string]any{"type": "NFKC"}, `unsupported normalizer type "NFKC"`},
		{"pre_tokenizer", map[string]any{"type": "BertPreTokenizer"}, `unsupported pre-tokenizer type "BertPreTokenizer"`},
		{"decoder", map[string]any{"type": "WordPiece"}, `unsupported decoder type "WordPiece"`},
		{"post_processor", map[string]any{"type": "RobertaProcessing"}, `unsupported post-processor type "RobertaProcessing"`},
	}
	var cases []jsCase
	for _, tt := range tests {
		f := map[string]any{}
		for k, v := range base {
			f[k] = v
		}
		f[tt.field] = tt.value
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewFromJSON(b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Go NewFromJSON error = %v, want %q", err, tt.want)
		}
		cases = append(cases, jsCase{JSON: string(b), Texts: []string{}, IDs: [][]int{}})
	}
	cases = append(cases, jsCase{JSON: "{not json", Texts: []string{}, IDs: [][]int{}})
	res := runJS(t, cases)
	for i, tt := range tests {
		if !strings.Contains(res[i].Error, tt.want) {
			t.Errorf("JS load error = %q, want one containing %q", res[i].Error, tt.want)
		}
	}
	if !strings.Contains(res[len(tests)].Error, "not JSON") {
		t.Errorf("JS load of bad JSON: error %q", res[len(tests)].Error)
	}
}
