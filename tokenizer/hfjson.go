package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// hfTokenizer is a Hugging Face tokenizer.json pipeline: added tokens,
// normalizer, pre-tokenizer, BPE model, post-processor template, decoder.
type hfTokenizer struct {
	added    *addedVocab
	norm     normalizer   // nil: none
	pre      preTokenizer // nil: none
	bpe      *bpeModel
	dec      decoder   // nil: tokens concatenated
	template *template // from the post-processor
	byteLvl  bool      // some component is ByteLevel
	idToTok  []string  // id -> token string (model vocab and added tokens)
	special  []bool    // id -> added token marked special
	tokToID  map[string]int

	cacheMu sync.RWMutex
	cache   map[string][]int
}

// The tokenizer.json layout (fields not listed are ignored).
type hfFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Model         json.RawMessage `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
}

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// isNull reports an absent or null component.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// componentType reads the "type" field of a component.
func componentType(raw json.RawMessage) (string, error) {
	var c struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", err
	}
	return c.Type, nil
}

// maxVocab bounds ids, so that a hostile file cannot make us allocate
// huge tables (the largest real vocabularies are about 260k).
const maxVocab = 1 << 24

// maxIDSlack: ids may be sparse, but the largest id may not exceed four
// times the number of tokens plus this (a bound on the id tables).
const maxIDSlack = 1 << 16

func parseHFJSON(b []byte) (*hfTokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("no model")
	}
	h := &hfTokenizer{cache: map[string][]int{}}
	var err error
	h.bpe, err = parseBPE(f.Model)
	if err != nil {
		return nil, err
	}

	// id <-> token tables over the model vocabulary and the added tokens.
	h.tokToID = make(map[string]int, len(h.bpe.vocab)+len(f.AddedTokens))
	n := 0
	for tok, id := range h.bpe.vocab {
		h.tokToID[tok] = id
		n = max(n, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocab {
			return nil, fmt.Errorf("added token %q: id %d out of range [0, %d)", a.Content, a.ID, maxVocab)
		}
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d has empty content", a.ID)
		}
		h.tokToID[a.Content] = a.ID
		n = max(n, a.ID+1)
	}
	if entries := len(h.bpe.vocab) + len(f.AddedTokens); n > 4*entries+maxIDSlack {
		return nil, fmt.Errorf("largest id %d is far beyond the %d vocabulary entries", n-1, entries)
	}
	h.idToTok = make([]string, n)
	h.special = make([]bool, n)
	for tok, id := range h.bpe.vocab {
		h.idToTok[id] = tok
	}
	for _, a := range f.AddedTokens {
		h.idToTok[a.ID] = a.Content
		h.special[a.ID] = a.Special
	}

	if !isNull(f.Normalizer) {
		if h.norm, err = parseNormalizer(f.Normalizer); err != nil {
			return nil, fmt.Errorf("normalizer: %w", err)
		}
	}
	if !isNull(f.PreTokenizer) {
		if h.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
			return nil, fmt.Errorf("pre_tokenizer: %w", err)
		}
	}
	if !isNull(f.Decoder) {
		if h.dec, err = parseDecoder(f.Decoder); err != nil {
			return nil, fmt.Errorf("decoder: %w", err)
		}
	}
	h.template = &template{}
	if !isNull(f.PostProcessor) {
		if h.template, err = parsePostProcessor(f.PostProcessor, h.tokToID); err != nil {
			return nil, fmt.Errorf("post_processor: %w", err)
		}
	}
	h.byteLvl = bytes.Contains(f.PreTokenizer, []byte(`"ByteLevel"`)) || bytes.Contains(f.Decoder, []byte(`"ByteLevel"`))
	if h.added, err = newAddedVocab(f.AddedTokens, h.norm); err != nil {
		return nil, fmt.Errorf("added_tokens: %w", err)
	}
	return h, nil
}

func (h *hfTokenizer) kind() string {
	if h.byteLvl {
		return KindByteLevelBPE
	}
	return KindSentencePieceBPE
}

func (h *hfTokenizer) vocabSize() int { return len(h.idToTok) }

func (h *hfTokenizer) isByteToken(id int) bool {
	if id < 0 || id >= len(h.idToTok) {
		return false
	}
	_, ok := parseByteToken(h.idToTok[id])
	return ok
}

func (h *hfTokenizer) tokenID(tok string) int {
	if id, ok := h.tokToID[tok]; ok {
		return id
	}
	return -1
}

// encode runs the pipeline: split off added tokens matched in the raw
// text; normalize each remaining piece; split off added tokens matched in
// normalized text; pre-tokenize into words; BPE each word.
func (h *hfTokenizer) encode(text string) ([]int, error) {
	var ids []int
	for _, seg := range h.added.split(text, h.added.raw, 0) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		normalized := seg.text
		if h.norm != nil {
			var err error
			if normalized, err = h.norm.normalize(normalized); err != nil {
				return nil, err
			}
		}
		for _, nseg := range h.added.split(normalized, h.added.normalized, seg.start) {
			if nseg.id >= 0 {
				ids = append(ids, nseg.id)
				continue
			}
			words := []string{nseg.text}
			if h.pre != nil {
				var err error
				if words, err = h.pre.split(words, nseg.start == 0); err != nil {
					return nil, err
				}
			}
			for _, w := range words {
				wids, err := h.encodeWord(w)
				if err != nil {
					return nil, err
				}
				ids = append(ids, wids...)
			}
		}
	}
	return ids, nil
}

// Words up to this length are cached, up to cacheEntries words.
const (
	cacheWordLen = 64
	cacheEntries = 1 << 16
)

func (h *hfTokenizer) encodeWord(w string) ([]int, error) {
	if w == "" {
		return nil, nil
	}
	cacheable := len(w) <= cacheWordLen
	if cacheable {
		h.cacheMu.RLock()
		ids, ok := h.cache[w]
		h.cacheMu.RUnlock()
		if ok {
			return ids, nil
		}
	}
	ids, err := h.bpe.encodeWord(w)
	if err != nil {
		return nil, err
	}
	if cacheable {
		h.cacheMu.Lock()
		if len(h.cache) >= cacheEntries {
			clear(h.cache)
		}
		h.cache[w] = ids
		h.cacheMu.Unlock()
	}
	return ids, nil
}

// decode maps ids to token strings and runs the decoder chain.
func (h *hfTokenizer) decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(h.idToTok) || h.idToTok[id] == "" {
			continue
		}
		if skipSpecial && h.special[id] {
			continue
		}
		toks = append(toks, h.idToTok[id])
	}
	if h.dec != nil {
		toks = h.dec.decode(toks)
	}
	return strings.Join(toks, "")
}

// parsePostProcessor reads the single-sequence template of a
// TemplateProcessing post-processor (also inside a Sequence); ByteLevel
// post-processors only adjust offsets and add nothing.
func parsePostProcessor(raw json.RawMessage, vocab map[string]int) (*template, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return &template{}, nil
	case "Sequence":
		var s struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		out := &template{}
		for _, p := range s.Processors {
			t, err := parsePostProcessor(p, vocab)
			if err != nil {
				return nil, err
			}
			if len(t.prefix)+len(t.suffix) > 0 {
				if len(out.prefix)+len(out.suffix) > 0 {
					return nil, fmt.Errorf("more than one template in a Sequence")
				}
				out = t
			}
		}
		return out, nil
	case "TemplateProcessing":
		var tp struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []int `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &tp); err != nil {
			return nil, err
		}
		out := &template{}
		seen := false
		for _, piece := range tp.Single {
			switch {
			case piece.Sequence != nil:
				if seen {
					return nil, fmt.Errorf("type \"TemplateProcessing\": single template has two sequences")
				}
				seen = true
			case piece.SpecialToken != nil:
				st, ok := tp.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("type \"TemplateProcessing\": special token %q not in special_tokens", piece.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if id < 0 || id >= maxVocab {
						return nil, fmt.Errorf("type \"TemplateProcessing\": special token %q: id %d out of range", piece.SpecialToken.ID, id)
					}
				}
				if seen {
					out.suffix = append(out.suffix, st.IDs...)
				} else {
					out.prefix = append(out.prefix, st.IDs...)
				}
			default:
				return nil, fmt.Errorf("type \"TemplateProcessing\": template piece is neither SpecialToken nor Sequence")
			}
		}
		if !seen {
			return nil, fmt.Errorf("type \"TemplateProcessing\": single template has no sequence")
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported post-processor type %q (supported: TemplateProcessing, ByteLevel, Sequence)", typ)
}
