package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// preTokenizer splits normalized text into words; BPE never merges across
// words. atStart reports that the text begins the whole input (Metaspace's
// prepend_scheme "first").
type preTokenizer interface {
	split(words []string, atStart bool) ([]string, error)
}

// gpt2Pattern is the regex of HF's ByteLevel pre-tokenizer (use_regex).
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitBehavior is HF's SplitDelimiterBehavior: what happens to a match.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Removed": splitRemoved, "Isolated": splitIsolated, "MergedWithPrevious": splitMergedWithPrevious,
	"MergedWithNext": splitMergedWithNext, "Contiguous": splitContiguous,
}

// span is a piece [a, b) of a string (byte offsets) that is a match of a
// delimiter or the text between matches.
type span struct {
	a, b  int
	match bool
}

// splitByRegex cuts s at the matches of re, as HF's NormalizedString.split
// does with the given behavior (invert swaps the roles of matches and the
// text between them). Empty matches are ignored; empty pieces dropped.
func splitByRegex(s string, re *regexp2.Regexp, behavior splitBehavior, invert bool) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	runes := []rune(s)
	// regexp2 reports rune offsets; off[i] is the byte offset of rune i.
	off := make([]int, len(runes)+1)
	for i, r := range runes {
		off[i+1] = off[i] + utf8.RuneLen(r)
	}
	var spans []span
	last := 0
	m, err := re.FindRunesMatch(runes)
	if err != nil {
		return nil, err
	}
	for ; m != nil; m, err = re.FindNextMatch(m) {
		if m.Length == 0 {
			continue
		}
		a, b := off[m.Index], off[m.Index+m.Length]
		if last < a {
			spans = append(spans, span{last, a, invert})
		}
		spans = append(spans, span{a, b, !invert})
		last = b
	}
	if err != nil {
		return nil, err
	}
	if last < len(s) {
		spans = append(spans, span{last, len(s), invert})
	}
	return applyBehavior(s, spans, behavior), nil
}

// splitByString is splitByRegex for a literal, non-empty delimiter.
func splitByString(s, sep string, behavior splitBehavior) []string {
	var spans []span
	last := 0
	for {
		i := strings.Index(s[last:], sep)
		if i < 0 {
			break
		}
		if i > 0 {
			spans = append(spans, span{last, last + i, false})
		}
		spans = append(spans, span{last + i, last + i + len(sep), true})
		last += i + len(sep)
	}
	if last < len(s) {
		spans = append(spans, span{last, len(s), false})
	}
	return applyBehavior(s, spans, behavior)
}

// applyBehavior turns the spans covering s into pieces:
//
//	Removed:            matches dropped, the text between kept
//	Isolated:           every span a piece
//	MergedWithPrevious: a match joins the text before it ("a," ",")
//	MergedWithNext:     a match joins the text after it ("▁" "▁a")
//	Contiguous:         consecutive matches form one piece
//
// A match never joins another match under the Merged behaviors, as in HF.
func applyBehavior(s string, spans []span, behavior splitBehavior) []string {
	var out []string
	switch behavior {
	case splitRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, s[sp.a:sp.b])
			}
		}
	case splitIsolated:
		for _, sp := range spans {
			out = append(out, s[sp.a:sp.b])
		}
	case splitMergedWithPrevious:
		start := 0
		for _, sp := range spans {
			if sp.match {
				out = append(out, s[start:sp.b])
				start = sp.b
			}
		}
		if start < len(s) {
			out = append(out, s[start:])
		}
	case splitMergedWithNext:
		start := 0
		for _, sp := range spans {
			if sp.match && sp.a > start {
				out = append(out, s[start:sp.a])
				start = sp.a
			}
		}
		if start < len(s) {
			out = append(out, s[start:])
		}
	case splitContiguous:
		start := 0
		for i, sp := range spans {
			if sp.match && i > 0 && spans[i-1].match {
				continue
			}
			if sp.a > start {
				out = append(out, s[start:sp.a])
				start = sp.a
			}
		}
		if start < len(s) {
			out = append(out, s[start:])
		}
	}
	return out
}

// eachWord applies f to every word and concatenates the results.
func eachWord(words []string, f func(string) ([]string, error)) ([]string, error) {
	var out []string
	for _, w := range words {
		parts, err := f(w)
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	return out, nil
}

type seqPreTokenizer []preTokenizer

func (s seqPreTokenizer) split(words []string, atStart bool) ([]string, error) {
	var err error
	for _, p := range s {
		if words, err = p.split(words, atStart); err != nil {
			return nil, err
		}
	}
	return words, nil
}

// byteLevelPre is HF ByteLevel: optional prefix space, the GPT-2 regex
// split, then every byte mapped to a printable rune (bytesToRunes).
type byteLevelPre struct {
	addPrefixSpace bool
	re             *regexp2.Regexp // nil when use_regex is false
}

func (b *byteLevelPre) split(words []string, atStart bool) ([]string, error) {
	return eachWord(words, func(w string) ([]string, error) {
		if b.addPrefixSpace && !strings.HasPrefix(w, " ") {
			w = " " + w
		}
		parts := []string{w}
		if b.re != nil {
			var err error
			if parts, err = splitByRegex(w, b.re, splitIsolated, false); err != nil {
				return nil, err
			}
		}
		for i, p := range parts {
			parts[i] = byteLevelEncode(p)
		}
		return parts, nil
	})
}

// splitPre is HF Split.
type splitPre struct {
	re       *regexp2.Regexp
	behavior splitBehavior
	invert   bool
}

func (s *splitPre) split(words []string, atStart bool) ([]string, error) {
	return eachWord(words, func(w string) ([]string, error) {
		return splitByRegex(w, s.re, s.behavior, s.invert)
	})
}

// metaspacePre is HF Metaspace: spaces become the replacement rune, which
// is prepended (prepend_scheme "always", or "first" for the text's first
// piece only) unless already there; with split, words start at each
// replacement rune.
type metaspacePre struct {
	replacement string
	prepend     string // "always", "first", "never"
	splitWords  bool
}

func (m *metaspacePre) split(words []string, atStart bool) ([]string, error) {
	var out []string
	for i, w := range words {
		w = strings.ReplaceAll(w, " ", m.replacement)
		first := atStart && i == 0
		if (m.prepend == "always" || (m.prepend == "first" && first)) && !strings.HasPrefix(w, m.replacement) {
			w = m.replacement + w
		}
		if !m.splitWords {
			out = append(out, w)
			continue
		}
		out = append(out, splitByString(w, m.replacement, splitMergedWithNext)...)
	}
	return out, nil
}

// digitsPre is HF Digits: digits split from other text, one by one when
// individual_digits is set, else in runs.
type digitsPre struct{ individual bool }

func (d digitsPre) split(words []string, atStart bool) ([]string, error) {
	return eachWord(words, func(w string) ([]string, error) {
		var out []string
		start := 0
		prevDigit := false
		for i, r := range w {
			isDigit := unicode.IsDigit(r)
			if i > start && (isDigit != prevDigit || (isDigit && d.individual)) {
				out = append(out, w[start:i])
				start = i
			}
			prevDigit = isDigit
		}
		if start < len(w) {
			out = append(out, w[start:])
		}
		return out, nil
	})
}

// whitespaceSplitPre is HF WhitespaceSplit: words separated by whitespace,
// which is dropped.
type whitespaceSplitPre struct{}

func (whitespaceSplitPre) split(words []string, atStart bool) ([]string, error) {
	return eachWord(words, func(w string) ([]string, error) { return strings.FieldsFunc(w, unicode.IsSpace), nil })
}

func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		var seq seqPreTokenizer
		for _, r := range s.PreTokenizers {
			p, err := parsePreTokenizer(r)
			if err != nil {
				return nil, err
			}
			seq = append(seq, p)
		}
		return seq, nil
	case "ByteLevel":
		b := struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}{}
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, err
		}
		p := &byteLevelPre{addPrefixSpace: b.AddPrefixSpace}
		if b.UseRegex == nil || *b.UseRegex {
			p.re = regexp2.MustCompile(gpt2Pattern, regexp2.None)
			p.re.MatchTimeout = regexTimeout
		}
		return p, nil
	case "Split":
		var s struct {
			Pattern  hfPattern `json:"pattern"`
			Behavior string    `json:"behavior"`
			Invert   bool      `json:"invert"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		beh, ok := splitBehaviors[s.Behavior]
		if !ok {
			return nil, fmt.Errorf("type \"Split\": unknown behavior %q", s.Behavior)
		}
		re, err := s.Pattern.compile()
		if err != nil {
			return nil, fmt.Errorf("type \"Split\": %w", err)
		}
		return &splitPre{re: re, behavior: beh, invert: s.Invert}, nil
	case "Metaspace":
		var m struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			Split          *bool   `json:"split"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		p, err := newMetaspace(m.Replacement, m.PrependScheme, m.AddPrefixSpace)
		if err != nil {
			return nil, err
		}
		p.splitWords = m.Split == nil || *m.Split
		return p, nil
	case "Digits":
		var d struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, err
		}
		return digitsPre{d.Individual}, nil
	case "WhitespaceSplit":
		return whitespaceSplitPre{}, nil
	}
	return nil, fmt.Errorf("unsupported pre-tokenizer type %q (supported: Sequence, ByteLevel, Split, Metaspace, Digits, WhitespaceSplit)", typ)
}

// newMetaspace reads Metaspace settings shared by the pre-tokenizer and
// the decoder; older files have add_prefix_space instead of prepend_scheme.
func newMetaspace(replacement string, scheme *string, addPrefixSpace *bool) (*metaspacePre, error) {
	if replacement == "" {
		return nil, fmt.Errorf("type \"Metaspace\": empty replacement")
	}
	p := &metaspacePre{replacement: replacement, prepend: "always"}
	switch {
	case scheme != nil:
		switch *scheme {
		case "always", "first", "never":
			p.prepend = *scheme
		default:
			return nil, fmt.Errorf("type \"Metaspace\": unknown prepend_scheme %q", *scheme)
		}
	case addPrefixSpace != nil && !*addPrefixSpace:
		p.prepend = "never"
	}
	return p, nil
}
