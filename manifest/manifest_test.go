package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./manifest -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, cmp.Diff(string(want), string(got)))
	}
}

// Fixed keys for the example and golden signatures: Ed25519 from the RFC
// 8032 test 1 seed, P-256 from a fixed scalar.
func exampleKeys(t testing.TB) (ed, p256 *PrivateKey) {
	t.Helper()
	seed := []byte{0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
		0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60}
	ed = &PrivateKey{alg: Ed25519, ed: ed25519.NewKeyFromSeed(seed)}
	scalar := bytes.Repeat([]byte{0x42}, 32)
	ec, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		t.Fatal(err)
	}
	return ed, &PrivateKey{alg: P256, ec: ec}
}

// exampleFiles are the example bundle's files other than the manifest.
var exampleFiles = map[string][]byte{
	"shards/00000.bin":    append(append(bytes.Repeat([]byte{0x21}, 16), make([]byte, 240)...), append(bytes.Repeat([]byte{0x3c}, 8), append(make([]byte, 248), 8, 8, 8, 8)...)...),
	"kernels/linear.wgsl": []byte("@compute @workgroup_size(64) fn main() {}\n"),
	"runtime/smelt.js":    []byte("export {};\n"),
	"tokenizer.json":      []byte("{}\n"),
}

// exampleManifest is the manifest of doc.go's worked example: one int4
// linear layer, its scales and zero points in one shard.
func exampleManifest() *Manifest {
	const w = "lin.weight"
	m := &Manifest{
		Format:    Format,
		Model:     Model{Arch: "llama", Config: ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 8, NumLayers: 1, NumHeads: 1, NumKVHeads: 1, HeadDim: 8, VocabSize: 4, RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", EOSTokenIDs: []int{2}}},
		Tokenizer: "tokenizer.json",
		Graph: Graph{
			Inputs:    []Value{{Name: "x", DType: ir.F32, Shape: ir.Shape{-1, 8}}},
			Constants: []Value{{Name: w, DType: ir.U32, Shape: ir.Shape{4, 1}, Tensor: w}},
			Nodes: []Node{{Name: "lin", Op: "Linear", Inputs: []string{"x", w}, Outputs: []Value{{Name: "y", DType: ir.F32, Shape: ir.Shape{-1, 4}}},
				Attrs: map[string]Attr{"kernel": {"linear"}}}},
			Outputs: []string{"y"},
		},
		Tensors: []Tensor{
			{Name: w, DType: ir.U32, Shape: ir.Shape{4, 1}, Shard: 0, Offset: 0, NBytes: 16,
				Quant: &ir.QuantInfo{Scheme: "int4-g8-asym", Bits: 4, GroupSize: 8, ScaleType: ir.F16, Rows: 4, Cols: 8, Scales: w + ".scales", Zeros: w + ".zeros", Algorithm: "rtn"}},
			{Name: w + ".scales", DType: ir.F16, Shape: ir.Shape{4, 1}, Shard: 0, Offset: 256, NBytes: 8},
			{Name: w + ".zeros", DType: ir.U8, Shape: ir.Shape{4, 1}, Shard: 0, Offset: 512, NBytes: 4},
		},
		Shards:       []string{"shards/00000.bin"},
		Kernels:      []Kernel{{Name: "linear", Path: "kernels/linear.wgsl", Entry: "main", Workgroup: [3]int{64, 1, 1}, Bindings: []Binding{{Group: 0, Binding: 0, Name: "w", Type: "read-only-storage"}}}},
		Program:      json.RawMessage(`{"decode":[{"kernel":"linear"}]}`),
		Requirements: Requirements{VRAMBytes: 4096, ContextLength: 16},
		Provenance: Provenance{Smelt: "v0.1.0", Recipe: json.RawMessage(`{"quant":{"scheme":"int4-g8-asym"}}`),
			Sources: []SourceFile{{Path: "model.safetensors", NBytes: 128, SHA256: strings.Repeat("0", 64)}}},
	}
	for _, p := range []string{"kernels/linear.wgsl", "runtime/smelt.js", "shards/00000.bin", "tokenizer.json"} {
		m.Files = append(m.Files, File{Path: p, NBytes: int64(len(exampleFiles[p])), Integrity: IntegrityOf(exampleFiles[p])})
	}
	m.ID = BundleID(m.Files)
	return m
}

// TestExample pins the worked example of doc.go: the canonical bytes, the
// bundle id, and Ed25519 and P-256 envelopes (deterministic signatures).
func TestExample(t *testing.T) {
	m := exampleManifest()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "example.manifest.json", b)
	ed, p := exampleKeys(t)
	for _, c := range []struct {
		name string
		key  *PrivateKey
	}{{"example.ed25519.sig", ed}, {"example.p256.sig", p}} {
		sig, err := Sign(b, c.key)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, c.name, sig)
		if err := VerifySignature(b, sig, c.key.Public()); err != nil {
			t.Errorf("%s does not verify: %v", c.name, err)
		}
		jwk, _ := MarshalPublicKeyJWK(c.key.Public())
		golden(t, strings.TrimSuffix(c.name, ".sig")+".pub.jwk", jwk)
	}
	// The example in doc.go is this manifest, indented.
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(doc, []byte("// manifest.json (shown indented"))
	if !ok {
		t.Fatal("doc.go: example marker not found")
	}
	_, after, _ = bytes.Cut(after, []byte("\n"))
	example, _, _ := bytes.Cut(after, []byte("//\n// manifest.sig"))
	var lines []string
	for _, line := range strings.Split(string(example), "\n") {
		if line != "" && line != "//" {
			lines = append(lines, strings.TrimPrefix(line, "//\t"))
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(strings.Join(lines, "\n"))); err != nil || !bytes.Equal(compact.Bytes(), b) {
		t.Errorf("doc.go example is stale (compact error %v); it must compact to testdata/example.manifest.json", err)
	}
	edSig, _ := os.ReadFile("testdata/example.ed25519.sig")
	var env Envelope
	json.Unmarshal(edSig, &env)
	if len(env.Signatures) != 1 || !strings.Contains(string(doc), env.Signatures[0].Sig) {
		t.Errorf("doc.go does not show the example's Ed25519 signature")
	}
	if !strings.Contains(string(doc), m.ID) {
		t.Errorf("doc.go does not show the example's bundle id %s", m.ID)
	}
	dm, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, dm); diff != "" {
		t.Errorf("Decode(Encode(m)) (-want +got):\n%s", diff)
	}
}

func TestPAE(t *testing.T) {
	// The DSSE specification's example.
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; got != want {
		t.Errorf("PAE = %q, want %q", got, want)
	}
}

func TestCanonicalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":[true,null,"x"]}`, `{"a":[true,null,"x"],"b":1}`},
		{" {\n \"a\" : 1.0 } ", `{"a":1}`},
		{`{"a":1e-5,"b":-0,"c":1E+21,"d":0.1}`, `{"a":0.00001,"b":0,"c":1e+21,"d":0.1}`},
		{`{"s":"<&>\u00e9\u2028\n"}`, "{\"s\":\"<&>\u00e9\\u2028\\n\"}"},
		{`18446744073709551615`, `18446744073709551615`},
	}
	for _, tt := range tests {
		got, err := Canonicalize([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("Canonicalize(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{``, `{`, `{} {}`, `{"a":1}x`, "\"\xff\""} {
		if got, err := Canonicalize([]byte(bad)); err == nil && string(got) == bad {
			t.Errorf("Canonicalize(%q) = %q, want an error or a change", bad, got)
		}
	}
}

func TestIntegrity(t *testing.T) {
	// echo -n abc | openssl dgst -sha384 -binary | base64
	if got, want := IntegrityOf([]byte("abc")), "sha384-ywB1P0WjXou1oD1pmsZQBycsMqsO3tFjGotgWkP/W+2AhgcroefMI1i67KE0yCWn"; got != want {
		t.Errorf("IntegrityOf(abc) = %s, want %s", got, want)
	}
	good := IntegrityOf(nil)
	for _, bad := range []string{"", "sha256-" + good[7:], good[:len(good)-1], good + "=", " " + good, good + " sha384-x", "sha384-" + strings.Repeat("A", 62) + "=="} {
		if _, err := ParseIntegrity(bad); err == nil {
			t.Errorf("ParseIntegrity(%q) accepted", bad)
		}
	}
	if _, err := ParseIntegrity(good); err != nil {
		t.Error(err)
	}
}

func TestDecodeErrors(t *testing.T) {
	b, err := Encode(exampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	reID := func(m *Manifest) { m.ID = BundleID(m.Files) }
	tests := []struct {
		name   string
		mutate func(*Manifest)
		raw    func(string) string
		want   string
	}{
		{name: "indented", raw: func(s string) string { var x bytes.Buffer; json.Indent(&x, []byte(s), "", " "); return x.String() }, want: "canonical"},
		{name: "trailing newline", raw: func(s string) string { return s + "\n" }, want: "canonical"},
		{name: "unknown field", raw: func(s string) string { return strings.Replace(s, `{"files"`, `{"extra":1,"files"`, 1) }, want: `unknown field "extra"`},
		{name: "key case", raw: func(s string) string { return strings.Replace(s, `"format"`, `"Format"`, 1) }, want: "canonical"},
		{name: "duplicate key", raw: func(s string) string { return strings.Replace(s, `"format":1`, `"format":1,"format":1`, 1) }, want: "canonical"},
		{name: "too large", raw: func(s string) string { return s + strings.Repeat(" ", MaxManifestBytes) }, want: "more than the limit"},
		{name: "format", mutate: func(m *Manifest) { m.Format = 2 }, want: "format 2"},
		{name: "id", mutate: func(m *Manifest) { m.ID = "sha256:00" }, want: "does not match the file list"},
		{name: "file path", mutate: func(m *Manifest) { m.Files[0].Path = "../x"; reID(m) }, want: "bad file path"},
		{name: "unsorted files", mutate: func(m *Manifest) { m.Files[0], m.Files[1] = m.Files[1], m.Files[0]; reID(m) }, want: "not sorted"},
		{name: "lists manifest", mutate: func(m *Manifest) {
			m.Files = append(m.Files, File{Path: "manifest.sig", Integrity: IntegrityOf(nil)})
			reID(m)
		}, want: "never listed"},
		{name: "bad integrity", mutate: func(m *Manifest) { m.Files[0].Integrity = "md5-x"; reID(m) }, want: "sha384-<base64>"},
		{name: "file and dir", mutate: func(m *Manifest) {
			m.Files = append(m.Files, File{Path: "kernels", Integrity: IntegrityOf(nil)})
			m.Files[0], m.Files[len(m.Files)-1] = m.Files[len(m.Files)-1], m.Files[0]
			m.Files = append(m.Files[:1], append([]File{{Path: "kernels/linear.wgsl", NBytes: m.Files[len(m.Files)-1].NBytes, Integrity: m.Files[len(m.Files)-1].Integrity}}, m.Files[1:len(m.Files)-1]...)...)
			reID(m)
		}, want: "both a file and the directory"},
		{name: "nbytes", mutate: func(m *Manifest) { m.Tensors[0].NBytes = 17 }, want: "nbytes 17, want 16"},
		{name: "past shard end", mutate: func(m *Manifest) { m.Tensors[2].Offset = 600 }, want: "outside shard"},
		{name: "shard index", mutate: func(m *Manifest) { m.Tensors[2].Shard = 1 }, want: "shard 1 out of range"},
		{name: "one part", mutate: func(m *Manifest) { m.Tensors[0].Parts = []Part{{0, 0, 16}} }, want: "parts must number 2 or more"},
		{name: "parts sum", mutate: func(m *Manifest) { m.Tensors[0].Parts = []Part{{0, 0, 8}, {0, 8, 4}} }, want: "parts hold 12 bytes"},
		{name: "scales missing", mutate: func(m *Manifest) { m.Tensors[0].Quant.Scales = "nope" }, want: `scales tensor "nope"`},
		{name: "unsorted tensors", mutate: func(m *Manifest) { m.Tensors[1], m.Tensors[2] = m.Tensors[2], m.Tensors[1] }, want: "not sorted"},
		{name: "tokenizer", mutate: func(m *Manifest) { m.Tokenizer = "tok.json" }, want: `tokenizer "tok.json"`},
		{name: "kernel file", mutate: func(m *Manifest) { m.Kernels[0].Path = "kernels/x.wgsl" }, want: `kernel "linear"`},
		{name: "undefined input", mutate: func(m *Manifest) { m.Graph.Nodes[0].Inputs[0] = "z" }, want: `input "z" used before definition`},
		{name: "constant tensor", mutate: func(m *Manifest) { m.Graph.Constants[0].Tensor = "nope" }, want: `names tensor "nope"`},
		{name: "output", mutate: func(m *Manifest) { m.Graph.Outputs[0] = "q" }, want: `output "q" is not defined`},
		{name: "attr type", raw: func(s string) string { return strings.Replace(s, `{"string":"linear"}`, `{"complex":"linear"}`, 1) }, want: `unknown attribute type "complex"`},
		{name: "attr two keys", raw: func(s string) string {
			return strings.Replace(s, `{"string":"linear"}`, `{"int":1,"string":"linear"}`, 1)
		}, want: "exactly one type key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in string
			if tt.raw != nil {
				in = tt.raw(s)
			} else {
				m, err := Decode(b)
				if err != nil {
					t.Fatal(err)
				}
				tt.mutate(m)
				raw, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				c, err := Canonicalize(raw)
				if err != nil {
					t.Fatal(err)
				}
				in = string(c)
			}
			_, err := Decode([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAttrs(t *testing.T) {
	tests := []struct {
		in   any
		json string
		out  any
	}{
		{int32(8), `{"int":8}`, 8},
		{float32(0.5), `{"float":0.5}`, 0.5},
		{"silu", `{"string":"silu"}`, "silu"},
		{true, `{"bool":true}`, true},
		{[]int64{1, 2}, `{"ints":[1,2]}`, []int{1, 2}},
		{[]int(nil), `{"ints":[]}`, []int{}},
		{[]float32{0.25}, `{"floats":[0.25]}`, []float64{0.25}},
		{[]string{"a"}, `{"strings":["a"]}`, []string{"a"}},
	}
	for _, tt := range tests {
		a, err := NewAttr(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(a)
		if err != nil || string(b) != tt.json {
			t.Errorf("marshal %#v = %s, %v; want %s", tt.in, b, err, tt.json)
		}
		var back Attr
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.out, back.V); diff != "" {
			t.Errorf("round trip of %#v (-want +got):\n%s", tt.in, diff)
		}
	}
	for _, bad := range []any{map[string]int{}, 1.0 / zero(), uint64(1), struct{}{}} {
		if _, err := NewAttr(bad); err == nil {
			t.Errorf("NewAttr(%#v) accepted", bad)
		}
	}
}

func zero() float64 { return 0 }
