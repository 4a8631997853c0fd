package quantize

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/smeltml/smelt/internal/ir"
)

// Scheme is a fully specified weight quantization format. Its Name spells
// every parameter, so two schemes with the same name are the same format:
//
//	int<Bits>-<g<GroupSize>|channel>-<sym|asym>[-f32]
//
// e.g. "int4-g128-asym", "int4-g32-sym", "int8-channel-sym",
// "int4-g64-asym-f32". The scale dtype is f16 unless the name ends in -f32.
type Scheme struct {
	Bits      int      // 4 or 8
	GroupSize int      // elements per group along the input dimension; 0 = per output channel (one group = the whole row)
	Symmetric bool     // true: no zero points, z = 2^(Bits-1)
	ScaleType ir.DType // ir.F16 or ir.F32
}

// Algorithm is the quantization algorithm that chose the codes. It is
// provenance only: the packed format (Scheme) does not depend on it.
type Algorithm string

// Algorithms.
const (
	AlgoRTN  Algorithm = "rtn"  // round to nearest
	AlgoGPTQ Algorithm = "gptq" // GPTQ (Frantar et al. 2022) with lazy block updates
	AlgoAWQ  Algorithm = "awq"  // activation-aware scaling and clipping (Lin et al. 2023), then RTN
)

// ParseAlgorithm parses "rtn", "gptq" or "awq".
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(s); a {
	case AlgoRTN, AlgoGPTQ, AlgoAWQ:
		return a, nil
	}
	return "", fmt.Errorf("quantize: unknown algorithm %q, want rtn, gptq or awq", s)
}

// schemeGrammar is quoted in parse errors.
const schemeGrammar = "int{4,8}-{g16,g32,g64,g128,g256,channel}-{sym,asym}[-f32], e.g. int4-g128-asym, int4-g32-sym, int8-channel-sym, int4-g64-asym-f32"

// validGroup reports whether g is an allowed group size: a power of two
// from 16 to 256 (the range ONNX Runtime's MatMulNBits and its model
// builder accept), or 0 for per channel.
func validGroup(g int) bool {
	if g == 0 {
		return true
	}
	return g >= 16 && g <= 256 && g&(g-1) == 0
}

// Validate reports whether s is a supported scheme.
func (s Scheme) Validate() error {
	if s.Bits != 4 && s.Bits != 8 {
		return fmt.Errorf("quantize: scheme bits %d, want 4 or 8", s.Bits)
	}
	if !validGroup(s.GroupSize) {
		return fmt.Errorf("quantize: scheme group size %d, want 0 (per channel) or a power of two in [16, 256]", s.GroupSize)
	}
	if s.ScaleType != ir.F16 && s.ScaleType != ir.F32 {
		return fmt.Errorf("quantize: scheme scale dtype %v, want f16 or f32", s.ScaleType)
	}
	return nil
}

// Name returns the canonical name of s (see Scheme); ParseScheme(s.Name())
// returns s for every valid scheme.
func (s Scheme) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "int%d-", s.Bits)
	if s.GroupSize == 0 {
		b.WriteString("channel")
	} else {
		fmt.Fprintf(&b, "g%d", s.GroupSize)
	}
	if s.Symmetric {
		b.WriteString("-sym")
	} else {
		b.WriteString("-asym")
	}
	if s.ScaleType == ir.F32 {
		b.WriteString("-f32")
	}
	return b.String()
}

// String returns Name.
func (s Scheme) String() string { return s.Name() }

// Group returns the effective group size for a row of cols elements:
// GroupSize, or cols when the scheme is per channel.
func (s Scheme) Group(cols int) int {
	if s.GroupSize == 0 {
		return cols
	}
	return s.GroupSize
}

// Zero returns the implicit zero point of a symmetric scheme, 2^(Bits-1).
func (s Scheme) Zero() uint8 { return uint8(1 << (s.Bits - 1)) }

// MaxCode returns the largest code, 2^Bits - 1.
func (s Scheme) MaxCode() int { return 1<<s.Bits - 1 }

// CheckShape reports whether a [rows, cols] weight can be stored in s: cols
// must be a multiple of the group size and of 32/Bits (whole u32 words per
// row).
func (s Scheme) CheckShape(rows, cols int) error {
	if rows <= 0 || cols <= 0 {
		return fmt.Errorf("shape [%d %d] is empty", rows, cols)
	}
	if s.GroupSize != 0 && cols%s.GroupSize != 0 {
		return fmt.Errorf("dim 1 (%d) not divisible by group size %d", cols, s.GroupSize)
	}
	if per := 32 / s.Bits; cols%per != 0 {
		return fmt.Errorf("dim 1 (%d) not divisible by %d (%d-bit codes per u32)", cols, per, s.Bits)
	}
	return nil
}

// ParseScheme parses a scheme name (see Scheme). Unknown or malformed names
// are errors that quote the grammar. Use ParseSchemeAlgo for names with an
// algorithm suffix such as "int4-g128-asym-gptq".
func ParseScheme(name string) (Scheme, error) {
	s, algo, err := ParseSchemeAlgo(name)
	if err != nil {
		return Scheme{}, err
	}
	if algo != "" {
		return Scheme{}, fmt.Errorf("quantize: scheme %q carries an algorithm suffix %q; want %s", name, algo, schemeGrammar)
	}
	return s, nil
}

// ParseSchemeAlgo parses a scheme name optionally followed by an algorithm
// ("-rtn", "-gptq", "-awq"), as used in provenance and in rules files:
// "int4-g128-asym-gptq" is Scheme int4-g128-asym with Algorithm gptq. The
// algorithm is "" when absent.
func ParseSchemeAlgo(name string) (Scheme, Algorithm, error) {
	bad := func(why string) (Scheme, Algorithm, error) {
		return Scheme{}, "", fmt.Errorf("quantize: unknown scheme %q (%s); want %s", name, why, schemeGrammar)
	}
	parts := strings.Split(name, "-")
	var algo Algorithm
	if n := len(parts); n > 0 {
		if a, err := ParseAlgorithm(parts[n-1]); err == nil {
			algo, parts = a, parts[:n-1]
		}
	}
	if len(parts) < 3 || len(parts) > 4 {
		return bad("want 3 or 4 dash-separated parts")
	}
	var s Scheme
	switch parts[0] {
	case "int4":
		s.Bits = 4
	case "int8":
		s.Bits = 8
	default:
		return bad(fmt.Sprintf("bits %q", parts[0]))
	}
	switch g := parts[1]; {
	case g == "channel":
		s.GroupSize = 0
	case strings.HasPrefix(g, "g"):
		n, err := strconv.Atoi(g[1:])
		if err != nil || strconv.Itoa(n) != g[1:] || n == 0 || !validGroup(n) {
			return bad(fmt.Sprintf("group %q", g))
		}
		s.GroupSize = n
	default:
		return bad(fmt.Sprintf("group %q", g))
	}
	switch parts[2] {
	case "sym":
		s.Symmetric = true
	case "asym":
	default:
		return bad(fmt.Sprintf("symmetry %q", parts[2]))
	}
	s.ScaleType = ir.F16
	if len(parts) == 4 {
		if parts[3] != "f32" {
			return bad(fmt.Sprintf("suffix %q", parts[3]))
		}
		s.ScaleType = ir.F32
	}
	return s, algo, nil
}
