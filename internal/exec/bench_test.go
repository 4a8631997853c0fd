package exec

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time, so that benchmarks
// on a shared machine can report CPU seconds per op next to wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Benchmarks on ref29m (hidden 512, 8 layers, GQA 8/4, vocab 4096):
//
//	go test -run '^$' -bench . -benchmem ./internal/exec/
//
// tokens/s (wall clock) and cpu-ms/op (user+system CPU time of the whole
// process per op, all goroutines) are reported as custom metrics.

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
	c0 := cpuTime(b)
	for range b.N {
		s.Reset()
		if _, err := s.Prefill(ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ids))/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64((cpuTime(b)-c0).Milliseconds())/float64(b.N), "cpu-ms/op")
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
	c0 := cpuTime(b)
	for range b.N {
		if s.Pos() == len(ids) {
			b.StopTimer()
			prefill()
			b.StartTimer()
		}
		if _, err := s.Decode(ids[s.Pos()]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64((cpuTime(b)-c0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
