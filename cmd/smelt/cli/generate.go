package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/internal/exec"
)

func init() { register(NewCmdGenerate) }

// GenerateOptions are the flags of `smelt generate`.
type GenerateOptions struct {
	Model       string
	Prompt      string
	N           int
	Temperature float64
	TopK        int
	TopP        float64
	Seed        uint64
	Tokenizer   string
	IgnoreEOS   bool
	JSON        bool
}

// NewCmdGenerate generates text with the CPU reference executor.
func NewCmdGenerate(env *Env) *cobra.Command {
	opts := &GenerateOptions{}
	cmd := &cobra.Command{
		Use:   "generate MODEL --prompt TEXT",
		Short: "Generate text with the CPU reference executor",
		Long: `generate continues a prompt with a model (a Hugging Face folder, or a bundle:
a folder with manifest.json) on the CPU reference executor, with a KV cache.
The prompt is tokenized with the model's special tokens (one BOS in front for
Llama-style tokenizers). Greedy by default; --temperature > 0 samples, after
--top-k (0: no limit) and --top-p (1: no limit), with a PCG generator seeded
by --seed (the same seed gives the same tokens on every platform; the WebGPU
runtime's sampler is a different generator). Generation stops after -n tokens
or at an end-of-sequence token (kept in ids, not printed), unless
--ignore-eos.

Output (the shape smelt run prints for bundles on WebGPU): stdout gets the
prompt, then the generated text streamed as tokens come, then a newline;
stderr gets one line of timings. With --json, stdout gets one JSON object
instead: prompt, prompt_ids, ids (generated ids), text (the generated text,
so that prompt + text is the whole output), load_ms, prefill_ms, decode_ms,
prefill_tokens_per_s and decode_tokens_per_s (the first generated token
comes from the prefill, so decode counts len(ids)-1 tokens).`,
		Example: `  smelt generate ../shared/models/stories260K --prompt "Once upon a time" -n 32
  smelt generate out/bundle --prompt "Lily" --temperature 0.8 --top-k 40 --seed 1 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Model = args[0]
			return runGenerate(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Prompt, "prompt", "", "prompt text")
	f.IntVarP(&opts.N, "n", "n", 32, "number of tokens to generate")
	f.Float64Var(&opts.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	f.IntVar(&opts.TopK, "top-k", 0, "sample among the k most likely tokens (0: all)")
	f.Float64Var(&opts.TopP, "top-p", 1, "nucleus sampling mass (1: all)")
	f.Uint64Var(&opts.Seed, "seed", 0, "sampling seed")
	f.StringVar(&opts.Tokenizer, "tokenizer", "", "tokenizer file (tokenizer.json or tokenizer.model) instead of the model's")
	f.BoolVar(&opts.IgnoreEOS, "ignore-eos", false, "keep generating after an end-of-sequence token")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON object")
	return cmd
}

// GenerateReport is the --json output of smelt generate (smelt run prints
// the same fields for bundles on WebGPU).
type GenerateReport struct {
	Prompt            string  `json:"prompt"`
	PromptIDs         []int   `json:"prompt_ids"`
	IDs               []int   `json:"ids"`
	Text              string  `json:"text"`
	LoadMs            float64 `json:"load_ms"`
	PrefillMs         float64 `json:"prefill_ms"`
	DecodeMs          float64 `json:"decode_ms"`
	PrefillTokensPerS float64 `json:"prefill_tokens_per_s"`
	DecodeTokensPerS  float64 `json:"decode_tokens_per_s"`
}

func runGenerate(env *Env, opts *GenerateOptions) error {
	if opts.N < 0 {
		return fmt.Errorf("generate: -n %d, want >= 0", opts.N)
	}
	sampler, err := exec.NewSampler(exec.SamplerOptions{Temperature: opts.Temperature, TopK: opts.TopK, TopP: opts.TopP, Seed: opts.Seed})
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	t0 := time.Now()
	lm, err := loadLM(opts.Model, opts.Tokenizer, true)
	if err != nil {
		return err
	}
	loadMs := millis(time.Since(t0))
	prompt, err := lm.tok.EncodeWithSpecial(opts.Prompt)
	if err != nil {
		return fmt.Errorf("generate: prompt: %w", err)
	}
	if len(prompt) == 0 {
		return fmt.Errorf("generate: the prompt is empty and the tokenizer adds no BOS")
	}
	maxPos := lm.model.Config.MaxPositionEmbeddings
	total := len(prompt) + opts.N
	if maxPos > 0 && total > maxPos {
		return fmt.Errorf("generate: %d prompt tokens + %d new ones exceed the model's context of %d", len(prompt), opts.N, maxPos)
	}
	sess, err := lm.model.NewSession(total)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	eos := lm.tok.EOS()
	if len(eos) == 0 {
		eos = lm.model.Config.EOSTokenIDs
	}
	// The stream decoder sees the prompt first, so the first generated
	// token decodes in context (a leading space is kept).
	sd := lm.tok.NewStreamDecoder()
	for _, id := range prompt {
		sd.Next(id)
	}
	if !opts.JSON {
		fmt.Fprint(env.Stdout, opts.Prompt)
	}
	rep := GenerateReport{Prompt: opts.Prompt, PromptIDs: prompt, IDs: []int{}, LoadMs: loadMs}
	var text []byte
	emit := func(s string) {
		text = append(text, s...)
		if !opts.JSON && s != "" {
			fmt.Fprint(env.Stdout, s)
		}
	}
	t1 := time.Now()
	var logits []float32
	if opts.N > 0 {
		if logits, err = sess.Prefill(prompt); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	rep.PrefillMs = millis(time.Since(t1))
	t2 := time.Now()
	for len(rep.IDs) < opts.N {
		id := sampler.Sample(logits)
		rep.IDs = append(rep.IDs, id)
		if !opts.IgnoreEOS && slices.Contains(eos, id) {
			break
		}
		emit(sd.Next(id))
		if len(rep.IDs) == opts.N {
			break
		}
		if logits, err = sess.Decode(id); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	emit(sd.Flush())
	rep.DecodeMs = millis(time.Since(t2))
	rep.Text = string(text)
	if rep.PrefillMs > 0 {
		rep.PrefillTokensPerS = float64(len(prompt)) / (rep.PrefillMs / 1000)
	}
	if rep.DecodeMs > 0 {
		rep.DecodeTokensPerS = float64(max(len(rep.IDs)-1, 0)) / (rep.DecodeMs / 1000)
	}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(env.Stdout)
	fmt.Fprintf(env.Stderr, "smelt generate: %d prompt tokens, %d generated; load %.0f ms, prefill %.1f tokens/s, decode %.1f tokens/s (CPU)\n",
		len(prompt), len(rep.IDs), loadMs, rep.PrefillTokensPerS, rep.DecodeTokensPerS)
	return nil
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
