package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// decoder rewrites the list of token strings on the way back to text (HF
// decode_chain); the results are concatenated.
type decoder interface {
	decode(toks []string) []string
}

type seqDecoder []decoder

func (s seqDecoder) decode(toks []string) []string {
	for _, d := range s {
		toks = d.decode(toks)
	}
	return toks
}

// replaceDecoder is HF Replace, applied to each token.
type replaceDecoder struct {
	literal string
	re      *regexp2.Regexp
	content string
}

func (r *replaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if r.re == nil {
			out[i] = strings.ReplaceAll(t, r.literal, r.content)
			continue
		}
		s, err := replaceAll(r.re, t, r.content)
		if err != nil { // only a regex timeout; keep the token as is
			s = t
		}
		out[i] = s
	}
	return out
}

// byteFallbackDecoder is HF ByteFallback: runs of <0xXX> tokens become
// their bytes when those form valid UTF-8, else one U+FFFD per byte token.
type byteFallbackDecoder struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range t[3:5] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = byte(c - '0')
		case c >= 'A' && c <= 'F':
			d = byte(c-'A') + 10
		case c >= 'a' && c <= 'f':
			d = byte(c-'a') + 10
		default:
			return 0, false
		}
		v = v<<4 | d
	}
	return v, true
}

func (byteFallbackDecoder) decode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var buf []byte
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if utf8.Valid(buf) {
			out = append(out, string(buf))
		} else {
			for range buf {
				out = append(out, "\uFFFD")
			}
		}
		buf = buf[:0]
	}
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			buf = append(buf, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fuseDecoder is HF Fuse: all tokens joined into one.
type fuseDecoder struct{}

func (fuseDecoder) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

// stripDecoder is HF Strip: removes up to start leading and stop trailing
// occurrences of content from each token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (s stripDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		for n := 0; n < s.start; n++ {
			r, size := utf8.DecodeRuneInString(t)
			if size == 0 || r != s.content {
				break
			}
			t = t[size:]
		}
		for n := 0; n < s.stop; n++ {
			r, size := utf8.DecodeLastRuneInString(t)
			if size == 0 || r != s.content {
				break
			}
			t = t[:len(t)-size]
		}
		out[i] = t
	}
	return out
}

// byteLevelDecoder is HF ByteLevel: the runes of all tokens mapped back to
// bytes (a token with a rune outside the table keeps its UTF-8 bytes), then
// decoded as UTF-8 with invalid sequences replaced (lossyUTF8).
type byteLevelDecoder struct{}

func (byteLevelDecoder) decode(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		start := len(buf)
		ok := true
		for _, r := range t {
			b, found := runesToBytes[r]
			if !found {
				ok = false
				break
			}
			buf = append(buf, b)
		}
		if !ok {
			buf = append(buf[:start], t...)
		}
	}
	return []string{lossyUTF8(buf)}
}

// metaspaceDecoder is HF Metaspace: the replacement rune becomes a space;
// the first token loses its leading one unless prepend_scheme is "never".
type metaspaceDecoder struct{ m *metaspacePre }

func (d metaspaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if i == 0 && d.m.prepend != "never" {
			t = strings.TrimPrefix(t, d.m.replacement)
		}
		out[i] = strings.ReplaceAll(t, d.m.replacement, " ")
	}
	return out
}

// lossyUTF8 decodes b like Rust's String::from_utf8_lossy: each maximal
// invalid subsequence (a truncated sequence counts as one) becomes one
// U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n != 1 {
			sb.Write(b[:n])
			b = b[n:]
			continue
		}
		sb.WriteRune(utf8.RuneError)
		b = b[invalidPrefixLen(b):]
	}
	return sb.String()
}

// invalidPrefixLen is the length of the maximal prefix of b that starts a
// valid UTF-8 sequence but is cut short (at least 1), per the Unicode
// "substitution of maximal subparts" practice.
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		x := b[n]
		if n == 1 {
			if x < lo || x > hi {
				break
			}
		} else if x < 0x80 || x > 0xBF {
			break
		}
	}
	return n
}

func parseDecoder(raw json.RawMessage) (decoder, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		var seq seqDecoder
		for _, r := range s.Decoders {
			d, err := parseDecoder(r)
			if err != nil {
				return nil, err
			}
			seq = append(seq, d)
		}
		return seq, nil
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
			return &replaceDecoder{literal: *r.Pattern.String, content: r.Content}, nil
		}
		re, err := r.Pattern.compile()
		if err != nil {
			return nil, fmt.Errorf("type \"Replace\": %w", err)
		}
		return &replaceDecoder{re: re, content: r.Content}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var s struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		if utf8.RuneCountInString(s.Content) != 1 || s.Start < 0 || s.Stop < 0 {
			return nil, fmt.Errorf("type \"Strip\": want one content character and start, stop >= 0, got %q, %d, %d", s.Content, s.Start, s.Stop)
		}
		r, _ := utf8.DecodeRuneInString(s.Content)
		return stripDecoder{content: r, start: s.Start, stop: s.Stop}, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		var m struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		p, err := newMetaspace(m.Replacement, m.PrependScheme, m.AddPrefixSpace)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{p}, nil
	}
	return nil, fmt.Errorf("unsupported decoder type %q (supported: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)", typ)
}
