package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedVocab finds added tokens in text the way Hugging Face's
// AddedVocabulary does: tokens with normalized=false are matched in the raw
// text, tokens with normalized=true in the normalized pieces (against their
// own normalized content); leftmost-longest, non-overlapping; single_word
// tokens only between non-word characters; lstrip/rstrip tokens swallow the
// whitespace beside them.
type addedVocab struct {
	raw, normalized *matcher
}

type addedToken struct {
	content                    string
	id                         int
	singleWord, lstrip, rstrip bool
}

// matcher holds tokens indexed by first byte, longest first.
type matcher struct {
	byFirst [256][]addedToken
	empty   bool
}

func newMatcher(toks []addedToken) *matcher {
	m := &matcher{empty: len(toks) == 0}
	for _, t := range toks {
		m.byFirst[t.content[0]] = append(m.byFirst[t.content[0]], t)
	}
	for i := range m.byFirst {
		sort.SliceStable(m.byFirst[i], func(a, b int) bool {
			return len(m.byFirst[i][a].content) > len(m.byFirst[i][b].content)
		})
	}
	return m
}

func newAddedVocab(toks []hfAddedToken, norm normalizer) (*addedVocab, error) {
	var raw, normed []addedToken
	for _, t := range toks {
		a := addedToken{content: t.Content, id: t.ID, singleWord: t.SingleWord, lstrip: t.LStrip, rstrip: t.RStrip}
		if !t.Normalized {
			raw = append(raw, a)
			continue
		}
		if norm != nil {
			c, err := norm.normalize(t.Content)
			if err != nil {
				return nil, err
			}
			a.content = c
		}
		if a.content != "" {
			normed = append(normed, a)
		}
	}
	return &addedVocab{raw: newMatcher(raw), normalized: newMatcher(normed)}, nil
}

// segment is a piece of text: an added token (id >= 0) or text for the
// model (id -1). start is its byte offset in the original text for the
// first piece (0) and >0 otherwise; only "starts the text or not" is used.
type segment struct {
	text  string
	id    int
	start int
}

// find returns the leftmost-longest match at or after from.
func (m *matcher) find(s string, from int) (addedToken, int, bool) {
	for i := from; i < len(s); i++ {
		for _, t := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], t.content) {
				return t, i, true
			}
		}
	}
	return addedToken{}, 0, false
}

func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r) ||
		unicode.Is(unicode.Me, r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.No, r) || unicode.Is(unicode.Pc, r)
}

// split cuts s into text and added-token segments. base is s's offset in
// the whole input.
func (v *addedVocab) split(s string, m *matcher, base int) []segment {
	if m.empty || s == "" {
		return []segment{{text: s, id: -1, start: base}}
	}
	var out []segment
	last := 0 // end of the previous split
	pos := 0  // where the search continues
	for pos < len(s) {
		t, start, ok := m.find(s, pos)
		if !ok {
			break
		}
		stop := start + len(t.content)
		pos = stop
		if t.singleWord {
			before, _ := utf8.DecodeLastRuneInString(s[:start])
			after, _ := utf8.DecodeRuneInString(s[stop:])
			if (start > 0 && isWordChar(before)) || (stop < len(s) && isWordChar(after)) {
				continue
			}
		}
		if t.lstrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), last)
		}
		if t.rstrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
			pos = stop
		}
		if last < start {
			out = append(out, segment{text: s[last:start], id: -1, start: base + last})
		}
		out = append(out, segment{text: s[start:stop], id: t.id, start: base + start})
		last = stop
	}
	if last < len(s) {
		out = append(out, segment{text: s[last:], id: -1, start: base + last})
	}
	return out
}
