package bundle

import (
	"bytes"
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
	"github.com/smeltml/smelt/internal/bundle/bundletest"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/manifest"
)

const crashEnv = "SMELT_BUNDLE_TEST_CRASH_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		// Child process of TestCrashSIGKILL: write slowly until killed.
		g := slowGraph(1, 400, 4*time.Millisecond)
		if err := Write(dir, g, WriteOptions{ShardSize: 64 << 10, Parallelism: 1}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// slowSource delays each read, so a write can be killed mid-way.
type slowSource struct {
	ir.BytesSource
	delay time.Duration
	fail  bool
}

func (s *slowSource) Bytes() ([]byte, error) {
	time.Sleep(s.delay)
	if s.fail {
		return nil, errors.New("injected read failure")
	}
	return s.Data, nil
}

// slowGraph is bundletest.Graph plus n 16 KiB tensors read with a delay.
func slowGraph(seed uint64, n int, delay time.Duration) *ir.Graph {
	g := bundletest.Graph(seed, 0)
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 16<<10)
		g.Tensors = append(g.Tensors, &ir.Tensor{Name: fmt.Sprintf("slow.%04d", i), DType: ir.U8, Shape: ir.Shape{16 << 10},
			Source: &slowSource{BytesSource: ir.BytesSource{Data: b}, delay: delay}})
	}
	g.SortTensors()
	return g
}

func extras() []File {
	return []File{
		{Path: "runtime/smelt.js", Data: []byte("export const version = 1;\n")},
		{Path: "kernels/matmul_q4.wgsl", Data: []byte("@compute @workgroup_size(64) fn main() {}\n")},
		{Path: "tokenizer.json", Data: []byte(`{"model":{"type":"BPE"}}`)},
		{Path: "index.html", Data: []byte("<!doctype html><title>smelt</title>\n")},
	}
}

func writeOpts(key *manifest.PrivateKey) WriteOptions {
	return WriteOptions{
		ShardSize:  4096,
		ExtraFiles: extras(),
		Tokenizer:  "tokenizer.json",
		Kernels: []manifest.Kernel{{Name: "matmul_q4", Path: "kernels/matmul_q4.wgsl", Entry: "main", Workgroup: [3]int{64, 1, 1},
			Bindings: []manifest.Binding{{Group: 0, Binding: 0, Name: "w", Type: "read-only-storage"}}, Requires: []string{"subgroups"}}},
		Program:      []byte(`{"decode":[{"kernel":"matmul_q4","grid":[1,1,1]}]}`),
		Requirements: manifest.Requirements{Features: []string{"subgroups"}, Limits: map[string]int64{"maxStorageBufferBindingSize": 1 << 27}, VRAMBytes: 1 << 20, ContextLength: 128},
		Provenance: manifest.Provenance{Smelt: "v0.0.0-test", Recipe: []byte(`{"quant":{"scheme":"int4-g32-asym"}}`),
			Sources:     []manifest.SourceFile{{Path: "model.safetensors", NBytes: 1234, SHA256: strings.Repeat("ab", 32)}},
			Calibration: &manifest.SourceFile{Path: "calib.txt", NBytes: 10, SHA256: strings.Repeat("cd", 32)}},
		Key: key,
	}
}

func mustKey(t testing.TB, alg string) *manifest.PrivateKey {
	t.Helper()
	k, err := manifest.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// readTree returns every file under dir by slash path.
func readTree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteOpenRoundTrip(t *testing.T) {
	key := mustKey(t, manifest.Ed25519)
	g := bundletest.Graph(7, 10000) // 10000-byte tensor > 4096 cap: split
	dir := filepath.Join(t.TempDir(), "out")
	if err := Write(dir, g, writeOpts(key)); err != nil {
		t.Fatal(err)
	}
	g2, m, err := Open(dir, OpenOptions{PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g.Config, g2.Config); diff != "" {
		t.Errorf("config (-wrote +opened):\n%s", diff)
	}
	if len(g2.Tensors) != len(g.Tensors) {
		t.Fatalf("opened %d tensors, wrote %d", len(g2.Tensors), len(g.Tensors))
	}
	split := 0
	for i, t1 := range g.Tensors {
		t2 := g2.Tensors[i]
		want, _ := t1.Data()
		got, err := t2.Data()
		if err != nil {
			t.Fatal(err)
		}
		if t1.Name != t2.Name || t1.DType != t2.DType || !t1.Shape.Equal(t2.Shape) || !bytes.Equal(want, got) {
			t.Errorf("tensor %q: opened %q %v %v with different bytes=%v", t1.Name, t2.Name, t2.DType, t2.Shape, !bytes.Equal(want, got))
		}
		if diff := cmp.Diff(t1.Quant, t2.Quant); diff != "" {
			t.Errorf("tensor %q quant (-wrote +opened):\n%s", t1.Name, diff)
		}
		if len(m.Tensors[i].Parts) > 1 {
			split++
		}
	}
	if split != 1 {
		t.Errorf("%d split tensors, want 1 (zz.extra)", split)
	}
	// The graph survives serialization node for node, attributes typed.
	type node struct {
		Name, Op string
		In, Out  []string
		Attrs    map[string]any
	}
	flat := func(g *ir.Graph) (ns []node) {
		for _, n := range g.Nodes {
			x := node{Name: n.Name, Op: n.Op, Attrs: n.Attrs}
			for _, v := range n.Inputs {
				x.In = append(x.In, fmt.Sprintf("%s %v %v const=%v", v.Name, v.DType, v.Shape, v.Tensor != nil))
			}
			for _, v := range n.Outputs {
				x.Out = append(x.Out, fmt.Sprintf("%s %v %v", v.Name, v.DType, v.Shape))
			}
			ns = append(ns, x)
		}
		return ns
	}
	if diff := cmp.Diff(flat(g), flat(g2)); diff != "" {
		t.Errorf("graph (-wrote +opened):\n%s", diff)
	}
	if m.Tokenizer != "tokenizer.json" || m.Model.Arch != "llama" || len(m.Kernels) != 1 || m.Provenance.Smelt != "v0.0.0-test" {
		t.Errorf("manifest fields not carried: tokenizer %q arch %q kernels %d smelt %q", m.Tokenizer, m.Model.Arch, len(m.Kernels), m.Provenance.Smelt)
	}
	tree := readTree(t, dir)
	var names []string
	for p := range tree {
		names = append(names, p)
	}
	sort.Strings(names)
	want := []string{"index.html", "kernels/matmul_q4.wgsl", "manifest.json", "manifest.sig", "runtime/smelt.js",
		"shards/00000.bin", "shards/00001.bin", "shards/00002.bin", "shards/00003.bin", "shards/00004.bin", "tokenizer.json"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("bundle files (-want +got):\n%s", diff)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
		t.Errorf("parent holds %d entries after Write, want 1 (no temporary litter)", len(ents))
	}
}

// TestDeterministic writes the same graph with GOMAXPROCS=1 and the default,
// with both key types, and compares every byte.
func TestDeterministic(t *testing.T) {
	for _, alg := range []string{manifest.Ed25519, manifest.P256} {
		t.Run(alg, func(t *testing.T) {
			key := mustKey(t, alg)
			build := func(procs int) map[string][]byte {
				old := runtime.GOMAXPROCS(procs)
				defer runtime.GOMAXPROCS(old)
				dir := filepath.Join(t.TempDir(), "b")
				if err := Write(dir, bundletest.Graph(3, 50000), writeOpts(key)); err != nil {
					t.Fatal(err)
				}
				return readTree(t, dir)
			}
			one, def := build(1), build(max(runtime.NumCPU(), 4))
			if diff := cmp.Diff(one, def); diff != "" {
				t.Errorf("GOMAXPROCS=1 vs default differ:\n%s", diff)
			}
		})
	}
}

func nameOf(err error) string {
	var fe *manifest.FileError
	var se *manifest.SignatureError
	switch {
	case errors.As(err, &se):
		return se.Path
	case errors.As(err, &fe):
		return fe.Path
	}
	return ""
}

// TestTamper flips one byte at several positions of every file of a signed
// bundle and checks that Verify fails naming that file.
func TestTamper(t *testing.T) {
	for _, alg := range []string{manifest.Ed25519, manifest.P256} {
		key := mustKey(t, alg)
		dir := filepath.Join(t.TempDir(), "b")
		if err := Write(dir, bundletest.Graph(5, 6000), writeOpts(key)); err != nil {
			t.Fatal(err)
		}
		if err := manifest.Verify(dir, key.Public()); err != nil {
			t.Fatalf("%s: fresh bundle does not verify: %v", alg, err)
		}
		tree := readTree(t, dir)
		for rel, orig := range tree {
			for _, pos := range []int{0, len(orig) / 2, len(orig) - 1} {
				p := filepath.Join(dir, filepath.FromSlash(rel))
				b := bytes.Clone(orig)
				b[pos] ^= 0x01
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				err := manifest.Verify(dir, key.Public())
				if got := nameOf(err); got != rel {
					t.Errorf("%s: byte %d of %s flipped: Verify = %v, want an error naming %s", alg, pos, rel, err, rel)
				}
				if err := os.WriteFile(p, orig, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Bytes of the manifest and the signature, through VerifySignature
		// (the part of Verify these bytes reach).
		mb, sb := tree[manifest.ManifestFile], tree[manifest.SignatureFile]
		for _, c := range []struct {
			name string
			data []byte
		}{{manifest.ManifestFile, mb}, {manifest.SignatureFile, sb}} {
			// Every byte of the head and tail (all JSON structure, the
			// payload type, key id and signature), a stride through the rest.
			for pos := 0; pos < len(c.data); pos++ {
				if pos > 32 && pos < len(c.data)-400 && pos%17 != 0 {
					continue
				}
				b := bytes.Clone(c.data)
				b[pos] ^= 0x20
				m2, s2 := mb, sb
				if c.name == manifest.ManifestFile {
					m2 = b
				} else {
					s2 = b
				}
				if err := manifest.VerifySignature(m2, s2, key.Public()); nameOf(err) != c.name {
					t.Fatalf("%s: byte %d of %s changed: VerifySignature = %v, want an error naming it", alg, pos, c.name, err)
				}
			}
		}
		if err := manifest.Verify(dir, key.Public()); err != nil {
			t.Fatalf("%s: restored bundle does not verify: %v", alg, err)
		}
		other := mustKey(t, alg)
		if err := manifest.Verify(dir, other.Public()); nameOf(err) != manifest.SignatureFile {
			t.Errorf("%s: Verify with another key = %v, want a signature error", alg, err)
		}
	}
}

func TestMissingExtra(t *testing.T) {
	key := mustKey(t, manifest.Ed25519)
	tests := []struct {
		name    string
		mutate  func(dir string) error
		path    string
		problem manifest.Problem
	}{
		{"missing shard", func(d string) error { return os.Remove(filepath.Join(d, "shards/00001.bin")) }, "shards/00001.bin", manifest.Missing},
		{"missing kernel", func(d string) error { return os.Remove(filepath.Join(d, "kernels/matmul_q4.wgsl")) }, "kernels/matmul_q4.wgsl", manifest.Missing},
		{"missing signature", func(d string) error { return os.Remove(filepath.Join(d, "manifest.sig")) }, "manifest.sig", manifest.Missing},
		{"missing manifest", func(d string) error { return os.Remove(filepath.Join(d, "manifest.json")) }, "manifest.json", manifest.Missing},
		{"extra file", func(d string) error { return os.WriteFile(filepath.Join(d, "evil.js"), []byte("x"), 0o644) }, "evil.js", manifest.Extra},
		{"extra file in a subdir", func(d string) error { return os.WriteFile(filepath.Join(d, "shards", "00099.bin"), nil, 0o644) }, "shards/00099.bin", manifest.Extra},
		{"symlink in place of a file", func(d string) error {
			p := filepath.Join(d, "index.html")
			os.Rename(p, filepath.Join(filepath.Dir(d), "elsewhere.html"))
			return os.Symlink(filepath.Join(filepath.Dir(d), "elsewhere.html"), p)
		}, "index.html", manifest.NotRegular},
		{"truncated shard", func(d string) error { return os.Truncate(filepath.Join(d, "shards/00000.bin"), 100) }, "shards/00000.bin", manifest.WrongSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if err := Write(dir, bundletest.Graph(5, 6000), writeOpts(key)); err != nil {
				t.Fatal(err)
			}
			if err := tt.mutate(dir); err != nil {
				t.Fatal(err)
			}
			err := manifest.Verify(dir, key.Public())
			var fe *manifest.FileError
			if !errors.As(err, &fe) || fe.Path != tt.path || fe.Problem != tt.problem {
				t.Errorf("Verify = %v, want %s: %s", err, tt.path, tt.problem)
			}
		})
	}
}

func TestSignAfterWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	if err := Write(dir, bundletest.Graph(2, 0), writeOpts(nil)); err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, manifest.P256)
	if err := manifest.Verify(dir, key.Public()); nameOf(err) != manifest.SignatureFile {
		t.Errorf("unsigned bundle: Verify = %v, want manifest.sig missing", err)
	}
	// A leftover temporary file of an interrupted Sign is cleaned up.
	os.WriteFile(filepath.Join(dir, ".manifest.sig.tmp-123"), []byte("x"), 0o644)
	if err := Sign(dir, key); err != nil {
		t.Fatal(err)
	}
	if err := manifest.Verify(dir, key.Public()); err != nil {
		t.Errorf("signed with Sign: Verify = %v", err)
	}
	// Signing a manifest that is not canonical is refused.
	mb, _ := os.ReadFile(filepath.Join(dir, manifest.ManifestFile))
	os.WriteFile(filepath.Join(dir, manifest.ManifestFile), append(mb, '\n'), 0o644)
	if err := Sign(dir, key); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Errorf("Sign of a non-canonical manifest = %v, want a canonical-form error", err)
	}
}

func TestOpenVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	if err := Write(dir, bundletest.Graph(2, 0), writeOpts(nil)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "shards/00000.bin")
	b, _ := os.ReadFile(p)
	b[10] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, _, err := Open(dir, OpenOptions{}); err != nil {
		t.Errorf("Open without Verify of a tampered shard = %v, want success", err)
	}
	if _, _, err := Open(dir, OpenOptions{Verify: true}); nameOf(err) != "shards/00000.bin" {
		t.Errorf("Open with Verify of a tampered shard = %v, want an error naming shards/00000.bin", err)
	}
}

func TestWriteErrors(t *testing.T) {
	g := bundletest.Graph(1, 0)
	tests := []struct {
		name string
		opts WriteOptions
		want string
	}{
		{"bad path", WriteOptions{ExtraFiles: []File{{Path: "../x", Data: nil}}}, `bad file path "../x"`},
		{"reserved", WriteOptions{ExtraFiles: []File{{Path: "manifest.json"}}}, "reserved"},
		{"shards reserved", WriteOptions{ExtraFiles: []File{{Path: "shards/x.bin"}}}, "reserved"},
		{"duplicate", WriteOptions{ExtraFiles: []File{{Path: "a"}, {Path: "a"}}}, "given twice"},
		{"tokenizer absent", WriteOptions{Tokenizer: "tokenizer.json"}, "not among the extra files"},
		{"kernel absent", WriteOptions{Kernels: []manifest.Kernel{{Name: "k", Path: "kernels/k.wgsl"}}}, `kernel "k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			err := Write(filepath.Join(parent, "b"), g, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write = %v, want an error containing %q", err, tt.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("parent holds %d entries after a failed Write, want none", len(ents))
			}
		})
	}
	t.Run("refuses to replace a non-bundle", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("keep"), 0o644)
		if err := Write(dir, g, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Write over a non-bundle dir = %v, want a refusal", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "precious.txt")); string(b) != "keep" {
			t.Errorf("non-bundle dir was modified")
		}
	})
}

// TestWriteFailureMidway: a tensor that fails to read mid-way leaves no
// output and no temporary litter; an existing bundle stays intact.
func TestWriteFailureMidway(t *testing.T) {
	key := mustKey(t, manifest.Ed25519)
	failing := slowGraph(1, 50, 0)
	failing.Tensors[40].Source.(*slowSource).fail = true
	opts := writeOpts(key)

	parent := t.TempDir()
	dir := filepath.Join(parent, "b")
	if err := Write(dir, failing, opts); err == nil || !strings.Contains(err.Error(), "injected read failure") {
		t.Fatalf("Write = %v, want the injected failure", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("after a failed first Write the parent holds %d entries, want none", len(ents))
	}

	if err := Write(dir, bundletest.Graph(1, 0), opts); err != nil {
		t.Fatal(err)
	}
	before := readTree(t, dir)
	if err := Write(dir, failing, opts); err == nil {
		t.Fatal("Write with a failing tensor succeeded")
	}
	if diff := cmp.Diff(before, readTree(t, dir)); diff != "" {
		t.Errorf("failed Write changed the existing bundle")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("parent holds %d entries, want 1", len(ents))
	}
	// A successful rewrite replaces the old bundle and leaves no litter.
	if err := Write(dir, bundletest.Graph(9, 0), opts); err != nil {
		t.Fatal(err)
	}
	if err := manifest.Verify(dir, key.Public()); err != nil {
		t.Errorf("replaced bundle: %v", err)
	}
	if cmp.Equal(before, readTree(t, dir)) {
		t.Errorf("rewrite with other weights left the bundle unchanged")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("parent holds %d entries after a replacing Write, want 1", len(ents))
	}
}

// TestCrashSIGKILL kills a child process writing a bundle at several
// points and checks that no partial bundle exists at the target (neither
// a fresh target nor over an existing bundle), and that the next Write
// succeeds and removes the dead child's temporary directory.
func TestCrashSIGKILL(t *testing.T) {
	key := mustKey(t, manifest.Ed25519)
	for i, delay := range []time.Duration{0, 150 * time.Millisecond, 600 * time.Millisecond} {
		for _, existing := range []bool{false, true} {
			t.Run(fmt.Sprintf("kill%d/existing=%v", i, existing), func(t *testing.T) {
				parent := t.TempDir()
				dir := filepath.Join(parent, "out")
				var before map[string][]byte
				if existing {
					if err := Write(dir, bundletest.Graph(4, 0), writeOpts(key)); err != nil {
						t.Fatal(err)
					}
					before = readTree(t, dir)
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), crashEnv+"="+dir)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Wait until the child has started writing, then a bit more.
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					if m, _ := filepath.Glob(filepath.Join(parent, ".out.tmp-*", "shards", "*")); len(m) > 0 {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(delay)
				cmd.Process.Signal(syscall.SIGKILL)
				err := cmd.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("child was not killed mid-write (finished too fast?): %v", err)
				}
				if existing {
					if diff := cmp.Diff(before, readTree(t, dir)); diff != "" {
						t.Errorf("killed Write changed the existing bundle")
					}
				} else if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("killed Write left %s (stat: %v), want no output", dir, err)
				}
				if err := Write(dir, bundletest.Graph(6, 0), writeOpts(key)); err != nil {
					t.Fatalf("next Write after the kill: %v", err)
				}
				if err := manifest.Verify(dir, key.Public()); err != nil {
					t.Errorf("next Write after the kill does not verify: %v", err)
				}
				if ents, _ := os.ReadDir(parent); len(ents) != 1 {
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					t.Errorf("parent holds %v after the next Write, want only out", names)
				}
			})
		}
	}
}
