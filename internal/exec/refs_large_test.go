//go:build large

package exec

import "testing"

// The full-text perplexity checks too slow for every test run (make
// test-large runs them): stories260K at stride 256 and with fp16 weights,
// and ref29m's 152,538 calibration ids at strides 512 and 256 (about 4.6e5
// token-forwards of a 29M-parameter model).

func TestRefPerplexityStories260KLarge(t *testing.T) {
	var rp refPPL
	readJSON(t, refPath(t, "stories260K", "ppl_calib.json"), &rp)
	ids := readNpyInts(t, refPath(t, "stories260K", "calib_ids.npy"))
	m := loadRef(t, "stories260K")
	for _, want := range rp.Results[1:] {
		checkPPL(t, m, ids, rp.Context, want.Stride, want.Scored, want.PPL)
	}
	checkPPL(t, loadRef(t, "stories260K-fp16"), ids, rp.Context, rp.Context, rp.Results[0].Scored, rp.FP16PPL)
}

func TestRefPerplexityRef29m(t *testing.T) {
	var rp refPPL
	readJSON(t, refPath(t, "ref29m", "ppl_calib.json"), &rp)
	ids := readNpyInts(t, refPath(t, "ref29m", "calib_ids.npy"))
	m := loadRef(t, "ref29m")
	for _, want := range rp.Results {
		checkPPL(t, m, ids, rp.Context, want.Stride, want.Scored, want.PPL)
	}
}
