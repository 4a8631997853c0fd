package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/internal/compare"
	"github.com/smeltml/smelt/internal/progress"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/textdata"
)

func init() { register(NewCmdValidate) }

// ValidateOptions are the flags of `smelt validate`.
type ValidateOptions struct {
	Reference, Candidate string
	Text                 string
	Tokenizer            string
	Ctx, Stride          int
	MaxTokens            int
	Holdout              float64
	MaxPPLIncrease       string
	MaxKL                string
	MinTop1              string
	JSON                 bool
	NoProgress           bool
}

// NewCmdValidate compares a candidate model with a reference and gates on
// the difference.
func NewCmdValidate(env *Env) *cobra.Command {
	opts := &ValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate --reference A --candidate B --text FILE",
		Short: "Compare a candidate model (e.g. quantized) with a reference; exit 1 when a gate fails",
		Long: `validate runs a reference and a candidate model (Hugging Face folders or
bundles; quantized tensors are dequantized exactly as stored) with the CPU
reference executor over the same windows of a text, with smelt eval's
protocol: the whole file tokenized once with one BOS (by the reference's
tokenizer, or --tokenizer), windows of --ctx tokens (default: the reference's
max_position_embeddings) every --stride tokens (default --ctx), each token
scored once from the logits at the position before it.

For every scored position it compares the two models' predictions and
reports: both perplexities and the relative increase, the mean and 99th
percentile (nearest rank) of KL(reference || candidate) in nats, top-1
agreement (the two argmaxes equal) and the largest |logit difference|.

Gates (each can be turned off with "off"): --max-ppl-increase (a percentage
like 2% or a fraction like 0.02), --max-kl (on the mean KL), --min-top1.
Exit codes: 0 every gate passes, 1 a gate fails (the report is printed
either way), 2 bad input.

--holdout F scores only the last fraction F of the token stream: the tail
that smelt quantize --holdout F left out of calibration. --max-tokens keeps
only the first N ids (after --holdout), for quick runs.`,
		Example: `  smelt validate --reference ../shared/models/ref29m --candidate out/q4 --text calib.txt
  smelt validate --reference m --candidate q --text calib.txt --holdout 0.2 --max-ppl-increase 3% --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runValidate(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Reference, "reference", "", "reference model: Hugging Face folder or bundle (required)")
	f.StringVar(&opts.Candidate, "candidate", "", "candidate model: Hugging Face folder or bundle (required)")
	f.StringVar(&opts.Text, "text", "", "text file to score (required)")
	f.StringVar(&opts.Tokenizer, "tokenizer", "", "tokenizer file (tokenizer.json or tokenizer.model) instead of the reference's")
	f.IntVar(&opts.Ctx, "ctx", 0, "window length (default: the reference's max_position_embeddings)")
	f.IntVar(&opts.Stride, "stride", 0, "distance between window starts (default: --ctx)")
	f.IntVar(&opts.MaxTokens, "max-tokens", 0, "score only the first N ids (0: all)")
	f.Float64Var(&opts.Holdout, "holdout", 0, "score only this fraction of the token stream's tail (as quantize --holdout)")
	f.StringVar(&opts.MaxPPLIncrease, "max-ppl-increase", "2%", "gate: largest allowed perplexity increase (2% or 0.02; off)")
	f.StringVar(&opts.MaxKL, "max-kl", "0.05", "gate: largest allowed mean KL in nats (off)")
	f.StringVar(&opts.MinTop1, "min-top1", "0.9", "gate: smallest allowed top-1 agreement (off)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON object")
	f.BoolVar(&opts.NoProgress, "no-progress", false, "no progress output on stderr")
	return cmd
}

// ValidateReport is the --json output of smelt validate.
type ValidateReport struct {
	Reference string  `json:"reference"`
	Candidate string  `json:"candidate"`
	Text      string  `json:"text"`
	Holdout   float64 `json:"holdout"`
	Context   int     `json:"context"`
	Stride    int     `json:"stride"`
	Windows   int     `json:"windows"`
	compare.Report
	Gates    ValidateGates `json:"gates"`
	Failures []string      `json:"failures"`
	Pass     bool          `json:"pass"`
	Seconds  float64       `json:"seconds"`
}

// ValidateGates are the gates applied (null: off).
type ValidateGates struct {
	MaxPPLIncrease *float64 `json:"max_ppl_increase"` // fraction
	MaxKL          *float64 `json:"max_kl"`
	MinTop1        *float64 `json:"min_top1"`
}

// parseGate reads a gate value: "off", a number, or (percent) a number
// followed by %, which is divided by 100.
func parseGate(flag, s string, percent bool) (*float64, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "none" {
		return nil, nil
	}
	div := 1.0
	if percent && strings.HasSuffix(s, "%") {
		s, div = strings.TrimSpace(strings.TrimSuffix(s, "%")), 100
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v || v < 0 {
		want := "a non-negative number or off"
		if percent {
			want = "a percentage like 2%, a fraction like 0.02, or off"
		}
		return nil, fmt.Errorf("validate: --%s %q: want %s", flag, s, want)
	}
	v /= div
	return &v, nil
}

func runValidate(env *Env, opts *ValidateOptions) error {
	if opts.Reference == "" || opts.Candidate == "" || opts.Text == "" {
		return errors.New("validate: --reference, --candidate and --text are required")
	}
	if opts.Ctx < 0 || opts.Stride < 0 || opts.MaxTokens < 0 {
		return errors.New("validate: --ctx, --stride and --max-tokens must be >= 0")
	}
	var gates compare.Gates
	var err error
	if gates.MaxPPLIncrease, err = parseGate("max-ppl-increase", opts.MaxPPLIncrease, true); err != nil {
		return err
	}
	if gates.MaxKL, err = parseGate("max-kl", opts.MaxKL, false); err != nil {
		return err
	}
	if gates.MinTop1, err = parseGate("min-top1", opts.MinTop1, false); err != nil {
		return err
	}
	ref, err := loadLM(opts.Reference, opts.Tokenizer, true)
	if err != nil {
		return err
	}
	cand, err := loadLM(opts.Candidate, "", false)
	if err != nil {
		return err
	}
	ids, err := ref.encodeDocument(opts.Text)
	if err != nil {
		return err
	}
	if opts.Holdout != 0 {
		if _, ids, err = textdata.Split(ids, opts.Holdout); err != nil {
			return fmt.Errorf("validate: %w", err)
		}
	}
	if opts.MaxTokens > 0 && len(ids) > opts.MaxTokens {
		ids = ids[:opts.MaxTokens]
	}
	ctx := opts.Ctx
	if ctx == 0 {
		if ctx = ref.model.Config.MaxPositionEmbeddings; ctx <= 0 {
			return fmt.Errorf("validate: %s: the model's max_position_embeddings is unknown; give --ctx", opts.Reference)
		}
	}
	stride := opts.Stride
	if stride == 0 {
		stride = ctx
	}
	ws, err := textdata.Windows(ids, ctx, stride)
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	bar := progress.New(env.Stderr, opts.NoProgress).Start("validate", int64(len(ws)))
	start := time.Now()
	r, err := quantrun.Compare(ref.model, cand.model, ids, ctx, stride, func(done, total int) { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return err
	}
	fails := gates.Check(r)
	rep := ValidateReport{Reference: opts.Reference, Candidate: opts.Candidate, Text: opts.Text, Holdout: opts.Holdout,
		Context: ctx, Stride: stride, Windows: len(ws), Report: r,
		Gates:    ValidateGates{MaxPPLIncrease: gates.MaxPPLIncrease, MaxKL: gates.MaxKL, MinTop1: gates.MinTop1},
		Failures: append([]string{}, fails...), Pass: len(fails) == 0, Seconds: time.Since(start).Seconds()}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printValidate(env.Stdout, &rep, ref.desc, cand.desc); err != nil {
		return err
	}
	if len(fails) > 0 {
		return checkFailed(fmt.Errorf("validate: %s", strings.Join(fails, "; ")))
	}
	return nil
}

func printValidate(w io.Writer, r *ValidateReport, refDesc, candDesc string) error {
	gate := func(g *float64, op string, pct bool, pass bool) string {
		if g == nil {
			return "-"
		}
		v := fmt.Sprintf("%.4g", *g)
		if pct {
			v = fmt.Sprintf("%.3g%%", 100**g)
		}
		res := "pass"
		if !pass {
			res = "FAIL"
		}
		return op + " " + v + "  " + res
	}
	g := r.Gates
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "reference\t%s (%s)\n", r.Reference, refDesc)
	fmt.Fprintf(tw, "candidate\t%s (%s)\n", r.Candidate, candDesc)
	text := r.Text
	if r.Holdout != 0 {
		text += fmt.Sprintf(" (held-out tail %.3g)", r.Holdout)
	}
	fmt.Fprintf(tw, "text\t%s\n", text)
	fmt.Fprintf(tw, "windows\t%d of %d tokens, stride %d; %d tokens scored in %.1f s\n", r.Windows, r.Context, r.Stride, r.Tokens, r.Seconds)
	fmt.Fprintln(tw, "metric\tvalue\tgate")
	fmt.Fprintf(tw, "perplexity, reference\t%.4f\t\n", r.PPLReference)
	fmt.Fprintf(tw, "perplexity, candidate\t%.4f\t\n", r.PPLCandidate)
	fmt.Fprintf(tw, "perplexity increase\t%+.3f%%\t%s\n", 100*r.PPLIncrease, gate(g.MaxPPLIncrease, "<=", true, g.MaxPPLIncrease == nil || r.PPLIncrease <= *g.MaxPPLIncrease))
	fmt.Fprintf(tw, "mean KL (nats)\t%.5f\t%s\n", r.MeanKL, gate(g.MaxKL, "<=", false, g.MaxKL == nil || r.MeanKL <= *g.MaxKL))
	fmt.Fprintf(tw, "p99 KL (nats)\t%.5f\t-\n", r.P99KL)
	fmt.Fprintf(tw, "top-1 agreement\t%.4f\t%s\n", r.Top1Agreement, gate(g.MinTop1, ">=", false, g.MinTop1 == nil || r.Top1Agreement >= *g.MinTop1))
	fmt.Fprintf(tw, "max |delta logit|\t%.4f\t-\n", r.MaxAbsDeltaLogit)
	if r.Pass {
		fmt.Fprintln(tw, "result\tpass\t")
	} else {
		fmt.Fprintf(tw, "result\tFAIL (%d of the gates)\t\n", len(r.Failures))
	}
	return tw.Flush()
}
