package tokenizer

import (
	"os"
	"testing"

	"github.com/smeltml/smelt/internal/testmodels"
)

// BenchmarkEncode measures encode throughput (MB/s of input text) on the
// whole ref29m calibration text, tokenized as one string.
func BenchmarkEncode(b *testing.B) {
	text, err := os.ReadFile(testmodels.Path(b, "data", "ref29m_calib.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []struct{ name, file string }{
		{"ref29m/tokenizer.json", "tokenizer.json"},
		{"ref29m/tokenizer.model", "tokenizer.model"},
	} {
		b.Run(kind.name, func(b *testing.B) {
			tok := loadFile(b, testmodels.Path(b, "ref29m", kind.file))
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tok.Encode(string(text)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode measures decode throughput (MB/s of output text).
func BenchmarkDecode(b *testing.B) {
	text, err := os.ReadFile(testmodels.Path(b, "data", "ref29m_calib.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, file := range []string{"tokenizer.json", "tokenizer.model"} {
		b.Run("ref29m/"+file, func(b *testing.B) {
			tok := loadFile(b, testmodels.Path(b, "ref29m", file))
			ids, err := tok.Encode(string(text))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.Decode(ids)
			}
		})
	}
}

// loadFile loads a tokenizer.json or tokenizer.model by its file name.
func loadFile(tb testing.TB, path string) *Tokenizer {
	tb.Helper()
	var (
		tok *Tokenizer
		err error
	)
	if len(path) > 5 && path[len(path)-5:] == ".json" {
		tok, err = LoadJSON(path)
	} else {
		tok, err = LoadSentencePiece(path)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
