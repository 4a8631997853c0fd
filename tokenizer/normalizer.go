package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/dlclark/regexp2"
)

// normalizer rewrites text before pre-tokenization.
type normalizer interface {
	normalize(s string) (string, error)
}

// hfPattern is a Replace/Split pattern: {"String": "..."} or {"Regex": "..."}.
type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// regexTimeout bounds one regex match, so that a hostile pattern cannot
// hang the process (real patterns match in microseconds).
const regexTimeout = 10 * time.Second

// compile returns the pattern as a regexp2 regex (Oniguruma-compatible
// enough for the patterns in use, including lookahead); a String pattern
// is matched literally.
func (p hfPattern) compile() (*regexp2.Regexp, error) {
	var expr string
	switch {
	case p.String != nil && p.Regex == nil:
		if *p.String == "" {
			return nil, fmt.Errorf("empty String pattern")
		}
		expr = regexp2.Escape(*p.String)
	case p.Regex != nil && p.String == nil:
		expr = *p.Regex
	default:
		return nil, fmt.Errorf("pattern must have exactly one of String and Regex")
	}
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", expr, err)
	}
	re.MatchTimeout = regexTimeout
	return re, nil
}

type seqNormalizer []normalizer

func (s seqNormalizer) normalize(x string) (string, error) {
	var err error
	for _, n := range s {
		if x, err = n.normalize(x); err != nil {
			return "", err
		}
	}
	return x, nil
}

// prependNormalizer is HF Prepend: adds the string in front of non-empty text.
type prependNormalizer string

func (p prependNormalizer) normalize(s string) (string, error) {
	if s == "" {
		return s, nil
	}
	return string(p) + s, nil
}

// replaceNormalizer is HF Replace: every match of the pattern becomes content.
type replaceNormalizer struct {
	literal string // when the pattern is a String
	re      *regexp2.Regexp
	content string
}

func (r *replaceNormalizer) normalize(s string) (string, error) {
	if r.re == nil {
		return strings.ReplaceAll(s, r.literal, r.content), nil
	}
	return replaceAll(r.re, s, r.content)
}

// replaceAll replaces every match of re in s by content (no $ expansion).
func replaceAll(re *regexp2.Regexp, s, content string) (string, error) {
	runes := []rune(s)
	m, err := re.FindRunesMatch(runes)
	if err != nil {
		return "", err
	}
	if m == nil {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for m != nil {
		b.WriteString(string(runes[last:m.Index]))
		b.WriteString(content)
		last = m.Index + m.Length
		if m, err = re.FindNextMatch(m); err != nil {
			return "", err
		}
	}
	b.WriteString(string(runes[last:]))
	return b.String(), nil
}

// stripNormalizer is HF Strip: removes Unicode whitespace at either end.
type stripNormalizer struct{ left, right bool }

func (s stripNormalizer) normalize(x string) (string, error) {
	if s.left {
		x = strings.TrimLeftFunc(x, unicode.IsSpace)
	}
	if s.right {
		x = strings.TrimRightFunc(x, unicode.IsSpace)
	}
	return x, nil
}

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) (string, error) { return strings.ToLower(s), nil }

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		var seq seqNormalizer
		for _, r := range s.Normalizers {
			if isNull(r) {
				continue
			}
			n, err := parseNormalizer(r)
			if err != nil {
				return nil, err
			}
			seq = append(seq, n)
		}
		return seq, nil
	case "Prepend":
		var p struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, err
		}
		return prependNormalizer(p.Prepend), nil
	case "Replace":
		var r struct {
			Pattern hfPattern `json:"pattern"`
			Content string    `json:"content"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		if r.Pattern.String != nil && r.Pattern.Regex == nil {
			if *r.Pattern.String == "" {
				return nil, fmt.Errorf("type \"Replace\": empty String pattern")
			}
			return &replaceNormalizer{literal: *r.Pattern.String, content: r.Content}, nil
		}
		re, err := r.Pattern.compile()
		if err != nil {
			return nil, fmt.Errorf("type \"Replace\": %w", err)
		}
		return &replaceNormalizer{re: re, content: r.Content}, nil
	case "Strip":
		var s struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return stripNormalizer{s.Left, s.Right}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	}
	return nil, fmt.Errorf("unsupported normalizer type %q (supported: Sequence, Prepend, Replace, Strip, Lowercase)", typ)
}
