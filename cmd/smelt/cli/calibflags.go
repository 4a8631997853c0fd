package cli

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/internal/textdata"
)

// CalibrationFlags are the calibration-data flags shared by `smelt
// quantize` and `smelt prune` (embedded in their Options), so both read,
// tokenize, hold out and sample calibration text the same way.
type CalibrationFlags struct {
	Calib       string  // calibration file: text, JSONL or token ids
	CalibField  string  // JSONL field holding the text
	CalibFormat string  // auto, text, jsonl, npy, json-ids
	Tokenizer   string  // tokenizer file instead of the model's
	NSamples    int     // windows to draw
	SeqLen      int     // tokens per window
	Seed        int64   // seed of the window sampler
	Holdout     float64 // fraction of the token stream's tail never sampled
}

// addFlags registers the flags with their defaults (128 windows of 512
// tokens, seed 0, as GPTQ/AWQ/Wanda implementations do).
func (c *CalibrationFlags) addFlags(f *pflag.FlagSet, holdoutHelp string) {
	f.StringVar(&c.Calib, "calib", "", "calibration data: text, JSONL, or token ids (.npy, .json)")
	f.StringVar(&c.CalibField, "calib-field", "text", "JSONL field holding the text")
	f.StringVar(&c.CalibFormat, "calib-format", "auto", "calibration file format: auto, text, jsonl, npy, json-ids")
	f.StringVar(&c.Tokenizer, "tokenizer", "", "tokenizer file (tokenizer.json or tokenizer.model) instead of IN's")
	f.IntVar(&c.NSamples, "nsamples", 128, "calibration windows")
	f.IntVar(&c.SeqLen, "seqlen", 512, "tokens per calibration window")
	f.Int64Var(&c.Seed, "seed", 0, "seed of the window sampler")
	f.Float64Var(&c.Holdout, "holdout", 0, holdoutHelp)
}

// load reads and samples the calibration file with tok, and checks every
// id against the model's vocabulary; stage prefixes errors.
func (c *CalibrationFlags) load(stage string, tok textdata.Encoder, vocab int) (*quantrun.Calibration, error) {
	format, err := textdata.ParseFormat(c.CalibFormat)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	cal, err := quantrun.LoadCalibration(c.Calib, tok, quantrun.DataOptions{
		Read:     textdata.Options{Format: format, Field: c.CalibField},
		NSamples: c.NSamples, SeqLen: c.SeqLen, Seed: c.Seed, Holdout: c.Holdout,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	for _, s := range cal.Seqs {
		for _, id := range s {
			if vocab > 0 && (id < 0 || id >= vocab) {
				return nil, fmt.Errorf("%s: calibration token id %d is outside the model's vocabulary of %d", stage, id, vocab)
			}
		}
	}
	return cal, nil
}
