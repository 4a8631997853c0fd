package quantize

import (
	"fmt"
	"regexp"
	"strings"
)

// Rule maps tensor names to a quantization decision. Pattern is an RE2
// regular expression matched against the whole canonical tensor name
// (it is anchored: "blk\.0\..*" matches every tensor of block 0,
// "attn_q" matches nothing). The first rule that matches a tensor wins.
type Rule struct {
	Pattern   string
	Keep      bool      // keep the tensor in float (f16 for matrices)
	Scheme    Scheme    // when !Keep
	Algorithm Algorithm // when !Keep; "" = the plan's algorithm
	Source    string    // where the rule came from, for reports ("rules.txt:3", "default")

	re *regexp.Regexp
}

// Target returns the rule's right-hand side as written in a rules file:
// "keep", a scheme name, or a scheme name with an algorithm suffix.
func (r Rule) Target() string {
	if r.Keep {
		return "keep"
	}
	if r.Algorithm != "" {
		return r.Scheme.Name() + "-" + string(r.Algorithm)
	}
	return r.Scheme.Name()
}

// Match reports whether the rule applies to the tensor name.
func (r Rule) Match(name string) bool { return r.re != nil && r.re.MatchString(name) }

// NewRule builds a rule from a pattern and a target ("keep", a scheme name
// such as "int8-channel-sym", or one with an algorithm suffix such as
// "int4-g128-asym-gptq"); source names its origin for reports.
func NewRule(pattern, target, source string) (Rule, error) {
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return Rule{}, fmt.Errorf("quantize: rule %q: bad pattern: %w", pattern, err)
	}
	r := Rule{Pattern: pattern, Source: source, re: re}
	if target == "keep" {
		r.Keep = true
		return r, nil
	}
	s, algo, err := ParseSchemeAlgo(target)
	if err != nil {
		return Rule{}, fmt.Errorf("quantize: rule %q: %s (or keep)", pattern, strings.TrimPrefix(err.Error(), "quantize: "))
	}
	r.Scheme, r.Algorithm = s, algo
	return r, nil
}

// DefaultRules are appended after the user's rules: the token embedding
// table and the output head stay in f16 (what most anchors do: ORT GenAI's
// exclude_embeds/exclude_lm_head, GPTQModel lm_head=false, AutoAWQ). Users
// override them with an earlier rule, e.g. "output\.weight = int8-channel-sym".
// (1-D tensors, norms and biases, are never quantized; no rule is needed.)
func DefaultRules() []Rule {
	var rules []Rule
	for _, p := range []string{`token_embd\.weight`, `output\.weight`} {
		r, err := NewRule(p, "keep", "default")
		if err != nil {
			panic(err) // constant patterns
		}
		rules = append(rules, r)
	}
	return rules
}

// ParseRules parses a rules file: one rule per line,
//
//	# comment
//	<regex> = <keep | scheme[-algo]>
//
// Blank lines and lines starting with # are ignored; the regex is
// everything before the last "=", trimmed. Errors name the file and line.
func ParseRules(name string, data []byte) ([]Rule, error) {
	var rules []Rule
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		src := fmt.Sprintf("%s:%d", name, i+1)
		eq := strings.LastIndex(line, "=")
		if eq < 0 {
			return nil, fmt.Errorf("quantize: %s: want \"<regex> = <keep|scheme>\", found %q", src, line)
		}
		pat, target := strings.TrimSpace(line[:eq]), strings.TrimSpace(line[eq+1:])
		if pat == "" || target == "" {
			return nil, fmt.Errorf("quantize: %s: empty pattern or target in %q", src, line)
		}
		r, err := NewRule(pat, target, src)
		if err != nil {
			return nil, fmt.Errorf("quantize: %s: %s", src, strings.TrimPrefix(err.Error(), "quantize: "))
		}
		rules = append(rules, r)
	}
	return rules, nil
}
