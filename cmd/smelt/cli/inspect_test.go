package cli

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/x448/float16"
	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/convert/safetensors"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

// update rewrites golden files under testdata/ (go test ./cmd/smelt/cli -update).
// Other tests of this package share it.
var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// smelt runs the CLI in-process and returns its exit code and output.
func smelt(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// inspectJSON runs inspect --json and decodes the report.
func inspectJSON(t *testing.T, args ...string) *InspectReport {
	t.Helper()
	code, out, errOut := smelt(t, append([]string{"inspect", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("smelt inspect %v: exit %d: %s", args, code, errOut)
	}
	var rep InspectReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	return &rep
}

var embedded = filepath.Join("..", "..", "..", "testdata", "stories260K")

// TestInspectModels checks architecture, layer count and parameter count
// of the embedded model and of every model folder in the shared models.
func TestInspectModels(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		format  string
		arch    string
		layers  int
		params  int64
		tensors int
		bytes   map[string]int64
	}{
		{"embedded stories260K", embedded, "safetensors", "LlamaForCausalLM", 5, 260032, 47, map[string]int64{"f32": 1040128}},
		{"stories260K", testmodels.Path(t, "stories260K"), "safetensors", "LlamaForCausalLM", 5, 260032, 47, map[string]int64{"f32": 1040128}},
		{"stories260K pytorch_model.bin", testmodels.Path(t, "stories260K", "pytorch_model.bin"), "pytorch", "LlamaForCausalLM", 5, 260032, 48, map[string]int64{"f32": 1040128 + 131072}},
		{"stories260K-fp16", testmodels.Path(t, "stories260K-fp16"), "safetensors", "LlamaForCausalLM", 5, 260032, 47, map[string]int64{"f16": 520064}},
		{"ref29m", testmodels.Path(t, "ref29m"), "safetensors", "LlamaForCausalLM", 8, 29368832, 75, map[string]int64{"f16": 58737664}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := inspectJSON(t, tt.path)
			if rep.Format != tt.format || rep.Architecture != tt.arch || rep.Config == nil || rep.Config.NumLayers != tt.layers || rep.Parameters != tt.params || len(rep.Tensors) != tt.tensors {
				t.Errorf("format %q arch %q layers %v params %d tensors %d; want %q %q %d %d %d",
					rep.Format, rep.Architecture, rep.Config, rep.Parameters, len(rep.Tensors), tt.format, tt.arch, tt.layers, tt.params, tt.tensors)
			}
			if diff := cmp.Diff(tt.bytes, rep.BytesPerDType); diff != "" {
				t.Errorf("bytes per dtype (-want +got):\n%s", diff)
			}
			code, out, _ := smelt(t, "inspect", tt.path)
			if code != 0 {
				t.Fatalf("text inspect: exit %d", code)
			}
			for _, want := range []string{"architecture:                 " + tt.arch, "layers:                       " + itoa(tt.layers), "parameters:                   " + groupDigits(tt.params)} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("text output lacks %q", want)
				}
			}
		})
	}
}

func itoa(n int) string { return groupDigits(int64(n)) }

// TestInspectRefParameterCounts pins the parameter counts of the issue
// literally (not through groupDigits).
func TestInspectRefParameterCounts(t *testing.T) {
	for path, want := range map[string]string{embedded: "260,032", testmodels.Path(t, "ref29m"): "29,368,832"} {
		_, out, _ := smelt(t, "inspect", path)
		if !strings.Contains(out, "parameters:                   "+want+"\n") {
			t.Errorf("inspect %s: no parameters line with %s:\n%s", path, want, out)
		}
	}
}

func digests(rep *InspectReport) map[string]string {
	m := map[string]string{}
	for _, tn := range rep.Tensors {
		m[tn.Name] = tn.Digest
	}
	return m
}

// TestInspectDigest compares per-tensor digests across formats and dtypes:
// safetensors vs pytorch_model.bin (identical values), and the fp16 folder
// vs the fp32 folder hashed with --digest-round f16.
func TestInspectDigest(t *testing.T) {
	st := digests(inspectJSON(t, "--digest", testmodels.Path(t, "stories260K")))
	bin := digests(inspectJSON(t, "--digest", testmodels.Path(t, "stories260K", "pytorch_model.bin")))
	f16 := digests(inspectJSON(t, "--digest", testmodels.Path(t, "stories260K-fp16")))
	rounded := digests(inspectJSON(t, "--digest", "--digest-round", "f16", testmodels.Path(t, "stories260K")))
	if len(st) != 47 || len(bin) != 48 || len(f16) != 47 || len(rounded) != 47 {
		t.Fatalf("tensor counts %d %d %d %d, want 47 48 47 47", len(st), len(bin), len(f16), len(rounded))
	}
	for name, d := range st {
		if len(d) != 64 {
			t.Errorf("%s: digest %q is not a sha256", name, d)
		}
		if bin[name] != d {
			t.Errorf("%s: safetensors %s, pytorch_model.bin %s", name, d, bin[name])
		}
		if f16[name] != rounded[name] {
			t.Errorf("%s: fp16 folder %s, fp32 rounded to f16 %s", name, f16[name], rounded[name])
		}
	}
	if bin["lm_head.weight"] != st["model.embed_tokens.weight"] {
		t.Errorf("pytorch lm_head.weight %s differs from the tied embedding %s", bin["lm_head.weight"], st["model.embed_tokens.weight"])
	}
	same := 0
	for name := range st {
		if st[name] == f16[name] {
			same++
		}
	}
	if same > 5 { // the comparison must be able to fail: f32 values are not f16 values
		t.Errorf("%d of 47 tensors hash the same in f32 and f16 without rounding", same)
	}

	// Independent check of the digest definition: sha256 of the raw f32
	// bytes of the fp32 file, and of the f16 bytes widened with x448/float16.
	for _, tc := range []struct {
		dir  string
		want map[string]string
	}{{"stories260K", st}, {"stories260K-fp16", f16}} {
		raw, err := os.ReadFile(testmodels.Path(t, tc.dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := safetensors.ParseHeader(tc.dir, raw, int64(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h.Entries {
			b := raw[h.DataStart+e.Begin : h.DataStart+e.End]
			if e.DType == ir.F16 {
				w := make([]byte, 0, 2*len(b))
				for i := 0; i < len(b); i += 2 {
					w = binary.LittleEndian.AppendUint32(w, math.Float32bits(float16.Frombits(binary.LittleEndian.Uint16(b[i:])).Float32()))
				}
				b = w
			}
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != tc.want[e.Name] {
				t.Errorf("%s %s: inspect digest %s, sha256 of the file's values %s", tc.dir, e.Name, tc.want[e.Name], got)
			}
		}
	}
}

func TestInspectTensorsFilter(t *testing.T) {
	tests := []struct {
		re   string
		want []string
	}{
		{`^model\.norm`, []string{"model.norm.weight"}},
		{`blk\.0\.attn_[qk]\.`, []string{"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight"}}, // canonical names match too
		{`layers\.4\.mlp\.down`, []string{"model.layers.4.mlp.down_proj.weight"}},
		{`nothing-matches`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.re, func(t *testing.T) {
			rep := inspectJSON(t, "--tensors", tt.re, embedded)
			var got []string
			for _, tn := range rep.Tensors {
				got = append(got, tn.Name)
			}
			sort.Strings(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tensors (-want +got):\n%s", diff)
			}
			if rep.Parameters != 260032 {
				t.Errorf("parameters %d: the filter must not change the totals", rep.Parameters)
			}
		})
	}
}

func TestInspectBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "--tensors", "(", embedded}, "smelt: inspect: --tensors: error parsing regexp"},
		{[]string{"inspect", "--digest", "--digest-round", "f8", embedded}, `smelt: inspect: --digest-round "f8": want f16 or bf16`},
		{[]string{"inspect", "--digest-round", "f16", embedded}, "smelt: inspect: --digest-round needs --digest"},
		{[]string{"inspect"}, "accepts 1 arg(s), received 0"},
		{[]string{"inspect", filepath.Join(t.TempDir(), "missing")}, "no such file or directory"},
	}
	for _, tt := range tests {
		code, out, errOut := smelt(t, tt.args...)
		if code != ExitBadInput || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("smelt %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

// stFile builds a safetensors file from a literal header and data.
func stFile(header string, data []byte) []byte {
	return append(append(binary.LittleEndian.AppendUint64(nil, uint64(len(header))), header...), data...)
}

// torchZip builds a torch.save-style zip holding the given data.pkl.
func torchZip(t *testing.T, pickle []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"archive/data.pkl", pickle}, {"archive/byteorder", []byte("little")}, {"archive/version", []byte("3\n")}} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// osSystemPickle is `os.system("echo pwned")` as a protocol-2 pickle.
func osSystemPickle() []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x02cos\nsystem\n")
	b.WriteByte('X')
	binary.Write(&b, binary.LittleEndian, uint32(len("echo pwned")))
	b.WriteString("echo pwned")
	b.WriteString("\x85R.")
	return b.Bytes()
}

// onnxExternal is an ONNX model whose one initializer keeps its data in an
// external file at location.
func onnxExternal(t *testing.T, location string) []byte {
	t.Helper()
	m := &onnxpb.ModelProto{
		IrVersion: 8, ProducerName: "smelt-test", OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}},
		Graph: &onnxpb.GraphProto{Name: "g", Initializer: []*onnxpb.TensorProto{{
			Name: "w", DataType: int32(onnxpb.TensorProto_FLOAT), Dims: []int64{2},
			DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}},
		}}},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInspectONNX lists the stories260K ONNX export: 48 f32 initializers,
// 292,800 values (the HF folder's 260,032 plus the untied lm_head copy). The
// export stores every linear weight transposed (MatMul takes [in, out]), so
// values are checked against the safetensors file: the embedding and norm
// weights are identical (same digest), and each HF linear weight W, and the
// embedding as lm_head, appears as exactly one initializer equal to W^T.
func TestInspectONNX(t *testing.T) {
	path := testmodels.Path(t, "stories260K-onnx", "model.onnx")
	rep := inspectJSON(t, "--digest", path)
	if rep.Format != "onnx" || len(rep.Tensors) != 48 || rep.Parameters != 292800 || rep.Config != nil {
		t.Fatalf("format %q, %d tensors, %d parameters, config %v; want onnx, 48, 292800, none", rep.Format, len(rep.Tensors), rep.Parameters, rep.Config)
	}
	code, out, _ := smelt(t, "inspect", path)
	if code != 0 || !strings.Contains(out, "parameters:                292,800\n") {
		t.Errorf("text inspect of the ONNX file: exit %d, no 292,800 parameters line:\n%s", code, out)
	}
	st := inspectJSON(t, "--digest", testmodels.Path(t, "stories260K"))
	stDigest := digests(st)
	wantShapes := map[string]int{"[64 512]": 1} // the lm_head copy, transposed
	for _, tn := range st.Tensors {
		s := tn.Shape
		if len(s) == 2 && tn.Name != "model.embed_tokens.weight" {
			s = []int64{s[1], s[0]}
		}
		wantShapes[ir.Shape(s).String()]++
	}
	gotShapes := map[string]int{}
	for _, tn := range rep.Tensors {
		if tn.DType != "f32" {
			t.Errorf("%s: dtype %s, want f32", tn.Name, tn.DType)
		}
		gotShapes[ir.Shape(tn.Shape).String()]++
		if name, ok := strings.CutPrefix(tn.Name, "p."); ok {
			hf := strings.ReplaceAll(name, "__", ".")
			if stDigest[hf] == "" || stDigest[hf] != tn.Digest {
				t.Errorf("%s: digest %s, safetensors %s has %s", tn.Name, tn.Digest, hf, stDigest[hf])
			}
		}
	}
	if diff := cmp.Diff(wantShapes, gotShapes); diff != "" {
		t.Errorf("shapes (-HF folder +ONNX):\n%s", diff)
	}

	onnxInv, err := convert.OpenWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	defer onnxInv.Close()
	stInv, err := convert.OpenWeights(testmodels.Path(t, "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	defer stInv.Close()
	values := func(e interface{ Bytes() ([]byte, error) }) []float32 {
		b, err := e.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		v, err := ir.DecodeFloat32(ir.F32, b)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	used := map[string]bool{}
	matched := 0
	for _, e := range stInv.Entries {
		if len(e.Shape) != 2 {
			continue
		}
		w, rows, cols := values(e.Source), int(e.Shape[0]), int(e.Shape[1])
		wt := make([]float32, len(w))
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				wt[c*rows+r] = w[r*cols+c]
			}
		}
		found := 0
		for _, o := range onnxInv.Entries {
			if !strings.HasPrefix(o.Name, "onnx::MatMul") || used[o.Name] || !o.Shape.Equal(ir.Shape{int64(cols), int64(rows)}) {
				continue
			}
			if cmp.Equal(values(o.Source), wt) {
				used[o.Name] = true
				found++
				break
			}
		}
		if found != 1 {
			t.Errorf("%s: %d ONNX initializers hold its transpose, want 1", e.Name, found)
		}
		matched += found
	}
	if matched != 36 || len(used) != 36 {
		t.Errorf("%d HF matrices matched %d ONNX MatMul initializers, want 36 (35 linear + the embedding as lm_head)", matched, len(used))
	}
}

// TestInspectHostile feeds hostile files through the CLI: each must give
// exit 2, nothing on stdout, and one line on stderr naming the file and the
// problem.
func TestInspectHostile(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(embedded, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(embedded, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	u8 := func(name string, begin, end int) string {
		return `"` + name + `":{"dtype":"U8","shape":[` + itoa(end-begin) + `],"data_offsets":[` + itoa(begin) + `,` + itoa(end) + `]}`
	}
	tests := []struct {
		name   string
		files  map[string][]byte // written into a fresh folder
		target string            // path inside the folder to inspect ("" = the folder)
		want   string            // problem text on stderr
		file   string            // file the message must name (inside the folder)
	}{
		{"truncated file", map[string][]byte{"model.safetensors": good[:len(good)/2]}, "model.safetensors", "beyond the", "model.safetensors"},
		{"truncated file with config.json", map[string][]byte{"model.safetensors": good[:len(good)/2], "config.json": config}, "", "beyond the", "model.safetensors"},
		{"header length beyond the file", map[string][]byte{"model.safetensors": stFile("{}", nil)[:8]}, "model.safetensors", "header length 2 runs past the end of the 8-byte file", "model.safetensors"},
		{"header length over the cap", map[string][]byte{"model.safetensors": binary.LittleEndian.AppendUint64(nil, 1<<62)}, "model.safetensors", "exceeds the 104857600-byte limit", "model.safetensors"},
		{"overlapping offsets", map[string][]byte{"model.safetensors": stFile("{"+u8("a", 0, 8)+","+u8("b", 4, 12)+"}", make([]byte, 12))}, "model.safetensors", `tensors "a" [0, 8) and "b" [4, 12) overlap`, "model.safetensors"},
		{"shape overflow", map[string][]byte{"model.safetensors": stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}`, make([]byte, 4))}, "model.safetensors", "element count overflows int64", "model.safetensors"},
		{"byte size mismatch", map[string][]byte{"model.safetensors": stFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8))}, "model.safetensors", "8 bytes in data_offsets, want 12", "model.safetensors"},
		{"duplicate keys", map[string][]byte{"model.safetensors": stFile("{"+u8("a", 0, 1)+","+u8("a", 1, 2)+"}", make([]byte, 2))}, "model.safetensors", `key "a" appears twice`, "model.safetensors"},
		{"malformed config.json", map[string][]byte{"model.safetensors": good, "config.json": config[:len(config)/2]}, "", "invalid JSON", "config.json"},
		{"config.json type error", map[string][]byte{"model.safetensors": good, "config.json": bytes.Replace(config, []byte(`"hidden_size": 64`), []byte(`"hidden_size": "64"`), 1)}, "", `field "hidden_size": want int, found JSON string`, "config.json"},
		{"config.json with yarn scaling", map[string][]byte{"model.safetensors": good, "config.json": bytes.Replace(config, []byte(`"rope_scaling": null`), []byte(`"rope_scaling": {"rope_type": "yarn", "factor": 4.0}`), 1)}, "", `rope_scaling type "yarn" is not supported`, "config.json"},
		{"config.json disagrees with the weights", map[string][]byte{"model.safetensors": good, "config.json": bytes.Replace(config, []byte(`"hidden_size": 64`), []byte(`"hidden_size": 128`), 1)}, "", `shape [512 64], config.json implies [512 128]`, "model.safetensors"},
		{"index escaping the folder", map[string][]byte{"model.safetensors.index.json": []byte(`{"weight_map":{"a":"../../etc/passwd"}}`)}, "", `shard path "../../etc/passwd" escapes the model folder`, "model.safetensors.index.json"},
		{"pickle calling os.system", map[string][]byte{"pytorch_model.bin": torchZip(t, osSystemPickle())}, "pytorch_model.bin", `disallowed global "os.system"`, "pytorch_model.bin"},
		{"pickle calling os.system with config.json", map[string][]byte{"pytorch_model.bin": torchZip(t, osSystemPickle()), "config.json": config}, "", `disallowed global "os.system"`, "pytorch_model.bin"},
		{"onnx external data outside the folder", map[string][]byte{"model.onnx": onnxExternal(t, "../secret.bin")}, "model.onnx", `external data location "../secret.bin" escapes the model folder`, "model.onnx"},
		{"onnx external data absolute", map[string][]byte{"model.onnx": onnxExternal(t, "/etc/passwd")}, "model.onnx", `external data location "/etc/passwd" escapes the model folder`, "model.onnx"},
		{"onnx that is not protobuf", map[string][]byte{"model.onnx": []byte("\xff\xff\xff\xff garbage")}, "model.onnx", "", "model.onnx"},
		{"bin that is not a zip", map[string][]byte{"pytorch_model.bin": []byte("not a checkpoint at all")}, "pytorch_model.bin", "", "pytorch_model.bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := smelt(t, "inspect", filepath.Join(dir, tt.target))
			if code != ExitBadInput {
				t.Errorf("exit %d, want %d (stderr %q)", code, ExitBadInput, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") || !strings.HasPrefix(errOut, "smelt: ") {
				t.Errorf("stderr is not one line: %q", errOut)
			}
			// Readers of this repository name the full path; every reader
			// names at least the file.
			if !strings.Contains(errOut, tt.file) {
				t.Errorf("stderr %q does not name %s", errOut, tt.file)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not say %q", errOut, tt.want)
			}
		})
	}
}

// TestInspectGolden pins the text, JSON and digest output for the embedded
// model. Every file in testdata/inspect must belong to a case here.
func TestInspectGolden(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
	}{
		{"stories260K.txt", []string{"inspect", embedded}},
		{"stories260K.json", []string{"inspect", "--json", embedded}},
		{"stories260K-blk0-digest.txt", []string{"inspect", "--digest", "--tensors", `blk\.0\.`, embedded}},
	}
	dir := filepath.Join("testdata", "inspect")
	known := map[string]bool{}
	for _, tt := range tests {
		known[tt.golden] = true
		t.Run(tt.golden, func(t *testing.T) {
			code, out, errOut := smelt(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			p := filepath.Join(dir, tt.golden)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (go test ./cmd/smelt/cli -run TestInspectGolden -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), out); diff != "" {
				t.Errorf("%s (-golden +got; -update rewrites):\n%s", p, diff)
			}
		})
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if !known[f.Name()] {
			t.Errorf("golden %s is read by no test", filepath.Join(dir, f.Name()))
		}
	}
}
