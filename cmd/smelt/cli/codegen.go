package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/codegen"
	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdCodegen) }

// CodegenOptions are the flags of `smelt codegen`.
type CodegenOptions struct {
	In, Out   string
	Context   int
	MaxRows   int
	F16       bool
	SampleK   int
	Explain   bool
	ShardSize int64
}

// NewCmdCodegen writes a bundle with WGSL kernels, the dispatch program and
// the JS runtime.
func NewCmdCodegen(env *Env) *cobra.Command {
	opts := &CodegenOptions{}
	cmd := &cobra.Command{
		Use:   "codegen IN OUT",
		Short: "Generate WGSL kernels, the dispatch program and the JS runtime into a bundle",
		Long: `codegen lowers a model to one WGSL compute shader per distinct kernel
instance (specialized to the model's shapes and weight formats), a dispatch
program for prefill and decode (stored in manifest.json), and copies the JS
runtime (runtime/smelt.js, integrity.js, tokenizer.js) and a demo page
(index.html) into the bundle.

IN is a Hugging Face model folder or an existing bundle (quantized bundles
keep their packed tensors; their kernels read the packed weights directly).
OUT is the bundle directory to write (replaced atomically when it holds a
bundle). --explain prints the plan (buffers, kernels, every dispatch) and
writes nothing.`,
		Example: `  smelt codegen testdata/stories260K out/stories
  smelt codegen quantized-bundle out/q4 --context 1024
  smelt codegen ../shared/models/ref29m --explain`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.In = args[0]
			if len(args) > 1 {
				opts.Out = args[1]
			} else if !opts.Explain {
				return fmt.Errorf("codegen: missing OUT (only --explain runs without it)")
			}
			return runCodegen(env, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Context, "context", 0, "KV cache capacity in tokens (default: max_position_embeddings, at most 4096)")
	f.IntVar(&opts.MaxRows, "max-rows", 0, "tokens per prefill pass; longer prompts run in chunks (default 128)")
	f.BoolVar(&opts.F16, "f16", false, "use f16-compute kernel variants (the bundle then requires shader-f16)")
	f.IntVar(&opts.SampleK, "sample-max-k", 0, "largest top-k of the GPU sample pass, 1..256 (default 64)")
	f.BoolVar(&opts.Explain, "explain", false, "print the plan and write nothing")
	f.Int64Var(&opts.ShardSize, "shard-size", 0, "shard size cap in bytes (default 32 MiB)")
	return cmd
}

// loadModelOrBundle reads IN as a bundle (when it holds manifest.json) or a
// model folder, returning the graph and the tokenizer.json bytes (nil when
// there is none). close releases the model's files.
func loadModelOrBundle(in string) (g *ir.Graph, tok []byte, close func(), err error) {
	if _, err := os.Stat(filepath.Join(in, manifest.ManifestFile)); err == nil {
		g, m, err := bundle.Open(in, bundle.OpenOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		if m.Tokenizer != "" {
			if tok, err = os.ReadFile(filepath.Join(in, filepath.FromSlash(m.Tokenizer))); err != nil {
				return nil, nil, nil, fmt.Errorf("codegen: %w", err)
			}
		}
		return g, tok, func() {}, nil
	}
	m, err := convert.Load(in)
	if err != nil {
		return nil, nil, nil, err
	}
	if b, err := os.ReadFile(filepath.Join(in, "tokenizer.json")); err == nil {
		tok = b
	} else if !os.IsNotExist(err) {
		m.Close()
		return nil, nil, nil, fmt.Errorf("codegen: %w", err)
	}
	return m.Graph, tok, func() { m.Close() }, nil
}

func runCodegen(env *Env, opts *CodegenOptions) error {
	g, tok, closeIn, err := loadModelOrBundle(opts.In)
	if err != nil {
		return err
	}
	defer closeIn()
	copts := codegen.Options{ContextLength: opts.Context, MaxRows: opts.MaxRows, F16: opts.F16, SampleMaxK: opts.SampleK}
	if opts.Explain {
		low, err := codegen.Plan(g, copts)
		if err != nil {
			return err
		}
		return low.Explain(env.Stdout)
	}
	out, err := codegen.Generate(g, copts, tok)
	if err != nil {
		return err
	}
	wo := out.WriteOptions()
	wo.ShardSize = opts.ShardSize
	wo.Provenance = manifest.Provenance{Smelt: Version}
	if err := bundle.Write(opts.Out, g, wo); err != nil {
		return err
	}
	r := out.Lowering.Requirements
	fmt.Fprintf(env.Stdout, "wrote %s: %d kernels, %d prefill + %d decode dispatches, context %d, VRAM %.1f MiB (weights %.1f, KV cache %.1f)\n",
		opts.Out, len(out.Kernels), len(out.Lowering.Program.Prefill.Steps), len(out.Lowering.Program.Decode.Steps),
		r.ContextLength, float64(r.VRAM)/(1<<20), float64(r.WeightBytes)/(1<<20), float64(r.KVBytes)/(1<<20))
	return nil
}
