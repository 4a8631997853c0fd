package quantize

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/smeltml/smelt/internal/ir"
)

// Diagnostic IDs recorded in plans (users may silence them by ID).
const (
	// DiagKeepShape: a tensor a rule or the default scheme wanted
	// quantized is kept in f16 because its input dimension is not a
	// multiple of the group size (or of 32/bits).
	DiagKeepShape = "W-QUANT-KEEP-F16"
)

// PlanEntry is the decision for one tensor.
type PlanEntry struct {
	Name        string
	Shape       ir.Shape
	From        ir.DType  // dtype before
	Quantize    bool      // false: stored as To
	Scheme      Scheme    // when Quantize
	Algorithm   Algorithm // when Quantize
	To          ir.DType  // dtype after: u32 (packed) when quantized
	BytesBefore int64
	BytesAfter  int64  // packed weight + scales + zero points when quantized
	Rule        string // Source of the rule that decided, "" for the default scheme or an unconditional keep
	Reason      string // why, in words
	Diag        string // warning ID when the decision overrode what was asked, else ""
}

// Plan is the per-tensor quantization decision for a model. It is pure
// data: computing it reads no weights, and the quantizer executes it
// without making further decisions.
type Plan struct {
	Scheme      Scheme    // default scheme for matrices no rule decides
	Algorithm   Algorithm // default algorithm
	Entries     []PlanEntry
	BytesBefore int64
	BytesAfter  int64
}

// KeepDType is the dtype of matrices that are kept in float: f16.
const KeepDType = ir.F16

// NewPlan decides, for every tensor (only Name, DType, Shape and Quant
// are read), whether and how it is quantized:
//
//   - tensors that are not 2-D (norms, biases), not float, or already
//     quantized stay as they are;
//   - otherwise the first matching rule decides (keep or a scheme, with an
//     optional algorithm), else scheme with algo; kept matrices are stored
//     in f16;
//   - a matrix whose input dimension does not fit its scheme (group size,
//     32/bits) is kept in f16 with diagnostic DiagKeepShape and the reason
//     recorded — never silently.
//
// Callers pass their rules followed by DefaultRules() so that the defaults
// can be overridden. Entries follow the order of tensors.
func NewPlan(tensors []*ir.Tensor, rules []Rule, scheme Scheme, algo Algorithm) (*Plan, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	if _, err := ParseAlgorithm(string(algo)); err != nil {
		return nil, err
	}
	p := &Plan{Scheme: scheme, Algorithm: algo}
	for i, t := range tensors {
		if t == nil {
			return nil, fmt.Errorf("quantize: plan: tensor %d is nil", i)
		}
		before, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			return nil, fmt.Errorf("quantize: plan: tensor %q: %w", t.Name, err)
		}
		e := PlanEntry{Name: t.Name, Shape: t.Shape, From: t.DType, To: t.DType, BytesBefore: before, BytesAfter: before}
		switch {
		case t.Quant != nil:
			e.Reason = "already quantized (" + t.Quant.Scheme + ")"
		case len(t.Shape) != 2:
			e.Reason = fmt.Sprintf("%d-D tensor, never quantized", len(t.Shape))
		case !t.DType.IsFloat():
			e.Reason = "not a float tensor"
		default:
			p.decide(&e, rules)
		}
		p.BytesBefore += e.BytesBefore
		p.BytesAfter += e.BytesAfter
		p.Entries = append(p.Entries, e)
	}
	return p, nil
}

// decide fills e for a float matrix.
func (p *Plan) decide(e *PlanEntry, rules []Rule) {
	keep := func(reason string) {
		e.Quantize = false
		e.To = KeepDType
		e.BytesAfter, _ = e.Shape.ByteSize(KeepDType)
		e.Reason = reason
	}
	s, algo := p.Scheme, p.Algorithm
	e.Reason = "default scheme"
	for _, r := range rules {
		if !r.Match(e.Name) {
			continue
		}
		e.Rule = r.Source
		if r.Keep {
			keep(fmt.Sprintf("rule %s: %s = keep", r.Source, r.Pattern))
			return
		}
		s = r.Scheme
		if r.Algorithm != "" {
			algo = r.Algorithm
		}
		e.Reason = fmt.Sprintf("rule %s: %s = %s", r.Source, r.Pattern, r.Target())
		break
	}
	rows, cols := int(e.Shape[0]), int(e.Shape[1])
	if err := s.CheckShape(rows, cols); err != nil {
		keep(fmt.Sprintf("%s: %v; kept", s.Name(), err))
		e.Diag = DiagKeepShape
		return
	}
	e.Quantize = true
	e.Scheme = s
	e.Algorithm = algo
	e.To = ir.U32
	e.BytesAfter = QuantizedBytes(s, rows, cols)
}

// QuantizedBytes is the stored size of a [rows, cols] weight in scheme s:
// packed codes, scales and (asymmetric) packed zero points.
func QuantizedBytes(s Scheme, rows, cols int) int64 {
	nb := int64(cols / s.Group(cols))
	n := int64(rows) * int64(cols) * int64(s.Bits) / 8
	n += int64(rows) * nb * int64(s.ScaleType.Bits()/8)
	if !s.Symmetric {
		n += int64(rows) * int64(ZeroRowBytes(int(nb), s.Bits))
	}
	return n
}

// Entry returns the entry for the named tensor, or nil.
func (p *Plan) Entry(name string) *PlanEntry {
	for i := range p.Entries {
		if p.Entries[i].Name == name {
			return &p.Entries[i]
		}
	}
	return nil
}

// Explain writes the plan as a table, one tensor per line: name, shape,
// dtype before → scheme (with algorithm) or dtype after, bytes before and
// after, diagnostic ID, reason; then the totals.
func (p *Plan) Explain(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "quantize plan: default %s (%s), %d tensors\n", p.Scheme.Name(), p.Algorithm, len(p.Entries))
	fmt.Fprintln(tw, "tensor\tshape\tfrom\tto\tbytes\tafter\tdiag\treason")
	var nq int
	for _, e := range p.Entries {
		to := e.To.String()
		if e.Quantize {
			to = e.Scheme.Name() + " " + string(e.Algorithm)
			nq++
		}
		diag := e.Diag
		if diag == "" {
			diag = "-"
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t%s\t%d\t%d\t%s\t%s\n", e.Name, e.Shape, e.From, to, e.BytesBefore, e.BytesAfter, diag, e.Reason)
	}
	ratio := 0.0
	if p.BytesAfter > 0 {
		ratio = float64(p.BytesBefore) / float64(p.BytesAfter)
	}
	fmt.Fprintf(tw, "total: %d tensors quantized, %d bytes -> %d bytes (%.2fx smaller)\n", nq, p.BytesBefore, p.BytesAfter, ratio)
	return tw.Flush()
}
