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
	"github.com/smeltml/smelt/internal/compare"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/progress"
	"github.com/smeltml/smelt/internal/prunerun"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/prune"
	"github.com/smeltml/smelt/tokenizer"
)

func init() { register(NewCmdPrune) }

// PruneOptions are the flags of `smelt prune`.
type PruneOptions struct {
	In, Out    string
	Method     string
	Sparsity   float64
	N, M       int
	Scope      string
	Importance string
	Align      int
	CalibrationFlags
	Explain        bool
	Validate       string
	ValidateTokens int
	Ctx            int
	JSON           bool
	ShardSize      int64
	NoProgress     bool
}

// NewCmdPrune prunes a model into a bundle.
func NewCmdPrune(env *Env) *cobra.Command {
	opts := &PruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune IN OUT --method METHOD [--sparsity F] [--calib FILE]",
		Short: "Prune a model (magnitude, Wanda, N:M, MLP channels, attention heads, layers) into a bundle",
		Long: `prune removes weights from the linear layers of IN (a Hugging Face model
folder or a bundle with float weights) and writes the bundle directory OUT
(weights, tokenizer.json, provenance), which smelt quantize, codegen, eval,
validate and generate take as input: prune, then quantize.

Methods (--sparsity F is the fraction removed, in (0, 1)):
  magnitude         zero the smallest |W| of each output row (--scope row),
                    tensor (tensor) or of all block linears (global)
  wanda             zero the lowest |W|·‖X_k‖ of each output row (needs --calib)
  nm                keep --n of every --m consecutive input weights (2:4, 4:8),
                    by |W|, or by |W|·‖X_k‖ with calibration
  structured-mlp    remove MLP channels (gate/up rows and down columns); the
                    kept width is rounded down to a multiple of --align
  structured-heads  remove whole GQA groups (a kv head with its query heads)
  layers            remove whole blocks
Only the structured methods and layers make the bundle smaller: browsers have
no sparse kernels, so masks (magnitude, wanda, nm) keep the bytes and help
accuracy after quantization or compression.

--importance ranks channels, heads and blocks by weight magnitude or by
calibration activations (the default when --calib is given): ‖X_j‖·‖down[:,j]‖
for MLP channels, Σ ‖X_c‖·‖o[:,c]‖ for a head group's output columns, and the
block influence 1 − cos(h_in, h_out) for layers. Calibration: --nsamples
windows of --seqlen tokens drawn with --seed from the file's token stream
(text tokenized whole with one BOS, JSONL, or ids), after leaving out its
last --holdout fraction; statistics are gathered with the CPU reference
executor, block by block.

--explain prints the plan (every changed tensor's shape, sparsity and bytes;
the model's bytes before and after) from the config and shapes alone and
writes nothing. The report states the same for the run; with --validate
TEXT it adds the perplexity before and after on TEXT by smelt validate's
protocol (the last --holdout fraction of its tokens when --holdout is set,
the first --validate-tokens of those when set), with KL and top-1
agreement. --json prints one JSON object.`,
		Example: `  smelt prune ../shared/models/ref29m out/mlp25 --method structured-mlp --sparsity 0.25
  smelt prune ../shared/models/ref29m out/wanda50 --method wanda --sparsity 0.5 --calib calib.txt --holdout 0.2 --validate calib.txt
  smelt prune ../shared/models/ref29m out/nm --method nm --n 2 --m 4
  smelt prune ../shared/models/ref29m --method layers --sparsity 0.25 --explain`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.In = args[0]
			if len(args) > 1 {
				opts.Out = args[1]
			} else if !opts.Explain {
				return errors.New("prune: missing OUT (only --explain runs without it)")
			}
			return runPrune(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Method, "method", "", "pruning method: "+strings.Join(prune.Methods, ", ")+" (required)")
	f.Float64Var(&opts.Sparsity, "sparsity", 0, "fraction removed, in (0, 1) (all methods but nm)")
	f.IntVar(&opts.N, "n", 2, "nm: weights kept in each group")
	f.IntVar(&opts.M, "m", 4, "nm: group size along the input dimension")
	f.StringVar(&opts.Scope, "scope", "row", "magnitude: comparison group: row, tensor or global")
	f.StringVar(&opts.Importance, "importance", "", "nm and structured methods: magnitude or activations (default: activations with --calib)")
	f.IntVar(&opts.Align, "align", prune.DefaultAlign, "structured-mlp: kept width is a multiple of this")
	opts.CalibrationFlags.addFlags(f, "fraction of the token stream's tail left out of calibration and scored by --validate")
	f.BoolVar(&opts.Explain, "explain", false, "print the plan and write nothing")
	f.StringVar(&opts.Validate, "validate", "", "text file: report perplexity before and after pruning")
	f.IntVar(&opts.ValidateTokens, "validate-tokens", 0, "score only the first N ids of --validate (0: all)")
	f.IntVar(&opts.Ctx, "ctx", 0, "--validate window length (default: the model's max_position_embeddings)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON object")
	f.Int64Var(&opts.ShardSize, "shard-size", 0, "shard size cap in bytes (default 32 MiB)")
	f.BoolVar(&opts.NoProgress, "no-progress", false, "no progress output on stderr")
	return cmd
}

// PruneRecipe is what `smelt prune` records in the bundle's
// provenance.recipe: every option that decided the bytes.
type PruneRecipe struct {
	Command     string            `json:"command"` // "prune"
	Input       string            `json:"input"`
	Method      string            `json:"method"`
	Sparsity    float64           `json:"sparsity,omitempty"`
	N           int               `json:"n,omitempty"`
	M           int               `json:"m,omitempty"`
	Scope       string            `json:"scope,omitempty"`
	Importance  string            `json:"importance"`
	Align       int               `json:"align,omitempty"`
	Calibration *PruneRecipeCalib `json:"calibration,omitempty"`
}

// PruneRecipeCalib records how calibration windows were drawn.
type PruneRecipeCalib struct {
	Format        string  `json:"format"`
	Field         string  `json:"field,omitempty"`
	NSamples      int     `json:"nsamples"`
	SeqLen        int     `json:"seqlen"`
	Seed          int64   `json:"seed"`
	Holdout       float64 `json:"holdout"`
	Tokens        int     `json:"tokens"`
	CalibTokens   int     `json:"calib_tokens"`
	HeldOutTokens int     `json:"held_out_tokens"`
}

// PruneValidation is the --validate part of the report.
type PruneValidation struct {
	Text    string  `json:"text"`
	Holdout float64 `json:"holdout"`
	Context int     `json:"context"`
	Windows int     `json:"windows"`
	compare.Report
	Seconds float64 `json:"seconds"`
}

// PruneReport is the --json output of smelt prune.
type PruneReport struct {
	Input      string           `json:"input"`
	Output     string           `json:"output,omitempty"` // empty with --explain
	Recipe     PruneRecipe      `json:"recipe"`
	Report     *prune.Report    `json:"report"`
	Validation *PruneValidation `json:"validation,omitempty"`
	// Seconds: calibration (loading the executor and gathering
	// statistics), the pruning pass, writing the bundle, and validation.
	CalibrateSeconds float64 `json:"calibrate_seconds"`
	PruneSeconds     float64 `json:"prune_seconds"`
	WriteSeconds     float64 `json:"write_seconds"`
	TotalSeconds     float64 `json:"total_seconds"`
}

func (o *PruneOptions) pruneOptions() (prune.Options, error) {
	scope, err := prune.ParseScope(o.Scope)
	if err != nil {
		return prune.Options{}, err
	}
	po := prune.Options{Method: o.Method, Sparsity: o.Sparsity, Scope: scope, Importance: o.Importance, Align: o.Align}
	if o.Method == "nm" {
		po.N, po.M = o.N, o.M
		if o.Sparsity != 0 {
			return po, errors.New("prune: --sparsity has no use with --method nm (it is 1 - n/m)")
		}
	}
	switch {
	case o.Method == "":
		return po, fmt.Errorf("prune: --method is required (%s)", strings.Join(prune.Methods, ", "))
	case o.Method == "wanda" && o.Calib == "" && !o.Explain:
		return po, errors.New("prune: --method wanda needs --calib FILE (activation norms)")
	case o.Importance == "activations" && o.Calib == "" && !o.Explain:
		return po, errors.New("prune: --importance activations needs --calib FILE")
	case o.Importance == "" && o.Calib != "" && o.Method != "magnitude":
		po.Importance = "activations"
	}
	if o.Method == "magnitude" || o.Method == "wanda" {
		po.Importance = ""
	}
	return po, nil
}

func runPrune(env *Env, opts *PruneOptions) error {
	start := time.Now()
	po, err := opts.pruneOptions()
	if err != nil {
		return err
	}
	if opts.Align <= 0 {
		return fmt.Errorf("prune: --align %d: want > 0", opts.Align)
	}
	if opts.ValidateTokens < 0 || opts.Ctx < 0 || opts.NSamples <= 0 || opts.SeqLen <= 0 {
		return errors.New("prune: --validate-tokens and --ctx must be >= 0, --nsamples and --seqlen > 0")
	}
	g, tokJSON, closeIn, err := loadModelOrBundle(opts.In)
	if err != nil {
		return err
	}
	defer closeIn()
	recipe := PruneRecipe{Command: "prune", Input: opts.In, Method: po.Method, Sparsity: po.Sparsity, N: po.N, M: po.M, Importance: po.Importance}
	if recipe.Importance == "" {
		recipe.Importance = "magnitude"
		if po.Method == "wanda" {
			recipe.Importance = "activations"
		}
	}
	if po.Method == "magnitude" {
		recipe.Scope = opts.Scope
	}
	if po.Method == "structured-mlp" {
		recipe.Align = po.Align
	}
	out := &PruneReport{Input: opts.In, Recipe: recipe}

	if opts.Explain {
		rep, err := prune.Plan(g, po)
		if err != nil {
			return err
		}
		out.Report = rep
		return printPrune(env.Stdout, opts, out)
	}
	if abs1, _ := filepath.Abs(opts.Out); abs1 != "" {
		if abs2, _ := filepath.Abs(opts.In); abs1 == abs2 {
			return fmt.Errorf("prune: OUT %s is IN", opts.Out)
		}
	}
	// Fail on bad options before any expensive work.
	if _, err := prune.Plan(g, po); err != nil {
		return err
	}

	act, err := prune.UsesActivations(po)
	if err != nil {
		return err
	}
	var tok textdata.Encoder
	if act || opts.Validate != "" {
		if tok, err = pruneTokenizer(opts, tokJSON); err != nil {
			return err
		}
	}
	prov := manifest.Provenance{Smelt: Version}
	var seqs [][]int
	if act {
		cal, err := opts.CalibrationFlags.load("prune", tok, g.Config.VocabSize)
		if err != nil {
			return err
		}
		seqs = cal.Seqs
		field := ""
		if cal.Format == textdata.FormatJSONL {
			field = opts.CalibField
		}
		out.Recipe.Calibration = &PruneRecipeCalib{Format: cal.Format.String(), Field: field, NSamples: opts.NSamples, SeqLen: opts.SeqLen,
			Seed: opts.Seed, Holdout: opts.Holdout, Tokens: cal.Tokens, CalibTokens: cal.CalibTokens, HeldOutTokens: cal.HeldOutTokens}
		prov.Calibration = &manifest.SourceFile{Path: opts.Calib, NBytes: cal.NBytes, SHA256: cal.SHA256}
		if !opts.NoProgress {
			fmt.Fprintf(env.Stderr, "calibration: %d windows of %d tokens (seed %d) from %d of %d tokens of %s (%d held out)\n",
				opts.NSamples, opts.SeqLen, opts.Seed, cal.CalibTokens, cal.Tokens, opts.Calib, cal.HeldOutTokens)
		}
	} else if opts.Calib != "" {
		fmt.Fprintf(env.Stderr, "prune: note: --calib is not used by --method %s with magnitude importance\n", po.Method)
	}

	res, err := prunerun.Prune(g, po, seqs)
	if err != nil {
		return err
	}
	out.Report = res.Report
	out.CalibrateSeconds, out.PruneSeconds = res.Calibrate.Seconds(), res.Prune.Seconds()
	rb, err := json.Marshal(out.Recipe)
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
	out.WriteSeconds = time.Since(tw).Seconds()
	out.Output = opts.Out

	if opts.Validate != "" {
		if out.Validation, err = pruneValidate(env, opts, g, tok); err != nil {
			return err
		}
	}
	out.TotalSeconds = time.Since(start).Seconds()
	return printPrune(env.Stdout, opts, out)
}

// pruneTokenizer returns the tokenizer for calibration and validation
// text: --tokenizer, else IN's tokenizer.json (folder or bundle), else the
// folder's tokenizer.model. Pre-tokenized calibration data needs none.
func pruneTokenizer(opts *PruneOptions, tokJSON []byte) (textdata.Encoder, error) {
	switch {
	case opts.Tokenizer != "":
		return loadTokenizerFile(opts.Tokenizer)
	case tokJSON != nil:
		return tokenizer.NewFromJSON(tokJSON)
	}
	if _, err := os.Stat(filepath.Join(opts.In, manifest.ManifestFile)); err == nil {
		return nil, nil // a bundle without a tokenizer: ids only
	}
	t, err := tokenizer.Load(opts.In)
	if err != nil {
		return nil, nil // pre-tokenized data still works; text fails in textdata.Tokenize
	}
	return t, nil
}

// pruneValidate scores the --validate text with the dense input and the
// written bundle (read back from disk, so what ships is what is measured),
// with smelt validate's protocol and code (quantrun.Compare).
func pruneValidate(env *Env, opts *PruneOptions, before *ir.Graph, tok textdata.Encoder) (*PruneValidation, error) {
	d, err := textdata.Read(opts.Validate, textdata.Options{})
	if err != nil {
		return nil, fmt.Errorf("prune: --validate: %w", err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		return nil, fmt.Errorf("prune: --validate: %w", err)
	}
	if _, ids, err = textdata.Split(ids, opts.Holdout); err != nil {
		return nil, fmt.Errorf("prune: --validate: %w", err)
	}
	if opts.ValidateTokens > 0 && len(ids) > opts.ValidateTokens {
		ids = ids[:opts.ValidateTokens]
	}
	ctx := opts.Ctx
	if ctx == 0 {
		if ctx = before.Config.MaxPositionEmbeddings; ctx <= 0 {
			return nil, fmt.Errorf("prune: %s: the model's max_position_embeddings is unknown; give --ctx", opts.In)
		}
	}
	ws, err := textdata.Windows(ids, ctx, ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: --validate: %w", err)
	}
	ref, err := exec.Load(before, exec.Options{})
	if err != nil {
		return nil, err
	}
	after, _, err := bundle.Open(opts.Out, bundle.OpenOptions{Verify: true})
	if err != nil {
		return nil, err
	}
	cand, err := quantrun.LoadModel(after)
	if err != nil {
		return nil, err
	}
	bar := progress.New(env.Stderr, opts.NoProgress).Start("validate", int64(len(ws)))
	t0 := time.Now()
	r, err := quantrun.Compare(ref, cand, ids, ctx, ctx, func(done, total int) { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return nil, err
	}
	return &PruneValidation{Text: opts.Validate, Holdout: opts.Holdout, Context: ctx, Windows: len(ws), Report: r, Seconds: time.Since(t0).Seconds()}, nil
}

func printPrune(w io.Writer, opts *PruneOptions, r *PruneReport) error {
	if opts.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	rep := r.Report
	if rep.Planned {
		fmt.Fprintf(w, "plan: %s on %s (nothing written)\n", describeRecipe(r.Recipe), r.Input)
	} else {
		fmt.Fprintf(w, "wrote %s: %s on %s\n", r.Output, describeRecipe(r.Recipe), r.Input)
	}
	if err := rep.Write(w); err != nil {
		return err
	}
	c := rep.Config
	fmt.Fprintf(w, "config after: %d layers, hidden %d, intermediate %d, heads %d/%d (kv), head_dim %d\n",
		c.NumLayers, c.HiddenSize, c.IntermediateSize, c.NumHeads, c.NumKVHeads, c.HeadDim)
	if cal := r.Recipe.Calibration; cal != nil {
		fmt.Fprintf(w, "calibration: %d x %d tokens, seed %d, %d of %d tokens held out\n", cal.NSamples, cal.SeqLen, cal.Seed, cal.HeldOutTokens, cal.Tokens)
	}
	if v := r.Validation; v != nil {
		text := v.Text
		if v.Holdout != 0 {
			text += fmt.Sprintf(" (held-out tail %.3g)", v.Holdout)
		}
		fmt.Fprintf(w, "validate: %s, %d windows of %d, %d tokens scored in %.1f s\n", text, v.Windows, v.Context, v.Tokens, v.Seconds)
		fmt.Fprintf(w, "perplexity: %.4f → %.4f (%+.2f%%), mean KL %.5f, top-1 agreement %.4f\n",
			v.PPLReference, v.PPLCandidate, 100*v.PPLIncrease, v.MeanKL, v.Top1Agreement)
	}
	if !rep.Planned {
		fmt.Fprintf(w, "time: calibrate %.1f s, prune %.1f s, write %.1f s, total %.1f s\n", r.CalibrateSeconds, r.PruneSeconds, r.WriteSeconds, r.TotalSeconds)
	}
	return nil
}

func describeRecipe(r PruneRecipe) string {
	switch r.Method {
	case "nm":
		return fmt.Sprintf("nm %d:%d (importance %s)", r.N, r.M, r.Importance)
	case "magnitude":
		return fmt.Sprintf("magnitude %.4g (scope %s)", r.Sparsity, r.Scope)
	case "wanda":
		return fmt.Sprintf("wanda %.4g", r.Sparsity)
	case "structured-mlp":
		return fmt.Sprintf("structured-mlp %.4g (align %d, importance %s)", r.Sparsity, r.Align, r.Importance)
	}
	return fmt.Sprintf("%s %.4g (importance %s)", r.Method, r.Sparsity, r.Importance)
}
