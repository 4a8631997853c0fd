package exec

import (
	"testing"
)

// Benchmarks on ref29m (hidden 512, 8 layers, GQA 8/4, vocab 4096):
//
//	go test -run '^$' -bench . -benchmem ./internal/exec/
//
// tokens/s is reported as a custom metric.

func benchIDs(b *testing.B, n int) []int {
	ids := readNpyInts(b, refPath(b, "ref29m", "calib_ids.npy"))
	if len(ids) < n {
		b.Fatalf("calib_ids.npy has %d ids, want %d", len(ids), n)
	}
	return ids[:n]
}

// BenchmarkPrefill512 runs one 512-token sequence through a session.
func BenchmarkPrefill512(b *testing.B) {
	m := loadRef(b, "ref29m")
	ids := benchIDs(b, 512)
	s, err := m.NewSession(512)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.Reset()
		if _, err := s.Prefill(ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ids))/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkDecode decodes one token at a time with the KV cache, positions
// 128 .. 383 (the session is reset every 256 tokens after a 128-token
// prefill outside the timer).
func BenchmarkDecode(b *testing.B) {
	m := loadRef(b, "ref29m")
	ids := benchIDs(b, 384)
	s, err := m.NewSession(512)
	if err != nil {
		b.Fatal(err)
	}
	prefill := func() {
		s.Reset()
		if _, err := s.Prefill(ids[:128]); err != nil {
			b.Fatal(err)
		}
	}
	prefill()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if s.Pos() == len(ids) {
			b.StopTimer()
			prefill()
			b.StartTimer()
		}
		if _, err := s.Decode(ids[s.Pos()]); err != nil {
			b.Fatal(err)
		}
		_ = i
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
