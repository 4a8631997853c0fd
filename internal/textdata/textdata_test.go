package textdata

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/npy"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/tokenizer"
)

func refIDs(t *testing.T, model string) []int {
	t.Helper()
	a, err := npy.ReadFile(testmodels.Path(t, "refs", model, "calib_ids.npy"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := a.Ints()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestWindowsREADMECounts: the scored-target counts of the models README.
func TestWindowsREADMECounts(t *testing.T) {
	tests := []struct {
		model   string
		n       int
		stride  int
		windows int
		scored  int
	}{
		{"stories260K", 193800, 512, 379, 193421},
		{"stories260K", 193800, 256, 757, 193799},
		{"ref29m", 152538, 512, 298, 152240},
		{"ref29m", 152538, 256, 595, 152537},
	}
	for _, tt := range tests {
		ids := refIDs(t, tt.model)
		if len(ids) != tt.n {
			t.Fatalf("%s: calib_ids.npy has %d ids, README says %d", tt.model, len(ids), tt.n)
		}
		ws, err := Windows(ids, 512, tt.stride)
		if err != nil {
			t.Fatal(err)
		}
		if got := ScoredTargets(ws); got != tt.scored {
			t.Errorf("%s stride %d: %d scored targets, README says %d", tt.model, tt.stride, got, tt.scored)
		}
		if len(ws) != tt.windows {
			t.Errorf("%s stride %d: %d windows, want %d", tt.model, tt.stride, len(ws), tt.windows)
		}
	}
}

// TestWindowsAgainstBruteForce compares Windows with a direct reading of
// the protocol: for every target t >= 1, the first window (start 0, s,
// 2s, ...) with start < t < start+ctx scores it; if none, it is not scored.
func TestWindowsAgainstBruteForce(t *testing.T) {
	for n := 2; n <= 40; n++ {
		for ctx := 2; ctx <= 9; ctx++ {
			for stride := 1; stride <= ctx; stride++ {
				ids := make([]int, n)
				for i := range ids {
					ids[i] = i
				}
				ws, err := Windows(ids, ctx, stride)
				if err != nil {
					t.Fatal(err)
				}
				// brute force: who scores t? (with stride = ctx, the first
				// token of each later window is in no window with an
				// earlier token: not scored)
				want := map[int]int{} // target -> window start
				for tg := 1; tg < n; tg++ {
					for start := 0; start < tg; start += stride {
						if start < tg && tg < start+ctx {
							want[tg] = start
							break
						}
					}
				}
				got := map[int]int{}
				for k, w := range ws {
					if w.Start != k*stride || len(w.IDs) > ctx || w.First < 1 || w.First >= len(w.IDs) {
						t.Fatalf("n=%d ctx=%d s=%d: bad window %+v", n, ctx, stride, w)
					}
					if w.IDs[0] != w.Start {
						t.Fatalf("n=%d ctx=%d s=%d: window IDs do not start at Start", n, ctx, stride)
					}
					for j := w.First; j < len(w.IDs); j++ {
						if _, dup := got[w.IDs[j]]; dup {
							t.Fatalf("n=%d ctx=%d s=%d: target %d scored twice", n, ctx, stride, w.IDs[j])
						}
						got[w.IDs[j]] = w.Start
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("n=%d ctx=%d s=%d: scored targets mismatch (-want +got):\n%s", n, ctx, stride, diff)
				}
				if last := ws[len(ws)-1]; last.Start+len(last.IDs) != n && !(stride == ctx && last.Start+len(last.IDs) == n-1) {
					t.Fatalf("n=%d ctx=%d s=%d: last window ends at %d", n, ctx, stride, last.Start+len(last.IDs))
				}
				if len(ws) > 1 {
					if prev := ws[len(ws)-2]; prev.Start+len(prev.IDs) == n {
						t.Fatalf("n=%d ctx=%d s=%d: a window after the one reaching the end", n, ctx, stride)
					}
				}
			}
		}
	}
}

func TestWindowsErrors(t *testing.T) {
	for _, tt := range []struct{ n, ctx, stride int }{{1, 4, 4}, {0, 4, 4}, {10, 1, 1}, {10, 4, 0}, {10, 4, 5}} {
		if _, err := Windows(make([]int, tt.n), tt.ctx, tt.stride); err == nil {
			t.Errorf("Windows(n=%d, ctx=%d, stride=%d) succeeded", tt.n, tt.ctx, tt.stride)
		}
	}
}

// TestTokenizeCalibration: plain text tokenized by the protocol gives
// calib_ids.npy ([BOS] + sentencepiece ids of the whole file).
func TestTokenizeCalibration(t *testing.T) {
	for _, m := range []struct{ model, text string }{
		{"stories260K", "data/tinystories_calib.txt"},
		{"ref29m", "data/ref29m_calib.txt"},
	} {
		tok, err := tokenizer.LoadSentencePiece(testmodels.Path(t, m.model, "tokenizer.model"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := Read(testmodels.Path(t, m.text), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Format != FormatText || len(d.Docs) != 1 {
			t.Fatalf("%s: format %v with %d docs, want text with 1", m.text, d.Format, len(d.Docs))
		}
		got, err := Tokenize(d, tok)
		if err != nil {
			t.Fatal(err)
		}
		if want := refIDs(t, m.model); !cmp.Equal(want, got) {
			t.Errorf("%s: Tokenize differs from calib_ids.npy (%d vs %d ids)", m.model, len(got), len(want))
		}
	}
}

// fakeTok encodes each byte as its value + 10; BOS is 1.
type fakeTok struct{ bos int }

func (f fakeTok) Encode(s string) ([]int, error) {
	var ids []int
	for i := 0; i < len(s); i++ {
		ids = append(ids, int(s[i])+10)
	}
	return ids, nil
}
func (f fakeTok) BOS() int       { return f.bos }
func (f fakeTok) VocabSize() int { return 300 }

func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFormats(t *testing.T) {
	u16 := make([]byte, 6)
	for i, v := range []uint16{1, 299, 7} {
		binary.LittleEndian.PutUint16(u16[2*i:], v)
	}
	i64 := make([]byte, 16)
	binary.LittleEndian.PutUint64(i64, 5)
	binary.LittleEndian.PutUint64(i64[8:], 6)
	tests := []struct {
		name   string
		file   string
		data   []byte
		opt    Options
		bos    int
		format Format
		want   []int
	}{
		{"text", "a.txt", []byte("ab\ncd"), Options{}, 1, FormatText, []int{1, 'a' + 10, 'b' + 10, '\n' + 10, 'c' + 10, 'd' + 10}},
		{"text no bos", "a.txt", []byte("ab"), Options{}, -1, FormatText, []int{'a' + 10, 'b' + 10}},
		{"jsonl", "a.jsonl", []byte("{\"text\": \"a\"}\n\n{\"text\": \"bc\", \"n\": 1}\n"), Options{}, 1, FormatJSONL, []int{1, 'a' + 10, 1, 'b' + 10, 'c' + 10}},
		{"jsonl field", "a.data", []byte(`{"body": "z", "text": 3}`), Options{Format: FormatJSONL, Field: "body"}, 1, FormatJSONL, []int{1, 'z' + 10}},
		{"npy u16", "ids.npy", npy.Encode(&npy.Array{Descr: "<u2", Shape: []int{3}, Data: u16}), Options{}, 1, FormatNPY, []int{1, 299, 7}},
		{"npy i64", "ids.npy", npy.Encode(&npy.Array{Descr: "<i8", Shape: []int{2}, Data: i64}), Options{}, 1, FormatNPY, []int{5, 6}},
		{"json ids", "ids.json", []byte("[1, 2, 3]"), Options{}, 1, FormatJSONIDs, []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Read(write(t, tt.file, tt.data), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if d.Format != tt.format {
				t.Errorf("format %v, want %v", d.Format, tt.format)
			}
			got, err := Tokenize(d, fakeTok{tt.bos})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ids mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, file string
		data       []byte
		opt        Options
		want       string
	}{
		{"bad utf8", "a.txt", []byte("ok\xffno"), Options{}, "not valid UTF-8 at byte 2"},
		{"jsonl not object", "a.jsonl", []byte("{\"text\": \"a\"}\n[1]\n"), Options{}, "line 2: not a JSON object"},
		{"jsonl missing field", "a.jsonl", []byte(`{"body": "a"}`), Options{}, `line 1: no field "text"`},
		{"jsonl number", "a.jsonl", []byte(`{"text": 1}`), Options{}, `line 1: field "text" is not a string`},
		{"npy 2-d", "a.npy", npy.Encode(&npy.Array{Descr: "<u2", Shape: []int{1, 1}, Data: []byte{1, 0}}), Options{}, "want 1-D"},
		{"npy float", "a.npy", npy.Encode(&npy.Array{Descr: "<f4", Shape: []int{1}, Data: make([]byte, 4)}), Options{}, "not an integer type"},
		{"json negative", "a.json", []byte("[1, -2]"), Options{}, "id -2 at index 1 is negative"},
		{"json object", "a.json", []byte(`{"ids": [1]}`), Options{}, "want a JSON array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(t, tt.file, tt.data)
			_, err := Read(p, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("Read error = %v, want one naming %s and containing %q", err, p, tt.want)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing.txt"), Options{}); err == nil {
		t.Error("Read(missing file) succeeded")
	}
	d := &Data{Path: "x.json", Format: FormatJSONIDs, IDs: []int{1, 300}}
	if _, err := Tokenize(d, fakeTok{1}); err == nil || !strings.Contains(err.Error(), "id 300 at index 1 is outside the vocabulary of 300") {
		t.Errorf("Tokenize(out-of-vocabulary id) error = %v", err)
	}
	if _, err := Tokenize(&Data{Path: "x.txt", Docs: []string{"a"}}, nil); err == nil {
		t.Error("Tokenize(text, nil tokenizer) succeeded")
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatAuto, FormatText, FormatJSONL, FormatNPY, FormatJSONIDs} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error("ParseFormat(csv) succeeded")
	}
}

func TestSample(t *testing.T) {
	ids := make([]int, 1000)
	for i := range ids {
		ids[i] = i
	}
	a, err := Sample(ids, 2000, 100, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Sample(ids, 2000, 100, 42)
	c, _ := Sample(ids, 2000, 100, 43)
	if !equalWindows(a, b) {
		t.Error("same seed, different windows")
	}
	if equalWindows(a, c) {
		t.Error("different seeds, same windows")
	}
	sum := 0
	seen := map[int]bool{}
	for _, w := range a {
		if len(w) != 100 {
			t.Fatalf("window of %d ids, want 100", len(w))
		}
		for j := range w {
			if w[j] != w[0]+j {
				t.Fatalf("window %v is not a contiguous run of the stream", w[:5])
			}
		}
		sum += w[0]
		seen[w[0]] = true
	}
	// starts uniform on [0, 900]: mean 450, and (almost) every start drawn
	if mean := float64(sum) / 2000; mean < 430 || mean > 470 {
		t.Errorf("mean start %v, want about 450", mean)
	}
	if len(seen) < 750 { // expected 803
		t.Errorf("only %d distinct starts of 901 in 2000 draws", len(seen))
	}
	// Windows are copies.
	a[0][0] = -1
	if ids[b[0][0]] == -1 {
		t.Error("windows alias the stream")
	}
	// The protocol is pinned: these starts change only if the protocol does.
	if got, want := []int{b[0][0], b[1][0], b[2][0]}, pinnedStarts; !cmp.Equal(got, want) {
		t.Errorf("seed 42 starts = %v, want %v (the sampling protocol changed)", got, want)
	}
	if w, err := Sample(ids, 3, 1000, 1); err != nil || len(w) != 3 || !cmp.Equal(w[0], ids) {
		t.Errorf("Sample(length = len) = %d windows, %v", len(w), err)
	}
	if _, err := Sample(ids, 1, 1001, 1); err == nil || !strings.Contains(err.Error(), "shorter than one window") {
		t.Errorf("Sample(too long) error = %v", err)
	}
	if _, err := Sample(ids, -1, 10, 1); err == nil {
		t.Error("Sample(n=-1) succeeded")
	}
}

func equalWindows(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}

var pinnedStarts = []int{219, 238, 875}

func TestSplit(t *testing.T) {
	ids := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	tests := []struct {
		f          float64
		calib, out []int
	}{
		{0, ids, []int{}},
		{0.1, ids[:9], ids[9:]},
		{0.25, ids[:8], ids[8:]},
		{0.99, ids[:1], ids[1:]},
	}
	for _, tt := range tests {
		c, h, err := Split(ids, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(c, tt.calib) || !cmp.Equal(h, tt.out) {
			t.Errorf("Split(%v) = %v, %v; want %v, %v", tt.f, c, h, tt.calib, tt.out)
		}
	}
	for _, f := range []float64{-0.1, 1, 2} {
		if _, _, err := Split(ids, f); err == nil {
			t.Errorf("Split(%v) succeeded", f)
		}
	}
}
