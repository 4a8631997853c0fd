package tokenizer

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/smeltml/smelt/internal/testmodels"
	"google.golang.org/protobuf/encoding/protowire"
)

// exercise runs every entry point on tok; it must not panic.
func exercise(t *testing.T, tok *Tokenizer, text string) {
	ids, err := tok.EncodeWithSpecial(text)
	if err != nil {
		return
	}
	for _, id := range ids {
		if id < 0 || id >= tok.VocabSize() {
			t.Fatalf("Encode(%q) gave id %d outside [0, %d)", text, id, tok.VocabSize())
		}
	}
	tok.Decode(append(ids, -1, tok.VocabSize(), 1<<40))
	d := tok.NewStreamDecoder()
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(d.Next(id))
	}
	sb.WriteString(d.Flush())
	if got, want := sb.String(), tok.Decode(ids); got != want {
		t.Fatalf("streamed %q, Decode gives %q", got, want)
	}
}

func FuzzLoadJSON(f *testing.F) {
	f.Add(byteLevelFixture(f))
	f.Add(metaspaceFixture(f, true, "first"))
	f.Add(metaspaceFixture(f, false, "always"))
	for _, m := range []string{"stories260K"} {
		b, err := os.ReadFile(testmodels.Path(f, m, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"added_tokens":[{"id":3,"content":"<s>","special":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := NewFromJSON(b)
		if err != nil {
			return
		}
		for _, s := range []string{"", "ab <s> abab", "héllo wörld  \n\t 123 🙂", "C<s>, x"} {
			exercise(t, tok, s)
		}
	})
}

func FuzzLoadSentencePiece(f *testing.F) {
	for _, m := range []string{"stories260K"} {
		b, err := os.ReadFile(testmodels.Path(f, m, "tokenizer.model"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(tinySPModel(2, true, true, nil))
	f.Add(tinySPModel(1, false, false, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSentencePiece(b)
		if err != nil {
			return
		}
		tok := &Tokenizer{kind: KindSentencePieceModel, impl: m, vocabSize: m.vocabSize(), bos: m.bosID}
		for _, s := range []string{"", "  ab  ab ", "héllo\n🙂"} {
			exercise(t, tok, s)
		}
	})
}

// FuzzEncode: any valid UTF-8 text encodes without error; byte-level
// tokenizers round-trip every text exactly, ref29m's round-trip every text
// without ▁ (which decodes to a space) or literal special tokens.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "Once upon a time", "C<s>, x", "  def f(x):\n\treturn x  ", "naïve 日本語 🙂", "\u2581a", "a\x00b", "</s><unk>"} {
		f.Add(s)
	}
	js := loadFile(f, testmodels.Path(f, "ref29m", "tokenizer.json"))
	sp := loadFile(f, testmodels.Path(f, "ref29m", "tokenizer.model"))
	bl, err := NewFromJSON(byteLevelFixture(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range []*Tokenizer{js, sp, bl} {
			ids, err := tok.Encode(s)
			if !utf8.ValidString(s) {
				if err == nil {
					t.Fatalf("%s: Encode accepted invalid UTF-8 %q", tok.Kind(), s)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", tok.Kind(), s, err)
			}
			exercise(t, tok, s)
			special := strings.Contains(s, "<s>") || strings.Contains(s, "</s>") || strings.Contains(s, "<unk>") ||
				strings.Contains(s, "<|endoftext|>") || strings.Contains(s, "<|begin_of_text|>")
			if strings.Contains(s, "\u2581") || special {
				continue
			}
			if got := tok.Decode(ids); got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.Kind(), s, got)
			}
		}
	})
}

// tinySPModel builds a sentencepiece ModelProto: <unk> <s> </s>, the 256
// byte pieces when byteFallback, then ▁ a b ▁a ab with scores, and the
// given model type and normalizer options. charsmap, when set, is a
// precompiled normalization map.
func tinySPModel(modelType int, byteFallback, dummyPrefix bool, charsmap []byte) []byte {
	var b []byte
	piece := func(s string, score float32, typ int) {
		var p []byte
		p = protowire.AppendTag(p, 1, protowire.BytesType)
		p = protowire.AppendString(p, s)
		p = protowire.AppendTag(p, 2, protowire.Fixed32Type)
		p = protowire.AppendFixed32(p, mathFloat32bits(score))
		p = protowire.AppendTag(p, 3, protowire.VarintType)
		p = protowire.AppendVarint(p, uint64(typ))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	}
	piece("<unk>", 0, spUnknown)
	piece("<s>", 0, spControl)
	piece("</s>", 0, spControl)
	if byteFallback {
		for i := 0; i < 256; i++ {
			piece(byteTokenName(byte(i)), 0, spByte)
		}
	}
	for i, s := range []string{"▁", "a", "b", "▁a", "ab"} {
		piece(s, float32(-i), spNormal)
	}
	var ts []byte
	ts = protowire.AppendTag(ts, 3, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(modelType))
	ts = protowire.AppendTag(ts, 35, protowire.VarintType)
	ts = protowire.AppendVarint(ts, boolInt(byteFallback))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	var ns []byte
	ns = protowire.AppendTag(ns, 1, protowire.BytesType)
	ns = protowire.AppendString(ns, "identity")
	if charsmap != nil {
		ns = protowire.AppendTag(ns, 2, protowire.BytesType)
		ns = protowire.AppendBytes(ns, charsmap)
	}
	ns = protowire.AppendTag(ns, 3, protowire.VarintType)
	ns = protowire.AppendVarint(ns, boolInt(dummyPrefix))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, ns)
	return b
}

func boolInt(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
