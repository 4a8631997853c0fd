package buildrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smeltml/smelt/codegen"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/compare"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/progress"
	"github.com/smeltml/smelt/internal/prunerun"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/recipe"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/prune"
	"github.com/smeltml/smelt/quantize"
)

// Stage names, in the order Run runs them.
const (
	StageSource   = "source"
	StagePrune    = "prune"
	StageQuantize = "quantize"
	StageCodegen  = "codegen"
	StageValidate = "validate"
	StageWrite    = "write"
)

// Calibration defaults (recipe.Calibration's documented defaults).
const (
	DefaultSequences = 128
	DefaultLength    = 512
)

// Options configure Run.
type Options struct {
	// Recipe is the parsed recipe (recipe.Load); relative paths in it
	// resolve against Recipe.Dir.
	Recipe *recipe.Recipe
	// Out is the bundle directory to publish.
	Out string
	// Key signs the bundle when set (the caller resolves --key and the
	// recipe's sign section).
	Key *manifest.PrivateKey
	// Version is the smelt version recorded in the provenance.
	Version string
	// Progress reports stage progress (nil: none).
	Progress *progress.Reporter
	// Warnings receives one line per warning (nil: they are only in the
	// report).
	Warnings io.Writer
}

// Report is what Run did; `smelt build --json` prints it.
type Report struct {
	Out       string            `json:"out"`
	Published bool              `json:"published"`
	BundleID  string            `json:"bundle_id,omitempty"`
	Signature *SignatureReport  `json:"signature,omitempty"`
	Stages    []StageReport     `json:"stages"`
	Source    SourceReport      `json:"source"`
	Prune     *PruneReport      `json:"prune,omitempty"`
	Quantize  *QuantizeReport   `json:"quantize,omitempty"`
	Codegen   *CodegenReport    `json:"codegen,omitempty"`
	Bytes     BytesReport       `json:"bytes"`
	Files     []manifest.File   `json:"files,omitempty"`
	Validate  *ValidationReport `json:"validate,omitempty"`
	Warnings  []string          `json:"warnings"`
	Seconds   float64           `json:"seconds"`
}

// StageReport is one stage's wall time.
type StageReport struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// SignatureReport names the signing key.
type SignatureReport struct {
	Alg   string `json:"alg"`
	KeyID string `json:"keyid"`
}

// SourceReport describes the input.
type SourceReport struct {
	Path       string                `json:"path"` // as written in the recipe
	Kind       string                `json:"kind"` // KindModel or KindBundle
	Arch       string                `json:"arch"`
	Parameters int64                 `json:"parameters"`
	Files      []manifest.SourceFile `json:"files"`
}

// PruneReport summarizes the prune stage.
type PruneReport struct {
	Method      string   `json:"method"`
	Tensors     int      `json:"tensors_changed"`
	BytesBefore int64    `json:"bytes_before"`
	BytesAfter  int64    `json:"bytes_after"`
	Notes       []string `json:"notes,omitempty"`
}

// QuantizeReport summarizes the quantize stage.
type QuantizeReport struct {
	Scheme      string             `json:"scheme"`
	Algorithm   string             `json:"algorithm"`
	Quantized   int                `json:"quantized_tensors"`
	Kept        int                `json:"kept_matrices"` // 2-D float tensors stored as float
	BytesBefore int64              `json:"bytes_before"`
	BytesAfter  int64              `json:"bytes_after"`
	Calibration *CalibrationReport `json:"calibration,omitempty"`
}

// CalibrationReport describes calibration data as used.
type CalibrationReport struct {
	Path          string `json:"path"` // as written in the recipe
	SHA256        string `json:"sha256"`
	Sequences     int    `json:"sequences"`
	Length        int    `json:"length"`
	Seed          int64  `json:"seed"`
	Tokens        int    `json:"tokens"`
	HeldOutTokens int    `json:"held_out_tokens"`
}

// CodegenReport summarizes the generated kernels and program.
type CodegenReport struct {
	Kernels          int      `json:"kernels"`
	PrefillDispatch  int      `json:"prefill_dispatches"`
	DecodeDispatches int      `json:"decode_dispatches"`
	Context          int      `json:"context"`
	VRAMBytes        int64    `json:"vram_bytes"`
	Features         []string `json:"features"`
}

// BytesReport is the stored weight bytes of the built graph, by dtype and
// by scheme (a quantized weight counts with its scales and zero points
// under its scheme name; float tensors under their dtype).
type BytesReport struct {
	Total    int64            `json:"total"`
	ByDType  map[string]int64 `json:"by_dtype"`
	ByScheme map[string]int64 `json:"by_scheme"`
}

// ValidationReport is the comparison of the source model with the built
// graph, and the gates' verdict.
type ValidationReport struct {
	Text    string  `json:"text"` // as written in the recipe
	Holdout float64 `json:"holdout"`
	Context int     `json:"context"`
	Stride  int     `json:"stride"`
	Windows int     `json:"windows"`
	compare.Report
	Gates    Gates    `json:"gates"`
	Failures []string `json:"failures"`
	Pass     bool     `json:"pass"`
}

// Gates are the gates applied (null: not checked).
type Gates struct {
	MaxPPLIncrease *float64 `json:"max_ppl_increase"` // fraction
	MaxKL          *float64 `json:"max_kl"`
	MinTop1        *float64 `json:"min_top1"`
}

// GateError is returned when a validation gate fails; nothing was
// published.
type GateError struct{ Failures []string }

func (e *GateError) Error() string {
	return "build: validation failed (" + strings.Join(e.Failures, "; ") + "); nothing was published"
}

// InternalError marks a failure that is a bug in smelt, not bad input.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// run is the state of one build.
type run struct {
	opts  Options
	r     *recipe.Recipe
	rep   *Report
	prov  manifest.Provenance
	start time.Time
}

// Run builds the recipe into opts.Out (see the package documentation).
// The report is returned whenever the stages that ran could report,
// including with a *GateError; other errors are input or I/O errors,
// except *InternalError.
func Run(opts Options) (*Report, error) {
	if opts.Recipe == nil {
		return nil, errors.New("build: no recipe")
	}
	if opts.Out == "" {
		return nil, errors.New("build: no output directory")
	}
	b := &run{opts: opts, r: opts.Recipe, start: time.Now(),
		rep: &Report{Out: opts.Out, Warnings: []string{}}}
	err := b.run()
	b.rep.Seconds = time.Since(b.start).Seconds()
	return b.rep, err
}

func (b *run) stage(name string, f func() error) error {
	t := time.Now()
	err := f()
	b.rep.Stages = append(b.rep.Stages, StageReport{Name: name, Seconds: time.Since(t).Seconds()})
	return err
}

func (b *run) warn(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	b.rep.Warnings = append(b.rep.Warnings, s)
	if b.opts.Warnings != nil {
		fmt.Fprintln(b.opts.Warnings, "warning "+s)
	}
}

func (b *run) run() error {
	r := b.r
	srcPath := r.Path(r.Source)
	if err := checkOut(srcPath, b.opts.Out); err != nil {
		return err
	}
	rj, err := json.Marshal(r)
	if err != nil {
		return &InternalError{Err: fmt.Errorf("build: recipe as JSON: %w", err)}
	}
	b.prov = manifest.Provenance{Smelt: b.opts.Version, Recipe: rj}

	var src *source
	if err := b.stage(StageSource, func() error {
		bar := b.opts.Progress.Start("source", 1)
		defer bar.Finish()
		src, err = openSource(srcPath, true)
		if err != nil {
			return err
		}
		bar.Add(1)
		b.prov.Sources = src.files
		b.rep.Source = SourceReport{Path: r.Source, Kind: src.kind, Arch: src.graph.Config.Arch, Files: src.files}
		for _, t := range src.graph.Tensors {
			n, _ := t.Shape.NumElements()
			b.rep.Source.Parameters += n
		}
		return nil
	}); err != nil {
		return err
	}
	defer src.close()
	g := src.graph

	if r.Prune != nil {
		if err := b.stage(StagePrune, func() error {
			g, err = b.prune(src, g)
			return err
		}); err != nil {
			return err
		}
	}
	if r.Quantize != nil {
		if err := b.stage(StageQuantize, func() error {
			g, err = b.quantize(src, g)
			return err
		}); err != nil {
			return err
		}
	}
	var out *codegen.Output
	if err := b.stage(StageCodegen, func() error {
		out, err = b.codegen(src, g)
		return err
	}); err != nil {
		return err
	}
	b.rep.Bytes = StoredBytes(g)
	if r.Validate != nil {
		var fails []string
		if err := b.stage(StageValidate, func() error {
			fails, err = b.validate(srcPath, src, g)
			return err
		}); err != nil {
			return err
		}
		if len(fails) > 0 {
			return &GateError{Failures: fails}
		}
	}
	return b.stage(StageWrite, func() error { return b.write(g, out) })
}

// checkOut refuses to write the bundle over the source.
func checkOut(src, out string) error {
	as, err1 := filepath.Abs(src)
	ao, err2 := filepath.Abs(out)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("build: %w", errors.Join(err1, err2))
	}
	if as == ao || strings.HasPrefix(as, ao+string(filepath.Separator)) {
		return fmt.Errorf("build: the output %s would replace the source %s", out, src)
	}
	// bundle.Write's rule, checked before the work rather than after it:
	// only nothing, an empty folder or a previous bundle is replaced.
	st, err := os.Lstat(ao)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("build: the output %s exists and is not a folder", out)
	}
	if _, err := os.Stat(filepath.Join(ao, manifest.ManifestFile)); err == nil {
		return nil
	}
	if ents, err := os.ReadDir(ao); err != nil {
		return fmt.Errorf("build: %w", err)
	} else if len(ents) > 0 {
		return fmt.Errorf("build: the output %s is a folder that is not empty and holds no %s: refusing to replace it", out, manifest.ManifestFile)
	}
	return nil
}

// calibration reads a recipe calibration section with the source's
// tokenizer.
func (b *run) calibration(src *source, c *recipe.Calibration, what string) (*quantrun.Calibration, *CalibrationReport, error) {
	path := b.r.Path(c.Text)
	var enc textdata.Encoder // nil: only pre-tokenized data works
	if src.tok != nil {
		enc = src.tok
	}
	opts := quantrun.DataOptions{
		Read:     textdata.Options{Field: c.Field},
		NSamples: c.Sequences, SeqLen: c.Length, Seed: c.Seed, Holdout: c.Holdout,
	}
	if opts.NSamples == 0 {
		opts.NSamples = DefaultSequences
	}
	if opts.SeqLen == 0 {
		opts.SeqLen = DefaultLength
	}
	cal, err := quantrun.LoadCalibration(path, enc, opts)
	if err != nil {
		if enc == nil {
			err = fmt.Errorf("%w (the source has no usable tokenizer: %v)", err, src.tokErr)
		}
		return nil, nil, fmt.Errorf("build: %s.calibration: %w", what, err)
	}
	if v := src.graph.Config.VocabSize; v > 0 {
		for _, s := range cal.Seqs {
			for _, id := range s {
				if id < 0 || id >= v {
					return nil, nil, fmt.Errorf("build: %s.calibration: token id %d is outside the model's vocabulary of %d", what, id, v)
				}
			}
		}
	}
	rep := &CalibrationReport{Path: c.Text, SHA256: cal.SHA256, Sequences: len(cal.Seqs), Length: opts.SeqLen,
		Seed: c.Seed, Tokens: cal.Tokens, HeldOutTokens: cal.HeldOutTokens}
	return cal, rep, nil
}

// recordCalibration puts a calibration file's digest into the provenance.
func (b *run) recordCalibration(c *recipe.Calibration, cal *quantrun.Calibration) {
	sf := &manifest.SourceFile{Path: c.Text, NBytes: cal.NBytes, SHA256: cal.SHA256}
	switch {
	case b.prov.Calibration == nil:
		b.prov.Calibration = sf
	case *b.prov.Calibration != *sf:
		sf.Path = "calibration:" + sf.Path
		b.prov.Sources = append(b.prov.Sources, *sf)
	}
}

func (b *run) prune(src *source, g *ir.Graph) (*ir.Graph, error) {
	p := b.r.Prune
	opts := prune.Options{Method: p.Method, Sparsity: p.Sparsity, N: p.N, M: p.M}
	var seqs [][]int
	calibrated := p.Calibration != nil && p.Calibration.Text != ""
	switch p.Method {
	case "magnitude", "wanda": // magnitude never reads activations, wanda always does
	default:
		opts.Importance = "magnitude"
		if calibrated {
			opts.Importance = "activations"
		}
	}
	act, err := prune.UsesActivations(opts)
	if err != nil {
		return nil, err
	}
	if calibrated && !act {
		b.warn("prune.calibration is not used by method %s", p.Method)
	}
	if act && calibrated {
		cal, _, err := b.calibration(src, p.Calibration, "prune")
		if err != nil {
			return nil, err
		}
		seqs = cal.Seqs
		b.recordCalibration(p.Calibration, cal)
	}
	bar := b.opts.Progress.Start("prune "+p.Method, 1)
	res, err := prunerun.Prune(g, opts, seqs)
	bar.Finish()
	if err != nil {
		return nil, err
	}
	b.rep.Prune = &PruneReport{Method: p.Method, Tensors: len(res.Report.Tensors),
		BytesBefore: res.Report.BytesBefore, BytesAfter: res.Report.BytesAfter, Notes: res.Report.Notes}
	return res.Graph, nil
}

// rules returns the recipe's rules followed by its rules file's.
func (b *run) rules() ([]quantize.Rule, error) {
	q := b.r.Quantize
	var rules []quantize.Rule
	for i, rr := range q.Rules {
		rule, err := quantize.NewRule(rr.Match, rr.Scheme, fmt.Sprintf("quantize.rules[%d]", i))
		if err != nil {
			return nil, fmt.Errorf("build: quantize.rules[%d]: %w", i, err)
		}
		rules = append(rules, rule)
	}
	if q.RulesFile != "" {
		data, err := os.ReadFile(b.r.Path(q.RulesFile))
		if err != nil {
			return nil, fmt.Errorf("build: quantize.rules_file: %w", err)
		}
		fr, err := quantize.ParseRules(q.RulesFile, data)
		if err != nil {
			return nil, err
		}
		rules = append(rules, fr...)
	}
	return rules, nil
}

func (b *run) quantize(src *source, g *ir.Graph) (*ir.Graph, error) {
	q := b.r.Quantize
	scheme, err := quantize.ParseScheme(q.Scheme)
	if err != nil {
		return nil, err
	}
	algo := quantize.AlgoRTN
	if q.Algo != "" {
		if algo, err = quantize.ParseAlgorithm(q.Algo); err != nil {
			return nil, err
		}
	}
	rules, err := b.rules()
	if err != nil {
		return nil, err
	}
	plan, err := quantrun.NewPlan(g, rules, scheme, algo)
	if err != nil {
		return nil, err
	}
	qr := &QuantizeReport{Scheme: scheme.Name(), Algorithm: string(algo), BytesBefore: plan.BytesBefore, BytesAfter: plan.BytesAfter}
	for _, e := range plan.Entries {
		if e.Diag != "" {
			b.warn("%s: %s: %s", e.Diag, e.Name, e.Reason)
		}
		switch {
		case e.Quantize:
			qr.Quantized++
		case len(e.Shape) == 2 && e.From.IsFloat():
			qr.Kept++
		}
	}
	var seqs [][]int
	if quantrun.NeedsCalibration(plan) {
		if q.Calibration == nil || q.Calibration.Text == "" {
			return nil, errors.New("build: the quantize plan uses gptq or awq, which need quantize.calibration.text")
		}
		cal, crep, err := b.calibration(src, q.Calibration, "quantize")
		if err != nil {
			return nil, err
		}
		seqs, qr.Calibration = cal.Seqs, crep
		b.recordCalibration(q.Calibration, cal)
	} else if q.Calibration != nil && q.Calibration.Text != "" {
		b.warn("quantize.calibration is not used by a plan without gptq or awq")
	}
	var calBar, rtnBar *progress.Bar
	qopts := quantrun.Options{
		GPTQ: quantize.GPTQOptions{Damp: q.Damp, ActOrder: q.ActOrder},
		Progress: func(block, blocks int, stage string) {
			if block >= 0 {
				if calBar == nil {
					calBar = b.opts.Progress.Start("calibrate "+string(algo), int64(blocks))
				}
				if stage == "done" {
					calBar.Add(1)
				}
				return
			}
			if rtnBar == nil {
				calBar.Finish()
				calBar = nil
				rtnBar = b.opts.Progress.Start("rtn", int64(qr.Quantized))
			}
			rtnBar.Add(1)
		},
	}
	res, err := quantrun.Run(g, plan, seqs, qopts)
	calBar.Finish()
	rtnBar.Finish()
	if err != nil {
		return nil, err
	}
	b.rep.Quantize = qr
	return res.Graph, nil
}

func (b *run) codegen(src *source, g *ir.Graph) (*codegen.Output, error) {
	opts := codegen.Options{}
	demo := true
	if c := b.r.Codegen; c != nil {
		opts.ContextLength, opts.F16, opts.Subgroups = c.Context, c.F16, c.Subgroups
		if c.Demo != nil {
			demo = *c.Demo
		}
	}
	bar := b.opts.Progress.Start("codegen", 1)
	defer bar.Finish()
	out, err := codegen.Generate(g, opts, src.tokJSON)
	if err != nil {
		return nil, err
	}
	if !demo {
		files := out.Files[:0:0]
		for _, f := range out.Files {
			if f.Path != "index.html" {
				files = append(files, f)
			}
		}
		out.Files = files
	}
	bar.Add(1)
	rq := out.Lowering.Requirements
	b.rep.Codegen = &CodegenReport{Kernels: len(out.Kernels), PrefillDispatch: len(out.Lowering.Program.Prefill.Steps),
		DecodeDispatches: len(out.Lowering.Program.Decode.Steps), Context: rq.ContextLength, VRAMBytes: rq.VRAM,
		Features: append([]string{}, out.Requirements.Features...)}
	return out, nil
}

// validate compares a fresh copy of the source model with g over the
// recipe's text and returns the failed gates.
func (b *run) validate(srcPath string, src *source, g *ir.Graph) ([]string, error) {
	v := b.r.Validate
	tok, err := src.tokenizer("validate.text " + v.Text)
	if err != nil {
		return nil, err
	}
	d, err := textdata.Read(b.r.Path(v.Text), textdata.Options{})
	if err != nil {
		return nil, fmt.Errorf("build: validate.text: %w", err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		return nil, fmt.Errorf("build: validate.text: %w", err)
	}
	if v.Holdout != 0 {
		if _, ids, err = textdata.Split(ids, v.Holdout); err != nil {
			return nil, fmt.Errorf("build: validate.holdout: %w", err)
		}
	}
	if v.MaxTokens > 0 && len(ids) > v.MaxTokens {
		ids = ids[:v.MaxTokens]
	}
	ctx := v.Ctx
	if ctx == 0 {
		if ctx = src.graph.Config.MaxPositionEmbeddings; ctx <= 0 {
			return nil, errors.New("build: validate: the model's max_position_embeddings is unknown; set validate.ctx")
		}
	}
	ws, err := textdata.Windows(ids, ctx, ctx)
	if err != nil {
		return nil, fmt.Errorf("build: validate: %w", err)
	}

	// The reference is the source as published: open it again, since
	// quantization rewired the nodes of the graph it was given.
	ref, err := openSource(srcPath, false)
	if err != nil {
		return nil, err
	}
	defer ref.close()
	refModel, err := quantrun.LoadModel(ref.graph)
	if err != nil {
		return nil, fmt.Errorf("build: validate: reference: %w", err)
	}
	cand, err := quantrun.LoadModel(g)
	if err != nil {
		return nil, fmt.Errorf("build: validate: built model: %w", err)
	}
	bar := b.opts.Progress.Start("validate", int64(len(ws)))
	cr, err := quantrun.Compare(refModel, cand, ids, ctx, ctx, func(done, total int) { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return nil, err
	}
	var gates compare.Gates
	if v.MaxPPLIncrease != nil {
		f := float64(*v.MaxPPLIncrease)
		gates.MaxPPLIncrease = &f
	}
	gates.MaxKL, gates.MinTop1 = v.MaxKL, v.MinTop1
	fails := gates.Check(cr)
	b.rep.Validate = &ValidationReport{Text: v.Text, Holdout: v.Holdout, Context: ctx, Stride: ctx, Windows: len(ws), Report: cr,
		Gates:    Gates{MaxPPLIncrease: gates.MaxPPLIncrease, MaxKL: gates.MaxKL, MinTop1: gates.MinTop1},
		Failures: append([]string{}, fails...), Pass: len(fails) == 0}
	return fails, nil
}

func (b *run) write(g *ir.Graph, out *codegen.Output) error {
	wo := out.WriteOptions()
	wo.ShardSize = int64(b.r.ShardSize)
	wo.Provenance = b.prov
	wo.Key = b.opts.Key
	bar := b.opts.Progress.Start("write", 1)
	defer bar.Finish()
	if err := bundle.Write(b.opts.Out, g, wo); err != nil {
		return err
	}
	bar.Add(1)
	b.rep.Published = true
	m, _, err := manifest.ReadManifest(b.opts.Out)
	if err != nil {
		return fmt.Errorf("build: reading back the published manifest: %w", err)
	}
	b.rep.BundleID = m.ID
	b.rep.Files = m.Files
	if k := b.opts.Key; k != nil {
		b.rep.Signature = &SignatureReport{Alg: k.Alg(), KeyID: k.Public().KeyID()}
	}
	return nil
}

// StoredBytes sums the stored bytes of g's tensors by dtype and by scheme
// (see BytesReport).
func StoredBytes(g *ir.Graph) BytesReport {
	r := BytesReport{ByDType: map[string]int64{}, ByScheme: map[string]int64{}}
	companion := map[string]string{} // scales/zeros tensor → scheme
	for _, t := range g.Tensors {
		if q := t.Quant; q != nil {
			companion[q.Scales] = q.Scheme
			if q.Zeros != "" {
				companion[q.Zeros] = q.Scheme
			}
		}
	}
	for _, t := range g.Tensors {
		n, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			continue // g passed Check: shapes are valid
		}
		r.Total += n
		r.ByDType[t.DType.String()] += n
		switch {
		case t.Quant != nil:
			r.ByScheme[t.Quant.Scheme] += n
		case companion[t.Name] != "":
			r.ByScheme[companion[t.Name]] += n
		default:
			r.ByScheme[t.DType.String()] += n
		}
	}
	return r
}
