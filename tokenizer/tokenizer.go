package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// Kinds reported by (*Tokenizer).Kind.
const (
	// KindByteLevelBPE is a tokenizer.json BPE model whose pre-tokenizer
	// or decoder is ByteLevel (GPT-2, Llama-3, Qwen2 style).
	KindByteLevelBPE = "tokenizer.json:bpe-byte-level"
	// KindSentencePieceBPE is a tokenizer.json BPE model without
	// ByteLevel: SentencePiece-style, with ▁ for spaces and usually
	// byte_fallback (Llama-2, Mistral style).
	KindSentencePieceBPE = "tokenizer.json:bpe-sentencepiece"
	// KindSentencePieceModel is a SentencePiece tokenizer.model (BPE).
	KindSentencePieceModel = "tokenizer.model:bpe"
)

// MaxFileSize bounds the tokenizer files read (tokenizer.json of the
// largest vocabularies in use are tens of MB).
const MaxFileSize = 512 << 20

// Tokenizer turns text into token ids and back. It is safe for concurrent
// use. Build one with Load, LoadJSON or LoadSentencePiece.
type Tokenizer struct {
	kind   string
	source string // file it was loaded from, for errors
	impl   impl

	vocabSize int
	bos       int   // -1 when none
	eos       []int // may be empty
	// prefix and suffix are what EncodeWithSpecial adds around the ids.
	prefix, suffix []int
}

// impl is one tokenizer kind.
type impl interface {
	// encode tokenizes valid UTF-8 text without adding special tokens.
	encode(text string) ([]int, error)
	// decode turns ids into text; special (control) tokens are left out
	// when skipSpecial is set, out-of-range ids always.
	decode(ids []int, skipSpecial bool) string
	// tokenID returns the id of a token's text form (for "<s>" in
	// tokenizer_config.json), or -1.
	tokenID(tok string) int
	// vocabSize is the largest id plus one.
	vocabSize() int
	// isByteToken reports a byte-fallback token (<0xXX>).
	isByteToken(id int) bool
}

// Kind names the tokenizer's type: one of the Kind* constants.
func (t *Tokenizer) Kind() string { return t.kind }

// VocabSize is the number of ids: the largest id the tokenizer can produce,
// plus one (model vocabulary and added tokens).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// BOS is the beginning-of-sequence id, or -1 if the tokenizer has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS lists the end-of-sequence ids (generation stops at any of them);
// generation_config.json may name several (Llama-3). Empty if none.
func (t *Tokenizer) EOS() []int { return append([]int(nil), t.eos...) }

// Source is the file the tokenizer was loaded from.
func (t *Tokenizer) Source() string { return t.source }

// Encode tokenizes text without adding special tokens (no BOS/EOS).
// Special tokens written literally in the text are still recognized by
// tokenizer.json tokenizers (a literal "<s>" becomes BOS), never by
// tokenizer.model ones: see the package doc. Text must be valid UTF-8.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	if !utf8.ValidString(text) {
		i := 0
		for i < len(text) {
			r, n := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, fmt.Errorf("tokenizer: text is not valid UTF-8 (byte %d)", i)
	}
	ids, err := t.impl.encode(text)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", t.source, err)
	}
	return ids, nil
}

// EncodeWithSpecial tokenizes text and adds the special tokens the
// tokenizer's configuration asks for (see the package doc, "Special
// tokens"): for Llama-style tokenizers one BOS in front.
func (t *Tokenizer) EncodeWithSpecial(text string) ([]int, error) {
	ids, err := t.Encode(text)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(t.prefix)+len(ids)+len(t.suffix))
	out = append(out, t.prefix...)
	out = append(out, ids...)
	return append(out, t.suffix...), nil
}

// Decode turns ids back into text, leaving out special tokens (BOS, EOS,
// pad, other added tokens marked special) and ids outside the vocabulary.
// Byte-fallback or byte-level sequences that are not valid UTF-8 decode
// to U+FFFD.
func (t *Tokenizer) Decode(ids []int) string { return t.impl.decode(ids, true) }

// DecodeWithSpecial is Decode keeping special tokens as their text.
func (t *Tokenizer) DecodeWithSpecial(ids []int) string { return t.impl.decode(ids, false) }

// Load reads the tokenizer in a model folder: tokenizer.json when present,
// else tokenizer.model. tokenizer_config.json, special_tokens_map.json,
// generation_config.json and config.json, when present, decide BOS, EOS and
// what EncodeWithSpecial adds (see the package doc).
func Load(dir string) (*Tokenizer, error) {
	js := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(js); err == nil {
		return LoadJSON(js)
	}
	sp := filepath.Join(dir, "tokenizer.model")
	if _, err := os.Stat(sp); err == nil {
		return LoadSentencePiece(sp)
	}
	return nil, fmt.Errorf("tokenizer: %s has neither tokenizer.json nor tokenizer.model", dir)
}

// LoadJSON reads a Hugging Face tokenizer.json, plus the configuration
// files beside it (see Load).
func LoadJSON(path string) (*Tokenizer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	h, err := parseHFJSON(b)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t := &Tokenizer{kind: h.kind(), source: path, impl: h, vocabSize: h.vocabSize()}
	if err := t.configure(filepath.Dir(path), h.template); err != nil {
		return nil, err
	}
	return t, nil
}

// LoadSentencePiece reads a SentencePiece tokenizer.model (BPE), plus the
// configuration files beside it (see Load).
func LoadSentencePiece(path string) (*Tokenizer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseSentencePiece(b)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t := &Tokenizer{kind: KindSentencePieceModel, source: path, impl: s, vocabSize: s.vocabSize()}
	tmpl := &template{}
	if s.bosID >= 0 {
		tmpl.prefix = []int{s.bosID} // sentencepiece Llama convention: add BOS
	}
	if err := t.configure(filepath.Dir(path), tmpl); err != nil {
		return nil, err
	}
	return t, nil
}

// NewFromJSON builds a tokenizer from tokenizer.json bytes alone (no
// configuration files: BOS and EOS come from the post-processor template
// and the added tokens "<s>", "</s>", "<|begin_of_text|>", ... if present).
func NewFromJSON(b []byte) (*Tokenizer, error) {
	h, err := parseHFJSON(b)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	t := &Tokenizer{kind: h.kind(), source: "tokenizer.json", impl: h, vocabSize: h.vocabSize()}
	if err := t.configure("", h.template); err != nil {
		return nil, err
	}
	return t, nil
}

func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("tokenizer: %s: %d bytes, more than the limit of %d", path, st.Size(), MaxFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return b, nil
}

// template is what EncodeWithSpecial adds, as found in the tokenizer file
// itself (post-processor, or BOS for tokenizer.model).
type template struct {
	prefix, suffix []int
}

// hfConfig holds the fields of tokenizer_config.json, special_tokens_map.json,
// generation_config.json and config.json that matter here.
type hfConfig struct {
	BOSToken    json.RawMessage `json:"bos_token"`
	EOSToken    json.RawMessage `json:"eos_token"`
	AddBOSToken *bool           `json:"add_bos_token"`
	AddEOSToken *bool           `json:"add_eos_token"`
	BOSTokenID  json.RawMessage `json:"bos_token_id"`
	EOSTokenID  json.RawMessage `json:"eos_token_id"`
}

func readConfig(dir, name string) (*hfConfig, error) {
	if dir == "" {
		return nil, nil
	}
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var c hfConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", p, err)
	}
	return &c, nil
}

// tokenString reads a token given as "<s>" or {"content": "<s>", ...}.
func tokenString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var o struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Content != "" {
		return o.Content, true
	}
	return "", false
}

// tokenIDs reads an id given as 2 or [128001, 128009].
func tokenIDs(raw json.RawMessage) ([]int, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return []int{n}, true
	}
	var l []int
	if json.Unmarshal(raw, &l) == nil && len(l) > 0 {
		return l, true
	}
	return nil, false
}

// configure sets BOS, EOS and the EncodeWithSpecial template from the
// configuration files in dir (any may be missing) and the tokenizer's own
// template. The rules are in the package doc.
func (t *Tokenizer) configure(dir string, own *template) error {
	var cfgs [4]*hfConfig // generation_config, config, tokenizer_config, special_tokens_map
	for i, name := range []string{"generation_config.json", "config.json", "tokenizer_config.json", "special_tokens_map.json"} {
		c, err := readConfig(dir, name)
		if err != nil {
			return err
		}
		cfgs[i] = c
	}
	gen, model, tokcfg, special := cfgs[0], cfgs[1], cfgs[2], cfgs[3]

	lookup := func(raw json.RawMessage) int {
		if s, ok := tokenString(raw); ok {
			return t.impl.tokenID(s)
		}
		return -1
	}
	t.bos, t.eos = -1, nil
	for _, c := range []*hfConfig{gen, model} {
		if c == nil {
			continue
		}
		if ids, ok := tokenIDs(c.BOSTokenID); ok && t.bos < 0 {
			t.bos = ids[0]
		}
		if ids, ok := tokenIDs(c.EOSTokenID); ok && t.eos == nil {
			t.eos = ids
		}
	}
	for _, c := range []*hfConfig{tokcfg, special} {
		if c == nil {
			continue
		}
		if id := lookup(c.BOSToken); id >= 0 && t.bos < 0 {
			t.bos = id
		}
		if id := lookup(c.EOSToken); id >= 0 && t.eos == nil {
			t.eos = []int{id}
		}
	}
	if t.bos < 0 {
		for _, s := range []string{"<s>", "<|begin_of_text|>", "<bos>"} {
			if id := t.impl.tokenID(s); id >= 0 {
				t.bos = id
				break
			}
		}
	}
	if t.eos == nil {
		for _, s := range []string{"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"} {
			if id := t.impl.tokenID(s); id >= 0 {
				t.eos = []int{id}
				break
			}
		}
	}
	for _, id := range append(append(append([]int{t.bos}, t.eos...), own.prefix...), own.suffix...) {
		if id >= t.vocabSize {
			return fmt.Errorf("tokenizer: %s: special token id %d is outside the vocabulary of %d", t.source, id, t.vocabSize)
		}
	}

	t.prefix, t.suffix = own.prefix, own.suffix
	if tokcfg != nil && (tokcfg.AddBOSToken != nil || tokcfg.AddEOSToken != nil) {
		// LlamaTokenizer(Fast), GemmaTokenizer(Fast): the flags rebuild the
		// post-processor, so they win over the file's template.
		t.prefix, t.suffix = nil, nil
		if tokcfg.AddBOSToken != nil && *tokcfg.AddBOSToken {
			if t.bos < 0 {
				return fmt.Errorf("tokenizer: %s: add_bos_token is set but no BOS token is known", filepath.Join(dir, "tokenizer_config.json"))
			}
			t.prefix = []int{t.bos}
		}
		if tokcfg.AddEOSToken != nil && *tokcfg.AddEOSToken {
			if len(t.eos) == 0 {
				return fmt.Errorf("tokenizer: %s: add_eos_token is set but no EOS token is known", filepath.Join(dir, "tokenizer_config.json"))
			}
			t.suffix = []int{t.eos[0]}
		}
	}
	return nil
}

// TokenID returns the id of a token given as its vocabulary string ("<s>",
// "▁the", "Ġthe"), or -1.
func (t *Tokenizer) TokenID(tok string) int { return t.impl.tokenID(tok) }

// shortText abbreviates s for error messages.
func shortText(s string) string {
	if len(s) <= 40 {
		return fmt.Sprintf("%q", s)
	}
	i := 40
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%q…", s[:i])
}
