package onnx

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/npy"
	"github.com/smeltml/smelt/internal/ortcheck"
	"github.com/smeltml/smelt/internal/testmodels"
)

// onnxFolder writes model (the stories260K export, or a mutation of it)
// and config (stories260K's config.json, or a mutation) into a new folder.
func onnxFolder(t *testing.T, model []byte, config []byte) string {
	t.Helper()
	dir := t.TempDir()
	if model != nil {
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if config != nil {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stories260KFolder is model.onnx + ../stories260K/config.json.
func stories260KFolder(t *testing.T) string {
	return onnxFolder(t, readFile(t, testmodels.Path(t, "stories260K-onnx", "model.onnx")), readFile(t, testmodels.Path(t, "stories260K", "config.json")))
}

// TestLoadStories260KMapping checks every canonical tensor of the mapped
// ONNX export against the HF safetensors of the same model: the mapping
// (which anonymous initializer is which projection) and the lazy
// transpose must give back HF's [out, in] bytes exactly.
func TestLoadStories260KMapping(t *testing.T) {
	m, err := convert.Load(stories260KFolder(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, want := m.Inventory.Format, "onnx"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
	cfg := m.Graph.Config
	if cfg.Arch != "LlamaForCausalLM" || cfg.NumLayers != 5 || cfg.NumKVHeads != 4 || cfg.TieWordEmbeddings {
		t.Errorf("Config = %+v, want LlamaForCausalLM, 5 layers, 4 kv heads, untied (the export stores its own head)", cfg)
	}
	st := safetensorsData(t, testmodels.Path(t, "stories260K", "model.safetensors"))
	hf := map[string]string{
		ir.TokenEmbedding: "model.embed_tokens.weight",
		ir.OutputNorm:     "model.norm.weight",
		ir.Output:         "model.embed_tokens.weight", // tied in HF
	}
	for i := 0; i < 5; i++ {
		for canon, src := range map[string]string{
			ir.AttnNorm: "input_layernorm", ir.FFNNorm: "post_attention_layernorm",
			ir.AttnQ: "self_attn.q_proj", ir.AttnK: "self_attn.k_proj", ir.AttnV: "self_attn.v_proj", ir.AttnOutput: "self_attn.o_proj",
			ir.FFNGate: "mlp.gate_proj", ir.FFNUp: "mlp.up_proj", ir.FFNDown: "mlp.down_proj",
		} {
			hf[ir.LayerTensor(i, canon)] = "model.layers." + itoa(i) + "." + src + ".weight"
		}
	}
	if got, want := len(m.Graph.Tensors), len(hf); got != want {
		t.Errorf("%d canonical tensors, want %d", got, want)
	}
	for _, tt := range m.Graph.Tensors {
		src, ok := hf[tt.Name]
		if !ok {
			t.Errorf("unexpected canonical tensor %q", tt.Name)
			continue
		}
		got, err := tt.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, st[src]) {
			t.Errorf("%s (from %q): bytes differ from safetensors %q", tt.Name, m.Mapping.Source[tt.Name], src)
		}
	}
	want := map[string]string{
		"blk.0.attn_q.weight": "onnx::MatMul_1166", "blk.0.attn_k.weight": "onnx::MatMul_1167",
		"blk.0.attn_v.weight": "onnx::MatMul_1168", "blk.0.attn_output.weight": "onnx::MatMul_1238",
		"blk.0.ffn_gate.weight": "onnx::MatMul_1239", "blk.0.ffn_up.weight": "onnx::MatMul_1240",
		"blk.0.ffn_down.weight": "onnx::MatMul_1241", "output.weight": "onnx::MatMul_1326",
		"token_embd.weight": "p.model__embed_tokens__weight", "output_norm.weight": "p.model__norm__weight",
	}
	for canon, src := range want {
		if got := m.Mapping.Source[canon]; got != src {
			t.Errorf("Source[%q] = %q, want %q", canon, got, src)
		}
	}
	if len(m.Mapping.Unused) != 0 {
		t.Errorf("Unused = %v, want none", m.Mapping.Unused)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestLoadStories260KLogits runs the executor on the mapped ONNX export
// and compares its logits, every position of the 5 reference prompts, with
// (a) the torch references and (b) onnxruntime-node running model.onnx
// itself, each within 1e-4·max|logit|.
func TestLoadStories260KLogits(t *testing.T) {
	m, err := convert.Load(stories260KFolder(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, err := exec.Load(m.Graph, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var prompts struct {
		Prompts []struct {
			IDs        []int  `json:"ids"`
			LogitsFile string `json:"logits_file"`
		} `json:"prompts"`
	}
	refs := testmodels.Path(t, "refs", "stories260K")
	if err := json.Unmarshal(readFile(t, filepath.Join(refs, "prompts.json")), &prompts); err != nil {
		t.Fatal(err)
	}
	if len(prompts.Prompts) != 5 {
		t.Fatalf("%d prompts, want 5", len(prompts.Prompts))
	}
	var jobs []ortcheck.Job
	model := testmodels.Path(t, "stories260K-onnx", "model.onnx")
	for _, p := range prompts.Prompts {
		ids := make([]int64, len(p.IDs))
		for i, id := range p.IDs {
			ids[i] = int64(id)
		}
		jobs = append(jobs, ortcheck.Job{Model: model, Inputs: []ortcheck.Tensor{ortcheck.I64("input_ids", []int64{1, int64(len(ids))}, ids)}, Outputs: []string{"logits"}})
	}
	ort, err := ortcheck.Run(t.TempDir(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	const tol = 1e-4
	for i, p := range prompts.Prompts {
		a, err := npy.ReadFile(filepath.Join(refs, p.LogitsFile))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := a.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		got, err := x.Forward(p.IDs)
		if err != nil {
			t.Fatal(err)
		}
		ortLogits, err := ort.Outputs[i][0].Float32()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int64{1, int64(len(p.IDs)), 512}, ort.Outputs[i][0].Dims); diff != "" {
			t.Fatalf("prompt %d: ORT logits dims (-want +got):\n%s", i, diff)
		}
		if len(ref) != len(got) || len(ortLogits) != len(got) {
			t.Fatalf("prompt %d: %d executor logits, %d torch, %d ORT", i, len(got), len(ref), len(ortLogits))
		}
		scale := 0.0
		for _, v := range ref {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		dTorch, dORT, dORTTorch := maxDiff(got, ref), maxDiff(got, ortLogits), maxDiff(ortLogits, ref)
		if dTorch > tol*scale {
			t.Errorf("prompt %d: executor vs torch max|Δ| = %.3g, want ≤ %.3g (1e-4·max|logit| %.3g)", i, dTorch, tol*scale, scale)
		}
		if dORT > tol*scale {
			t.Errorf("prompt %d: executor vs onnxruntime-node max|Δ| = %.3g, want ≤ %.3g", i, dORT, tol*scale)
		}
		t.Logf("prompt %d (%d tokens): max|Δ| executor-torch %.3g, executor-ORT %s %.3g, ORT-torch %.3g (max|logit| %.3g)", i, len(p.IDs), dTorch, ort.Version, dORT, dORTTorch, scale)
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestLoadONNXErrors mutates the stories260K export or its config.json and
// checks that each mismatch with the recognized pattern is refused with an
// error naming what differs.
func TestLoadONNXErrors(t *testing.T) {
	modelBytes := readFile(t, testmodels.Path(t, "stories260K-onnx", "model.onnx"))
	configBytes := readFile(t, testmodels.Path(t, "stories260K", "config.json"))
	config := func(kv ...any) []byte {
		var c map[string]any
		if err := json.Unmarshal(configBytes, &c); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mutate := func(f func(g *onnxpb.GraphProto)) []byte {
		var mp onnxpb.ModelProto
		if err := proto.Unmarshal(modelBytes, &mp); err != nil {
			t.Fatal(err)
		}
		f(mp.Graph)
		b, err := proto.Marshal(&mp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	node := func(g *onnxpb.GraphProto, name string) *onnxpb.NodeProto {
		for _, n := range g.Node {
			if n.Name == name {
				return n
			}
		}
		t.Fatalf("no node %q", name)
		return nil
	}
	setConst := func(g *onnxpb.GraphProto, output string, raw []byte) {
		for _, n := range g.Node {
			if n.OpType == "Constant" && n.Output[0] == output {
				n.Attribute[0].T.RawData = raw
				return
			}
		}
		t.Fatalf("no constant %q", output)
	}
	for _, tt := range []struct {
		name          string
		model, config []byte
		want          string
	}{
		{"no config.json", modelBytes, nil, "convert: model.onnx: an ONNX model needs config.json beside it for heads/kv heads/rope theta"},
		{"eps", modelBytes, config("rms_norm_eps", 1e-6), `node "/Add" (Add): RMSNorm epsilon 1e-05, config.json rms_norm_eps is 1e-06 (block 0)`},
		{"rope theta", modelBytes, config("rope_theta", 500000.0), "config.json rope_theta 500000 gives"},
		{"rope scaling", modelBytes, config("rope_scaling", map[string]any{"rope_type": "linear", "factor": 2.0}), `rope_scaling "linear"`},
		{"head_dim", modelBytes, config("num_attention_heads", 4, "num_key_value_heads", 2, "head_dim", 16), `node "/Reshape" (Reshape): target [? ? 8 8], want [batch, sequence, 4, 16]`},
		{"kv heads", modelBytes, config("num_key_value_heads", 8), `initializer "onnx::MatMul_1167" (blk.0.attn_k.weight): shape [64 32], config.json implies [64 64]`},
		{"fewer layers", modelBytes, config("num_hidden_layers", 4), `node "/Cast_44" (Cast): the graph has another decoder block after 4; config.json num_hidden_layers is 4`},
		{"more layers", modelBytes, config("num_hidden_layers", 6), "(block 5)"},
		{"hidden", modelBytes, config("intermediate_size", 256), `(blk.0.ffn_gate.weight): shape [64 172], config.json implies [64 256]`},
		{"interleaved rotation", mutate(func(g *onnxpb.GraphProto) {
			n := node(g, "/Concat_17")
			n.Input[0], n.Input[1] = n.Input[1], n.Input[0]
		}), configBytes, `node "/Concat_17" (Concat): inputs`},
		{"rotation slice", mutate(func(g *onnxpb.GraphProto) {
			setConst(g, "/Constant_44_output_0", []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}), configBytes, `node "/Slice_1" (Slice): slice [1:4] of the last axis; rotate_half needs [0:4] and [4:]`},
		{"repeat_kv tiled", mutate(func(g *onnxpb.GraphProto) {
			setConst(g, "/Constant_58_output_0", []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}), configBytes, `node "/Unsqueeze_36" (Unsqueeze): axes [1]; repeat_kv inserts the repeat axis at 2`},
		{"not causal", mutate(func(g *onnxpb.GraphProto) {
			setConst(g, "/Constant_1_output_0", []byte{0, 0, 0, 0, 0, 0, 0, 0})
		}), configBytes, `node "/Trilu" (Trilu): diagonal offset [0], want 1 (causal)`},
		{"softmax axis", mutate(func(g *onnxpb.GraphProto) {
			node(g, "/Softmax").Attribute[0].I = 2
		}), configBytes, `node "/Softmax" (Softmax): axis 2, want -1`},
		{"attention scale", mutate(func(g *onnxpb.GraphProto) {
			setConst(g, "/Constant_94_output_0", []byte{0, 0, 0x80, 0x40})
		}), configBytes, `node "/Div_3" (Div): scales the attention scores by Div 4, want division by sqrt(head_dim) = 2.82843`},
		{"swapped gate and up", mutate(func(g *onnxpb.GraphProto) {
			node(g, "/Sigmoid").Input[0] = "/MatMul_7_output_0"
		}), configBytes, `node "/Mul_11" (Mul): is not gate·sigmoid(gate) (block 0)`},
		{"contrib op", mutate(func(g *onnxpb.GraphProto) {
			n := node(g, "/Softmax")
			n.Domain = "com.microsoft"
		}), configBytes, `node "/Softmax" (Softmax): op com.microsoft.Softmax is not part of the Llama pattern`},
		{"unknown op", mutate(func(g *onnxpb.GraphProto) {
			node(g, "/Sigmoid").OpType = "Tanh"
		}), configBytes, `node "/Sigmoid" (Tanh): op Tanh is not part of the Llama pattern`},
		{"extra initializer", mutate(func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: "stray", DataType: int32(onnxpb.TensorProto_FLOAT), Dims: []int64{2}, RawData: make([]byte, 8)})
		}), configBytes, `initializer "stray" (f32 [2]) is not part of the recognized Llama pattern`},
		{"extra reader of the stream", mutate(func(g *onnxpb.GraphProto) {
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: "spy", OpType: "Neg", Input: []string{"/Cast_12_output_0"}, Output: []string{"spy_out"}})
		}), configBytes, `node "spy" (Neg): reads the hidden state "/Cast_12_output_0" outside the Llama pattern`},
		{"second input", mutate(func(g *onnxpb.GraphProto) {
			g.Input = append(g.Input, &onnxpb.ValueInfoProto{Name: "attention_mask"})
		}), configBytes, `graph inputs "input_ids" and "attention_mask"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := convert.Load(onnxFolder(t, tt.model, tt.config))
			if err == nil {
				m.Close()
				t.Fatalf("Load: no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: error\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

func TestTranspose(t *testing.T) {
	for _, tt := range []struct {
		d    ir.DType
		s    ir.Shape
		in   []byte
		want []byte
	}{
		{ir.U8, ir.Shape{2, 3}, []byte{1, 2, 3, 4, 5, 6}, []byte{1, 4, 2, 5, 3, 6}},
		{ir.F16, ir.Shape{1, 2}, []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4}},
		{ir.F16, ir.Shape{2, 2}, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{1, 2, 5, 6, 3, 4, 7, 8}},
	} {
		d, s, got, err := Transpose{}.Apply(tt.d, tt.s, tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if d != tt.d || !s.Equal(ir.Shape{tt.s[1], tt.s[0]}) || !bytes.Equal(got, tt.want) {
			t.Errorf("Apply(%v %v %v) = %v %v %v, want %v", tt.d, tt.s, tt.in, d, s, got, tt.want)
		}
	}
	// A large, non-square case against the formula.
	const rows, cols = 70, 45
	in := make([]byte, rows*cols*4)
	for i := range in {
		in[i] = byte(i * 7)
	}
	_, _, got, err := Transpose{}.Apply(ir.F32, ir.Shape{rows, cols}, in)
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			if !bytes.Equal(got[(c*rows+r)*4:(c*rows+r+1)*4], in[(r*cols+c)*4:(r*cols+c+1)*4]) {
				t.Fatalf("element (%d,%d) misplaced", r, c)
			}
		}
	}
	for _, bad := range []struct {
		d ir.DType
		s ir.Shape
		n int
	}{{ir.F32, ir.Shape{2}, 8}, {ir.F32, ir.Shape{2, 2}, 12}, {ir.I4, ir.Shape{2, 2}, 2}} {
		if _, _, _, err := (Transpose{}).Apply(bad.d, bad.s, make([]byte, bad.n)); err == nil {
			t.Errorf("Apply(%v %v, %d bytes): no error", bad.d, bad.s, bad.n)
		}
	}
}
