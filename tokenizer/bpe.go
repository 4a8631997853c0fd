package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpeModel is HF's BPE model: a vocabulary, ranked merges, and the
// handling of characters missing from the vocabulary (byte_fallback to
// <0xXX> tokens, else the unk token, consecutive unks fused with fuse_unk).
type bpeModel struct {
	vocab        map[string]int
	merges       map[uint64]merge // pair (left id << 32 | right id) -> merge
	unk          int              // -1: none
	byteFallback bool
	byteIDs      [256]int // <0xXX> ids, -1 when missing
	fuseUnk      bool
	ignoreMerges bool
	// barrierFree: no merge has a byte token or the unk token on either
	// side, so those symbols split a word into independent runs.
	barrierFree bool
}

type merge struct {
	rank, id int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func parseBPE(raw json.RawMessage) (*bpeModel, error) {
	var typ struct {
		Type   string          `json:"type"`
		Merges json.RawMessage `json:"merges"`
	}
	if err := json.Unmarshal(raw, &typ); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if typ.Type != "BPE" && !(typ.Type == "" && typ.Merges != nil) {
		return nil, fmt.Errorf("unsupported model type %q (supported: BPE)", typ.Type)
	}
	var m struct {
		Type                    string            `json:"type"`
		Dropout                 *float64          `json:"dropout"`
		UnkToken                *string           `json:"unk_token"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		FuseUnk                 bool              `json:"fuse_unk"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, fmt.Errorf("model: BPE dropout %v is not supported (inference uses none)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("model: BPE continuing_subword_prefix %q is not supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("model: BPE end_of_word_suffix %q is not supported", *m.EndOfWordSuffix)
	}
	if len(m.Vocab) == 0 {
		return nil, fmt.Errorf("model: empty vocab")
	}
	b := &bpeModel{vocab: m.Vocab, unk: -1, byteFallback: m.ByteFallback, fuseUnk: m.FuseUnk, ignoreMerges: m.IgnoreMerges}
	seen := make(map[int]string, len(m.Vocab))
	for tok, id := range m.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("model: token %q: id %d out of range [0, %d)", tok, id, maxVocab)
		}
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("model: tokens %q and %q share id %d", other, tok, id)
		}
		seen[id] = tok
	}
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model: unk_token %q is not in the vocab", *m.UnkToken)
		}
		b.unk = id
	}
	for i := range b.byteIDs {
		b.byteIDs[i] = -1
		if id, ok := m.Vocab[fmt.Sprintf("<0x%02X>", i)]; ok {
			b.byteIDs[i] = id
		}
	}
	b.merges = make(map[uint64]merge, len(m.Merges))
	for rank, raw := range m.Merges {
		var left, right string
		var s string
		var pair []string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			parts := strings.Split(s, " ")
			if len(parts) != 2 {
				return nil, fmt.Errorf("model: merge %d %q is not two tokens separated by one space", rank, s)
			}
			left, right = parts[0], parts[1]
		case json.Unmarshal(raw, &pair) == nil && len(pair) == 2:
			left, right = pair[0], pair[1]
		default:
			return nil, fmt.Errorf("model: merge %d is neither \"a b\" nor [\"a\", \"b\"]: %s", rank, shortText(string(raw)))
		}
		a, okA := m.Vocab[left]
		c, okB := m.Vocab[right]
		id, okM := m.Vocab[left+right]
		if !okA || !okB || !okM {
			return nil, fmt.Errorf("model: merge %d (%q, %q): token %q not in the vocab", rank, left, right, missing(m.Vocab, left, right, left+right))
		}
		k := pairKey(int32(a), int32(c))
		if _, dup := b.merges[k]; !dup { // the first (best) rank wins, as in HF
			b.merges[k] = merge{rank: int32(rank), id: int32(id)}
		}
	}
	b.barrierFree = true
	isBarrier := map[int]bool{}
	if b.unk >= 0 {
		isBarrier[b.unk] = true
	}
	for _, id := range b.byteIDs {
		if id >= 0 {
			isBarrier[id] = true
		}
	}
	for k := range b.merges {
		if isBarrier[int(k>>32)] || isBarrier[int(uint32(k))] {
			b.barrierFree = false
			break
		}
	}
	return b, nil
}

func missing(v map[string]int, toks ...string) string {
	for _, t := range toks {
		if _, ok := v[t]; !ok {
			return t
		}
	}
	return ""
}

// symbol is one live piece of a word during merging (a doubly linked list
// over a slice).
type symbol struct {
	id         int32
	prev, next int32
	dead       bool
}

// candidate is a possible merge of the symbol at pos with its next one.
type candidate struct {
	rank, pos, left, right, id int32
}

// candidateHeap is a binary min-heap by (rank, pos): the lowest-ranked
// merge first, the leftmost among equals (HF's order).
type candidateHeap []candidate

func (h candidateHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *candidateHeap) push(c candidate) {
	*h = append(*h, c)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *candidateHeap) pop() candidate {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// encodeWord tokenizes one word: whole-word lookup with ignore_merges;
// else one symbol per character (byte tokens or unk for characters not in
// the vocabulary), then the lowest-ranked applicable merge, leftmost first,
// until none applies.
//
// When no merge involves a byte or unk token (barrierFree), those symbols
// can never merge, so each run of symbols between them is merged on its
// own: the result is the same, with smaller heaps.
func (b *bpeModel) encodeWord(w string) ([]int, error) {
	if b.ignoreMerges {
		if id, ok := b.vocab[w]; ok {
			return []int{id}, nil
		}
	}
	syms := make([]symbol, 0, len(w))
	out := make([]int, 0, len(w)/3+1)
	var h candidateHeap // reused by every run
	// emit adds the symbol of a character missing from the vocabulary.
	emit := func(id int) {
		if b.barrierFree {
			out = append(out, id)
		} else {
			syms = append(syms, symbol{id: int32(id)})
		}
	}
	lastUnk := false
	for i, r := range w {
		n := utf8.RuneLen(r)
		if r == utf8.RuneError {
			_, n = utf8.DecodeRuneInString(w[i:])
		}
		ch := w[i : i+n]
		if id, ok := b.vocab[ch]; ok {
			syms = append(syms, symbol{id: int32(id)})
			lastUnk = false
			continue
		}
		if b.barrierFree && len(syms) > 0 {
			out = b.mergeRun(syms, out, &h)
			syms = syms[:0]
		}
		if b.byteFallback {
			all := true
			for j := 0; j < len(ch); j++ {
				if b.byteIDs[ch[j]] < 0 {
					all = false
					break
				}
			}
			if all {
				for j := 0; j < len(ch); j++ {
					emit(b.byteIDs[ch[j]])
				}
				lastUnk = false
				continue
			}
		}
		if b.unk < 0 {
			// HF drops a character it cannot represent when the model has
			// no unk token.
			continue
		}
		if !(b.fuseUnk && lastUnk) {
			emit(b.unk)
			lastUnk = true
		}
	}
	return b.mergeRun(syms, out, &h), nil
}

// mergeRun applies the merges to syms (reusing it) and appends the
// resulting ids to out. h is scratch space.
func (b *bpeModel) mergeRun(syms []symbol, out []int, hp *candidateHeap) []int {
	if len(syms) == 0 {
		return out
	}
	for i := range syms {
		syms[i].prev, syms[i].next, syms[i].dead = int32(i-1), int32(i+1), false
	}
	syms[len(syms)-1].next = -1
	if len(syms) > 1 {
		h := (*hp)[:0]
		defer func() { *hp = h }()
		for i := int32(0); int(i)+1 < len(syms); i++ {
			if m, ok := b.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
				h.push(candidate{rank: m.rank, pos: i, left: syms[i].id, right: syms[i+1].id, id: m.id})
			}
		}
		for len(h) > 0 {
			c := h.pop()
			s := &syms[c.pos]
			// Skip stale candidates: the symbol or its neighbour changed.
			if s.dead || s.next < 0 || s.id != c.left || syms[s.next].id != c.right {
				continue
			}
			nx := s.next
			s.id = c.id
			syms[nx].dead = true
			s.next = syms[nx].next
			if s.next >= 0 {
				syms[s.next].prev = c.pos
			}
			if s.prev >= 0 {
				p := s.prev
				if m, ok := b.merges[pairKey(syms[p].id, s.id)]; ok {
					h.push(candidate{rank: m.rank, pos: p, left: syms[p].id, right: s.id, id: m.id})
				}
			}
			if s.next >= 0 {
				if m, ok := b.merges[pairKey(s.id, syms[s.next].id)]; ok {
					h.push(candidate{rank: m.rank, pos: c.pos, left: s.id, right: syms[s.next].id, id: m.id})
				}
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}

// bytesToRunes is GPT-2's bytes_to_unicode: printable Latin-1 bytes
// ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves, the other 68 bytes to
// U+0100 onwards in byte order. runesToBytes is its inverse.
var (
	bytesToRunes [256]rune
	runesToBytes = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			bytesToRunes[b] = rune(b)
		} else {
			bytesToRunes[b] = rune(256 + n)
			n++
		}
		runesToBytes[bytesToRunes[b]] = byte(b)
	}
}

// byteLevelEncode maps every byte of s to its printable rune.
func byteLevelEncode(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		sb.WriteRune(bytesToRunes[s[i]])
	}
	return sb.String()
}
