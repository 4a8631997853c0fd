package codegen

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/manifest"
)

// TestGeneratePinsRuntime: the demo page's import map carries the SRI of
// every runtime module of the bundle (tokenizer.js only with a tokenizer),
// and each matches the file's bytes.
func TestGeneratePinsRuntime(t *testing.T) {
	g := loadGraph(t, filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"))
	for _, tok := range [][]byte{nil, []byte(`{"model":{}}`)} {
		out, err := Generate(g, Options{ContextLength: 16}, tok)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, f := range out.Files {
			files[f.Path] = f.Data
		}
		page := files["index.html"]
		m := regexp.MustCompile(`<script type="importmap">(.*)</script>`).FindSubmatch(page)
		if m == nil {
			t.Fatalf("index.html has no import map")
		}
		var im struct{ Integrity map[string]string }
		if err := json.Unmarshal(m[1], &im); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for p, b := range files {
			if filepath.Ext(p) == ".js" {
				want["./"+p] = manifest.IntegrityOf(b)
			}
		}
		if _, ok := want["./runtime/tokenizer.js"]; ok != (tok != nil) {
			t.Errorf("tokenizer %v: runtime/tokenizer.js in the bundle: %v", tok != nil, ok)
		}
		if len(want) < 2 {
			t.Fatalf("runtime files %v", want)
		}
		if diff := cmp.Diff(want, im.Integrity); diff != "" {
			t.Errorf("import map integrity (-files +page):\n%s", diff)
		}
		if bytes.Contains(page, []byte(importMapPlaceholder)) {
			t.Errorf("index.html still holds the placeholder")
		}
		if tok != nil && (out.Tokenizer != TokenizerPath || !bytes.Equal(files[TokenizerPath], tok)) {
			t.Errorf("tokenizer %q, file %q", out.Tokenizer, files[TokenizerPath])
		}
	}
}
