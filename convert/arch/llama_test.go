package arch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// hfTensors spells out, independently of llamaTargets, the tensors a
// Hugging Face Llama/Qwen2 checkpoint holds for cfg: source name → shape.
func hfTensors(cfg ir.Config, withHead, withBias bool) map[string]ir.Shape {
	d, v, ff := int64(cfg.HiddenSize), int64(cfg.VocabSize), int64(cfg.IntermediateSize)
	q, kv := int64(cfg.NumHeads*cfg.HeadDim), int64(cfg.NumKVHeads*cfg.HeadDim)
	m := map[string]ir.Shape{
		"model.embed_tokens.weight": {v, d},
		"model.norm.weight":         {d},
	}
	if withHead {
		m["lm_head.weight"] = ir.Shape{v, d}
	}
	for i := 0; i < cfg.NumLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		m[p+"input_layernorm.weight"] = ir.Shape{d}
		m[p+"post_attention_layernorm.weight"] = ir.Shape{d}
		m[p+"self_attn.q_proj.weight"] = ir.Shape{q, d}
		m[p+"self_attn.k_proj.weight"] = ir.Shape{kv, d}
		m[p+"self_attn.v_proj.weight"] = ir.Shape{kv, d}
		m[p+"self_attn.o_proj.weight"] = ir.Shape{d, q}
		m[p+"mlp.gate_proj.weight"] = ir.Shape{ff, d}
		m[p+"mlp.up_proj.weight"] = ir.Shape{ff, d}
		m[p+"mlp.down_proj.weight"] = ir.Shape{d, ff}
		if withBias {
			m[p+"self_attn.q_proj.bias"] = ir.Shape{q}
			m[p+"self_attn.k_proj.bias"] = ir.Shape{kv}
			m[p+"self_attn.v_proj.bias"] = ir.Shape{kv}
		}
	}
	return m
}

// inventory makes an in-memory inventory of zero-filled tensors of dtype d.
func inventory(t testing.TB, shapes map[string]ir.Shape, d ir.DType) *tensorfile.Inventory {
	t.Helper()
	inv := &tensorfile.Inventory{Format: "safetensors", Files: []string{"model.safetensors"}}
	for name, s := range shapes {
		n, err := s.ByteSize(d)
		if err != nil {
			t.Fatal(err)
		}
		inv.Entries = append(inv.Entries, &tensorfile.Entry{
			Name: name, DType: d, Shape: s, File: "model.safetensors", NBytes: n,
			Source: &ir.BytesSource{Data: make([]byte, n), Loc: "model.safetensors"},
		})
	}
	if err := inv.Sort(); err != nil {
		t.Fatal(err)
	}
	return inv
}

func tinyConfig(t testing.TB, arch string, over map[string]any) ir.Config {
	t.Helper()
	base := map[string]any{"num_key_value_heads": 2}
	for k, v := range over {
		base[k] = v
	}
	cfg, err := llamaFamily(t).ParseConfig("config.json", configJSON(t, arch, base))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// canonicalOf is the expected canonical name of an HF source tensor,
// written out independently of the family's target table.
func canonicalOf(src string) string {
	switch src {
	case "model.embed_tokens.weight":
		return "token_embd.weight"
	case "model.norm.weight":
		return "output_norm.weight"
	case "lm_head.weight":
		return "output.weight"
	}
	var i int
	var rest string
	if _, err := fmt.Sscanf(src, "model.layers.%d.%s", &i, &rest); err != nil {
		return "?"
	}
	r := map[string]string{
		"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
		"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
		"self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
		"self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
		"mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
	}[rest]
	return fmt.Sprintf("blk.%d.%s", i, r)
}

func TestMapAndBuild(t *testing.T) {
	tests := []struct {
		name               string
		arch               string
		over               map[string]any
		head, bias         bool
		extra              map[string]ir.Shape // declared-unused tensors added to the file
		dtype              ir.DType
		wantUnused         map[string]string
		wantHead           string // tensor the logits Linear reads
		wantLinearWithBias int
	}{
		{name: "llama untied f32", arch: "LlamaForCausalLM", head: true, dtype: ir.F32, wantHead: "output.weight"},
		{name: "llama tied f16", arch: "LlamaForCausalLM", over: map[string]any{"tie_word_embeddings": true}, dtype: ir.F16, wantHead: "token_embd.weight"},
		{name: "tied with an lm_head copy (pytorch_model.bin)", arch: "LlamaForCausalLM", over: map[string]any{"tie_word_embeddings": true}, head: true, dtype: ir.BF16,
			wantUnused: map[string]string{"lm_head.weight": "tied to model.embed_tokens.weight (tie_word_embeddings)"}, wantHead: "token_embd.weight"},
		{name: "inv_freq buffers declared unused", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			extra: map[string]ir.Shape{"model.layers.0.self_attn.rotary_emb.inv_freq": {8}, "model.layers.1.self_attn.rotary_emb.inv_freq": {8}},
			wantUnused: map[string]string{
				"model.layers.0.self_attn.rotary_emb.inv_freq": "rotary inv_freq buffer; recomputed from rope_theta",
				"model.layers.1.self_attn.rotary_emb.inv_freq": "rotary inv_freq buffer; recomputed from rope_theta",
			}, wantHead: "output.weight"},
		{name: "qwen2 with q/k/v biases", arch: "Qwen2ForCausalLM", head: true, bias: true, dtype: ir.BF16, wantHead: "output.weight", wantLinearWithBias: 3 * 2},
		{name: "mistral", arch: "MistralForCausalLM", head: true, dtype: ir.F16, wantHead: "output.weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tinyConfig(t, tt.arch, tt.over)
			shapes := hfTensors(cfg, tt.head, tt.bias)
			for k, v := range tt.extra {
				shapes[k] = v
			}
			inv := inventory(t, shapes, tt.dtype)
			f := llamaFamily(t)
			m, err := Map(f, cfg, inv)
			if err != nil {
				t.Fatal(err)
			}
			wantSource := map[string]string{}
			for src := range shapes {
				if _, unused := tt.wantUnused[src]; unused {
					continue
				}
				if _, extra := tt.extra[src]; extra {
					continue
				}
				wantSource[canonicalOf(src)] = src
			}
			if diff := cmp.Diff(wantSource, m.Source); diff != "" {
				t.Errorf("Source (-want +got):\n%s", diff)
			}
			wantUnused := tt.wantUnused
			if wantUnused == nil {
				wantUnused = map[string]string{}
			}
			if diff := cmp.Diff(wantUnused, m.Unused); diff != "" {
				t.Errorf("Unused (-want +got):\n%s", diff)
			}
			for i, tn := range m.Tensors {
				if i > 0 && m.Tensors[i-1].Name >= tn.Name {
					t.Errorf("tensors not sorted at %q", tn.Name)
				}
				if tn.DType != tt.dtype || !tn.Shape.Equal(shapes[m.Source[tn.Name]]) {
					t.Errorf("tensor %q: %v %v, want %v %v", tn.Name, tn.DType, tn.Shape, tt.dtype, shapes[m.Source[tn.Name]])
				}
			}
			g, err := f.Build(cfg, m.Tensors)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Check(); err != nil {
				t.Fatal(err)
			}
			if got, want := len(g.Nodes), 3+15*cfg.NumLayers; got != want {
				t.Errorf("%d nodes, want %d", got, want)
			}
			last := g.Nodes[len(g.Nodes)-1]
			if last.Op != "Linear" || last.Inputs[1].Tensor == nil || last.Inputs[1].Tensor.Name != tt.wantHead {
				t.Errorf("logits node %s reads %v, want %s", last.Op, last.Inputs[1].Name, tt.wantHead)
			}
			if got, want := g.Outputs[0].Shape, (ir.Shape{-1, int64(cfg.VocabSize)}); !got.Equal(want) {
				t.Errorf("output shape %v, want %v", got, want)
			}
			biased := 0
			for _, n := range g.Nodes {
				if n.Op == "Linear" && len(n.Inputs) == 3 {
					biased++
				}
			}
			if biased != tt.wantLinearWithBias {
				t.Errorf("%d Linear nodes with bias, want %d", biased, tt.wantLinearWithBias)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	tests := []struct {
		name   string
		arch   string
		over   map[string]any
		head   bool
		bias   bool
		mutate func(shapes map[string]ir.Shape)
		dtype  ir.DType
		want   string
	}{
		{name: "missing tensor", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { delete(s, "model.layers.1.self_attn.k_proj.weight") },
			want:   `tensor "model.layers.1.self_attn.k_proj.weight" (canonical "blk.1.attn_k.weight") not found in model.safetensors`},
		{name: "untied without lm_head", arch: "LlamaForCausalLM", head: false, dtype: ir.F32,
			want: `tensor "lm_head.weight" (canonical "output.weight") not found`},
		{name: "wrong shape", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.layers.0.mlp.down_proj.weight"] = ir.Shape{96, 64} },
			want:   `model.safetensors: tensor "model.layers.0.mlp.down_proj.weight": shape [96 64], config.json implies [64 96]`},
		{name: "GQA shape from a MHA checkpoint", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.layers.0.self_attn.k_proj.weight"] = ir.Shape{64, 64} },
			want:   "shape [64 64], config.json implies [32 64]"},
		{name: "int dtype", arch: "LlamaForCausalLM", head: true, dtype: ir.I32,
			want: `dtype i32, want a float type (f32, f16, bf16)`},
		{name: "unmapped extra tensor", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.layers.0.mlp.gate.weight"] = ir.Shape{4, 64} },
			want:   `source tensor "model.layers.0.mlp.gate.weight" is neither mapped nor declared unused by the llama family`},
		{name: "layer beyond num_hidden_layers", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.layers.2.input_layernorm.weight"] = ir.Shape{64} },
			want:   `source tensor "model.layers.2.input_layernorm.weight" is neither mapped`},
		{name: "biases in a bias-free llama", arch: "LlamaForCausalLM", head: true, bias: true, dtype: ir.F32,
			want: `source tensor "model.layers.0.self_attn.k_proj.bias" is neither mapped`},
		{name: "qwen2 without biases", arch: "Qwen2ForCausalLM", head: true, dtype: ir.F32,
			want: `tensor "model.layers.0.self_attn.q_proj.bias" (canonical "blk.0.attn_q.bias") not found`},
		{name: "qwen2 bias of the wrong length", arch: "Qwen2ForCausalLM", head: true, bias: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.layers.1.self_attn.v_proj.bias"] = ir.Shape{64} },
			want:   `tensor "model.layers.1.self_attn.v_proj.bias": shape [64], config.json implies [32]`},
		{name: "inv_freq of an unknown module", arch: "LlamaForCausalLM", head: true, dtype: ir.F32,
			mutate: func(s map[string]ir.Shape) { s["model.rotary_emb.inv_freq_x"] = ir.Shape{8} },
			want:   `source tensor "model.rotary_emb.inv_freq_x" is neither mapped`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tinyConfig(t, tt.arch, tt.over)
			shapes := hfTensors(cfg, tt.head, tt.bias)
			if tt.mutate != nil {
				tt.mutate(shapes)
			}
			_, err := Map(llamaFamily(t), cfg, inventory(t, shapes, tt.dtype))
			if err == nil {
				t.Fatalf("Map succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "convert: ") {
				t.Errorf("error = %q lacks the stage prefix", err)
			}
		})
	}
}

func TestBuildMissingTensor(t *testing.T) {
	cfg := tinyConfig(t, "LlamaForCausalLM", map[string]any{"tie_word_embeddings": true})
	m, err := Map(llamaFamily(t), cfg, inventory(t, hfTensors(cfg, false, false), ir.F32))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TieWordEmbeddings = false // the graph now wants output.weight, which was not mapped
	_, err = llamaFamily(t).Build(cfg, m.Tensors)
	if err == nil || !strings.Contains(err.Error(), `tensor "output.weight" missing`) {
		t.Errorf("Build error = %v, want output.weight missing", err)
	}
}
