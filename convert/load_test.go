package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/convert/safetensors"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

// tinyLlama writes a Llama-style HF folder (config.json + weights) with
// seeded random f32 values and returns the folder and the tensors by name.
// shards > 1 writes model-0000i-of-0000n.safetensors plus an index.
func tinyLlama(t testing.TB, tied bool, shards int) (string, map[string]safetensors.WriteTensor) {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "hidden_size": 16, "intermediate_size": 24,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32,
		"tie_word_embeddings": tied, "rms_norm_eps": 1e-5, "torch_dtype": "float32",
	}
	js, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	mk := func(name string, shape ...int64) safetensors.WriteTensor {
		n, _ := ir.Shape(shape).NumElements()
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		b, _ := ir.EncodeFloat32(ir.F32, v)
		return safetensors.WriteTensor{Name: name, DType: ir.F32, Shape: ir.Shape(shape), Data: b}
	}
	ts := []safetensors.WriteTensor{mk("model.embed_tokens.weight", 32, 16), mk("model.norm.weight", 16)}
	if !tied {
		ts = append(ts, mk("lm_head.weight", 32, 16))
	}
	for i := 0; i < 2; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts, mk(p+"input_layernorm.weight", 16), mk(p+"post_attention_layernorm.weight", 16),
			mk(p+"self_attn.q_proj.weight", 16, 16), mk(p+"self_attn.k_proj.weight", 8, 16),
			mk(p+"self_attn.v_proj.weight", 8, 16), mk(p+"self_attn.o_proj.weight", 16, 16),
			mk(p+"mlp.gate_proj.weight", 24, 16), mk(p+"mlp.up_proj.weight", 24, 16), mk(p+"mlp.down_proj.weight", 16, 24))
	}
	byName := map[string]safetensors.WriteTensor{}
	for _, tt := range ts {
		byName[tt.Name] = tt
	}
	write := func(name string, ts []safetensors.WriteTensor) {
		var buf bytes.Buffer
		if err := safetensors.Write(&buf, ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if shards <= 1 {
		write("model.safetensors", ts)
		return dir, byName
	}
	wm := map[string]string{}
	var total int64
	per := (len(ts) + shards - 1) / shards
	for s := 0; s < shards; s++ {
		part := ts[s*per : min((s+1)*per, len(ts))]
		f := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		write(f, part)
		for _, tt := range part {
			wm[tt.Name] = f
			total += int64(len(tt.Data))
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm})
	if err := os.WriteFile(filepath.Join(dir, safetensors.IndexFile), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, byName
}

func TestLoadGenerated(t *testing.T) {
	tests := []struct {
		name      string
		tied      bool
		shards    int
		file      string // load this file inside the folder instead of the folder
		wantFiles int
	}{
		{"single file untied", false, 1, "", 1},
		{"single file tied", true, 1, "", 1},
		{"path to the weight file", false, 1, "model.safetensors", 1},
		{"three shards", false, 3, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, src := tinyLlama(t, tt.tied, tt.shards)
			path := dir
			if tt.file != "" {
				path = filepath.Join(dir, tt.file)
			}
			m, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Dir != dir || m.Family.Name != "llama" || len(m.Inventory.Files) != tt.wantFiles {
				t.Errorf("Dir %q Family %q Files %v", m.Dir, m.Family.Name, m.Inventory.Files)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			if !bytes.Equal(m.ConfigRaw, raw) {
				t.Error("ConfigRaw differs from config.json")
			}
			if got, want := len(m.Graph.Tensors), len(src); got != want {
				t.Errorf("%d canonical tensors, want %d", got, want)
			}
			if err := m.Graph.Check(); err != nil {
				t.Fatal(err)
			}
			for _, gt := range m.Graph.Tensors {
				s, ok := src[m.Mapping.Source[gt.Name]]
				if !ok {
					t.Errorf("canonical %q maps to unknown source %q", gt.Name, m.Mapping.Source[gt.Name])
					continue
				}
				b, err := gt.Data()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, s.Data) {
					t.Errorf("tensor %q (%s): bytes differ from what was written", gt.Name, s.Name)
				}
			}
			if tt.tied && m.Graph.Tensor(Output) != nil {
				t.Errorf("tied model has %s", Output)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path to load
		want  string
	}{
		{"no config.json", func(t *testing.T, dir string) string {
			os.Remove(filepath.Join(dir, "config.json"))
			return dir
		}, "config.json is required"},
		{"malformed config.json", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures": [`), 0o644)
			return dir
		}, `config.json: key "architectures": invalid JSON: unexpected EOF`},
		{"unknown architecture", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures": ["BertModel"]}`), 0o644)
			return dir
		}, `unknown architecture "BertModel"; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM`},
		{"config.json too large", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "config.json"), bytes.Repeat([]byte(" "), 2<<20), 0o644)
			return dir
		}, "more than the 1048576-byte limit"},
		{"config.json is a folder", func(t *testing.T, dir string) string {
			os.Remove(filepath.Join(dir, "config.json"))
			os.Mkdir(filepath.Join(dir, "config.json"), 0o755)
			return dir
		}, "not a regular file"},
		{"config disagrees with the weights", func(t *testing.T, dir string) string {
			raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			os.WriteFile(filepath.Join(dir, "config.json"), bytes.Replace(raw, []byte(`"num_hidden_layers":2`), []byte(`"num_hidden_layers":3`), 1), 0o644)
			return dir
		}, `tensor "model.layers.2.input_layernorm.weight" (canonical "blk.2.attn_norm.weight") not found`},
		{"no weights", func(t *testing.T, dir string) string {
			os.Remove(filepath.Join(dir, "model.safetensors"))
			return dir
		}, "no weights found"},
		{"missing path", func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") }, "no such file"},
		{"unknown weight file type", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "weights.gguf")
			os.WriteFile(p, []byte("GGUF"), 0o644)
			return p
		}, "unknown weight file type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := tinyLlama(t, false, 1)
			path := tt.setup(t, dir)
			m, err := Load(path)
			if err == nil {
				m.Close()
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "convert: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q, want one line starting with the stage", err)
			}
		})
	}
}

// TestLoadErrorNamesConfigPath checks that config errors carry the full path.
func TestLoadErrorNamesConfigPath(t *testing.T) {
	dir, _ := tinyLlama(t, false, 1)
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":"64"}`), 0o644)
	_, err := Load(dir)
	if want := "convert: " + p + `: field "hidden_size": want int, found JSON string`; err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %s", err, want)
	}
}

// TestLoadSharedModels loads every HF folder in the shared models and checks
// the parameter count and, for ref29m, every tensor's statistics against the
// torch-computed refs/ref29m/weight_stats.json.
func TestLoadSharedModels(t *testing.T) {
	tests := []struct {
		dir        string
		params     int64
		layers     int
		tensors    int
		dtype      ir.DType
		statsCheck bool
	}{
		{"stories260K", 260032, 5, 47, ir.F32, false},
		{"stories260K-fp16", 260032, 5, 47, ir.F16, false},
		{"ref29m", 29368832, 8, 75, ir.F16, true},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			m, err := Load(testmodels.Path(t, tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var params int64
			for _, gt := range m.Graph.Tensors {
				n, _ := gt.Shape.NumElements()
				params += n
				if gt.DType != tt.dtype {
					t.Errorf("%s: dtype %v, want %v", gt.Name, gt.DType, tt.dtype)
				}
			}
			if params != tt.params || m.Graph.Config.NumLayers != tt.layers || len(m.Graph.Tensors) != tt.tensors {
				t.Errorf("%d parameters, %d layers, %d tensors; want %d, %d, %d", params, m.Graph.Config.NumLayers, len(m.Graph.Tensors), tt.params, tt.layers, tt.tensors)
			}
			if !tt.statsCheck {
				return
			}
			raw, err := os.ReadFile(testmodels.Path(t, "refs", tt.dir, "weight_stats.json"))
			if err != nil {
				t.Fatal(err)
			}
			var stats map[string]struct {
				Shape  []int64
				Mean   float64
				Std    float64
				Absmax float64
			}
			if err := json.Unmarshal(raw, &stats); err != nil {
				t.Fatal(err)
			}
			if len(stats) != len(m.Graph.Tensors) {
				t.Errorf("weight_stats has %d tensors, the model %d", len(stats), len(m.Graph.Tensors))
			}
			for _, gt := range m.Graph.Tensors {
				src := m.Mapping.Source[gt.Name]
				want, ok := stats[src]
				if !ok {
					t.Errorf("%s (%s) not in weight_stats.json", gt.Name, src)
					continue
				}
				if !gt.Shape.Equal(want.Shape) {
					t.Errorf("%s: shape %v, torch %v", src, gt.Shape, want.Shape)
				}
				v, err := gt.Float32()
				if err != nil {
					t.Fatal(err)
				}
				var sum, absmax float64
				for _, x := range v {
					sum += float64(x)
					absmax = max(absmax, math.Abs(float64(x)))
				}
				mean := sum / float64(len(v))
				var ss float64
				for _, x := range v {
					ss += (float64(x) - mean) * (float64(x) - mean)
				}
				std := math.Sqrt(ss / float64(len(v)))
				if absmax != want.Absmax {
					t.Errorf("%s: absmax %g, torch %g", src, absmax, want.Absmax)
				}
				if math.Abs(mean-want.Mean) > 1e-6*want.Std || math.Abs(std-want.Std) > 1e-5*want.Std {
					t.Errorf("%s: mean %g std %g, torch %g %g", src, mean, std, want.Mean, want.Std)
				}
			}
		})
	}
}

func TestOpenWeightsPreference(t *testing.T) {
	dir, _ := tinyLlama(t, false, 2)
	// A stray single file next to the index: the index wins.
	os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("garbage"), 0o644)
	inv, err := OpenWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if diff := cmp.Diff([]string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}, inv.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if _, err := OpenWeights(filepath.Join(dir, "model.safetensors")); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("OpenWeights(garbage file) error = %v, want too short", err)
	}
}
