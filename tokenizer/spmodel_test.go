package tokenizer

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mathFloat32bits(f float32) uint32 { return math.Float32bits(f) }

func byteTokenName(b byte) string { return fmt.Sprintf("<0x%02X>", b) }

// TestTinySentencePiece checks the shim on a hand-made model: ids of
// <unk> <s> </s> are 0-2, bytes 3-258, then ▁ 259, a 260, b 261, ▁a 262,
// ab 263 with scores 0, -1, -2, -3, -4 (higher merges first).
func TestTinySentencePiece(t *testing.T) {
	m, err := parseSentencePiece(tinySPModel(2, true, true, nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text string
		want []int
		why  string
	}{
		{"ab", []int{262, 261}, "dummy prefix: ▁ab; ▁a (-3) beats ab (-4)"},
		{"  ab  b ", []int{262, 261, 259, 261}, "remove_extra_whitespaces (default true): \"ab b\""},
		{"c", []int{259, 3 + 'c'}, "c is not a piece: byte fallback"},
		{"   ", []int{}, "only spaces: nothing"},
	}
	for _, tt := range tests {
		got, err := m.encode(tt.text)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("encode(%q) mismatch (-want +got):\n%s (%s)", tt.text, diff, tt.why)
		}
	}
	if got, want := m.decode([]int{1, 262, 261, 259, 261, 0, 2}, true), "ab b ⁇ "; got != want {
		t.Errorf("decode = %q, want %q", got, want)
	}
	if got, want := m.decode([]int{1, 262}, false), "<s> a"; got != want {
		t.Errorf("decode(keep special) = %q, want %q", got, want)
	}
}

func TestSentencePieceUnsupported(t *testing.T) {
	tests := []struct {
		name  string
		model []byte
		want  string
	}{
		{"unigram", tinySPModel(1, true, true, nil), "unsupported sentencepiece model type UNIGRAM (supported: BPE)"},
		{"charsmap", tinySPModel(2, true, true, []byte{1, 2, 3}), `unsupported sentencepiece normalizer "identity" with a precompiled charsmap`},
		{"garbage", []byte("\xff\xff\xff"), "not a sentencepiece model"},
		{"json", []byte(`{"model": {}}`), "not a sentencepiece model"},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "tokenizer.model")
		if err := os.WriteFile(p, tt.model, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSentencePiece(p)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: LoadSentencePiece error = %v, want one naming %s and containing %q", tt.name, err, p, tt.want)
		}
	}
}

func TestCollapseSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "   ": "", " a ": "a", "a  b   c": "a b c", "a\t\tb": "a\t\tb", "  a \n  b  ": "a \n b",
	} {
		if got := collapseSpaces(in); got != want {
			t.Errorf("collapseSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}
