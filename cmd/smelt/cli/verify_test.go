package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/bundle/bundletest"
	"github.com/smeltml/smelt/manifest"
)

// TestKeygenSignVerify runs keygen, sign and verify on a small bundle for
// both algorithms and with the key from a file and from the environment,
// then tampers with, removes and adds files.
func TestKeygenSignVerify(t *testing.T) {
	for _, alg := range []string{"ed25519", "p256"} {
		t.Run(alg, func(t *testing.T) {
			tmp := t.TempDir()
			prefix := filepath.Join(tmp, "keys", "release")
			os.MkdirAll(filepath.Dir(prefix), 0o755)
			if code, _, stderr := smelt(t, "keygen", "--out", prefix, "--alg", alg); code != ExitOK {
				t.Fatalf("keygen exit %d: %s", code, stderr)
			}
			st, err := os.Stat(prefix)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("private key mode %v (%v), want 0600", st.Mode().Perm(), err)
			}
			for _, suffix := range []string{".pub", ".pub.jwk"} {
				b, err := os.ReadFile(prefix + suffix)
				if err != nil {
					t.Fatal(err)
				}
				if k, err := manifest.ParsePublicKey(b); err != nil || k.Alg() != alg {
					t.Errorf("%s%s: %v (alg %v)", prefix, suffix, err, k)
				}
			}
			if code, _, stderr := smelt(t, "keygen", "--out", prefix); code != ExitBadInput || !strings.Contains(stderr, "exists") {
				t.Errorf("keygen over existing files: exit %d %q, want 2 and 'exists'", code, stderr)
			}

			dir := filepath.Join(tmp, "bundle")
			if err := bundle.Write(dir, bundletest.Graph(1, 5000), bundle.WriteOptions{ShardSize: 4096,
				ExtraFiles: []bundle.File{{Path: "runtime/smelt.js", Data: []byte("export {};\n")}, {Path: "kernels/k.wgsl", Data: []byte("fn main() {}\n")}}}); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := smelt(t, "verify", dir, "--pubkey", prefix+".pub"); code != ExitCheck || !strings.Contains(stderr, "manifest.sig: missing") {
				t.Errorf("verify unsigned: exit %d %q, want 1 naming manifest.sig", code, stderr)
			}
			if code, _, stderr := smelt(t, "sign", dir, "--key", prefix); code != ExitOK {
				t.Fatalf("sign exit %d: %s", code, stderr)
			}
			sig1, _ := os.ReadFile(filepath.Join(dir, "manifest.sig"))
			pemText, _ := os.ReadFile(prefix)
			t.Setenv(SigningKeyEnv, string(pemText))
			if code, _, stderr := smelt(t, "sign", dir); code != ExitOK {
				t.Fatalf("sign with $%s: exit %d: %s", SigningKeyEnv, code, stderr)
			}
			if sig2, _ := os.ReadFile(filepath.Join(dir, "manifest.sig")); !bytes.Equal(sig1, sig2) {
				t.Errorf("signing twice with the same key gave different signatures")
			}
			for _, pub := range []string{prefix + ".pub", prefix + ".pub.jwk"} {
				if code, stdout, stderr := smelt(t, "verify", dir, "--pubkey", pub); code != ExitOK || !strings.HasPrefix(stdout, "ok sha256:") {
					t.Errorf("verify --pubkey %s: exit %d %q %q", pub, code, stdout, stderr)
				}
			}

			// Tamper with each file in turn; verify names it.
			for _, rel := range []string{"shards/00000.bin", "shards/00002.bin", "kernels/k.wgsl", "runtime/smelt.js", "manifest.json", "manifest.sig"} {
				p := filepath.Join(dir, rel)
				orig, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b := bytes.Clone(orig)
				b[len(b)/2] ^= 0x04
				os.WriteFile(p, b, 0o644)
				code, _, stderr := smelt(t, "verify", dir, "--pubkey", prefix+".pub")
				if code != ExitCheck || !strings.Contains(stderr, rel) {
					t.Errorf("verify after tampering %s: exit %d %q, want 1 naming it", rel, code, stderr)
				}
				os.WriteFile(p, orig, 0o644)
			}
			os.WriteFile(filepath.Join(dir, "kernels", "extra.wgsl"), nil, 0o644)
			if code, _, stderr := smelt(t, "verify", dir, "--pubkey", prefix+".pub"); code != ExitCheck || !strings.Contains(stderr, "kernels/extra.wgsl: not listed") {
				t.Errorf("verify with an extra file: exit %d %q", code, stderr)
			}
			os.Remove(filepath.Join(dir, "kernels", "extra.wgsl"))
			os.Rename(filepath.Join(dir, "shards", "00001.bin"), filepath.Join(tmp, "moved.bin"))
			if code, _, stderr := smelt(t, "verify", dir, "--pubkey", prefix+".pub"); code != ExitCheck || !strings.Contains(stderr, "shards/00001.bin: missing") {
				t.Errorf("verify with a missing shard: exit %d %q", code, stderr)
			}
		})
	}
}

func TestSignVerifyBadInput(t *testing.T) {
	tmp := t.TempDir()
	garbage := filepath.Join(tmp, "garbage")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	t.Setenv(SigningKeyEnv, "")
	k, _ := manifest.GenerateKey(manifest.Ed25519)
	pubPEM, _ := manifest.MarshalPublicKeyPEM(k.Public())
	pub := filepath.Join(tmp, "k.pub")
	os.WriteFile(pub, pubPEM, 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"keygen without out", []string{"keygen"}, "--out PREFIX is required"},
		{"keygen bad alg", []string{"keygen", "--out", filepath.Join(tmp, "k"), "--alg", "rsa"}, `unknown key algorithm "rsa"`},
		{"sign without key", []string{"sign", tmp}, "no signing key"},
		{"sign garbage key", []string{"sign", tmp, "--key", garbage}, "PEM block"},
		{"verify without pubkey", []string{"verify", tmp}, "--pubkey FILE is required"},
		{"verify garbage key", []string{"verify", tmp, "--pubkey", garbage}, "PEM block"},
		{"verify missing key file", []string{"verify", tmp, "--pubkey", filepath.Join(tmp, "nope.pub")}, "nope.pub"},
		{"verify no bundle dir", []string{"verify", filepath.Join(tmp, "nope"), "--pubkey", pub}, "is not a bundle directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := smelt(t, tt.args...)
			if code != ExitBadInput || !strings.Contains(stderr, tt.want) {
				t.Errorf("smelt %v: exit %d %q, want 2 and %q", tt.args, code, stderr, tt.want)
			}
		})
	}
}
