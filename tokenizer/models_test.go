package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/npy"
	"github.com/smeltml/smelt/internal/testmodels"
)

// refModel is a test model with torch/sentencepiece references.
type refModel struct {
	dir   string // folder under the models dir, also refs/<dir>
	calib string // calibration text
}

var refModels = []refModel{
	{"stories260K", "data/tinystories_calib.txt"},
	{"ref29m", "data/ref29m_calib.txt"},
}

var tokFiles = []string{"tokenizer.json", "tokenizer.model"}

// Loading and encoding whole calibration texts is the slow part of these
// tests; share the results.
var (
	tokCache   sync.Map // path -> *Tokenizer
	calibCache sync.Map // model/file -> []int
)

func loadCached(t testing.TB, model, file string) *Tokenizer {
	t.Helper()
	p := testmodels.Path(t, model, file)
	if tok, ok := tokCache.Load(p); ok {
		return tok.(*Tokenizer)
	}
	tok := loadFile(t, p)
	tokCache.Store(p, tok)
	return tok
}

func readCalib(t testing.TB, m refModel) string {
	t.Helper()
	b, err := os.ReadFile(testmodels.Path(t, m.calib))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// calibIDs returns EncodeWithSpecial of the whole calibration text.
func calibIDs(t testing.TB, m refModel, file string) []int {
	t.Helper()
	key := m.dir + "/" + file
	if ids, ok := calibCache.Load(key); ok {
		return ids.([]int)
	}
	ids, err := loadCached(t, m.dir, file).EncodeWithSpecial(readCalib(t, m))
	if err != nil {
		t.Fatal(err)
	}
	calibCache.Store(key, ids)
	return ids
}

func refCalibIDs(t testing.TB, m refModel) []int {
	t.Helper()
	a, err := npy.ReadFile(testmodels.Path(t, "refs", m.dir, "calib_ids.npy"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := a.Ints()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

type refPrompt struct {
	Text   string   `json:"text"`
	IDs    []int    `json:"ids"`
	Pieces []string `json:"pieces"`
}

func refPrompts(t testing.TB, m refModel) []refPrompt {
	t.Helper()
	b, err := os.ReadFile(testmodels.Path(t, "refs", m.dir, "prompts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Prompts []refPrompt `json:"prompts"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Prompts) == 0 {
		t.Fatalf("refs/%s/prompts.json has no prompts", m.dir)
	}
	return f.Prompts
}

func TestLoadPrefersJSON(t *testing.T) {
	for _, m := range refModels {
		tok, err := Load(testmodels.Path(t, m.dir))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := filepath.Base(tok.Source()), "tokenizer.json"; got != want {
			t.Errorf("Load(%s) read %s, want %s", m.dir, got, want)
		}
	}
	dir := t.TempDir()
	data, err := os.ReadFile(testmodels.Path(t, "ref29m", "tokenizer.model"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Kind(); got != KindSentencePieceModel {
		t.Errorf("Load(dir with only tokenizer.model).Kind() = %q, want %q", got, KindSentencePieceModel)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "neither tokenizer.json nor tokenizer.model") {
		t.Errorf("Load(empty dir) error = %v", err)
	}
}

func TestModelProperties(t *testing.T) {
	tests := []struct {
		model, file string
		kind        string
		vocab, bos  int
		eos         []int
	}{
		{"stories260K", "tokenizer.json", KindSentencePieceBPE, 512, 1, []int{2}},
		{"stories260K", "tokenizer.model", KindSentencePieceModel, 512, 1, []int{2}},
		{"ref29m", "tokenizer.json", KindSentencePieceBPE, 4096, 1, []int{2}},
		{"ref29m", "tokenizer.model", KindSentencePieceModel, 4096, 1, []int{2}},
	}
	for _, tt := range tests {
		tok := loadCached(t, tt.model, tt.file)
		if got := tok.Kind(); got != tt.kind {
			t.Errorf("%s/%s: Kind() = %q, want %q", tt.model, tt.file, got, tt.kind)
		}
		if got := tok.VocabSize(); got != tt.vocab {
			t.Errorf("%s/%s: VocabSize() = %d, want %d", tt.model, tt.file, got, tt.vocab)
		}
		if got := tok.BOS(); got != tt.bos {
			t.Errorf("%s/%s: BOS() = %d, want %d", tt.model, tt.file, got, tt.bos)
		}
		if diff := cmp.Diff(tt.eos, tok.EOS()); diff != "" {
			t.Errorf("%s/%s: EOS() mismatch (-want +got):\n%s", tt.model, tt.file, diff)
		}
	}
}

// TestReferencePrompts: ids of every reference prompt ([BOS] +
// sentencepiece ids) from both tokenizer files.
func TestReferencePrompts(t *testing.T) {
	for _, m := range refModels {
		prompts := refPrompts(t, m)
		for _, file := range tokFiles {
			tok := loadCached(t, m.dir, file)
			for i, p := range prompts {
				got, err := tok.EncodeWithSpecial(p.Text)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(p.IDs, got); diff != "" {
					t.Errorf("%s/%s prompt %d %q: ids mismatch (-want +got):\n%s", m.dir, file, i, p.Text, diff)
				}
				noBOS, err := tok.Encode(p.Text)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(p.IDs[1:], noBOS); diff != "" {
					t.Errorf("%s/%s prompt %d: Encode (no BOS) mismatch (-want +got):\n%s", m.dir, file, i, diff)
				}
				if got := tok.Decode(got); got != p.Text {
					t.Errorf("%s/%s prompt %d: Decode = %q, want %q", m.dir, file, i, got, p.Text)
				}
				for j, id := range p.IDs {
					if got := tok.TokenID(p.Pieces[j]); got != id {
						t.Errorf("%s/%s: TokenID(%q) = %d, want %d", m.dir, file, p.Pieces[j], got, id)
					}
				}
			}
		}
	}
}

// TestCalibrationIDs: the whole calibration text, tokenized once with one
// BOS, equals calib_ids.npy (sentencepiece) for both files, except for the
// documented literal "<s>" in ref29m's text with tokenizer.json.
func TestCalibrationIDs(t *testing.T) {
	for _, m := range refModels {
		want := refCalibIDs(t, m)
		text := readCalib(t, m)
		for _, file := range tokFiles {
			got := calibIDs(t, m, file)
			if file == "tokenizer.json" && strings.Contains(text, "<s>") {
				continue // TestLiteralSpecialTokenDifference
			}
			if len(got) != len(want) {
				t.Errorf("%s/%s: %d ids, want %d", m.dir, file, len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Errorf("%s/%s: first difference at id %d: got %v, want %v", m.dir, file, i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
					break
				}
			}
		}
	}
}

// TestLiteralSpecialTokenDifference pins the documented HF/sentencepiece
// difference on ref29m's calibration text, which contains "C<s>" twice.
func TestLiteralSpecialTokenDifference(t *testing.T) {
	m := refModels[1]
	text := readCalib(t, m)
	if got := strings.Count(text, "<s>"); got != 2 {
		t.Fatalf("%s contains %d literal <s>, the README says 2", m.calib, got)
	}
	sp := loadCached(t, m.dir, "tokenizer.model")
	got := calibIDs(t, m, "tokenizer.json")
	spIDs := refCalibIDs(t, m)

	// HF semantics, built from sentencepiece: BOS, then each part between
	// literal "<s>" encoded on its own (it is normalized as a new piece and
	// gets its own "▁" prefix), the parts joined by BOS (the <s> token).
	want := []int{1}
	for i, part := range strings.Split(text, "<s>") {
		if i > 0 {
			want = append(want, 1)
		}
		ids, err := sp.Encode(part)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ids...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("tokenizer.json ids differ from the HF expectation (-want +got):\n%s", diff)
	}

	// The ids differ from calib_ids.npy in exactly two places, each one the
	// sentencepiece tokens "<", "s", ">" around a literal <s>.
	regions := diffRegions(got, spIDs)
	if len(regions) != 2 {
		t.Fatalf("tokenizer.json and calib_ids.npy differ in %d regions, want 2: %v", len(regions), regions)
	}
	js := loadCached(t, m.dir, "tokenizer.json")
	for _, r := range regions {
		spText := sp.Decode(spIDs[r.b0:r.b1])
		jsText := js.Decode(got[r.a0:r.a1])
		if !strings.Contains(spText, "<s>") || strings.Contains(jsText, "<s>") {
			t.Errorf("difference at ids %d..%d: sentencepiece text %q, tokenizer.json text %q; want <s> only in the first", r.b0, r.b1, spText, jsText)
		}
		if !contains(got[r.a0:r.a1], 1) {
			t.Errorf("difference at ids %d..%d: tokenizer.json ids %v lack BOS", r.a0, r.a1, got[r.a0:r.a1])
		}
	}
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// region is a differing stretch: a[a0:a1] versus b[b0:b1].
type region struct{ a0, a1, b0, b1 int }

// diffRegions walks a and b and returns the stretches where they differ,
// resynchronizing on the nearest run of 16 equal ids (enough for sequences
// that differ in a few short, far-apart places).
func diffRegions(a, b []int) []region {
	const sync, reach = 16, 64
	var out []region
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] == b[j] {
			i, j = i+1, j+1
			continue
		}
		found := false
		for d := 1; d <= 2*reach && !found; d++ {
			for da := 0; da <= d && !found; da++ {
				db := d - da
				if da > reach || db > reach || i+da+sync > len(a) || j+db+sync > len(b) {
					continue
				}
				if cmp.Equal(a[i+da:i+da+sync], b[j+db:j+db+sync]) {
					out = append(out, region{i, i + da, j, j + db})
					i, j, found = i+da, j+db, true
				}
			}
		}
		if !found {
			return append(out, region{i, len(a), j, len(b)})
		}
	}
	if i < len(a) || j < len(b) {
		out = append(out, region{i, len(a), j, len(b)})
	}
	return out
}

// TestStoriesWhitespaceDifference pins the other documented difference:
// stories260K's tokenizer.model strips and collapses spaces, its
// tokenizer.json only collapses runs.
func TestStoriesWhitespaceDifference(t *testing.T) {
	js := loadCached(t, "stories260K", "tokenizer.json")
	sp := loadCached(t, "stories260K", "tokenizer.model")
	enc := func(tok *Tokenizer, s string) []int {
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	base := enc(sp, "Once upon a time")
	for _, s := range []string{"  Once upon a time", "Once upon a time  ", "Once   upon a    time", " Once upon a time "} {
		if diff := cmp.Diff(base, enc(sp, s)); diff != "" {
			t.Errorf("tokenizer.model %q: ids differ from the stripped text (-want +got):\n%s", s, diff)
		}
		if diff := cmp.Diff(enc(js, collapseRuns(s)), enc(js, s)); diff != "" {
			t.Errorf("tokenizer.json %q: ids differ from the text with runs collapsed (-want +got):\n%s", s, diff)
		}
	}
	if cmp.Equal(enc(js, " Once upon a time"), base) {
		t.Errorf("tokenizer.json strips a leading space; the README says it does not")
	}
	if got, want := enc(js, "Once   upon a    time"), base; !cmp.Equal(got, want) {
		t.Errorf("tokenizer.json does not collapse inner runs: %v, want %v", got, want)
	}
}

// collapseRuns replaces each run of spaces by one space.
func collapseRuns(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

// TestRoundTrip: Decode(Encode(x)) == x for every paragraph of both
// calibration texts and the whole texts, up to the documented
// normalizations (stories260K's space handling; literal special tokens).
func TestRoundTrip(t *testing.T) {
	for _, m := range refModels {
		text := readCalib(t, m)
		units := append(strings.Split(text, "\n\n"), text)
		for _, file := range tokFiles {
			tok := loadCached(t, m.dir, file)
			failures := 0
			for _, u := range units {
				want := u
				if m.dir == "stories260K" {
					want = collapseRuns(want)
					if file == "tokenizer.model" {
						want = strings.Trim(want, " ")
					}
				}
				if file == "tokenizer.json" && strings.Contains(u, "<s>") {
					continue
				}
				var ids []int
				if len(u) == len(text) {
					ids = calibIDs(t, m, file)
				} else {
					var err error
					if ids, err = tok.Encode(u); err != nil {
						t.Fatal(err)
					}
				}
				if got := tok.Decode(ids); got != want {
					if failures++; failures <= 3 {
						t.Errorf("%s/%s: Decode(Encode(%s)) = %s", m.dir, file, shortText(u), shortText(got))
					}
				}
			}
			if failures > 0 {
				t.Errorf("%s/%s: %d of %d units do not round-trip", m.dir, file, failures, len(units))
			}
		}
	}
}

// TestStreamDecoder: the streamed pieces concatenate to Decode of all ids,
// and no piece ends in a half character.
func TestStreamDecoder(t *testing.T) {
	for _, m := range refModels {
		for _, file := range tokFiles {
			tok := loadCached(t, m.dir, file)
			ids := calibIDs(t, m, file)
			if len(ids) > 40000 {
				ids = ids[:40000]
			}
			extra, err := tok.Encode("naïve café — 日本語 🙂 x")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(append(ids, extra...), tok.EOS()...)
			d := tok.NewStreamDecoder()
			var sb strings.Builder
			for i, id := range ids {
				s := d.Next(id)
				if strings.Contains(s, "\uFFFD") {
					t.Fatalf("%s/%s: Next(ids[%d]=%d) = %q contains U+FFFD", m.dir, file, i, id, s)
				}
				sb.WriteString(s)
			}
			sb.WriteString(d.Flush())
			if got, want := sb.String(), tok.Decode(ids); got != want {
				t.Errorf("%s/%s: streamed text differs from Decode: %s", m.dir, file, cmp.Diff(want, got))
			}
		}
	}
}

// TestStreamDecoderHoldsBytes: a 4-byte character split over byte tokens
// appears only once complete.
func TestStreamDecoderHoldsBytes(t *testing.T) {
	for _, file := range tokFiles {
		tok := loadCached(t, "ref29m", file)
		ids, err := tok.Encode("🙂")
		if err != nil {
			t.Fatal(err)
		}
		// "▁" then the four byte tokens of U+1F642.
		want := []int{tok.TokenID("▁"), tok.TokenID("<0xF0>"), tok.TokenID("<0x9F>"), tok.TokenID("<0x99>"), tok.TokenID("<0x82>")}
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Fatalf("%s: Encode(🙂) mismatch (-want +got):\n%s", file, diff)
		}
		d := tok.NewStreamDecoder()
		var got []string
		for _, id := range ids {
			got = append(got, d.Next(id))
		}
		if diff := cmp.Diff([]string{"", "", "", "", "🙂"}, got); diff != "" {
			t.Errorf("%s: streamed pieces mismatch (-want +got):\n%s", file, diff)
		}
		// An incomplete sequence decodes to U+FFFD, one per byte token.
		if got, want := tok.Decode(ids[:3]), "\uFFFD\uFFFD"; got != want {
			t.Errorf("%s: Decode(truncated) = %q, want %q", file, got, want)
		}
	}
}

// TestEncodeWithSpecialConfig: tokenizer_config.json's add_bos_token and
// add_eos_token decide what EncodeWithSpecial adds.
func TestEncodeWithSpecialConfig(t *testing.T) {
	src := testmodels.Path(t, "ref29m")
	tests := []struct {
		config string
		want   []int // around Encode("Hi")
		pre    int
		post   int
	}{
		{`{"add_bos_token": false}`, nil, 0, 0},
		{`{"add_bos_token": true, "add_eos_token": true}`, nil, 1, 2},
		{`{"bos_token": {"content": "</s>"}, "add_bos_token": true}`, nil, 2, 0},
	}
	for _, file := range tokFiles {
		b, err := os.ReadFile(filepath.Join(src, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := tok.Encode("Hi")
			var want []int
			if tt.pre > 0 {
				want = append(want, tt.pre)
			}
			want = append(want, plain...)
			if tt.post > 0 {
				want = append(want, tt.post)
			}
			got, _ := tok.EncodeWithSpecial("Hi")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s with %s: EncodeWithSpecial mismatch (-want +got):\n%s", file, tt.config, diff)
			}
		}
	}
}

func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	for _, file := range tokFiles {
		tok := loadCached(t, "ref29m", file)
		_, err := tok.Encode("ab\xffc")
		if err == nil || !strings.Contains(err.Error(), "not valid UTF-8 (byte 2)") {
			t.Errorf("%s: Encode(invalid UTF-8) error = %v", file, err)
		}
	}
}
