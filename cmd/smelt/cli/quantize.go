package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/progress"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/quantize"
	"github.com/smeltml/smelt/tokenizer"
)

func init() { register(NewCmdQuantize) }

// QuantizeOptions are the flags of `smelt quantize`.
type QuantizeOptions struct {
	In, Out     string
	Scheme      string
	Algo        string
	AWQThenGPTQ bool
	CalibrationFlags
	RulesFile    string
	Rules        []string
	ActOrder     bool
	StaticGroups bool
	MSE          bool
	Damp         float64
	BlockSize    int
	Explain      bool
	ShardSize    int64
	NoProgress   bool
}

// NewCmdQuantize quantizes a model's weights into a bundle.
func NewCmdQuantize(env *Env) *cobra.Command {
	opts := &QuantizeOptions{}
	cmd := &cobra.Command{
		Use:   "quantize IN OUT --scheme SCHEME --algo rtn|gptq|awq [--calib FILE]",
		Short: "Quantize a model's weights (RTN, GPTQ, AWQ; INT4/INT8) into a bundle",
		Long: `quantize packs the weights of IN (a Hugging Face model folder or a bundle)
into INT4/INT8 and writes the bundle directory OUT (weights, tokenizer.json,
provenance; run smelt codegen on it for kernels). smelt eval, validate and
generate run OUT by dequantizing exactly the stored bytes.

Which tensors are quantized, and how, is a plan: rules (--rule 'regex=target',
then --rules FILE, first match wins; the regex is matched against the whole
canonical name such as blk.3.ffn_down.weight; the target is keep, a scheme, or
a scheme with an algorithm suffix such as int8-channel-sym-rtn), then the
defaults (token_embd.weight and output.weight kept in f16), then --scheme with
--algo. --explain prints the plan with sizes and does no work.

Schemes spell every parameter: int{4,8}-{g16..g256,channel}-{sym,asym}[-f32],
e.g. int4-g128-asym, int4-g32-sym, int8-channel-sym (scales f16 unless -f32).

Algorithms: rtn (round to nearest, no data), gptq (Hessian from calibration
inputs, --damp, --block-size, --act-order stored without g_idx), awq
(activation-aware scales folded into the norms, clip search, then RTN; with
--awq-gptq then GPTQ). gptq and awq need --calib: a text file (tokenized
whole, one BOS), JSONL (--calib-field, default text) or token ids (.npy,
.json); --nsamples windows of --seqlen tokens are drawn with --seed from the
stream, after leaving out its last --holdout fraction (to measure on unseen
text with smelt validate --holdout). The same inputs and flags give
byte-identical bundles.`,
		Example: `  smelt quantize ../shared/models/ref29m out/q4 --scheme int4-g128-asym --algo rtn
  smelt quantize ../shared/models/ref29m out/q4g --algo gptq --calib calib.txt --holdout 0.2
  smelt quantize ../shared/models/ref29m out/q8 --scheme int8-channel-sym --rule 'blk\.7\..*=keep'
  smelt quantize ../shared/models/ref29m --explain --rules rules.txt`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.In = args[0]
			if len(args) > 1 {
				opts.Out = args[1]
			} else if !opts.Explain {
				return errors.New("quantize: missing OUT (only --explain runs without it)")
			}
			return runQuantize(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Scheme, "scheme", "int4-g128-asym", "default scheme for matrices no rule decides")
	f.StringVar(&opts.Algo, "algo", "rtn", "default algorithm: rtn, gptq or awq")
	f.BoolVar(&opts.AWQThenGPTQ, "awq-gptq", false, "with awq: quantize the scaled, clipped weights with GPTQ instead of RTN")
	opts.CalibrationFlags.addFlags(f, "fraction of the calibration token stream's tail never used for calibration")
	f.StringVar(&opts.RulesFile, "rules", "", "rules file: lines '<regex> = <keep|scheme[-algo]>'")
	f.StringArrayVar(&opts.Rules, "rule", nil, "rule 'regex=target' (repeatable; before --rules)")
	f.BoolVar(&opts.ActOrder, "act-order", false, "GPTQ: visit columns by decreasing Hessian diagonal (static groups, no g_idx)")
	f.BoolVar(&opts.StaticGroups, "static-groups", false, "GPTQ: group parameters from the unmodified weights")
	f.BoolVar(&opts.MSE, "mse", false, "GPTQ (and --awq-gptq): choose each group's range by GPTQ's MSE grid instead of min/max")
	f.Float64Var(&opts.Damp, "damp", 0.01, "GPTQ dampening, fraction of the mean Hessian diagonal")
	f.IntVar(&opts.BlockSize, "block-size", 128, "GPTQ lazy-update block in columns")
	f.BoolVar(&opts.Explain, "explain", false, "print the per-tensor plan and do no work")
	f.Int64Var(&opts.ShardSize, "shard-size", 0, "shard size cap in bytes (default 32 MiB)")
	f.BoolVar(&opts.NoProgress, "no-progress", false, "no progress output on stderr")
	return cmd
}

// QuantizeRecipe is what `smelt quantize` records in the bundle's
// provenance.recipe: every option that decided the bytes.
type QuantizeRecipe struct {
	Command     string              `json:"command"` // "quantize"
	Input       string              `json:"input"`
	Scheme      string              `json:"scheme"`
	Algorithm   string              `json:"algorithm"`
	AWQThenGPTQ bool                `json:"awq_then_gptq,omitempty"`
	Rules       []string            `json:"rules,omitempty"` // "regex = target (source)", in order, defaults included
	GPTQ        *QuantizeRecipeGPTQ `json:"gptq,omitempty"`
	Calibration *QuantizeRecipeCal  `json:"calibration,omitempty"`
	Quantized   int                 `json:"quantized_tensors"`
}

// QuantizeRecipeGPTQ records GPTQ's options.
type QuantizeRecipeGPTQ struct {
	Damp         float64 `json:"damp"`
	BlockSize    int     `json:"block_size"`
	ActOrder     bool    `json:"act_order"`
	StaticGroups bool    `json:"static_groups"`
	MSE          bool    `json:"mse,omitempty"`
}

// QuantizeRecipeCal records how calibration windows were drawn (the file's
// digest is provenance.calibration).
type QuantizeRecipeCal struct {
	Format        string  `json:"format"`
	Field         string  `json:"field,omitempty"`
	Tokenizer     string  `json:"tokenizer"`
	NSamples      int     `json:"nsamples"`
	SeqLen        int     `json:"seqlen"`
	Seed          int64   `json:"seed"`
	Holdout       float64 `json:"holdout"`
	Tokens        int     `json:"tokens"`
	CalibTokens   int     `json:"calib_tokens"`
	HeldOutTokens int     `json:"held_out_tokens"`
}

func quantizeRules(opts *QuantizeOptions) ([]quantize.Rule, error) {
	var rules []quantize.Rule
	for i, s := range opts.Rules {
		eq := strings.LastIndex(s, "=")
		if eq < 0 {
			return nil, fmt.Errorf("quantize: --rule %q: want 'regex=target'", s)
		}
		r, err := quantize.NewRule(strings.TrimSpace(s[:eq]), strings.TrimSpace(s[eq+1:]), fmt.Sprintf("--rule[%d]", i+1))
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	if opts.RulesFile != "" {
		b, err := os.ReadFile(opts.RulesFile)
		if err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
		fr, err := quantize.ParseRules(opts.RulesFile, b)
		if err != nil {
			return nil, err
		}
		rules = append(rules, fr...)
	}
	return rules, nil
}

func runQuantize(env *Env, opts *QuantizeOptions) error {
	start := time.Now()
	scheme, err := quantize.ParseScheme(opts.Scheme)
	if err != nil {
		return err
	}
	algo, err := quantize.ParseAlgorithm(opts.Algo)
	if err != nil {
		return err
	}
	if opts.AWQThenGPTQ && algo != quantize.AlgoAWQ {
		return errors.New("quantize: --awq-gptq needs --algo awq")
	}
	if opts.Damp <= 0 || opts.Damp >= 1 || opts.BlockSize <= 0 {
		return fmt.Errorf("quantize: --damp must be in (0, 1) and --block-size > 0, got %v and %d", opts.Damp, opts.BlockSize)
	}
	rules, err := quantizeRules(opts)
	if err != nil {
		return err
	}
	g, tokJSON, closeIn, err := loadModelOrBundle(opts.In)
	if err != nil {
		return err
	}
	defer closeIn()
	plan, err := quantrun.NewPlan(g, rules, scheme, algo)
	if err != nil {
		return err
	}
	if opts.Explain {
		return plan.Explain(env.Stdout)
	}
	if st, err := os.Stat(opts.Out); err == nil && st.IsDir() {
		if abs1, _ := filepath.Abs(opts.Out); abs1 != "" {
			if abs2, _ := filepath.Abs(opts.In); abs1 == abs2 {
				return fmt.Errorf("quantize: OUT %s is IN", opts.Out)
			}
		}
	}
	for _, e := range plan.Entries {
		if e.Diag != "" {
			fmt.Fprintf(env.Stderr, "warning %s: %s: %s\n", e.Diag, e.Name, e.Reason)
		}
	}

	recipe := QuantizeRecipe{Command: "quantize", Input: opts.In, Scheme: scheme.Name(), Algorithm: string(algo), AWQThenGPTQ: opts.AWQThenGPTQ}
	for _, r := range append(append([]quantize.Rule(nil), rules...), quantize.DefaultRules()...) {
		recipe.Rules = append(recipe.Rules, fmt.Sprintf("%s = %s (%s)", r.Pattern, r.Target(), r.Source))
	}
	gopts := quantize.GPTQOptions{Damp: opts.Damp, BlockSize: opts.BlockSize, ActOrder: opts.ActOrder, StaticGroups: opts.StaticGroups, MSE: opts.MSE}
	usesGPTQ := false
	for _, e := range plan.Entries {
		if e.Quantize && (e.Algorithm == quantize.AlgoGPTQ || (e.Algorithm == quantize.AlgoAWQ && opts.AWQThenGPTQ)) {
			usesGPTQ = true
		}
	}
	if usesGPTQ {
		recipe.GPTQ = &QuantizeRecipeGPTQ{Damp: opts.Damp, BlockSize: opts.BlockSize, ActOrder: opts.ActOrder, StaticGroups: opts.StaticGroups, MSE: opts.MSE}
	}

	rep := progress.New(env.Stderr, opts.NoProgress)
	var cal *quantrun.Calibration
	prov := manifest.Provenance{Smelt: Version}
	if quantrun.NeedsCalibration(plan) {
		if opts.Calib == "" {
			return fmt.Errorf("quantize: the plan uses gptq or awq, which need --calib FILE")
		}
		tok, tokName, err := quantizeTokenizer(opts, tokJSON)
		if err != nil {
			return err
		}
		if cal, err = opts.CalibrationFlags.load("quantize", tok, g.Config.VocabSize); err != nil {
			return err
		}
		field := ""
		if cal.Format == textdata.FormatJSONL {
			field = opts.CalibField
		}
		recipe.Calibration = &QuantizeRecipeCal{Format: cal.Format.String(), Field: field, Tokenizer: tokName,
			NSamples: opts.NSamples, SeqLen: opts.SeqLen, Seed: opts.Seed, Holdout: opts.Holdout,
			Tokens: cal.Tokens, CalibTokens: cal.CalibTokens, HeldOutTokens: cal.HeldOutTokens}
		prov.Calibration = &manifest.SourceFile{Path: opts.Calib, NBytes: cal.NBytes, SHA256: cal.SHA256}
		fmt.Fprintf(env.Stderr, "calibration: %d windows of %d tokens (seed %d) from %d of %d tokens of %s (%d held out)\n",
			opts.NSamples, opts.SeqLen, opts.Seed, cal.CalibTokens, cal.Tokens, opts.Calib, cal.HeldOutTokens)
	} else if opts.Calib != "" {
		fmt.Fprintf(env.Stderr, "quantize: note: --calib is not used by a plan without gptq or awq\n")
	}

	var calBar, rtnBar *progress.Bar
	// Tensors RTN quantizes after calibration: those outside the blocks'
	// linears, or every quantized tensor when nothing is calibrated.
	inBlocks := map[string]bool{}
	if quantrun.NeedsCalibration(plan) {
		for b := 0; b < g.Config.NumLayers; b++ {
			for _, group := range quantize.SequentialGroups(b) {
				for _, n := range group {
					inBlocks[n] = true
				}
			}
		}
	}
	nRTN := 0
	for _, e := range plan.Entries {
		if e.Quantize && !inBlocks[e.Name] {
			nRTN++
		}
	}
	qopts := quantrun.Options{GPTQ: gopts, AWQThenGPTQ: opts.AWQThenGPTQ, Progress: func(block, blocks int, stage string) {
		if block >= 0 {
			if calBar == nil {
				calBar = rep.Start("calibrate "+string(algo), int64(blocks))
			}
			if stage == "done" {
				calBar.Add(1)
			}
			return
		}
		if rtnBar == nil {
			if calBar != nil {
				calBar.Finish()
				calBar = nil
			}
			rtnBar = rep.Start("rtn", int64(nRTN))
		}
		rtnBar.Add(1)
	}}
	var seqs [][]int
	if cal != nil {
		seqs = cal.Seqs
	}
	res, err := quantrun.Run(g, plan, seqs, qopts)
	if calBar != nil {
		calBar.Finish()
	}
	if rtnBar != nil {
		rtnBar.Finish()
	}
	if err != nil {
		return err
	}
	recipe.Quantized = len(res.Quantized)
	rb, err := json.Marshal(recipe)
	if err != nil {
		return &InternalError{Err: err}
	}
	prov.Recipe = rb
	wo := bundle.WriteOptions{ShardSize: opts.ShardSize, Provenance: prov}
	if tokJSON != nil {
		wo.ExtraFiles = []bundle.File{{Path: "tokenizer.json", Data: tokJSON}}
		wo.Tokenizer = "tokenizer.json"
	}
	tw := time.Now()
	if err := bundle.Write(opts.Out, res.Graph, wo); err != nil {
		return err
	}
	writeTime := time.Since(tw)
	printQuantizeSummary(env.Stdout, opts, plan, res, cal, writeTime, time.Since(start))
	return nil
}

// quantizeTokenizer returns the tokenizer for the calibration text: --tokenizer,
// else IN's tokenizer.json (folder or bundle), else the folder's
// tokenizer.model. Pre-tokenized data needs none when IN has none.
func quantizeTokenizer(opts *QuantizeOptions, tokJSON []byte) (textdata.Encoder, string, error) {
	switch {
	case opts.Tokenizer != "":
		var t *tokenizer.Tokenizer
		var err error
		if strings.HasSuffix(opts.Tokenizer, ".model") {
			t, err = tokenizer.LoadSentencePiece(opts.Tokenizer)
		} else {
			t, err = tokenizer.LoadJSON(opts.Tokenizer)
		}
		if err != nil {
			return nil, "", err
		}
		return t, filepath.Base(opts.Tokenizer), nil
	case !isBundleDir(opts.In):
		dir := opts.In
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			dir = filepath.Dir(dir)
		}
		_, e1 := os.Stat(filepath.Join(dir, "tokenizer.json"))
		_, e2 := os.Stat(filepath.Join(dir, "tokenizer.model"))
		if e1 != nil && e2 != nil {
			return nil, "", nil // pre-tokenized data needs none; text data fails in textdata.Tokenize
		}
		t, err := tokenizer.Load(dir)
		if err != nil {
			return nil, "", err
		}
		return t, filepath.Base(t.Source()), nil
	case tokJSON != nil:
		t, err := tokenizer.NewFromJSON(tokJSON)
		if err != nil {
			return nil, "", err
		}
		return t, "tokenizer.json", nil
	}
	return nil, "", nil
}

func isBundleDir(p string) bool {
	_, err := os.Stat(filepath.Join(p, manifest.ManifestFile))
	return err == nil
}

func printQuantizeSummary(w io.Writer, opts *QuantizeOptions, plan *quantize.Plan, res *quantrun.Result, cal *quantrun.Calibration, write, total time.Duration) {
	ratio := 0.0
	if plan.BytesAfter > 0 {
		ratio = float64(plan.BytesBefore) / float64(plan.BytesAfter)
	}
	fmt.Fprintf(w, "wrote %s: %d tensors quantized (%s, %s", opts.Out, len(res.Quantized), plan.Scheme.Name(), plan.Algorithm)
	if opts.AWQThenGPTQ {
		fmt.Fprint(w, "+gptq")
	}
	fmt.Fprintf(w, "), %.2f MiB -> %.2f MiB (%.2fx)\n", float64(plan.BytesBefore)/(1<<20), float64(plan.BytesAfter)/(1<<20), ratio)
	if cal != nil {
		fmt.Fprintf(w, "calibration: %s sha256 %s, %d x %d tokens, seed %d, %d of %d tokens held out\n",
			cal.Path, cal.SHA256, len(cal.Seqs), opts.SeqLen, opts.Seed, cal.HeldOutTokens, cal.Tokens)
	}
	t := res.Timings
	fmt.Fprintf(w, "time: %.1fs total; prepare %.1fs, calibration forward %.1fs, input statistics %.1fs, solves %.1fs, rtn %.1fs, pack %.1fs, write %.1fs\n",
		total.Seconds(), t.Prepare.Seconds(), t.Forward.Seconds(), t.Stats.Seconds(), t.Solve.Seconds(), t.RTN.Seconds(), t.Pack.Seconds(), write.Seconds())
}
