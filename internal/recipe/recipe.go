// Package recipe parses smelt build recipes: one strict YAML file that
// describes the whole pipeline a CI job runs (source → prune → quantize →
// codegen → shard → sign → validate).
//
// Strictness: unknown fields and type errors are errors reported with
// line:column and a source excerpt (goccy/go-yaml), duplicate keys are
// errors, YAML 1.1 booleans like `no` are not accepted as false for bool
// fields, and every value is validated after decoding (Check). Relative
// paths are resolved against the recipe file's folder.
//
// Example (testdata/demo.recipe.yaml, comments left out):
//
//	version: 1
//	source: stories260K
//	quantize:
//	  scheme: int4-g32-asym
//	  algo: gptq
//	  calibration:
//	    text: demo/tinystories_excerpt.txt
//	    sequences: 16
//	    length: 128
//	    seed: 1
//	    holdout: 0.25
//	codegen:
//	  context: 512
//	shard_size: 32MiB
//	sign:
//	  key_env: SMELT_SIGNING_KEY
//	validate:
//	  text: demo/tinystories_excerpt.txt
//	  holdout: 0.25
//	  ctx: 256
//	  max_ppl_increase: 25%
//	  max_kl: 0.25
//	  min_top1: 0.7
//
// A value error names the field and where it is:
//
//	recipe: demo.recipe.yaml: [14:9] quantize.algo "hqq": want rtn, gptq or awq
package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Recipe is a parsed build recipe.
type Recipe struct {
	Version   int       `yaml:"version" json:"version"`
	Source    string    `yaml:"source" json:"source"` // model folder or file
	Prune     *Prune    `yaml:"prune,omitempty" json:"prune,omitempty"`
	Quantize  *Quantize `yaml:"quantize,omitempty" json:"quantize,omitempty"`
	Codegen   *Codegen  `yaml:"codegen,omitempty" json:"codegen,omitempty"`
	ShardSize ByteSize  `yaml:"shard_size,omitempty" json:"shard_size,omitempty"`
	Sign      *Sign     `yaml:"sign,omitempty" json:"sign,omitempty"`
	Validate  *Validate `yaml:"validate,omitempty" json:"validate,omitempty"`
	Dir       string    `yaml:"-" json:"-"` // folder of the recipe file
}

// Calibration selects calibration data for GPTQ, AWQ and Wanda.
type Calibration struct {
	Text      string `yaml:"text" json:"text"`                               // plain text, JSONL or ids file
	Field     string `yaml:"field,omitempty" json:"field,omitempty"`         // JSONL text field (default "text")
	Sequences int    `yaml:"sequences,omitempty" json:"sequences,omitempty"` // default 128
	Length    int    `yaml:"length,omitempty" json:"length,omitempty"`       // default 512
	Seed      int64  `yaml:"seed,omitempty" json:"seed,omitempty"`           // default 0
	// Holdout is the fraction of the token stream's tail never used for
	// calibration (textdata.Split), so that validate.holdout can score
	// text the calibration did not see. Default 0.
	Holdout float64 `yaml:"holdout,omitempty" json:"holdout,omitempty"`
}

// Quantize is the quantization stage.
type Quantize struct {
	Scheme      string       `yaml:"scheme" json:"scheme"`                   // e.g. int4-g128-asym
	Algo        string       `yaml:"algo,omitempty" json:"algo,omitempty"`   // rtn (default), gptq, awq
	Rules       []Rule       `yaml:"rules,omitempty" json:"rules,omitempty"` // first match wins, before the defaults
	RulesFile   string       `yaml:"rules_file,omitempty" json:"rules_file,omitempty"`
	Calibration *Calibration `yaml:"calibration,omitempty" json:"calibration,omitempty"`
	ActOrder    bool         `yaml:"act_order,omitempty" json:"act_order,omitempty"`
	Damp        float64      `yaml:"damp,omitempty" json:"damp,omitempty"`
}

// Rule maps tensors whose canonical name matches Match to Scheme ("keep"
// leaves the tensor in its source precision).
type Rule struct {
	Match  string `yaml:"match" json:"match"`
	Scheme string `yaml:"scheme" json:"scheme"`
}

// Prune is the pruning stage (run before quantization).
type Prune struct {
	Method      string       `yaml:"method" json:"method"` // magnitude, wanda, nm, structured-mlp, structured-heads, layers
	Sparsity    float64      `yaml:"sparsity,omitempty" json:"sparsity,omitempty"`
	N           int          `yaml:"n,omitempty" json:"n,omitempty"` // N:M
	M           int          `yaml:"m,omitempty" json:"m,omitempty"`
	Calibration *Calibration `yaml:"calibration,omitempty" json:"calibration,omitempty"`
}

// Codegen selects kernel variants.
type Codegen struct {
	Context   int   `yaml:"context,omitempty" json:"context,omitempty"` // KV-cache length (default: the model's)
	F16       bool  `yaml:"f16,omitempty" json:"f16,omitempty"`         // emit shader-f16 variants
	Subgroups bool  `yaml:"subgroups,omitempty" json:"subgroups,omitempty"`
	Demo      *bool `yaml:"demo,omitempty" json:"demo,omitempty"` // include index.html (default true)
}

// Sign selects the signing key: a PEM file or an environment variable
// holding the PEM text. The key itself never appears in the recipe.
type Sign struct {
	KeyFile string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	KeyEnv  string `yaml:"key_env,omitempty" json:"key_env,omitempty"`
}

// Validate holds the accuracy gates checked after the build.
type Validate struct {
	Text           string   `yaml:"text" json:"text"`
	Ctx            int      `yaml:"ctx,omitempty" json:"ctx,omitempty"`
	MaxTokens      int      `yaml:"max_tokens,omitempty" json:"max_tokens,omitempty"`
	MaxPPLIncrease *Percent `yaml:"max_ppl_increase,omitempty" json:"max_ppl_increase,omitempty"`
	MaxKL          *float64 `yaml:"max_kl,omitempty" json:"max_kl,omitempty"`
	MinTop1        *float64 `yaml:"min_top1,omitempty" json:"min_top1,omitempty"`
	// Holdout scores only the last fraction of the text's token stream
	// (the tail a calibration with the same holdout left out). Default 0:
	// the whole text.
	Holdout float64 `yaml:"holdout,omitempty" json:"holdout,omitempty"`
}

// ByteSize is a size written as an integer or with a unit (32MiB, 1GB).
type ByteSize int64

var sizeRe = regexp.MustCompile(`^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$`)

// UnmarshalYAML parses 33554432, "32MiB", "1GB"; errors carry the
// value's line:column.
func (b *ByteSize) UnmarshalYAML(n ast.Node) error {
	if _, ok := n.(ast.ScalarNode); !ok {
		return atNode(n, fmt.Errorf("size: want a number like 33554432 or 32MiB, found a %s", n.Type()))
	}
	v, err := ParseByteSize(scalar(n))
	if err != nil {
		return atNode(n, err)
	}
	*b = v
	return nil
}

// scalar returns a scalar node's value without quotes.
func scalar(n ast.Node) string {
	if tk := n.GetToken(); tk != nil {
		return strings.TrimSpace(tk.Value)
	}
	return strings.Trim(strings.TrimSpace(n.String()), `"'`)
}

// atNode prefixes err with the node's [line:column].
func atNode(n ast.Node, err error) error {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return fmt.Errorf("[%d:%d] %w", tk.Position.Line, tk.Position.Column, err)
	}
	return err
}

// ParseByteSize parses a size with an optional unit.
func ParseByteSize(s string) (ByteSize, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want an integer with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "KiB": 1 << 10, "MB": 1e6, "MiB": 1 << 20, "GB": 1e9, "GiB": 1 << 30}[m[2]]
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return ByteSize(n * mult), nil
}

// Percent is a fraction written as "2%" or 0.02.
type Percent float64

// UnmarshalYAML parses "2%" (= 0.02) or a plain fraction; errors carry
// the value's line:column.
func (p *Percent) UnmarshalYAML(n ast.Node) error {
	if _, ok := n.(ast.ScalarNode); !ok {
		return atNode(n, fmt.Errorf("percentage: want a number like 2%% or 0.02, found a %s", n.Type()))
	}
	v, err := ParsePercent(scalar(n))
	if err != nil {
		return atNode(n, err)
	}
	*p = v
	return nil
}

// ParsePercent parses "2%" as 0.02 and "0.02" as 0.02.
func ParsePercent(s string) (Percent, error) {
	f, pct := s, false
	if strings.HasSuffix(s, "%") {
		f, pct = strings.TrimSuffix(s, "%"), true
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
	if err != nil || math.IsNaN(v) || v < 0 {
		return 0, fmt.Errorf("percentage %q: want a non-negative number like 2%% or 0.02", s)
	}
	if pct {
		v /= 100
	}
	return Percent(v), nil
}

// Load reads and validates a recipe file.
func Load(path string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	r, err := Parse(filepath.Base(path), data)
	if err != nil {
		return nil, err
	}
	r.Dir = filepath.Dir(path)
	return r, nil
}

// Parse decodes recipe bytes strictly; name is used in errors. Decoding
// errors and value errors (Check) both carry the line:column of the
// offending value (or of the closest enclosing key when the field is
// missing).
func Parse(name string, data []byte) (*Recipe, error) {
	var r Recipe
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("recipe: %s: %s", name, strings.TrimSpace(yaml.FormatError(err, false, true)))
	}
	if err := r.Check(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			if pos := position(data, fe.Field); pos != "" {
				return nil, fmt.Errorf("recipe: %s: [%s] %w", name, pos, err)
			}
		}
		return nil, fmt.Errorf("recipe: %s: %w", name, err)
	}
	return &r, nil
}

// FieldError is a value error of one recipe field, named by its dotted
// path ("quantize.rules[0].match").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// position returns "line:column" of the value at field in the YAML source,
// or of its closest present ancestor; "" when none is found.
func position(data []byte, field string) string {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return ""
	}
	for p := field; ; {
		if path, err := yaml.PathString("$." + p); err == nil {
			if n, err := path.FilterFile(f); err == nil && n != nil {
				if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
					n = m.Values[0].Key // a section: point at its first key
				}
				if tk := n.GetToken(); tk != nil && tk.Position != nil {
					return fmt.Sprintf("%d:%d", tk.Position.Line, tk.Position.Column)
				}
			}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return "1:1" // a missing top-level field: the document
		}
		p = p[:i]
	}
}

// Check validates values after decoding. Its errors are *FieldError.
func (r *Recipe) Check() error {
	if r.Version != 1 {
		return fieldErr("version", "version %d: want 1", r.Version)
	}
	if r.Source == "" {
		return fieldErr("source", "source: required (a model folder or file)")
	}
	if q := r.Quantize; q != nil {
		if q.Scheme == "" {
			return fieldErr("quantize.scheme", "quantize.scheme: required (e.g. int4-g128-asym)")
		}
		switch q.Algo {
		case "", "rtn", "gptq", "awq":
		default:
			return fieldErr("quantize.algo", "quantize.algo %q: want rtn, gptq or awq", q.Algo)
		}
		if (q.Algo == "gptq" || q.Algo == "awq") && (q.Calibration == nil || q.Calibration.Text == "") {
			return fieldErr("quantize.calibration.text", "quantize.calibration.text: required for algo %s", q.Algo)
		}
		for i, rule := range q.Rules {
			if _, err := regexp.Compile(rule.Match); err != nil {
				return fieldErr(fmt.Sprintf("quantize.rules[%d].match", i), "quantize.rules[%d].match: %v", i, err)
			}
			if rule.Scheme == "" {
				return fieldErr(fmt.Sprintf("quantize.rules[%d].scheme", i), "quantize.rules[%d].scheme: required (a scheme name or keep)", i)
			}
		}
		if q.Damp < 0 || q.Damp >= 1 {
			return fieldErr("quantize.damp", "quantize.damp %g: want in [0, 1)", q.Damp)
		}
		if err := q.Calibration.validate("quantize.calibration"); err != nil {
			return err
		}
	}
	if p := r.Prune; p != nil {
		switch p.Method {
		case "magnitude", "wanda", "nm", "structured-mlp", "structured-heads", "layers":
		default:
			return fieldErr("prune.method", "prune.method %q: want magnitude, wanda, nm, structured-mlp, structured-heads or layers", p.Method)
		}
		if p.Method == "nm" {
			if p.N <= 0 || p.M <= p.N {
				return fieldErr("prune.n", "prune: method nm needs 0 < n < m (e.g. n: 2, m: 4)")
			}
		} else if !(p.Sparsity > 0 && p.Sparsity < 1) {
			return fieldErr("prune.sparsity", "prune.sparsity %g: want in (0, 1)", p.Sparsity)
		}
		if p.Method == "wanda" && (p.Calibration == nil || p.Calibration.Text == "") {
			return fieldErr("prune.calibration.text", "prune.calibration.text: required for method wanda")
		}
		if err := p.Calibration.validate("prune.calibration"); err != nil {
			return err
		}
	}
	if c := r.Codegen; c != nil && c.Context < 0 {
		return fieldErr("codegen.context", "codegen.context %d: want > 0", c.Context)
	}
	if r.ShardSize < 0 || (r.ShardSize > 0 && r.ShardSize < 4096) {
		return fieldErr("shard_size", "shard_size %d: want at least 4096 bytes", r.ShardSize)
	}
	if s := r.Sign; s != nil && (s.KeyFile == "") == (s.KeyEnv == "") {
		return fieldErr("sign", "sign: set exactly one of key_file and key_env")
	}
	if v := r.Validate; v != nil {
		if v.Text == "" {
			return fieldErr("validate.text", "validate.text: required")
		}
		if v.MinTop1 != nil && (*v.MinTop1 < 0 || *v.MinTop1 > 1) {
			return fieldErr("validate.min_top1", "validate.min_top1 %g: want in [0, 1]", *v.MinTop1)
		}
		if v.MaxKL != nil && *v.MaxKL < 0 {
			return fieldErr("validate.max_kl", "validate.max_kl %g: want >= 0", *v.MaxKL)
		}
		if v.Ctx < 0 || v.MaxTokens < 0 {
			return fieldErr("validate", "validate: ctx and max_tokens must be >= 0")
		}
		if !(v.Holdout >= 0 && v.Holdout < 1) {
			return fieldErr("validate.holdout", "validate.holdout %g: want in [0, 1)", v.Holdout)
		}
	}
	return nil
}

func (c *Calibration) validate(where string) error {
	if c == nil {
		return nil
	}
	if c.Sequences < 0 || c.Length < 0 {
		return fieldErr(where, "%s: sequences and length must be positive", where)
	}
	if !(c.Holdout >= 0 && c.Holdout < 1) {
		return fieldErr(where+".holdout", "%s.holdout %g: want in [0, 1)", where, c.Holdout)
	}
	return nil
}

// Path resolves a recipe-relative path.
func (r *Recipe) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.Dir, p)
}
