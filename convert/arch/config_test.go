package arch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/ir"
)

// configJSON returns a config.json for arch built from base fields plus
// overrides; a nil override value deletes the key.
func configJSON(t testing.TB, arch string, over map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"architectures":       []string{arch},
		"hidden_size":         64,
		"intermediate_size":   96,
		"num_hidden_layers":   2,
		"num_attention_heads": 4,
		"vocab_size":          128,
	}
	for k, v := range over {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLlamaConfig(t *testing.T) {
	llama := ir.Config{
		Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 64, IntermediateSize: 96, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 4, HeadDim: 16, VocabSize: 128, MaxPositionEmbeddings: 2048,
		RMSNormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu", BOSTokenID: 1, EOSTokenIDs: []int{2},
	}
	with := func(f func(c *ir.Config)) ir.Config {
		c := llama
		c.EOSTokenIDs = append([]int(nil), llama.EOSTokenIDs...)
		f(&c)
		return c
	}
	tests := []struct {
		name string
		raw  []byte
		want ir.Config
	}{
		{"llama defaults", configJSON(t, "LlamaForCausalLM", nil), llama},
		{"llama GQA with head_dim", configJSON(t, "LlamaForCausalLM", map[string]any{"num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": true, "torch_dtype": "bfloat16"}),
			with(func(c *ir.Config) {
				c.NumKVHeads, c.HeadDim, c.RMSNormEps, c.RopeTheta, c.MaxPositionEmbeddings, c.TieWordEmbeddings, c.TorchDType = 2, 32, 1e-5, 500000, 8192, true, "bfloat16"
			})},
		{"llama3 rope scaling", configJSON(t, "LlamaForCausalLM", map[string]any{"max_position_embeddings": 131072, "eos_token_id": []int{2, 3, 4},
			"rope_scaling": map[string]any{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}),
			with(func(c *ir.Config) {
				c.MaxPositionEmbeddings, c.EOSTokenIDs = 131072, []int{2, 3, 4}
				c.RopeScaling = &ir.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
			})},
		{"linear rope scaling (old type key)", configJSON(t, "LlamaForCausalLM", map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2.0}}),
			with(func(c *ir.Config) { c.RopeScaling = &ir.RopeScaling{Type: "linear", Factor: 2} })},
		{"default rope type is no scaling", configJSON(t, "LlamaForCausalLM", map[string]any{"rope_scaling": map[string]any{"rope_type": "default"}}), llama},
		{"quantization_config null", configJSON(t, "LlamaForCausalLM", map[string]any{"quantization_config": json.RawMessage("null")}), llama},
		{"dtype instead of torch_dtype", configJSON(t, "LlamaForCausalLM", map[string]any{"dtype": "float16"}), with(func(c *ir.Config) { c.TorchDType = "float16" })},
		{"mistral sliding window", configJSON(t, "MistralForCausalLM", map[string]any{"num_key_value_heads": 1, "sliding_window": 1024, "max_position_embeddings": 32768, "rope_theta": 1e6}),
			with(func(c *ir.Config) {
				c.Arch, c.NumKVHeads, c.SlidingWindow, c.MaxPositionEmbeddings, c.RopeTheta = "MistralForCausalLM", 1, 1024, 32768, 1e6
			})},
		{"mistral defaults", configJSON(t, "MistralForCausalLM", nil),
			with(func(c *ir.Config) {
				c.Arch, c.SlidingWindow, c.MaxPositionEmbeddings = "MistralForCausalLM", 4096, 131072
			})},
		{"mistral sliding_window null", configJSON(t, "MistralForCausalLM", map[string]any{"sliding_window": json.RawMessage("null"), "head_dim": json.RawMessage("null")}),
			with(func(c *ir.Config) { c.Arch, c.MaxPositionEmbeddings = "MistralForCausalLM", 131072 })},
		{"window not smaller than the context is plain causal", configJSON(t, "MistralForCausalLM", map[string]any{"sliding_window": 4096, "max_position_embeddings": 4096}),
			with(func(c *ir.Config) { c.Arch, c.MaxPositionEmbeddings = "MistralForCausalLM", 4096 })},
		{"qwen2 biases and eos list", configJSON(t, "Qwen2ForCausalLM", map[string]any{"num_key_value_heads": 2, "rope_theta": 1000000.0, "sliding_window": 4096, "use_sliding_window": false,
			"max_position_embeddings": 32768, "tie_word_embeddings": true, "bos_token_id": 100, "eos_token_id": []int{101, 102}}),
			with(func(c *ir.Config) {
				c.Arch, c.NumKVHeads, c.RopeTheta, c.MaxPositionEmbeddings, c.TieWordEmbeddings, c.AttentionBias = "Qwen2ForCausalLM", 2, 1e6, 32768, true, true
				c.BOSTokenID, c.EOSTokenIDs = 100, []int{101, 102}
			})},
		{"qwen2 with use_sliding_window", configJSON(t, "Qwen2ForCausalLM", map[string]any{"sliding_window": 1024, "use_sliding_window": true}),
			with(func(c *ir.Config) {
				c.Arch, c.MaxPositionEmbeddings, c.AttentionBias, c.SlidingWindow = "Qwen2ForCausalLM", 32768, true, 1024
			})},
		{"llama with attention_bias", configJSON(t, "LlamaForCausalLM", map[string]any{"attention_bias": true}), with(func(c *ir.Config) { c.AttentionBias = true })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Lookup(tt.want.Arch)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.ParseConfig("config.json", tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseConfig(%s) (-want +got):\n%s", tt.raw, diff)
			}
		})
	}
}

// TestParseRealConfigs reads the committed and shared model configs.
func TestParseRealConfigs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "stories260K", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := llamaFamily(t).ParseConfig("config.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	want := ir.Config{
		Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: 64, IntermediateSize: 172, NumLayers: 5,
		NumHeads: 8, NumKVHeads: 4, HeadDim: 8, VocabSize: 512, MaxPositionEmbeddings: 512,
		RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true, HiddenAct: "silu",
		BOSTokenID: 1, EOSTokenIDs: []int{2}, TorchDType: "float32",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stories260K config (-want +got):\n%s", diff)
	}
}

func llamaFamily(t testing.TB) *Family {
	t.Helper()
	f, err := Lookup("LlamaForCausalLM")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseLlamaConfigErrors(t *testing.T) {
	L := "LlamaForCausalLM"
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"yarn rope scaling", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}),
			`rope_scaling type "yarn" is not supported (supported: linear, llama3)`},
		{"dynamic rope scaling", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}), `rope_scaling type "dynamic" is not supported`},
		{"rope scaling without a type", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"factor": 2.0}}), `rope_scaling type "" is not supported`},
		{"rope scaling with an unknown field", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2.0, "beta_fast": 32}}), `rope_scaling: json: unknown field "beta_fast"`},
		{"rope scaling factor below 1", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 0.5}}), "needs factor >= 1"},
		{"llama3 scaling missing fields", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0}}), "llama3 needs low_freq_factor"},
		{"llama3 scaling with inverted factors", configJSON(t, L, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}}),
			"want 0 < low_freq_factor < high_freq_factor"},
		{"rope scaling not an object", configJSON(t, L, map[string]any{"rope_scaling": "linear"}), "rope_scaling"},
		{"gelu", configJSON(t, L, map[string]any{"hidden_act": "gelu"}), `hidden_act "gelu" is not supported (want "silu")`},
		{"hidden_size as a string", configJSON(t, L, map[string]any{"hidden_size": "512"}), `field "hidden_size": want int, found JSON string`},
		{"layers as a float", configJSON(t, L, map[string]any{"num_hidden_layers": 2.5}), `field "num_hidden_layers": want int`},
		{"tie_word_embeddings as a string", configJSON(t, L, map[string]any{"tie_word_embeddings": "true"}), `field "tie_word_embeddings": want bool`},
		{"architectures as a string", configJSON(t, L, map[string]any{"architectures": L}), `field "architectures"`},
		{"malformed JSON", []byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,,}`), "invalid JSON"},
		{"truncated JSON", []byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 6`), "invalid JSON"},
		{"trailing data", append(configJSON(t, L, nil), []byte(` {"x":1}`)...), "trailing data after the JSON object"},
		{"trailing brace", append(configJSON(t, L, nil), '}'), "trailing data after the JSON object"},
		{"top-level array", []byte(`[{"hidden_size":64}]`), "want a JSON object"},
		{"empty file", nil, "invalid JSON"},
		{"duplicate key", []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":64,"hidden_size":128}`), `key "hidden_size" appears twice`},
		{"quantization_config present", configJSON(t, L, map[string]any{"quantization_config": map[string]any{"quant_method": "gptq", "bits": 4}}), "quantization_config is set"},
		{"missing hidden_size", configJSON(t, L, map[string]any{"hidden_size": nil}), `required field "hidden_size" is missing`},
		{"missing vocab_size", configJSON(t, L, map[string]any{"vocab_size": nil}), `required field "vocab_size" is missing`},
		{"zero layers", configJSON(t, L, map[string]any{"num_hidden_layers": 0}), `field "num_hidden_layers" is 0, want > 0`},
		{"negative heads", configJSON(t, L, map[string]any{"num_attention_heads": -4}), `field "num_attention_heads" is -4, want > 0`},
		{"a billion layers", configJSON(t, L, map[string]any{"num_hidden_layers": 1000000000}), `field "num_hidden_layers" is 1000000000, more than smelt's limit of 4096`},
		{"huge hidden size", configJSON(t, L, map[string]any{"hidden_size": 1 << 40}), `field "hidden_size" is 1099511627776, more than smelt's limit`},
		{"int64 overflow", []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":99999999999999999999}`), `field "hidden_size": want int`},
		{"heads not a multiple of kv heads", configJSON(t, L, map[string]any{"num_key_value_heads": 3}), "num_attention_heads 4 is not a multiple of num_key_value_heads 3"},
		{"hidden not divisible by heads", configJSON(t, L, map[string]any{"hidden_size": 66}), "hidden_size 66 is not a multiple of num_attention_heads 4 and head_dim is not given"},
		{"odd head_dim", configJSON(t, L, map[string]any{"head_dim": 15}), "head_dim 15 is odd"},
		{"two architectures", configJSON(t, L, map[string]any{"architectures": []string{L, "MistralForCausalLM"}}), "architectures has 2 entries, want exactly 1"},
		{"no architectures", configJSON(t, L, map[string]any{"architectures": nil}), "architectures has 0 entries"},
		{"eos as a string", configJSON(t, L, map[string]any{"eos_token_id": "2"}), `eos_token_id "2", want an integer or a list of integers`},
		{"eos empty list", configJSON(t, L, map[string]any{"eos_token_id": []int{}}), "eos_token_id [], want"},
		{"eos outside the vocabulary", configJSON(t, L, map[string]any{"eos_token_id": 128}), "special token id 128 outside the vocabulary of 128"},
		{"negative bos", configJSON(t, L, map[string]any{"bos_token_id": -1}), "special token id -1 outside"},
		{"mlp bias", configJSON(t, L, map[string]any{"mlp_bias": true}), "mlp_bias true is not supported"},
		{"rms_norm_eps zero", configJSON(t, L, map[string]any{"rms_norm_eps": 0}), "rms_norm_eps 0, want in (0, 1)"},
		{"rope_theta negative", configJSON(t, L, map[string]any{"rope_theta": -1}), "rope_theta -1, want > 0"},
		{"negative sliding window", configJSON(t, "MistralForCausalLM", map[string]any{"sliding_window": -5}), "sliding_window -5, want null or a non-negative integer"},
		{"qwen2 without biases", configJSON(t, "Qwen2ForCausalLM", map[string]any{"attention_bias": false}), "attention_bias false is not valid for Qwen2"},
		{"mismatched family", configJSON(t, "GPT2LMHeadModel", nil), `architecture "GPT2LMHeadModel" is not in the llama family`},
	}
	f := llamaFamily(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.ParseConfig("models/x/config.json", tt.raw)
			if err == nil {
				t.Fatalf("ParseConfig(%s) succeeded, want error containing %q", tt.raw, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "convert: models/x/config.json: ") {
				t.Errorf("error = %q, want it to start with the stage and file", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q spans several lines", err)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	for _, a := range []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"} {
		f, err := Lookup(a)
		if err != nil || f.Name != "llama" {
			t.Errorf("Lookup(%q) = %v, %v, want the llama family", a, f, err)
		}
	}
	_, err := Lookup("GPT2LMHeadModel")
	want := `convert: unknown architecture "GPT2LMHeadModel"; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM`
	if err == nil || err.Error() != want {
		t.Errorf("Lookup error = %v, want %s", err, want)
	}
}

func TestConfigArchitecture(t *testing.T) {
	got, err := ConfigArchitecture("config.json", configJSON(t, "Qwen2ForCausalLM", nil))
	if err != nil || got != "Qwen2ForCausalLM" {
		t.Errorf("ConfigArchitecture = %q, %v, want Qwen2ForCausalLM", got, err)
	}
	if _, err := ConfigArchitecture("config.json", []byte(`{"architectures":[]}`)); err == nil {
		t.Error("ConfigArchitecture accepted an empty architectures list")
	}
}

// FuzzConfigJSON feeds arbitrary bytes to the Llama config parser: it must
// not panic, and any accepted config must satisfy the invariants the rest
// of smelt relies on, with a bounded target list.
func FuzzConfigJSON(f *testing.F) {
	f.Add(configJSON(f, "LlamaForCausalLM", nil))
	f.Add(configJSON(f, "MistralForCausalLM", map[string]any{"sliding_window": 1024, "num_key_value_heads": 2}))
	f.Add(configJSON(f, "Qwen2ForCausalLM", map[string]any{"eos_token_id": []int{1, 2}, "use_sliding_window": true, "sliding_window": 8}))
	f.Add(configJSON(f, "LlamaForCausalLM", map[string]any{"rope_scaling": map[string]any{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}))
	for _, p := range []string{"../../testdata/stories260K/config.json", "../../../shared/models/ref29m/config.json"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	fam := llamaFamily(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := fam.ParseConfig("config.json", raw)
		if err != nil {
			return
		}
		if c.HiddenSize <= 0 || c.NumLayers <= 0 || c.NumHeads <= 0 || c.NumKVHeads <= 0 || c.VocabSize <= 0 || c.IntermediateSize <= 0 {
			t.Fatalf("accepted non-positive sizes: %+v", c)
		}
		if c.NumHeads%c.NumKVHeads != 0 || c.HeadDim <= 0 || c.HeadDim%2 != 0 {
			t.Fatalf("accepted bad heads: %+v", c)
		}
		if c.NumLayers > llamaLimits["num_hidden_layers"] || c.HiddenSize > llamaLimits["hidden_size"] {
			t.Fatalf("accepted sizes over the limits: %+v", c)
		}
		if len(c.EOSTokenIDs) == 0 || c.BOSTokenID < 0 || c.BOSTokenID >= c.VocabSize {
			t.Fatalf("accepted bad special tokens: %+v", c)
		}
		if !(c.RMSNormEps > 0 && c.RMSNormEps < 1) || !(c.RopeTheta > 0) {
			t.Fatalf("accepted bad eps/theta: %+v", c)
		}
		if rs := c.RopeScaling; rs != nil && rs.Type != "linear" && rs.Type != "llama3" {
			t.Fatalf("accepted rope scaling %q", rs.Type)
		}
		ts := fam.Targets(c)
		if want := 2 + 9*c.NumLayers; len(ts) < want {
			t.Fatalf("%d targets, want at least %d", len(ts), want)
		}
		for _, tg := range ts {
			if _, err := tg.Shape.NumElements(); err != nil {
				t.Fatalf("target %s: %v", tg.Name, err)
			}
		}
	})
}
