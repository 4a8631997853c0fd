package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/smeltml/smelt/internal/buildrun"
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/manifest"
)

// isBundlePath reports whether p is a bundle folder (holds manifest.json).
func isBundlePath(p string) bool {
	st, err := os.Stat(filepath.Join(p, manifest.ManifestFile))
	return err == nil && st.Mode().IsRegular()
}

// InspectBundleReport is the --json output of inspect for a bundle.
type InspectBundleReport struct {
	Path         string                `json:"path"`
	Format       int                   `json:"format"`
	ID           string                `json:"id"`
	Arch         string                `json:"arch"`
	Config       ir.Config             `json:"config"`
	Parameters   int64                 `json:"parameters"` // logical weights (a packed matrix counts rows×cols)
	Bytes        buildrun.BytesReport  `json:"bytes"`
	Files        int                   `json:"files"`
	FileBytes    int64                 `json:"file_bytes"` // all files but manifest.json and manifest.sig
	Integrity    string                `json:"integrity"`  // "ok", or the first mismatch
	Shards       []manifest.File       `json:"shards"`
	Kernels      []manifest.Kernel     `json:"kernels"`
	Tokenizer    string                `json:"tokenizer,omitempty"`
	Requirements manifest.Requirements `json:"requirements"`
	Provenance   manifest.Provenance   `json:"provenance"`
	Signature    InspectSignature      `json:"signature"`
	Tensors      []manifest.Tensor     `json:"tensors"`
}

// InspectSignature is the status of manifest.sig, read without a key.
type InspectSignature struct {
	Status string   `json:"status"` // "unsigned", "present", "malformed", "stale"
	KeyIDs []string `json:"keyids,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

func runInspectBundle(env *Env, opts *InspectOptions, filter *regexp.Regexp) error {
	if opts.Digest {
		return fmt.Errorf("inspect: %s is a bundle: --digest applies to model files (compare bundles by their id)", opts.Path)
	}
	g, m, err := bundle.Open(opts.Path, bundle.OpenOptions{})
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	rep := &InspectBundleReport{Path: opts.Path, Format: m.Format, ID: m.ID, Arch: m.Model.Arch, Config: m.Model.Config,
		Bytes: buildrun.StoredBytes(g), Files: len(m.Files), Integrity: "ok", Kernels: m.Kernels, Tokenizer: m.Tokenizer,
		Requirements: m.Requirements, Provenance: m.Provenance, Tensors: []manifest.Tensor{}}
	if rep.Kernels == nil {
		rep.Kernels = []manifest.Kernel{}
	}
	for _, f := range m.Files {
		rep.FileBytes += f.NBytes
	}
	for _, s := range m.Shards {
		if f := m.File(s); f != nil {
			rep.Shards = append(rep.Shards, *f)
		}
	}
	for _, t := range m.Tensors {
		if q := t.Quant; q != nil {
			rep.Parameters += q.Rows * q.Cols
		} else if isCompanion(m, t.Name) {
			continue
		} else if n, err := t.Shape.NumElements(); err == nil {
			rep.Parameters += n
		}
	}
	for _, t := range m.Tensors {
		if filter == nil || filter.MatchString(t.Name) {
			rep.Tensors = append(rep.Tensors, t)
		}
	}
	if err := manifest.CheckFiles(opts.Path, m); err != nil {
		rep.Integrity = "MISMATCH: " + err.Error()
	}
	rep.Signature = signatureStatus(opts.Path)
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printInspectBundle(env.Stdout, rep)
}

// isCompanion reports whether name is the scales or zeros tensor of a
// quantized weight.
func isCompanion(m *manifest.Manifest, name string) bool {
	for _, t := range m.Tensors {
		if q := t.Quant; q != nil && (q.Scales == name || q.Zeros == name) {
			return true
		}
	}
	return false
}

// signatureStatus reads manifest.sig without a key: whether it is there,
// well formed, signs the current manifest.json, and by which key ids.
func signatureStatus(dir string) InspectSignature {
	sig, err := os.ReadFile(filepath.Join(dir, manifest.SignatureFile))
	if errors.Is(err, fs.ErrNotExist) {
		return InspectSignature{Status: "unsigned"}
	}
	if err != nil {
		return InspectSignature{Status: "malformed", Detail: err.Error()}
	}
	env, payload, err := manifest.DecodeEnvelope(sig)
	if err != nil {
		return InspectSignature{Status: "malformed", Detail: err.Error()}
	}
	s := InspectSignature{Status: "present", Detail: "signs this manifest.json; check the signature with smelt verify --pubkey"}
	for _, sg := range env.Signatures {
		s.KeyIDs = append(s.KeyIDs, sg.KeyID)
	}
	if mb, err := os.ReadFile(filepath.Join(dir, manifest.ManifestFile)); err != nil || !bytes.Equal(mb, payload) {
		s.Status, s.Detail = "stale", "signs other bytes than this manifest.json"
	}
	return s
}

func printInspectBundle(w io.Writer, r *InspectBundleReport) error {
	mib := func(n int64) string { return fmt.Sprintf("%s (%.2f MiB)", groupDigits(n), float64(n)/(1<<20)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "path:\t%s\n", r.Path)
	fmt.Fprintf(tw, "bundle:\tformat %d, id %s\n", r.Format, r.ID)
	fmt.Fprintf(tw, "architecture:\t%s (%s)\n", r.Config.Arch, r.Arch)
	c := r.Config
	fmt.Fprintf(tw, "layers / hidden / intermediate:\t%d / %d / %d\n", c.NumLayers, c.HiddenSize, c.IntermediateSize)
	fmt.Fprintf(tw, "heads / kv heads / head dim:\t%d / %d / %d\n", c.NumHeads, c.NumKVHeads, c.HeadDim)
	fmt.Fprintf(tw, "vocab / context:\t%d / %d\n", c.VocabSize, c.MaxPositionEmbeddings)
	fmt.Fprintf(tw, "parameters:\t%s\n", groupDigits(r.Parameters))
	fmt.Fprintf(tw, "weights:\t%s\n", mib(r.Bytes.Total))
	for _, k := range sortedKeys(r.Bytes.ByDType) {
		fmt.Fprintf(tw, "  dtype %s:\t%s\n", k, mib(r.Bytes.ByDType[k]))
	}
	for _, k := range sortedKeys(r.Bytes.ByScheme) {
		fmt.Fprintf(tw, "  scheme %s:\t%s\n", k, mib(r.Bytes.ByScheme[k]))
	}
	fmt.Fprintf(tw, "files:\t%d, %s; integrity %s\n", r.Files, mib(r.FileBytes), r.Integrity)
	for _, s := range r.Shards {
		fmt.Fprintf(tw, "  shard %s:\t%s\n", s.Path, groupDigits(s.NBytes))
	}
	fmt.Fprintf(tw, "kernels:\t%d (listed below)\n", len(r.Kernels))
	tok := r.Tokenizer
	if tok == "" {
		tok = "none"
	}
	fmt.Fprintf(tw, "tokenizer:\t%s\n", tok)
	rq := r.Requirements
	features := "none"
	if len(rq.Features) > 0 {
		features = strings.Join(rq.Features, ", ")
	}
	fmt.Fprintf(tw, "requirements:\tfeatures %s; context %d; VRAM %s\n", features, rq.ContextLength, mib(rq.VRAMBytes))
	for _, k := range sortedKeys(rq.Limits) {
		fmt.Fprintf(tw, "  limit %s:\t%d\n", k, rq.Limits[k])
	}
	p := r.Provenance
	fmt.Fprintf(tw, "provenance:\tsmelt %s\n", p.Smelt)
	for _, s := range p.Sources {
		fmt.Fprintf(tw, "  source %s:\tsha256 %s, %s bytes\n", s.Path, s.SHA256, groupDigits(s.NBytes))
	}
	if cal := p.Calibration; cal != nil {
		fmt.Fprintf(tw, "  calibration %s:\tsha256 %s, %s bytes\n", cal.Path, cal.SHA256, groupDigits(cal.NBytes))
	}
	if len(p.Recipe) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, p.Recipe) != nil {
			buf.Reset()
			buf.Write(p.Recipe)
		}
		fmt.Fprintf(tw, "  recipe:\t%s\n", buf.String())
	}
	sig := r.Signature.Status
	if len(r.Signature.KeyIDs) > 0 {
		sig += ", key " + strings.Join(r.Signature.KeyIDs, ", ")
	}
	if r.Signature.Detail != "" {
		sig += " (" + r.Signature.Detail + ")"
	}
	fmt.Fprintf(tw, "signature:\t%s\n", sig)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Kernels) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KERNEL\tWORKGROUP\tBINDINGS\tREQUIRES\tFILE")
		for _, k := range r.Kernels {
			req := "-"
			if len(k.Requires) > 0 {
				req = strings.Join(k.Requires, " ")
			}
			fmt.Fprintf(tw, "%s\t%v\t%d\t%s\t%s\n", k.Name, k.Workgroup, len(k.Bindings), req, k.Path)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDTYPE\tSHAPE\tSCHEME\tSHARD\tOFFSET\tBYTES")
	for _, t := range r.Tensors {
		scheme := "-"
		if t.Quant != nil {
			scheme = t.Quant.Scheme
			if t.Quant.Algorithm != "" {
				scheme += " (" + t.Quant.Algorithm + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%d\t%d\n", t.Name, t.DType, t.Shape, scheme, t.Shard, t.Offset, t.NBytes)
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
