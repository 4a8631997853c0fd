// Package textdata reads calibration and evaluation data and cuts it into
// token sequences by documented, deterministic protocols.
//
// # Inputs
//
// Read accepts, by file extension unless Options.Format says otherwise:
//
//	.txt (and any other)  plain UTF-8 text, one document: the whole file
//	.jsonl                one JSON object per line; the document is the
//	                      string field Options.Field (default "text");
//	                      blank lines are skipped
//	.npy                  pre-tokenized ids: a 1-D integer array (uint16,
//	                      int32, int64, ...)
//	.json                 pre-tokenized ids: a JSON array of integers
//
// # Tokenization protocol
//
// Tokenize turns Data into one id stream:
//
//   - plain text: [BOS] + Encode(whole file as one string). The file is
//     tokenized once, not line by line, and gets exactly one BOS (none if
//     the tokenizer has no BOS). This is the protocol of the perplexity
//     references in ../shared/models (calib_ids.npy).
//   - JSONL: for each record in order, [BOS] + Encode(text); the records
//     are concatenated (no EOS).
//   - pre-tokenized ids: used as they are (no BOS added), checked against
//     the vocabulary size when a tokenizer is given.
//
// # Sampling protocol (calibration)
//
// Sample draws n windows of exactly length ids from the stream. Window i
// starts at r.IntN(len(ids)-length+1), where r is math/rand/v2's PCG
// seeded with (uint64(seed), SeedStream) and draws are made in window
// order; windows may overlap (sampling with replacement, as GPTQ's
// reference calibration loader does). A stream shorter than length is an
// error; any n >= 0 is allowed otherwise. Windows are copies.
//
// # Perplexity protocol (evaluation)
//
// Windows describes how a stream of N ids is scored with a model of
// context ctx and a stride s (1 <= s <= ctx; s = ctx gives
// non-overlapping windows):
//
//   - windows start at 0, s, 2s, ... and hold ids[start : min(start+ctx, N)];
//     the last window is the first one that reaches the end of the stream
//     (or, with s = ctx, the one before a window that would hold only the
//     last id and score nothing);
//   - each target ids[t], t >= 1, is scored at most once: by the first
//     window that holds it together with at least one earlier token, from
//     the model's logits at the position before it;
//   - ppl = exp(sum of the targets' negative log-likelihoods / count),
//     natural log.
//
// With s = ctx the windows do not overlap and the first token of every
// window after the first is context only: it is in no window with an
// earlier token, so it is never scored. With s < ctx every target is
// scored, each window scoring from where the previous window ended.
//
// For stories260K's calibration text (193,800 ids with BOS, ctx 512) that
// scores 193,421 targets at stride 512 and 193,799 at stride 256; for
// ref29m's (152,538 ids) 152,240 and 152,537, the counts in the models
// README.
package textdata

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/smeltml/smelt/internal/npy"
)

// Format is the kind of data file.
type Format int

// Formats; FormatAuto picks one from the file extension.
const (
	FormatAuto Format = iota
	FormatText
	FormatJSONL
	FormatNPY
	FormatJSONIDs
)

var formatNames = map[Format]string{FormatAuto: "auto", FormatText: "text", FormatJSONL: "jsonl", FormatNPY: "npy", FormatJSONIDs: "json-ids"}

// String names the format as ParseFormat accepts it.
func (f Format) String() string {
	if s, ok := formatNames[f]; ok {
		return s
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat reads a format name: auto, text, jsonl, npy, json-ids.
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if name == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("textdata: unknown format %q (want auto, text, jsonl, npy or json-ids)", s)
}

// Options control Read.
type Options struct {
	// Format forces the file format; FormatAuto (the zero value) decides by
	// extension.
	Format Format
	// Field is the JSONL field holding the text; "" means "text".
	Field string
}

// Data is a read data file: documents of text, or pre-tokenized ids.
type Data struct {
	Path   string
	Format Format
	// Docs holds the text documents (FormatText: one, the whole file).
	Docs []string
	// IDs holds pre-tokenized ids (FormatNPY, FormatJSONIDs).
	IDs []int
}

// Encoder is the part of a tokenizer that Tokenize needs;
// *tokenizer.Tokenizer implements it.
type Encoder interface {
	Encode(text string) ([]int, error)
	BOS() int
	VocabSize() int
}

// Read reads a data file.
func Read(path string, opt Options) (*Data, error) {
	f := opt.Format
	if f == FormatAuto {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".jsonl":
			f = FormatJSONL
		case ".npy":
			f = FormatNPY
		case ".json":
			f = FormatJSONIDs
		default:
			f = FormatText
		}
	}
	d := &Data{Path: path, Format: f}
	var err error
	switch f {
	case FormatText:
		var b []byte
		if b, err = os.ReadFile(path); err == nil {
			if err = checkUTF8(b); err == nil {
				d.Docs = []string{string(b)}
			}
		}
	case FormatJSONL:
		d.Docs, err = readJSONL(path, opt.Field)
	case FormatNPY:
		d.IDs, err = readNPY(path)
	case FormatJSONIDs:
		d.IDs, err = readJSONIDs(path)
	default:
		return nil, fmt.Errorf("textdata: %s: unknown format %v", path, f)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "open ") {
			return nil, fmt.Errorf("textdata: %w", err)
		}
		return nil, fmt.Errorf("textdata: %s: %w", path, err)
	}
	return d, nil
}

func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("not valid UTF-8 at byte %d", i)
		}
		i += n
	}
	return nil
}

func readJSONL(path, field string) ([]string, error) {
	if field == "" {
		field = "text"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var docs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<30)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %v", line, err)
		}
		raw, ok := rec[field]
		if !ok {
			return nil, fmt.Errorf("line %d: no field %q", line, field)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("line %d: field %q is not a string", line, field)
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("line %d: field %q is not valid UTF-8", line, field)
		}
		docs = append(docs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return docs, nil
}

func readNPY(path string) ([]int, error) {
	a, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(a.Shape) != 1 {
		return nil, fmt.Errorf("ids array has shape %v, want 1-D", a.Shape)
	}
	ids, err := a.Ints()
	if err != nil {
		return nil, err
	}
	return ids, checkNonNegative(ids)
}

func readJSONIDs(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ids []int
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("want a JSON array of integer ids: %v", err)
	}
	return ids, checkNonNegative(ids)
}

func checkNonNegative(ids []int) error {
	for i, id := range ids {
		if id < 0 {
			return fmt.Errorf("id %d at index %d is negative", id, i)
		}
	}
	return nil
}

// Tokenize turns d into one id stream by the package's tokenization
// protocol. tok may be nil for pre-tokenized data.
func Tokenize(d *Data, tok Encoder) ([]int, error) {
	if d.Docs == nil {
		if tok != nil {
			for i, id := range d.IDs {
				if id >= tok.VocabSize() {
					return nil, fmt.Errorf("textdata: %s: id %d at index %d is outside the vocabulary of %d", d.Path, id, i, tok.VocabSize())
				}
			}
		}
		return d.IDs, nil
	}
	if tok == nil {
		return nil, fmt.Errorf("textdata: %s: text data needs a tokenizer", d.Path)
	}
	var out []int
	for i, doc := range d.Docs {
		if b := tok.BOS(); b >= 0 {
			out = append(out, b)
		}
		ids, err := tok.Encode(doc)
		if err != nil {
			return nil, fmt.Errorf("textdata: %s: document %d: %w", d.Path, i+1, err)
		}
		out = append(out, ids...)
	}
	return out, nil
}

// SeedStream is the second PCG seed word of Sample (the first is the
// user's seed): fixed so that a seed means the same windows forever.
const SeedStream = 0x736d656c74 // "smelt"

// Sample returns n windows of length ids drawn from ids by the package's
// sampling protocol.
func Sample(ids []int, n, length int, seed int64) ([][]int, error) {
	if n < 0 || length <= 0 {
		return nil, fmt.Errorf("textdata: sample: want n >= 0 and length > 0, got n=%d length=%d", n, length)
	}
	if len(ids) < length {
		return nil, fmt.Errorf("textdata: sample: stream of %d ids is shorter than one window of %d", len(ids), length)
	}
	r := rand.New(rand.NewPCG(uint64(seed), SeedStream))
	out := make([][]int, n)
	for i := range out {
		s := r.IntN(len(ids) - length + 1)
		out[i] = append([]int(nil), ids[s:s+length]...)
	}
	return out, nil
}

// Split cuts the held-out tail off a stream: the last
// floor(len(ids)*holdoutFraction) ids are heldOut, the rest calib. Both
// alias ids. holdoutFraction must be in [0, 1).
func Split(ids []int, holdoutFraction float64) (calib, heldOut []int, err error) {
	if !(holdoutFraction >= 0 && holdoutFraction < 1) {
		return nil, nil, fmt.Errorf("textdata: split: holdout fraction %v is not in [0, 1)", holdoutFraction)
	}
	k := int(math.Floor(float64(len(ids)) * holdoutFraction))
	cut := len(ids) - k
	return ids[:cut:cut], ids[cut:], nil
}

// Window is one forward pass of the perplexity protocol.
type Window struct {
	// Start is the index in the stream of IDs[0].
	Start int
	// IDs are the model's input: stream[Start : Start+len(IDs)].
	IDs []int
	// First is the first scored position: targets IDs[First:] are scored,
	// IDs[j] from the logits at position j-1. First >= 1.
	First int
}

// Scored is the number of targets the window scores.
func (w Window) Scored() int { return len(w.IDs) - w.First }

// Windows lists the forward passes of the perplexity protocol (see the
// package doc) over ids with context ctx and stride, 1 <= stride <= ctx.
// IDs alias ids. Streams of fewer than 2 ids have no targets: an error.
func Windows(ids []int, ctx, stride int) ([]Window, error) {
	if ctx < 2 || stride < 1 || stride > ctx {
		return nil, fmt.Errorf("textdata: windows: want ctx >= 2 and 1 <= stride <= ctx, got ctx=%d stride=%d", ctx, stride)
	}
	n := len(ids)
	if n < 2 {
		return nil, fmt.Errorf("textdata: windows: a stream of %d ids has no target to score", n)
	}
	var out []Window
	covered := 1 // targets below this index are scored (t = 0 never is)
	// A window starting at n-1 would hold one id and score nothing.
	for start := 0; start < n-1; start += stride {
		end := min(start+ctx, n)
		first := max(covered-start, 1)
		out = append(out, Window{Start: start, IDs: ids[start:end:end], First: first})
		covered = end
		if end == n {
			break
		}
	}
	return out, nil
}

// ScoredTargets is the total number of targets of windows.
func ScoredTargets(windows []Window) int {
	n := 0
	for _, w := range windows {
		n += w.Scored()
	}
	return n
}
