package bundle

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smeltml/smelt/internal/bundle/bundletest"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/manifest"
)

// copyTree copies the bundle at src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	for rel, b := range readTree(t, src) {
		p := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// flipByte changes one byte of dir/rel at pos into another byte of the
// same character class (so JSON and base64 stay well formed).
func flipByte(t *testing.T, dir, rel string, pos func(b []byte) int) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	i := pos(b)
	switch c := b[i]; {
	case c == 'A':
		b[i] = 'B'
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		b[i] = 'A'
	default:
		b[i] ^= 0x01
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserVerify serves signed bundles (Ed25519 and P-256) and tampered
// copies over 127.0.0.1 and runs codegen/runtime/integrity.js on them in
// headless Chromium (playwright-core) and in Node: both signatures verify
// with WebCrypto, every file passes its SRI check, each tampered file is
// refused with its name, and corrupted cache entries are re-fetched.
func TestBrowserVerify(t *testing.T) {
	root := testmodels.RepoRoot()
	lib := filepath.Join(root, "codegen", "runtime", "integrity.js")
	serve := t.TempDir()
	type tcase struct {
		Name string          `json:"name"`
		JWK  json.RawMessage `json:"jwk"`
	}
	var cases []tcase
	jwks := map[string]json.RawMessage{}
	for _, alg := range []string{manifest.Ed25519, manifest.P256} {
		key := mustKey(t, alg)
		jwk, err := manifest.MarshalPublicKeyJWK(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		jwks[alg] = jwk
		if err := Write(filepath.Join(serve, alg), bundletest.Graph(11, 6000), writeOpts(key)); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tcase{alg, jwk})
	}
	ed := filepath.Join(serve, manifest.Ed25519)
	tampered := []struct {
		name, file string
		pos        func(b []byte) int
	}{
		{"tamper-shard", "shards/00001.bin", func(b []byte) int { return len(b) / 2 }},
		{"tamper-kernel", "kernels/matmul_q4.wgsl", func(b []byte) int { return 3 }},
		{"tamper-manifest", "manifest.json", func(b []byte) int { return strings.Index(string(b), `"smelt":"v0`) + 2 }},
		{"tamper-sig", "manifest.sig", func(b []byte) int { return strings.Index(string(b), `"sig":"`) + 10 }},
	}
	for _, tc := range tampered {
		dir := filepath.Join(serve, tc.name)
		copyTree(t, ed, dir)
		flipByte(t, dir, tc.file, tc.pos)
		if err := manifest.Verify(dir, mustParseJWK(t, jwks[manifest.Ed25519])); nameOf(err) != tc.file {
			t.Fatalf("%s: Go Verify = %v, want it to name %s too", tc.name, err, tc.file)
		}
		cases = append(cases, tcase{tc.name, jwks[manifest.Ed25519]})
	}
	cases = append(cases, tcase{"wrong-key", jwks[manifest.P256]})
	copyTree(t, ed, filepath.Join(serve, "wrong-key"))

	casesJSON, _ := json.Marshal(cases)
	mux := http.NewServeMux()
	mux.Handle("/b/", http.StripPrefix("/b/", http.FileServer(http.Dir(serve))))
	mux.HandleFunc("/lib/integrity.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, lib) })
	mux.HandleFunc("/lib/cases.mjs", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/cases.mjs") })
	mux.HandleFunc("/test.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/test.html") })
	mux.HandleFunc("/cases.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(casesJSON)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	type result struct {
		OK    bool    `json:"ok"`
		Path  *string `json:"path"`
		Error string  `json:"error"`
	}
	want := map[string]string{ // case → file named in the refusal ("" = verifies)
		manifest.Ed25519: "", manifest.P256: "", "cache": "",
		"tamper-shard": "shards/00001.bin", "tamper-kernel": "kernels/matmul_q4.wgsl",
		"tamper-manifest": "manifest.json", "tamper-sig": "manifest.sig", "wrong-key": "manifest.sig",
	}
	for _, mode := range []string{"node", "browser"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "testdata/browser_verify.mjs", mode, srv.URL, lib)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node browser_verify.mjs %s: %v\n%s", mode, err, out)
			}
			var got map[string]result
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("bad driver output %q: %v", out, err)
			}
			for name, file := range want {
				r, ok := got[name]
				switch {
				case !ok:
					t.Errorf("%s: case %s missing from the results", mode, name)
				case file == "" && !r.OK:
					t.Errorf("%s: %s refused: %s", mode, name, r.Error)
				case file != "" && (r.OK || r.Path == nil || *r.Path != file || !strings.Contains(r.Error, file)):
					t.Errorf("%s: %s: got %+v (error %q), want a refusal naming %s", mode, name, r, r.Error, file)
				}
			}
			if r := got["tamper-shard"]; !strings.Contains(r.Error, "smelt: integrity mismatch for shards/00001.bin") {
				t.Errorf("%s: tampered shard error %q, want 'smelt: integrity mismatch for shards/00001.bin'", mode, r.Error)
			}
			t.Logf("%s: %s", mode, out)
		})
	}
}

func mustParseJWK(t *testing.T, b []byte) *manifest.PublicKey {
	t.Helper()
	k, err := manifest.ParsePublicKeyJWK(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
