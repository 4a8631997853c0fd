package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// llama3Pattern is the pre-tokenizer regex of Llama-3's tokenizer.json.
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// gpt2Alphabet lists the 256 byte-level runes in GPT-2's vocabulary order:
// '!'..'~' (ids 0-93), '¡'..'¬' (94-105), '®'..'ÿ' (106-187), then the
// remapped bytes 0x00..0x20, 0x7F..0xA0, 0xAD as U+0100.. (188-255), so
// 'Ġ' (space) is 220 and 'Ċ' (newline) is 198, as in GPT-2.
func gpt2Alphabet() []string {
	var out []string
	for _, r := range []struct{ lo, hi rune }{{'!', '~'}, {0xA1, 0xAC}, {0xAE, 0xFF}} {
		for c := r.lo; c <= r.hi; c++ {
			out = append(out, string(c))
		}
	}
	for c := rune(256); c < 256+68; c++ {
		out = append(out, string(c))
	}
	return out
}

// byteLevelFixture is a hand-made GPT-2/Llama-3 style tokenizer.json: the
// 256 byte runes, eight merges, two special tokens, the Llama-3 split
// regex (with lookahead) and a ByteLevel pre-tokenizer without regex,
// ByteLevel decoder, and a template adding <|begin_of_text|>.
func byteLevelFixture(t testing.TB) []byte {
	t.Helper()
	vocab := map[string]int{}
	for i, s := range gpt2Alphabet() {
		vocab[s] = i
	}
	merges := [][2]string{
		{"Ġ", "t"},   // 256 Ġt   rank 0
		{"h", "e"},   // 257 he   rank 1
		{"a", "t"},   // 258 at   rank 2
		{"Ġt", "he"}, // 259 Ġthe rank 3
		{"Ġ", "c"},   // 260 Ġc   rank 4
		{"Ġc", "at"}, // 261 Ġcat rank 5
		{"Ġ", "Ġ"},   // 262 ĠĠ   rank 6
		{"'", "s"},   // 263 's   rank 7
	}
	vocab["xyz"] = 266 // reachable only through ignore_merges
	var mergeList []any
	for i, m := range merges {
		vocab[m[0]+m[1]] = 256 + i
		if i%2 == 0 { // both serializations of merges
			mergeList = append(mergeList, m[0]+" "+m[1])
		} else {
			mergeList = append(mergeList, []string{m[0], m[1]})
		}
	}
	f := map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": 264, "content": "<|endoftext|>", "special": true, "normalized": false},
			map[string]any{"id": 265, "content": "<|begin_of_text|>", "special": true, "normalized": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"special_tokens": map[string]any{"<|begin_of_text|>": map[string]any{"id": "<|begin_of_text|>", "ids": []int{265}, "tokens": []string{"<|begin_of_text|>"}}},
			},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "fuse_unk": false, "byte_fallback": false,
			"ignore_merges": true, "vocab": vocab, "merges": mergeList},
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Ids of single characters in byteLevelFixture: printable ASCII c is c-33.
func ascii(c byte) int { return int(c) - 33 }

func TestByteLevelFixture(t *testing.T) {
	tok, err := NewFromJSON(byteLevelFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	const sp = 220 // Ġ
	tests := []struct {
		text string
		want []int
		why  string
	}{
		{"the cat's", []int{ascii('t'), 257, 261, 263},
			`split "the" " cat" "'s"; the: h+e (rank 1), no "t he"; Ġcat: a+t (2), Ġ+c (4), Ġc+at (5); 's (7)`},
		{"a  b", []int{ascii('a'), sp, sp, ascii('b')},
			`\s+(?!\S) backs off to one space: "a" " " " b"; "Ġb" has no merge`},
		{"a   ", []int{ascii('a'), 262, sp},
			`trailing spaces: \s+(?!\S) takes all three; ĠĠ (6) then Ġ`},
		{" the", []int{259}, `Ġ+t (0), h+e (1), Ġt+he (3)`},
		{"Hello<|endoftext|> the", []int{ascii('H'), ascii('e'), ascii('l'), ascii('l'), ascii('o'), 264, 259},
			`added token split first; capital H blocks h+e`},
		{"é", []int{127, 102}, `bytes C3 A9 are 'Ã' (127) and '©' (102)`},
		{"12345\n\nx", []int{ascii('1'), ascii('2'), ascii('3'), ascii('4'), ascii('5'), 198, 198, ascii('x')},
			`\p{N}{1,3}: "123" "45"; \s*[\r\n]+: "\n\n" (Ċ = 198)`},
		{"", nil, "empty text"},
	}
	for _, tt := range tests {
		got, err := tok.Encode(tt.text)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Encode(%q) mismatch (-want +got):\n%s\n(%s)", tt.text, diff, tt.why)
		}
		if dec := tok.DecodeWithSpecial(got); dec != tt.text {
			t.Errorf("DecodeWithSpecial(Encode(%q)) = %q", tt.text, dec)
		}
	}
	if got, want := tok.Kind(), KindByteLevelBPE; got != want {
		t.Errorf("Kind() = %q, want %q", got, want)
	}
	if got, want := tok.BOS(), 265; got != want {
		t.Errorf("BOS() = %d, want %d", got, want)
	}
	if diff := cmp.Diff([]int{264}, tok.EOS()); diff != "" {
		t.Errorf("EOS() mismatch (-want +got):\n%s", diff)
	}
	got, err := tok.EncodeWithSpecial("the")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{265, ascii('t'), 257}, got); diff != "" {
		t.Errorf("EncodeWithSpecial(\"the\") mismatch (-want +got):\n%s", diff)
	}
	if got, want := tok.Decode([]int{265, 259, 264}), " the"; got != want {
		t.Errorf("Decode skips special tokens: got %q, want %q", got, want)
	}
	// A lone lead byte decodes to U+FFFD; a truncated 3-byte sequence
	// (E6 97) to one U+FFFD (maximal subpart), then "x".
	if got, want := tok.Decode([]int{127}), "\uFFFD"; got != want {
		t.Errorf("Decode(lead byte) = %q, want %q", got, want)
	}
	e6, x97 := tok.TokenID(string(bytesToRunes[0xE6])), tok.TokenID(string(bytesToRunes[0x97]))
	if got, want := tok.Decode([]int{e6, x97, ascii('x')}), "\uFFFDx"; got != want {
		t.Errorf("Decode(E6 97 'x') = %q, want %q", got, want)
	}
	// ignore_merges: a word in the vocabulary is one token even though no
	// merge builds it.
	if got, err := tok.Encode("xyz"); err != nil || !cmp.Equal(got, []int{266}) {
		t.Errorf("Encode(\"xyz\") = %v, %v, want [266]", got, err)
	}
	// The rune Ġ in the input is two bytes, C4 A0: 'Ä' and the rune of 0xA0.
	if got, err := tok.Encode("Ġ"); err != nil || !cmp.Equal(got, []int{tok.TokenID("Ä"), tok.TokenID(string(bytesToRunes[0xA0]))}) {
		t.Errorf("Encode(\"Ġ\") = %v, %v", got, err)
	}
}

// metaspaceFixture is a hand-made SentencePiece-style tokenizer.json with
// a Metaspace pre-tokenizer (prepend_scheme "first", no split), byte
// fallback and fuse_unk.
func metaspaceFixture(t testing.TB, byteFallback bool, scheme string) []byte {
	t.Helper()
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for i := 0; i < 256; i++ {
		vocab[fmt.Sprintf("<0x%02X>", i)] = 3 + i
	}
	for i, s := range []string{"▁", "a", "b", "▁a", "ab", "▁ab", "c"} {
		vocab[s] = 259 + i // ▁ 259, a 260, b 261, ▁a 262, ab 263, ▁ab 264, c 265
	}
	f := map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true},
			map[string]any{"id": 1, "content": "<s>", "special": true},
			map[string]any{"id": 2, "content": "</s>", "special": true},
		},
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false},
		}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": byteFallback,
			"vocab": vocab, "merges": []string{"▁ a", "a b", "▁a b"}},
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetaspaceFixture(t *testing.T) {
	tests := []struct {
		byteFallback bool
		scheme       string
		text         string
		want         []int
		decoded      string
	}{
		// "▁ab▁c": ▁+a (rank 0) then ▁a+b (rank 2) beats a+b (rank 1) being gone.
		{true, "first", "ab c", []int{264, 259, 265}, "ab c"},
		{true, "first", "é", []int{259, 3 + 0xC3, 3 + 0xA9}, "é"},
		// After an added token the piece does not start the text: no ▁ with "first".
		{true, "first", "<s>ab", []int{1, 263}, "ab"},
		{true, "always", "<s>ab", []int{1, 264}, "ab"},
		{true, "never", "ab", []int{263}, "ab"},
		// Without byte fallback, unknown characters become one fused <unk>.
		{false, "first", "€€a", []int{259, 0, 260}, "a"},
	}
	for _, tt := range tests {
		tok, err := NewFromJSON(metaspaceFixture(t, tt.byteFallback, tt.scheme))
		if err != nil {
			t.Fatal(err)
		}
		got, err := tok.Encode(tt.text)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s/byte_fallback=%v: Encode(%q) mismatch (-want +got):\n%s", tt.scheme, tt.byteFallback, tt.text, diff)
		}
		if dec := tok.Decode(got); dec != tt.decoded {
			t.Errorf("%s: Decode(%v) = %q, want %q", tt.scheme, got, dec, tt.decoded)
		}
		if got, want := tok.Kind(), KindSentencePieceBPE; got != want {
			t.Errorf("Kind() = %q, want %q", got, want)
		}
	}
}

func TestSplitBehaviors(t *testing.T) {
	comma, err := hfPattern{String: ptr(",")}.compile()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		behavior splitBehavior
		invert   bool
		want     []string
	}{
		{splitRemoved, false, []string{"a", "b", "c"}},
		{splitIsolated, false, []string{",", "a", ",", ",", "b", ",", "c"}},
		{splitMergedWithPrevious, false, []string{",", "a,", ",", "b,", "c"}},
		{splitMergedWithNext, false, []string{",a", ",", ",b", ",c"}},
		{splitContiguous, false, []string{",", "a", ",,", "b", ",", "c"}},
		{splitRemoved, true, []string{",", ",", ",", ","}},
	}
	for _, tt := range tests {
		got, err := splitByRegex(",a,,b,c", comma, tt.behavior, tt.invert)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("behavior %d invert %v: mismatch (-want +got):\n%s", tt.behavior, tt.invert, diff)
		}
	}
	// Metaspace splitting: MergedWithNext on ▁.
	if diff := cmp.Diff([]string{"▁Hey", "▁", "▁", "▁friend!"}, splitByString("▁Hey▁▁▁friend!", "▁", splitMergedWithNext)); diff != "" {
		t.Errorf("splitByString mismatch (-want +got):\n%s", diff)
	}
	d, err := digitsPre{individual: true}.split([]string{"ab12c3"}, true)
	if err != nil || !cmp.Equal(d, []string{"ab", "1", "2", "c", "3"}) {
		t.Errorf("Digits(individual) = %q, %v", d, err)
	}
	d, err = digitsPre{individual: false}.split([]string{"ab12c3"}, true)
	if err != nil || !cmp.Equal(d, []string{"ab", "12", "c", "3"}) {
		t.Errorf("Digits = %q, %v", d, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestAddedTokenOptions(t *testing.T) {
	toks := []hfAddedToken{
		{ID: 10, Content: "<mask>", SingleWord: true, LStrip: true, RStrip: true},
		{ID: 11, Content: "<s>"},
		{ID: 12, Content: "<s><s>"},
	}
	v, err := newAddedVocab(toks, nil)
	if err != nil {
		t.Fatal(err)
	}
	type seg struct {
		Text string
		ID   int
	}
	tests := []struct {
		text string
		want []seg
	}{
		{"Hi <mask> there", []seg{{"Hi", -1}, {" <mask> ", 10}, {"there", -1}}},
		{"A<mask> x", []seg{{"A<mask> x", -1}}},           // not a single word
		{"<s><s><s>", []seg{{"<s><s>", 12}, {"<s>", 11}}}, // leftmost-longest
		{"", []seg{{"", -1}}},
	}
	for _, tt := range tests {
		var got []seg
		for _, s := range v.split(tt.text, v.raw, 0) {
			got = append(got, seg{s.text, s.id})
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("split(%q) mismatch (-want +got):\n%s", tt.text, diff)
		}
	}
}

// TestUnsupported: unsupported components fail at load with the file
// name and the type.
func TestUnsupported(t *testing.T) {
	base := func() map[string]any {
		var f map[string]any
		if err := json.Unmarshal(metaspaceFixture(t, true, "first"), &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name   string
		modify func(map[string]any)
		want   string
	}{
		{"unigram", func(f map[string]any) { f["model"] = map[string]any{"type": "Unigram", "vocab": []any{}} }, `unsupported model type "Unigram"`},
		{"wordpiece", func(f map[string]any) {
			f["model"] = map[string]any{"type": "WordPiece", "vocab": map[string]int{"a": 0}}
		}, `unsupported model type "WordPiece"`},
		{"nfkc", func(f map[string]any) { f["normalizer"] = map[string]any{"type": "NFKC"} }, `unsupported normalizer type "NFKC"`},
		{"nested", func(f map[string]any) {
			f["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "Precompiled"}}}
		}, `unsupported normalizer type "Precompiled"`},
		{"bert pre", func(f map[string]any) { f["pre_tokenizer"] = map[string]any{"type": "BertPreTokenizer"} }, `unsupported pre-tokenizer type "BertPreTokenizer"`},
		{"wordpiece decoder", func(f map[string]any) { f["decoder"] = map[string]any{"type": "WordPiece"} }, `unsupported decoder type "WordPiece"`},
		{"roberta", func(f map[string]any) { f["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, `unsupported post-processor type "RobertaProcessing"`},
		{"dropout", func(f map[string]any) { f["model"].(map[string]any)["dropout"] = 0.1 }, "dropout 0.1 is not supported"},
		{"bad merge", func(f map[string]any) { f["model"].(map[string]any)["merges"] = []string{"a z"} }, `token "z" not in the vocab`},
		{"bad regex", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(?<"}, "behavior": "Isolated"}
		}, `type "Split": pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.modify(f)
			b, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = LoadJSON(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadJSON error = %v, want one naming %s and containing %q", err, p, tt.want)
			}
		})
	}
}
