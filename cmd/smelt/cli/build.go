package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/internal/buildrun"
	"github.com/smeltml/smelt/internal/progress"
	"github.com/smeltml/smelt/internal/recipe"
	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdBuild) }

// BuildOptions are the flags of `smelt build`.
type BuildOptions struct {
	Recipe     string
	Out        string
	Key        string // private key file; overrides the recipe's sign section
	JSON       bool
	NoProgress bool
}

// NewCmdBuild runs the whole pipeline from a recipe.
func NewCmdBuild(env *Env) *cobra.Command {
	opts := &BuildOptions{}
	cmd := &cobra.Command{
		Use:   "build RECIPE.yaml --out DIR [--key FILE]",
		Short: "Build a signed, validated bundle from a recipe (the whole pipeline, for CI)",
		Long: `build runs the whole pipeline described by one recipe file: read the source
(a Hugging Face folder, a weight file or a bundle), prune, quantize, generate
kernels and the runtime, check the validation gates, then write, sign and
publish the bundle at DIR.

The recipe is strict YAML (see testdata/demo.recipe.yaml): unknown fields,
type errors and bad values are errors that name the line:column. Relative
paths in it resolve against the recipe's folder.

  version: 1
  source: stories260K              # model folder, weight file or bundle
  prune: {method: nm, n: 2, m: 4}  # optional: magnitude, wanda, nm, structured-mlp,
                                   #   structured-heads, layers; calibration for wanda
  quantize:                        # optional
    scheme: int4-g32-asym          # default scheme; rules (first match wins) and
    algo: gptq                     #   rules_file come before the defaults
    calibration: {text: calib.txt, sequences: 16, length: 128, holdout: 0.25}
  codegen: {context: 512}          # f16, subgroups, demo (index.html, default true)
  shard_size: 32MiB
  sign: {key_env: SMELT_SIGNING_KEY}   # or key_file: keys/release
  validate:                        # gates: absent ones are not checked
    text: calib.txt
    holdout: 0.25
    max_ppl_increase: 5%
    max_kl: 0.05
    min_top1: 0.85

Validation compares the source model with the built one (the very bytes
that are written, dequantized) on the CPU reference executor, before
anything is written: when a gate fails, nothing is published and DIR is
left as it was. Publishing is atomic (a temporary folder beside DIR,
fsynced, signed, then renamed into place), so a killed build never leaves
a partial bundle at DIR. The same recipe, inputs and key give
byte-identical bundles.

The signing key comes from --key FILE, else from the recipe's sign section
(key_file, or key_env naming an environment variable that holds the PEM
text); without either the bundle is not signed.

--json prints a report on stdout (stages with timings, bytes per dtype and
scheme, bundle id, files, validation numbers and gate results); progress
goes to stderr (bars on a terminal, periodic plain lines otherwise).

Exit codes: 0 built and published; 1 a validation gate failed (nothing
published; the --json report is printed); 2 bad input (recipe, source,
calibration data, key); 3 internal error.`,
		Example: `  smelt build testdata/demo.recipe.yaml --out out/demo --key keys/release
  SMELT_SIGNING_KEY="$(cat keys/release)" smelt build recipe.yaml --out dist/model --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Recipe = args[0]
			return runBuild(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Out, "out", "", "bundle directory to write (required)")
	f.StringVar(&opts.Key, "key", "", "private key file (overrides the recipe's sign section)")
	f.BoolVar(&opts.JSON, "json", false, "print a JSON report on stdout")
	f.BoolVar(&opts.NoProgress, "no-progress", false, "no progress output on stderr")
	return cmd
}

// buildKey resolves the signing key: --key, else the recipe's sign
// section; nil when neither asks for one.
func buildKey(r *recipe.Recipe, flag string) (*manifest.PrivateKey, error) {
	switch {
	case flag != "":
		return loadSigningKey(flag)
	case r.Sign == nil:
		return nil, nil
	case r.Sign.KeyFile != "":
		return loadSigningKey(r.Path(r.Sign.KeyFile))
	}
	pem := os.Getenv(r.Sign.KeyEnv)
	if pem == "" {
		return nil, fmt.Errorf("the recipe's sign.key_env names $%s, which is empty; set it to the PEM text of the private key or give --key FILE", r.Sign.KeyEnv)
	}
	k, err := manifest.ParsePrivateKeyPEM([]byte(pem))
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", r.Sign.KeyEnv, err)
	}
	return k, nil
}

func runBuild(env *Env, opts *BuildOptions) error {
	if opts.Out == "" {
		return errors.New("build: --out DIR is required")
	}
	r, err := recipe.Load(opts.Recipe)
	if err != nil {
		return err
	}
	key, err := buildKey(r, opts.Key)
	if err != nil {
		return fmt.Errorf("build: signing key: %w", err)
	}
	rep, err := buildrun.Run(buildrun.Options{
		Recipe: r, Out: opts.Out, Key: key, Version: Version,
		Progress: progress.New(env.Stderr, opts.NoProgress), Warnings: env.Stderr,
	})
	var gate *buildrun.GateError
	if err != nil && !errors.As(err, &gate) {
		var ie *buildrun.InternalError
		if errors.As(err, &ie) {
			return &InternalError{Err: err}
		}
		return err
	}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(rep); werr != nil {
			return werr
		}
	} else if werr := printBuild(env.Stdout, opts, rep); werr != nil {
		return werr
	}
	if gate != nil {
		return checkFailed(err)
	}
	if key == nil {
		fmt.Fprintf(env.Stderr, "build: note: %s is not signed (no --key and no sign section in the recipe)\n", opts.Out)
	}
	return nil
}

func printBuild(w io.Writer, opts *BuildOptions, rep *buildrun.Report) error {
	mib := func(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
	secs := map[string]float64{}
	for _, s := range rep.Stages {
		secs[s.Name] = s.Seconds
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(stage, what string) {
		fmt.Fprintf(tw, "%s\t%6.2fs\t%s\n", stage, secs[stage], what)
	}
	s := rep.Source
	line(buildrun.StageSource, fmt.Sprintf("%s (%s, %s, %d parameters, %d files hashed)", s.Path, s.Kind, s.Arch, s.Parameters, len(s.Files)))
	if p := rep.Prune; p != nil {
		line(buildrun.StagePrune, fmt.Sprintf("%s: %d tensors changed, %s -> %s", p.Method, p.Tensors, mib(p.BytesBefore), mib(p.BytesAfter)))
	}
	if q := rep.Quantize; q != nil {
		what := fmt.Sprintf("%s %s: %d tensors quantized, %d matrices kept in float, %s -> %s", q.Scheme, q.Algorithm, q.Quantized, q.Kept, mib(q.BytesBefore), mib(q.BytesAfter))
		if c := q.Calibration; c != nil {
			what += fmt.Sprintf("; calibration %d x %d tokens of %s", c.Sequences, c.Length, c.Path)
		}
		line(buildrun.StageQuantize, what)
	}
	if c := rep.Codegen; c != nil {
		line(buildrun.StageCodegen, fmt.Sprintf("%d kernels, %d prefill + %d decode dispatches, context %d, VRAM %s", c.Kernels, c.PrefillDispatch, c.DecodeDispatches, c.Context, mib(c.VRAMBytes)))
	}
	if v := rep.Validate; v != nil {
		verdict := "pass"
		if !v.Pass {
			verdict = "FAIL: " + strings.Join(v.Failures, "; ")
		}
		line(buildrun.StageValidate, fmt.Sprintf("%d tokens of %s: perplexity %.4f -> %.4f (%+.2f%%), mean KL %.5f, top-1 %.4f; %s",
			v.Tokens, v.Text, v.PPLReference, v.PPLCandidate, 100*v.PPLIncrease, v.MeanKL, v.Top1Agreement, verdict))
	}
	if rep.Published {
		var n int64
		for _, f := range rep.Files {
			n += f.NBytes
		}
		line(buildrun.StageWrite, fmt.Sprintf("%d files, %s", len(rep.Files), mib(n)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var schemes []string
	for k := range rep.Bytes.ByScheme {
		schemes = append(schemes, k)
	}
	sort.Strings(schemes)
	parts := make([]string, len(schemes))
	for i, k := range schemes {
		parts[i] = k + " " + mib(rep.Bytes.ByScheme[k])
	}
	fmt.Fprintf(w, "weights: %s (%s)\n", mib(rep.Bytes.Total), strings.Join(parts, ", "))
	if !rep.Published {
		_, err := fmt.Fprintf(w, "not published: %s is unchanged (%.1fs)\n", opts.Out, rep.Seconds)
		return err
	}
	signed := "unsigned"
	if sg := rep.Signature; sg != nil {
		signed = "signed " + sg.Alg + " key " + sg.KeyID
	}
	_, err := fmt.Fprintf(w, "built %s: bundle %s, %s (%.1fs)\n", opts.Out, rep.BundleID, signed, rep.Seconds)
	return err
}
