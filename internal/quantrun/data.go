package quantrun

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/smeltml/smelt/internal/textdata"
)

// DataOptions select calibration windows from a data file.
type DataOptions struct {
	Read     textdata.Options // format and JSONL field
	NSamples int              // windows to draw
	SeqLen   int              // tokens per window
	Seed     int64            // textdata.Sample's seed
	Holdout  float64          // fraction of the token stream's tail left out (textdata.Split)
}

// Calibration is calibration data read from a file.
type Calibration struct {
	Path          string
	Format        textdata.Format // the format read (never FormatAuto)
	NBytes        int64
	SHA256        string // lowercase hex of the file's bytes
	Tokens        int    // ids in the whole stream
	CalibTokens   int    // ids left for sampling after the holdout
	HeldOutTokens int    // ids of the held-out tail
	Seqs          [][]int
}

// LoadCalibration reads path, tokenizes it with tok (nil for pre-tokenized
// ids), cuts off the held-out tail and samples the windows (see the package
// documentation).
func LoadCalibration(path string, tok textdata.Encoder, opts DataOptions) (*Calibration, error) {
	sum, n, err := FileSHA256(path)
	if err != nil {
		return nil, err
	}
	d, err := textdata.Read(path, opts.Read)
	if err != nil {
		return nil, err
	}
	ids, err := textdata.Tokenize(d, tok)
	if err != nil {
		return nil, err
	}
	calib, held, err := textdata.Split(ids, opts.Holdout)
	if err != nil {
		return nil, err
	}
	if opts.NSamples <= 0 || opts.SeqLen <= 0 {
		return nil, fmt.Errorf("quantize: calibration wants nsamples > 0 and seqlen > 0, got %d and %d", opts.NSamples, opts.SeqLen)
	}
	if len(calib) < opts.SeqLen {
		return nil, fmt.Errorf("quantize: calibration file %s has %d tokens before the held-out tail, fewer than one window of %d", path, len(calib), opts.SeqLen)
	}
	seqs, err := textdata.Sample(calib, opts.NSamples, opts.SeqLen, opts.Seed)
	if err != nil {
		return nil, err
	}
	return &Calibration{Path: path, Format: d.Format, NBytes: n, SHA256: sum, Tokens: len(ids), CalibTokens: len(calib), HeldOutTokens: len(held), Seqs: seqs}, nil
}

// FileSHA256 returns the hex SHA-256 and size of a file.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("quantize: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("quantize: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
