package prunerun

import "testing"

// BenchmarkCollectStats/h256x4L_4x128 gathers statistics (with block
// influence) over 4 windows of 128 tokens on a generated 4-layer model of
// hidden 256, reporting calibration tokens per second.
func BenchmarkCollectStats(b *testing.B) {
	cfg := testConfig
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumLayers, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim, cfg.VocabSize, cfg.MaxPositionEmbeddings = 256, 768, 4, 8, 4, 32, 512, 128
	g := randomGraph(b, cfg, 1, nil)
	seqs := randomSeqs(2, 4, 128, cfg.VocabSize)
	m := load(b, g)
	b.Run("h256x4L_4x128", func(b *testing.B) {
		n := 0
		for b.Loop() {
			if _, err := CollectStats(m, seqs, true); err != nil {
				b.Fatal(err)
			}
			n += 4 * 128
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
	})
}
