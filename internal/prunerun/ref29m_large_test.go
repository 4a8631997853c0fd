//go:build large

package prunerun

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
	"github.com/smeltml/smelt/prune"
	"github.com/smeltml/smelt/tokenizer"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestRef29mPruning measures every method on ref29m: calibration windows
// (PRUNE_NSAMPLES × 512, default 64, seed 0) drawn from the first 80% of
// data/ref29m_calib.txt's tokens, perplexity on the first PRUNE_EVAL_TOKENS
// (default 8192) ids of the held-out last 20% (windows of 512, stride 512:
// smelt eval's protocol), statistics collected once and shared by the
// variants. Wanda must beat magnitude at 50%; the structured MLP pruning
// must drop exactly 8 × 3 × 384 × 512 × 2 bytes.
//
//	go test -tags large -run TestRef29mPruning -v -timeout 2h ./internal/prunerun
func TestRef29mPruning(t *testing.T) {
	dir := testmodels.Path(t, "ref29m")
	text := testmodels.Path(t, "data", "ref29m_calib.txt")
	nsamples, evalTokens := envInt("PRUNE_NSAMPLES", 64), envInt("PRUNE_EVAL_TOKENS", 8192)
	cm, err := convert.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	g := cm.Graph
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := textdata.Read(text, textdata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		t.Fatal(err)
	}
	calib, held, err := textdata.Split(ids, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	held = held[:min(evalTokens, len(held))]
	seqs, err := textdata.Sample(calib, nsamples, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ref29m: %d tokens; calibration %d x 512 from the first %d; evaluation on %d held-out ids", len(ids), nsamples, len(calib), len(held))
	ppl := func(name string, m *exec.Model) float64 {
		t0 := time.Now()
		r, err := m.Perplexity(held, 512, 512, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("  %s: ppl %.4f (%d scored, %.0f s)", name, r.PPL, r.Scored, time.Since(t0).Seconds())
		return r.PPL
	}
	dense, err := exec.Load(g, exec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := ppl("dense", dense)
	t0 := time.Now()
	st, err := CollectStats(dense, seqs, true)
	if err != nil {
		t.Fatal(err)
	}
	dense = nil
	t.Logf("statistics over %d tokens in %.0f s; block influence %v", st.Tokens, time.Since(t0).Seconds(), st.BlockInfluence)
	type row struct {
		name               string
		opts               prune.Options
		bytesBefore, after int64
		ppl                float64
		secs               float64
	}
	variants := []row{
		{name: "magnitude 50% (per row)", opts: prune.Options{Method: "magnitude", Sparsity: 0.5}},
		{name: "wanda 50%", opts: prune.Options{Method: "wanda", Sparsity: 0.5, Stats: st}},
		{name: "nm 2:4 magnitude", opts: prune.Options{Method: "nm", N: 2, M: 4, Importance: "magnitude"}},
		{name: "nm 2:4 wanda", opts: prune.Options{Method: "nm", N: 2, M: 4, Stats: st}},
		{name: "structured-mlp 25% magnitude", opts: prune.Options{Method: "structured-mlp", Sparsity: 0.25, Importance: "magnitude"}},
		{name: "structured-mlp 25% activations", opts: prune.Options{Method: "structured-mlp", Sparsity: 0.25, Stats: st}},
		{name: "structured-heads 25% activations", opts: prune.Options{Method: "structured-heads", Sparsity: 0.25, Stats: st}},
		{name: "layers 25% block influence", opts: prune.Options{Method: "layers", Sparsity: 0.25, Stats: st}},
	}
	if os.Getenv("PRUNE_ONLY") != "" {
		n, _ := strconv.Atoi(os.Getenv("PRUNE_ONLY"))
		variants = variants[:n]
	}
	for i := range variants {
		v := &variants[i]
		t1 := time.Now()
		pg, rep, err := prune.Run(g, v.opts)
		if err != nil {
			t.Fatal(err)
		}
		m, err := exec.Load(pg, exec.Options{})
		if err != nil {
			t.Fatal(err)
		}
		v.bytesBefore, v.after = rep.BytesBefore, rep.BytesAfter
		for _, n := range rep.Notes {
			t.Logf("  %s: %s", v.name, n)
		}
		v.ppl = ppl(v.name, m)
		v.secs = time.Since(t1).Seconds()
	}
	var b []byte
	b = fmt.Appendf(b, "\n| variant | weight bytes | perplexity | change |\n| --- | ---: | ---: | ---: |\n| dense | %d | %.4f | |\n", variants[0].bytesBefore, base)
	for _, v := range variants {
		b = fmt.Appendf(b, "| %s | %d | %.4f | %+.2f%% |\n", v.name, v.after, v.ppl, 100*(v.ppl/base-1))
	}
	t.Log(string(b))
	if len(variants) >= 2 && !(variants[1].ppl < variants[0].ppl) {
		t.Errorf("wanda 50%% perplexity %.4f is not below magnitude's %.4f", variants[1].ppl, variants[0].ppl)
	}
	for _, v := range variants {
		if v.opts.Method == "structured-mlp" {
			if got, want := v.bytesBefore-v.after, int64(8*3*384*512*2); got != want {
				t.Errorf("%s: bytes drop %d, want %d", v.name, got, want)
			}
		}
	}
}
