package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
)

func init() { register(NewCmdEval) }

// EvalOptions are the flags of `smelt eval`.
type EvalOptions struct {
	Model     string
	Text      string
	IDs       string
	Tokenizer string
	Ctx       int
	Stride    int
	MaxTokens int
	JSON      bool
}

// NewCmdEval measures perplexity with the CPU reference executor.
func NewCmdEval(env *Env) *cobra.Command {
	opts := &EvalOptions{}
	cmd := &cobra.Command{
		Use:   "eval MODEL (--text FILE | --ids FILE.npy)",
		Short: "Measure a model's perplexity on a text with the CPU reference executor",
		Long: `eval computes the perplexity of a model (a Hugging Face folder, or a bundle:
a folder with manifest.json, quantized tensors dequantized exactly as stored)
on a text, with the CPU reference executor (internal/exec).

Protocol (the one of the torch references in ../shared/models/README.md,
stated in internal/textdata): a plain-text file is tokenized once as one
string, with one BOS in front (when the tokenizer has one) and no other
special tokens (a .jsonl file: [BOS] + text of each record, concatenated);
windows of --ctx tokens
(default: the model's max_position_embeddings) start at 0, stride, 2*stride,
... (--stride, default --ctx: non-overlapping windows); each token t >= 1 is
scored exactly once, by the first window holding it and at least one earlier
token, with the float64 log-softmax of that window's float32 logits at the
previous position (natural log); ppl = exp(sum NLL / scored tokens). With
stride == ctx the first token of every window after the first is context
only.

--ids reads pre-tokenized ids (a 1-D integer .npy or a .json array, BOS
included, used as they are) instead of --text. --tokenizer picks a tokenizer file (tokenizer.json or
tokenizer.model; default: the model folder's tokenizer.json, else
tokenizer.model, or the bundle's tokenizer). --max-tokens keeps only the
first N ids (BOS included), for quick runs.

The report goes to stdout: a table, or with --json one object with the
fields model, source, tokens, context, stride, windows, scored, nll_sum,
mean_nll, ppl, seconds, tokens_per_s (forwarded tokens per second).`,
		Example: `  smelt eval ../shared/models/ref29m --text ../shared/models/data/ref29m_calib.txt
  smelt eval ../shared/models/stories260K --ids calib_ids.npy --stride 256 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Model = args[0]
			return runEval(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Text, "text", "", "text to score: plain text (one document), .jsonl (one document per record, field \"text\") or pre-tokenized .npy/.json ids")
	f.StringVar(&opts.IDs, "ids", "", "pre-tokenized ids (.npy integer array or .json array, BOS included) instead of --text")
	f.StringVar(&opts.Tokenizer, "tokenizer", "", "tokenizer file (tokenizer.json or tokenizer.model) instead of the model's")
	f.IntVar(&opts.Ctx, "ctx", 0, "window length (default: the model's max_position_embeddings)")
	f.IntVar(&opts.Stride, "stride", 0, "distance between window starts (default: --ctx)")
	f.IntVar(&opts.MaxTokens, "max-tokens", 0, "score only the first N ids, BOS included (0: all)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON object")
	return cmd
}

// EvalReport is the --json output of smelt eval.
type EvalReport struct {
	Model  string `json:"model"`
	Source string `json:"source"` // the text or ids file
	exec.PerplexityResult
	Seconds    float64 `json:"seconds"`
	TokensPerS float64 `json:"tokens_per_s"`
}

func runEval(env *Env, opts *EvalOptions) error {
	if (opts.Text == "") == (opts.IDs == "") {
		return fmt.Errorf("eval: give exactly one of --text and --ids")
	}
	if opts.Ctx < 0 || opts.Stride < 0 || opts.MaxTokens < 0 {
		return fmt.Errorf("eval: --ctx, --stride and --max-tokens must be >= 0")
	}
	lm, err := loadLM(opts.Model, opts.Tokenizer, opts.Text != "")
	if err != nil {
		return err
	}
	source := opts.Text
	var ids []int
	if opts.IDs != "" {
		source = opts.IDs
		d, err := textdata.Read(opts.IDs, textdata.Options{})
		if err != nil {
			return err
		}
		if d.Docs != nil {
			return fmt.Errorf("eval: --ids %s: want pre-tokenized ids (.npy or a .json array), not text", opts.IDs)
		}
		ids = d.IDs
	} else if ids, err = lm.encodeDocument(opts.Text); err != nil {
		return err
	}
	if opts.MaxTokens > 0 && len(ids) > opts.MaxTokens {
		ids = ids[:opts.MaxTokens]
	}
	ctx := opts.Ctx
	if ctx == 0 {
		ctx = lm.model.Config.MaxPositionEmbeddings
		if ctx <= 0 {
			return fmt.Errorf("eval: %s: the model's max_position_embeddings is unknown; give --ctx", opts.Model)
		}
	}
	stride := opts.Stride
	if stride == 0 {
		stride = ctx
	}
	start := time.Now()
	res, err := lm.model.Perplexity(ids, ctx, stride, nil)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	secs := time.Since(start).Seconds()
	forwarded := 0
	ws, _ := exec.PerplexityWindows(len(ids), ctx, stride)
	for _, w := range ws {
		forwarded += w.End - w.Start
	}
	rep := EvalReport{Model: opts.Model, Source: source, PerplexityResult: res, Seconds: secs}
	if secs > 0 {
		rep.TokensPerS = float64(forwarded) / secs
	}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s (%s)\n", opts.Model, lm.desc)
	fmt.Fprintf(tw, "source\t%s\n", source)
	fmt.Fprintf(tw, "tokens\t%d\n", res.Tokens)
	fmt.Fprintf(tw, "context / stride\t%d / %d\n", res.Context, res.Stride)
	fmt.Fprintf(tw, "windows\t%d\n", res.Windows)
	fmt.Fprintf(tw, "scored tokens\t%d\n", res.Scored)
	fmt.Fprintf(tw, "mean NLL (nats)\t%.6f\n", res.MeanNLL)
	fmt.Fprintf(tw, "perplexity\t%.4f\n", res.PPL)
	fmt.Fprintf(tw, "time\t%.1f s (%.0f tokens/s)\n", secs, rep.TokensPerS)
	return tw.Flush()
}

// languageModel is a model loaded for the CPU executor, with its tokenizer.
type languageModel struct {
	model *exec.Model
	tok   *tokenizer.Tokenizer // nil when not needed
	desc  string               // "LlamaForCausalLM, HF folder", "bundle"
}

// loadLM loads path — a bundle (a folder holding manifest.json) or a
// Hugging Face model folder — for the CPU executor, and its tokenizer when
// needTok (tokFile, if set, overrides the model's tokenizer).
func loadLM(path, tokFile string, needTok bool) (*languageModel, error) {
	var g *ir.Graph
	lm := &languageModel{}
	tokDir, tokPath := "", ""
	if _, err := os.Stat(filepath.Join(path, manifest.ManifestFile)); err == nil {
		bg, m, err := bundle.Open(path, bundle.OpenOptions{Verify: true})
		if err != nil {
			return nil, err
		}
		g = bg
		lm.desc = bg.Config.Arch + ", bundle"
		if m.Tokenizer != "" {
			tokPath = filepath.Join(path, filepath.FromSlash(m.Tokenizer))
		}
	} else {
		cm, err := convert.Load(path)
		if err != nil {
			return nil, err
		}
		defer cm.Close()
		g = cm.Graph
		lm.desc = g.Config.Arch + ", Hugging Face folder"
		tokDir = cm.Dir
	}
	model, err := exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
	if err != nil {
		return nil, err
	}
	lm.model = model
	if !needTok {
		return lm, nil
	}
	switch {
	case tokFile != "":
		lm.tok, err = loadTokenizerFile(tokFile)
	case tokPath != "":
		lm.tok, err = loadTokenizerFile(tokPath)
	case tokDir != "":
		lm.tok, err = tokenizer.Load(tokDir)
	default:
		err = fmt.Errorf("%s: the bundle has no tokenizer; give --tokenizer", path)
	}
	if err != nil {
		return nil, err
	}
	return lm, nil
}

func loadTokenizerFile(p string) (*tokenizer.Tokenizer, error) {
	if strings.HasSuffix(p, ".model") {
		return tokenizer.LoadSentencePiece(p)
	}
	return tokenizer.LoadJSON(p)
}

// encodeDocument reads a data file (plain text, JSONL or pre-tokenized
// ids) and tokenizes it by internal/textdata's protocol: plain text gets
// one BOS in front (when the tokenizer has one) and is tokenized once.
func (lm *languageModel) encodeDocument(path string) ([]int, error) {
	d, err := textdata.Read(path, textdata.Options{})
	if err != nil {
		return nil, err
	}
	var tok textdata.Encoder
	if lm.tok != nil {
		tok = lm.tok
	}
	return textdata.Tokenize(d, tok)
}
