package tokenizer

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	sentencepiece "github.com/eliben/go-sentencepiece"
	"google.golang.org/protobuf/encoding/protowire"
)

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

// spModel is a SentencePiece BPE tokenizer.model, encoded with
// github.com/eliben/go-sentencepiece (v0.7.0). That library refuses
// models with add_dummy_prefix or remove_extra_whitespaces set, so the
// model bytes handed to it have both cleared and this type applies them
// itself (the "shim" of docs/go-deps.md §4, extended to
// remove_extra_whitespaces=true).
type spModel struct {
	proc   *sentencepiece.Processor
	pieces []spPiece
	byID   map[string]int

	// inPiece holds every rune of every mergeable (normal, user-defined,
	// unused) piece; other runes are barriers that never merge.
	inPiece map[rune]bool

	addDummyPrefix, removeExtraWhitespaces bool
	unkSurface                             string
	bosID, eosID, unkID                    int
}

type spPiece struct {
	piece string
	typ   int
}

// parseSentencePiece checks the model (BPE, identity normalization,
// whitespace escaped) and builds the processor.
func parseSentencePiece(b []byte) (*spModel, error) {
	m := &spModel{
		addDummyPrefix: true, removeExtraWhitespaces: true, unkSurface: " \u2047 ",
		bosID: 1, eosID: 2, unkID: 0, byID: map[string]int{},
	}
	var (
		modelType    int64 = 1 // UNIGRAM is the proto default
		byteFallback bool
		normName     string
		charsmap     []byte
		escapeWS     = true
		suffixWS     bool
		rebuilt      []byte // the model without its normalizer_spec
	)
	err := walkProto(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64, raw []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType: // pieces
			p := spPiece{typ: spNormal}
			err := walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, u uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					p.piece = string(v)
				case num == 3 && typ == protowire.VarintType:
					p.typ = int(int32(u))
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("piece %d: %w", len(m.pieces), err)
			}
			if p.typ < spNormal || p.typ > spByte {
				return fmt.Errorf("piece %d %q: unknown type %d", len(m.pieces), p.piece, p.typ)
			}
			if p.piece == "" {
				return fmt.Errorf("piece %d is empty", len(m.pieces))
			}
			if !utf8.ValidString(p.piece) {
				return fmt.Errorf("piece %d is not valid UTF-8", len(m.pieces))
			}
			if _, dup := m.byID[p.piece]; !dup {
				m.byID[p.piece] = len(m.pieces)
			}
			m.pieces = append(m.pieces, p)
			if len(m.pieces) > maxVocab {
				return fmt.Errorf("more than %d pieces", maxVocab)
			}
		case num == 2 && typ == protowire.BytesType: // trainer_spec
			err := walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, u uint64, _ []byte) error {
				switch {
				case num == 3 && typ == protowire.VarintType:
					modelType = int64(u)
				case num == 24 && typ == protowire.VarintType:
					suffixWS = u != 0
				case num == 35 && typ == protowire.VarintType:
					byteFallback = u != 0
				case num == 40 && typ == protowire.VarintType:
					m.unkID = int(int32(u))
				case num == 41 && typ == protowire.VarintType:
					m.bosID = int(int32(u))
				case num == 42 && typ == protowire.VarintType:
					m.eosID = int(int32(u))
				case num == 44 && typ == protowire.BytesType:
					m.unkSurface = string(v)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("trainer_spec: %w", err)
			}
		case num == 3 && typ == protowire.BytesType: // normalizer_spec
			err := walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, u uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					normName = string(v)
				case num == 2 && typ == protowire.BytesType:
					charsmap = v
				case num == 3 && typ == protowire.VarintType:
					m.addDummyPrefix = u != 0
				case num == 4 && typ == protowire.VarintType:
					m.removeExtraWhitespaces = u != 0
				case num == 5 && typ == protowire.VarintType:
					escapeWS = u != 0
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("normalizer_spec: %w", err)
			}
		}
		if num != 3 {
			rebuilt = append(rebuilt, raw...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("not a sentencepiece model: %w", err)
	}
	if len(m.pieces) == 0 {
		return nil, fmt.Errorf("not a sentencepiece model: no pieces")
	}
	modelNames := map[int64]string{1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}
	if modelType != 2 {
		name := modelNames[modelType]
		if name == "" {
			name = fmt.Sprint(modelType)
		}
		return nil, fmt.Errorf("unsupported sentencepiece model type %s (supported: BPE)", name)
	}
	if len(charsmap) > 0 {
		return nil, fmt.Errorf("unsupported sentencepiece normalizer %q with a precompiled charsmap (supported: identity)", normName)
	}
	if !escapeWS || suffixWS {
		return nil, fmt.Errorf("unsupported sentencepiece options: escape_whitespaces=%v, treat_whitespace_as_suffix=%v (supported: true, false)", escapeWS, suffixWS)
	}
	for _, p := range m.pieces {
		if p.typ == spByte && !byteFallback {
			return nil, fmt.Errorf("byte piece %q but byte_fallback is false", p.piece)
		}
	}
	unk := 0
	for i, p := range m.pieces {
		if p.typ == spUnknown {
			unk++
			m.unkID = i
		}
	}
	if unk != 1 {
		return nil, fmt.Errorf("want exactly one unknown piece, found %d", unk)
	}
	if byteFallback {
		for c := 0; c < 256; c++ {
			id, ok := m.byID[fmt.Sprintf("<0x%02X>", c)]
			if !ok || m.pieces[id].typ != spByte {
				return nil, fmt.Errorf("byte_fallback is set but byte piece <0x%02X> is missing", c)
			}
		}
	}
	for _, id := range []*int{&m.bosID, &m.eosID} {
		if *id < 0 || *id >= len(m.pieces) || m.pieces[*id].typ != spControl {
			*id = -1
		}
	}
	m.inPiece = map[rune]bool{' ': true}
	for _, p := range m.pieces {
		if p.typ == spNormal || p.typ == spUserDefined || p.typ == spUnused {
			for _, r := range p.piece {
				m.inPiece[r] = true
			}
		}
	}
	// The shim: a normalizer_spec with both options off (the rest kept).
	spec := protowire.AppendTag(nil, 1, protowire.BytesType)
	spec = protowire.AppendString(spec, "identity")
	spec = protowire.AppendTag(spec, 3, protowire.VarintType)
	spec = protowire.AppendVarint(spec, 0)
	spec = protowire.AppendTag(spec, 4, protowire.VarintType)
	spec = protowire.AppendVarint(spec, 0)
	spec = protowire.AppendTag(spec, 5, protowire.VarintType)
	spec = protowire.AppendVarint(spec, 1)
	rebuilt = protowire.AppendTag(rebuilt, 3, protowire.BytesType)
	rebuilt = protowire.AppendBytes(rebuilt, spec)
	m.proc, err = sentencepiece.NewProcessor(bytes.NewReader(rebuilt))
	if err != nil {
		return nil, fmt.Errorf("sentencepiece: %w", err)
	}
	return m, nil
}

// walkProto calls f for each top-level field of a protobuf message: its
// number, wire type, the payload of a bytes field, the value of a varint
// or fixed field, and the field's raw encoding.
func walkProto(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, u uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		var (
			v []byte
			u uint64
			m int
		)
		switch typ {
		case protowire.VarintType:
			u, m = protowire.ConsumeVarint(b[n:])
		case protowire.Fixed32Type:
			var x uint32
			x, m = protowire.ConsumeFixed32(b[n:])
			u = uint64(x)
		case protowire.Fixed64Type:
			u, m = protowire.ConsumeFixed64(b[n:])
		case protowire.BytesType:
			v, m = protowire.ConsumeBytes(b[n:])
		default:
			m = protowire.ConsumeFieldValue(num, typ, b[n:])
		}
		if m < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		if err := f(num, typ, v, u, b[:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

func (m *spModel) vocabSize() int { return len(m.pieces) }

func (m *spModel) isByteToken(id int) bool {
	return id >= 0 && id < len(m.pieces) && m.pieces[id].typ == spByte
}

func (m *spModel) tokenID(tok string) int {
	if id, ok := m.byID[tok]; ok {
		return id
	}
	return -1
}

// encode applies the normalizer options the processor was told to skip,
// then encodes: remove_extra_whitespaces strips ASCII spaces at both ends
// and collapses runs of them; add_dummy_prefix puts one space in front of
// non-empty text.
func (m *spModel) encode(text string) ([]int, error) {
	if m.removeExtraWhitespaces {
		text = collapseSpaces(text)
	}
	if text == "" {
		return []int{}, nil
	}
	if m.addDummyPrefix {
		text = " " + text
	}
	// A rune in no mergeable piece never merges with its neighbours, so
	// the text between such runes is encoded piece by piece: the same
	// result as one call, with much smaller merge queues.
	ids := make([]int, 0, len(text)/2)
	add := func(seg string) {
		for _, t := range m.proc.Encode(seg) {
			ids = append(ids, t.ID)
		}
	}
	start := 0
	for i, r := range text {
		if r == ' ' || m.inPiece[r] {
			continue
		}
		if start < i {
			add(text[start:i])
		}
		n := utf8.RuneLen(r)
		add(text[i : i+n])
		start = i + n
	}
	if start < len(text) {
		add(text[start:])
	}
	return ids, nil
}

// collapseSpaces trims ASCII spaces at both ends of s and replaces each
// inner run of them by one.
func collapseSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	prev := false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if prev {
				continue
			}
			prev = true
		} else {
			prev = false
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// decode follows sentencepiece's DecodeIds: control pieces produce nothing,
// unknown pieces the unk surface (" ⁇ "), byte pieces their bytes (a run
// that is not valid UTF-8 gives one U+FFFD per byte), other pieces their
// text with ▁ as space; with add_dummy_prefix the first piece that
// produces text loses one leading ▁.
func (m *spModel) decode(ids []int, skipSpecial bool) string {
	var sb strings.Builder
	var buf []byte
	atStart := m.addDummyPrefix
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if utf8.Valid(buf) {
			sb.Write(buf)
		} else {
			for range buf {
				sb.WriteRune(utf8.RuneError)
			}
		}
		buf = buf[:0]
		atStart = false
	}
	for _, id := range ids {
		if id < 0 || id >= len(m.pieces) {
			continue
		}
		p := m.pieces[id]
		if p.typ == spByte {
			if b, ok := parseByteToken(p.piece); ok {
				buf = append(buf, b)
			}
			continue
		}
		flush()
		var s string
		switch p.typ {
		case spControl:
			if skipSpecial {
				continue
			}
			s = p.piece
		case spUnknown:
			s = m.unkSurface
		default:
			s = p.piece
			if atStart {
				s = strings.TrimPrefix(s, "\u2581")
			}
			s = strings.ReplaceAll(s, "\u2581", " ")
		}
		if s != "" {
			atStart = false
		}
		sb.WriteString(s)
	}
	flush()
	return sb.String()
}
