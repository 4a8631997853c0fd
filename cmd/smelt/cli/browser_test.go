package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/manifest"
)

// browserPage is one page of testdata/browser/drive.mjs's request.
type browserPage struct {
	URL        string     `json:"url"`
	Run        *demoRun   `json:"run"`
	Screenshot string     `json:"screenshot"`
	tamper     string     // the file changed for this page ("" for none)
	result     pageResult // filled from the driver's output
}

type demoRun struct {
	Prompt    string `json:"prompt"`
	MaxTokens int    `json:"maxTokens"`
}

type pageResult struct {
	Page   int      `json:"page"`
	Ready  bool     `json:"ready"`
	Error  *string  `json:"error"`
	Text   string   `json:"text"`
	IDs    []int    `json:"ids"`
	Status string   `json:"status"`
	Logs   []string `json:"logs"`
}

// tamperServer serves bundle dir under /case/N/, with one byte of file
// cases[N] changed (no change for ""), and jwk at /key.jwk.
func tamperServer(t *testing.T, dir string, jwk []byte, cases []string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/key.jwk", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwk)
	})
	mux.HandleFunc("/case/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/case/")
		num, file, ok := strings.Cut(rest, "/")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 0 || n >= len(cases) {
			http.NotFound(w, r)
			return
		}
		file = path.Clean(file)
		if file == "." || file == "" || strings.HasPrefix(file, "../") || manifest.CheckPath(file) != nil {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if file == cases[n] {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0x01 // one bit of one byte, mid-file
		}
		switch path.Ext(file) {
		case ".html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		case ".js", ".mjs":
			w.Header().Set("Content-Type", "text/javascript")
		case ".json", ".sig":
			w.Header().Set("Content-Type", "application/json")
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// drive runs testdata/browser/drive.mjs over pages and fills their results.
func drive(t *testing.T, pages []*browserPage) {
	t.Helper()
	req, err := json.Marshal(map[string]any{"pages": pages, "parallel": 3, "timeout_ms": 45000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "browser", "drive.mjs"), string(req))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node drive.mjs: %v\n%s", err, stderr.String())
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r pageResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Page < 0 || r.Page >= len(pages) {
			t.Fatalf("drive.mjs printed %q (%v)", sc.Text(), err)
		}
		pages[r.Page].result = r
		seen++
	}
	if seen != len(pages) {
		t.Fatalf("drive.mjs reported %d of %d pages; stderr:\n%s", seen, len(pages), stderr.String())
	}
}

// TestBrowser builds, signs and serves the embedded default model's bundle
// (smelt keygen, codegen, sign) and opens its demo page in headless
// Chromium (SwiftShader WebGPU, f32 kernels, no shader-f16):
//
//   - the untouched bundle, verified with the public key, generates the
//     same greedy ids and text as smelt generate on the source model
//     (typed into the page's form; a screenshot is kept);
//   - with one byte of any shard, kernel, runtime file, the tokenizer,
//     manifest.json or manifest.sig changed, the page refuses to run, with
//     an error naming that file, and never gets ready.
func TestBrowser(t *testing.T) {
	src := filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K")
	tmp := t.TempDir()
	dir, key := filepath.Join(tmp, "bundle"), filepath.Join(tmp, "key")
	for _, args := range [][]string{
		{"keygen", "--out", key},
		{"codegen", src, dir, "--context", "128"},
		{"sign", dir, "--key", key},
	} {
		var stdout, stderr strings.Builder
		if code := Main(args, &stdout, &stderr); code != 0 {
			t.Fatalf("smelt %s: exit %d: %s", args[0], code, stderr.String())
		}
	}
	jwk, err := os.ReadFile(key + ".pub.jwk")
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := manifest.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	// One case per kind of file; every runtime file and the tokenizer.
	cases := []string{"", manifest.ManifestFile, manifest.SignatureFile, m.Shards[0], m.Kernels[0].Path}
	if m.Tokenizer == "" {
		t.Fatalf("the bundle of %s has no tokenizer", src)
	}
	cases = append(cases, m.Tokenizer)
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "runtime/") {
			cases = append(cases, f.Path)
		}
	}
	if len(cases) < 9 {
		t.Fatalf("cases %v: want the runtime's smelt.js, integrity.js and tokenizer.js among them", cases)
	}

	const prompt = "Once upon a time, Lily saw a big dog"
	var stdout, stderr strings.Builder
	if code := Main([]string{"generate", src, "--prompt", prompt, "-n", "32", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr.String())
	}
	var want GenerateReport
	if err := json.Unmarshal([]byte(stdout.String()), &want); err != nil {
		t.Fatal(err)
	}

	srv := tamperServer(t, dir, jwk, cases)
	shots, err := os.MkdirTemp("", "smelt-browser-")
	if err != nil {
		t.Fatal(err)
	}
	var pages []*browserPage
	for i, c := range cases {
		p := &browserPage{URL: fmt.Sprintf("%s/case/%d/index.html?key=/key.jwk", srv.URL, i), tamper: c}
		if c == "" {
			p.Run = &demoRun{Prompt: prompt, MaxTokens: 32}
			p.Screenshot = filepath.Join(shots, "demo.png")
		}
		pages = append(pages, p)
	}
	t0 := time.Now()
	drive(t, pages)
	t.Logf("chromium: %d pages in %v; demo screenshot %s", len(pages), time.Since(t0).Round(time.Millisecond), pages[0].Screenshot)

	demo := pages[0].result
	if demo.Error != nil || !demo.Ready {
		t.Fatalf("demo page: ready %v, error %v, status %q, logs %q", demo.Ready, deref(demo.Error), demo.Status, demo.Logs)
	}
	if fmt.Sprint(demo.IDs) != fmt.Sprint(want.IDs) {
		t.Errorf("demo page ids:\n chromium %v\n generate %v", demo.IDs, want.IDs)
	}
	if demo.Text != want.Text {
		t.Errorf("demo page text:\n chromium %q\n generate %q", demo.Text, want.Text)
	}
	if st, err := os.Stat(pages[0].Screenshot); err != nil || st.Size() == 0 {
		t.Errorf("screenshot %s: %v", pages[0].Screenshot, err)
	}
	for _, p := range pages[1:] {
		r := p.result
		msg := deref(r.Error)
		refused := strings.Contains(msg, "integrity mismatch") || strings.Contains(msg, "signature verification failed")
		if r.Ready || r.Error == nil || !refused || !strings.Contains(msg, p.tamper) {
			t.Errorf("%s changed: ready %v, error %q; want a refusal naming %s (logs %q)", p.tamper, r.Ready, msg, p.tamper, r.Logs)
			continue
		}
		t.Logf("%s changed: %s", p.tamper, msg)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
