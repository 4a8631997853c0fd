package convert

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/smeltml/smelt/convert/safetensors"
	"github.com/smeltml/smelt/internal/ir"
)

// The 2 GB benchmark model: TinyLlama-1.1B's shape (hidden 2048, 22
// layers, 32 heads / 4 kv heads, intermediate 5632, vocab 32000, untied),
// f16, 201 tensors in 4 shards plus the index — 2.2 GB. It is generated
// once per `go test -bench` run into $SMELT_BENCH_DIR when set (and left
// there, so `smelt inspect` can be measured on it), else into a temporary
// folder removed when the benchmarks finish.
var bigModel struct {
	once sync.Once
	dir  string
	temp bool
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bigModel.temp {
		os.RemoveAll(bigModel.dir)
	}
	os.Exit(code)
}

func bigModelDir(b *testing.B) string {
	b.Helper()
	bigModel.once.Do(func() {
		dir := os.Getenv("SMELT_BENCH_DIR")
		if dir == "" {
			dir, bigModel.err = os.MkdirTemp("", "smelt-bench-")
			if bigModel.err != nil {
				return
			}
			bigModel.temp = true
		} else if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFile)); err == nil {
			bigModel.dir = dir // already generated
			return
		} else if bigModel.err = os.MkdirAll(dir, 0o755); bigModel.err != nil {
			return
		}
		bigModel.dir = dir
		bigModel.err = writeBigModel(dir)
	})
	if bigModel.err != nil {
		b.Fatal(bigModel.err)
	}
	return bigModel.dir
}

// writeBigModel writes the TinyLlama-shaped f16 model (values from a
// repeating pseudo-random pattern; only layout matters here).
func writeBigModel(dir string) error {
	const (
		hidden, inter, layers, vocab = 2048, 5632, 22, 32000
		heads, kvHeads, headDim      = 32, 4, 64
	)
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "hidden_size": hidden, "intermediate_size": inter,
		"num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
		"vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "torch_dtype": "float16",
	}
	js, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		return err
	}
	pattern := make([]byte, 1<<20)
	for i := range pattern {
		pattern[i] = byte(i*131 + i>>9)
	}
	fill := func(n int64) func(w io.Writer) error {
		return func(w io.Writer) error {
			for n > 0 {
				k := min(n, int64(len(pattern)))
				if _, err := w.Write(pattern[:k]); err != nil {
					return err
				}
				n -= k
			}
			return nil
		}
	}
	mk := func(name string, shape ...int64) safetensors.WriteTensor {
		n, _ := ir.Shape(shape).ByteSize(ir.F16)
		return safetensors.WriteTensor{Name: name, DType: ir.F16, Shape: ir.Shape(shape), Fill: fill(n)}
	}
	var ts []safetensors.WriteTensor
	ts = append(ts, mk("model.embed_tokens.weight", vocab, hidden))
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts, mk(p+"input_layernorm.weight", hidden), mk(p+"post_attention_layernorm.weight", hidden),
			mk(p+"self_attn.q_proj.weight", heads*headDim, hidden), mk(p+"self_attn.k_proj.weight", kvHeads*headDim, hidden),
			mk(p+"self_attn.v_proj.weight", kvHeads*headDim, hidden), mk(p+"self_attn.o_proj.weight", hidden, heads*headDim),
			mk(p+"mlp.gate_proj.weight", inter, hidden), mk(p+"mlp.up_proj.weight", inter, hidden), mk(p+"mlp.down_proj.weight", hidden, inter))
	}
	ts = append(ts, mk("model.norm.weight", hidden), mk("lm_head.weight", vocab, hidden))
	const shards = 4
	per := (len(ts) + shards - 1) / shards
	wm := map[string]string{}
	var total int64
	for s := 0; s < shards; s++ {
		part := ts[s*per : min((s+1)*per, len(ts))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 4<<20)
		if err := safetensors.Write(bw, part, map[string]string{"format": "pt"}); err != nil {
			f.Close()
			return err
		}
		if err := bw.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		for _, t := range part {
			n, _ := t.Shape.ByteSize(t.DType)
			wm[t.Name] = name
			total += n
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm})
	return os.WriteFile(filepath.Join(dir, safetensors.IndexFile), idx, 0o644)
}

// vmHWM reads the process's peak resident set size in KiB.
func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%d", &kb)
			return kb
		}
	}
	return 0
}

// BenchmarkOpenWeights/tinyllama-1.1B-f16-4shards opens the sharded index
// and lists every tensor (headers only, mmap); Load adds config parsing,
// the target-driven mapping and the graph build. Each reports the model
// size as bytes/op (so MB/s is listing throughput) and the growth of the
// process's peak RSS over the benchmark.
func BenchmarkOpenWeights(b *testing.B) {
	dir := bigModelDir(b)
	b.Run("tinyllama-1.1B-f16-4shards/open-list", func(b *testing.B) {
		runtime.GC()
		before := vmHWM()
		b.ReportAllocs()
		var size int64
		for b.Loop() {
			inv, err := OpenWeights(dir)
			if err != nil {
				b.Fatal(err)
			}
			size = 0
			for _, e := range inv.Entries {
				size += e.NBytes
			}
			if len(inv.Entries) != 201 {
				b.Fatalf("%d tensors, want 201", len(inv.Entries))
			}
			inv.Close()
		}
		b.SetBytes(size)
		b.ReportMetric(float64(vmHWM()-before)/1024, "peak-rss-growth-MiB")
	})
	b.Run("tinyllama-1.1B-f16-4shards/load", func(b *testing.B) {
		runtime.GC()
		before := vmHWM()
		b.ReportAllocs()
		for b.Loop() {
			m, err := Load(dir)
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
		b.ReportMetric(float64(vmHWM()-before)/1024, "peak-rss-growth-MiB")
	})
}
