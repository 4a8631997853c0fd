package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/smeltml/smelt/internal/ir"
)

// Format is the manifest format version this package writes and reads.
const Format = 1

// Fixed names inside a bundle directory.
const (
	ManifestFile  = "manifest.json" // the manifest (canonical JSON)
	SignatureFile = "manifest.sig"  // DSSE envelope over the exact manifest bytes
)

// MaxManifestBytes bounds the manifest size Decode accepts (and Verify reads).
const MaxManifestBytes = 64 << 20

// Manifest is a bundle's table of contents: the serialized IR, the tensor
// table, every file with its integrity, and what the runtime needs. See the
// package documentation for the format.
type Manifest struct {
	Format       int             `json:"format"`              // Format
	ID           string          `json:"id"`                  // BundleID(Files)
	Model        Model           `json:"model"`               // architecture and config
	Tokenizer    string          `json:"tokenizer,omitempty"` // path of the tokenizer file (in Files)
	Graph        Graph           `json:"graph"`               // the serialized IR
	Tensors      []Tensor        `json:"tensors"`             // sorted by name
	Shards       []string        `json:"shards"`              // shard paths; Tensor.Shard indexes this
	Files        []File          `json:"files"`               // every file but manifest.json/.sig, sorted by path
	Kernels      []Kernel        `json:"kernels,omitempty"`   // filled by codegen
	Program      json.RawMessage `json:"program,omitempty"`   // dispatch program; codegen's format
	Requirements Requirements    `json:"requirements"`
	Provenance   Provenance      `json:"provenance"`
}

// Model names the architecture and carries its config.
type Model struct {
	Arch   string    `json:"arch"` // registry family, e.g. "llama"
	Config ir.Config `json:"config"`
}

// Tensor is one stored tensor: its dtype and shape as stored (for a packed
// quantized weight, U32 [N, K*b/32] with Quant set; see quantlayout), and
// where its bytes are. A tensor larger than a shard is split: Parts lists
// the pieces in order (Parts[0] is at Shard/Offset); otherwise Parts is
// empty and the NBytes bytes at Shard/Offset are the whole tensor.
type Tensor struct {
	Name   string        `json:"name"`
	DType  ir.DType      `json:"dtype"`
	Shape  ir.Shape      `json:"shape"`
	Quant  *ir.QuantInfo `json:"quant,omitempty"`
	Shard  int           `json:"shard"`  // index into Manifest.Shards
	Offset int64         `json:"offset"` // byte offset in the shard
	NBytes int64         `json:"nbytes"` // total size, = Shape.ByteSize(DType)
	Parts  []Part        `json:"parts,omitempty"`
}

// Part is a piece of a split tensor.
type Part struct {
	Shard  int   `json:"shard"`
	Offset int64 `json:"offset"`
	NBytes int64 `json:"nbytes"`
}

// File is one file of the bundle with its Subresource Integrity value
// ("sha384-" + base64 of the SHA-384 of its bytes).
type File struct {
	Path      string `json:"path"` // slash-separated, relative, clean
	NBytes    int64  `json:"nbytes"`
	Integrity string `json:"integrity"`
}

// Kernel is one WGSL compute shader of the bundle (filled by codegen).
type Kernel struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`  // file in Files ("kernels/matmul_q4.wgsl")
	Entry     string    `json:"entry"` // entry point name
	Workgroup [3]int    `json:"workgroup"`
	Bindings  []Binding `json:"bindings,omitempty"`
	Requires  []string  `json:"requires,omitempty"` // WebGPU features ("shader-f16", "subgroups")
}

// Binding is one resource binding of a kernel.
type Binding struct {
	Group   int    `json:"group"`
	Binding int    `json:"binding"`
	Name    string `json:"name"`
	Type    string `json:"type"` // "storage", "read-only-storage", "uniform"
}

// Requirements is what a device needs to run the bundle.
type Requirements struct {
	Features      []string         `json:"features,omitempty"` // required WebGPU features
	Limits        map[string]int64 `json:"limits,omitempty"`   // required limits above the defaults
	VRAMBytes     int64            `json:"vram_bytes"`         // weights + KV cache + activations
	ContextLength int              `json:"context_length"`
}

// Provenance records how the bundle was made. It holds no timestamps, so
// that the same inputs give the same bytes.
type Provenance struct {
	Smelt       string          `json:"smelt"`            // smelt version
	Recipe      json.RawMessage `json:"recipe,omitempty"` // the full recipe, as JSON
	Sources     []SourceFile    `json:"sources,omitempty"`
	Calibration *SourceFile     `json:"calibration,omitempty"` // calibration data digest
}

// SourceFile is the digest of an input file.
type SourceFile struct {
	Path   string `json:"path"` // as given to smelt, relative to the model dir
	NBytes int64  `json:"nbytes"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// BundleID is the bundle's content id: "sha256:" + hex of the SHA-256 of
// one line per file, sorted by path, each "<integrity> <nbytes> <path>\n".
// Two bundles with the same id hold the same files byte for byte.
func BundleID(files []File) string {
	fs := append([]File(nil), files...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
	h := sha256.New()
	for _, f := range fs {
		fmt.Fprintf(h, "%s %d %s\n", f.Integrity, f.NBytes, f.Path)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// File returns the file entry for path, or nil.
func (m *Manifest) File(p string) *File {
	i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Path >= p })
	if i < len(m.Files) && m.Files[i].Path == p {
		return &m.Files[i]
	}
	return nil
}

// Encode validates m and returns its canonical JSON bytes (see the package
// documentation): the bytes that are signed and written as manifest.json.
// It fills nothing in: set ID with BundleID first.
func Encode(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return Canonicalize(raw)
}

// Decode parses manifest bytes strictly: at most MaxManifestBytes, canonical
// form (so there is one byte string per manifest, and no duplicate keys),
// no unknown fields, and a manifest that passes Validate.
func Decode(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest: %d bytes, more than the limit of %d", len(b), MaxManifestBytes)
	}
	c, err := Canonicalize(b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c, b) {
		i := 0
		for i < len(b) && i < len(c) && b[i] == c[i] {
			i++
		}
		return nil, fmt.Errorf("manifest: not in canonical form (first difference at byte %d)", i)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	// Field names match case-insensitively in encoding/json, and empty
	// optional fields may be spelled out: insist on the exact bytes Encode
	// gives, so one manifest has one spelling.
	if again, err := Encode(&m); err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("manifest: not in canonical form (does not re-encode to the same bytes)")
	}
	return &m, nil
}

// Validate checks the manifest's internal consistency: format version,
// file paths (clean, relative, unique, sorted, not the manifest or its
// signature), integrity syntax, the bundle id, shard and tensor references
// and extents, kernels and tokenizer naming listed files, and the graph's
// references.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("manifest: format %d, this smelt reads format %d", m.Format, Format)
	}
	sizes := make(map[string]int64, len(m.Files))
	for i, f := range m.Files {
		if err := CheckPath(f.Path); err != nil {
			return err
		}
		if f.Path == ManifestFile || f.Path == SignatureFile {
			return fmt.Errorf("manifest: files list %q, which is never listed", f.Path)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("manifest: files not sorted by path or duplicated at %q", f.Path)
		}
		if f.NBytes < 0 {
			return fmt.Errorf("manifest: file %q has negative size %d", f.Path, f.NBytes)
		}
		if _, err := ParseIntegrity(f.Integrity); err != nil {
			return fmt.Errorf("manifest: file %q: %w", f.Path, err)
		}
		sizes[f.Path] = f.NBytes
	}
	for _, f := range m.Files { // a file cannot also be a directory
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if _, ok := sizes[d]; ok {
				return fmt.Errorf("manifest: %q is both a file and the directory of %q", d, f.Path)
			}
		}
	}
	if id := BundleID(m.Files); m.ID != id {
		return fmt.Errorf("manifest: id %q does not match the file list (want %q)", m.ID, id)
	}
	if m.Tokenizer != "" {
		if _, ok := sizes[m.Tokenizer]; !ok {
			return fmt.Errorf("manifest: tokenizer %q is not in the file list", m.Tokenizer)
		}
	}
	for i, s := range m.Shards {
		if _, ok := sizes[s]; !ok {
			return fmt.Errorf("manifest: shard %d %q is not in the file list", i, s)
		}
	}
	tensors := make(map[string]bool, len(m.Tensors))
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if err := m.checkTensor(t, sizes); err != nil {
			return err
		}
		if i > 0 && m.Tensors[i-1].Name >= t.Name {
			return fmt.Errorf("manifest: tensors not sorted by name or duplicated at %q", t.Name)
		}
		tensors[t.Name] = true
	}
	for i := range m.Tensors {
		if q := m.Tensors[i].Quant; q != nil {
			if !tensors[q.Scales] {
				return fmt.Errorf("manifest: tensor %q: scales tensor %q is not in the tensor table", m.Tensors[i].Name, q.Scales)
			}
			if q.Zeros != "" && !tensors[q.Zeros] {
				return fmt.Errorf("manifest: tensor %q: zeros tensor %q is not in the tensor table", m.Tensors[i].Name, q.Zeros)
			}
		}
	}
	for _, k := range m.Kernels {
		if _, ok := sizes[k.Path]; !ok {
			return fmt.Errorf("manifest: kernel %q: file %q is not in the file list", k.Name, k.Path)
		}
	}
	if err := m.Graph.check(tensors); err != nil {
		return err
	}
	if m.Requirements.VRAMBytes < 0 || m.Requirements.ContextLength < 0 {
		return fmt.Errorf("manifest: negative requirements")
	}
	return nil
}

func (m *Manifest) checkTensor(t *Tensor, sizes map[string]int64) error {
	if t.Name == "" {
		return fmt.Errorf("manifest: tensor with an empty name")
	}
	if t.DType == ir.Invalid {
		return fmt.Errorf("manifest: tensor %q has no dtype", t.Name)
	}
	want, err := t.Shape.ByteSize(t.DType)
	if err != nil {
		return fmt.Errorf("manifest: tensor %q: %w", t.Name, err)
	}
	if t.NBytes != want {
		return fmt.Errorf("manifest: tensor %q: nbytes %d, want %d for %v %v", t.Name, t.NBytes, want, t.DType, t.Shape)
	}
	parts := t.Parts
	if len(parts) == 0 {
		parts = []Part{{Shard: t.Shard, Offset: t.Offset, NBytes: t.NBytes}}
	} else if len(parts) == 1 || parts[0].Shard != t.Shard || parts[0].Offset != t.Offset {
		return fmt.Errorf("manifest: tensor %q: parts must number 2 or more and start at shard %d offset %d", t.Name, t.Shard, t.Offset)
	}
	var sum int64
	for _, p := range parts {
		if p.Shard < 0 || p.Shard >= len(m.Shards) {
			return fmt.Errorf("manifest: tensor %q: shard %d out of range (%d shards)", t.Name, p.Shard, len(m.Shards))
		}
		size := sizes[m.Shards[p.Shard]]
		if p.Offset < 0 || p.NBytes < 0 || p.Offset > size || p.NBytes > size-p.Offset {
			return fmt.Errorf("manifest: tensor %q: bytes [%d, +%d) outside shard %q of %d bytes", t.Name, p.Offset, p.NBytes, m.Shards[p.Shard], size)
		}
		sum += p.NBytes
	}
	if sum != t.NBytes {
		return fmt.Errorf("manifest: tensor %q: parts hold %d bytes, want %d", t.Name, sum, t.NBytes)
	}
	return nil
}

// CheckPath reports whether p is an acceptable bundle file path: non-empty,
// slash-separated, relative, clean (no "." or ".." elements, no empty
// elements), at most 512 bytes, of printable ASCII without backslashes or
// colons (portable file names and URL paths).
func CheckPath(p string) error {
	if p == "" || len(p) > 512 {
		return fmt.Errorf("manifest: bad file path %q: empty or longer than 512 bytes", p)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f || c == '\\' || c == ':' || c == '%' || c == '?' || c == '#' {
			return fmt.Errorf("manifest: bad file path %q: character %q not allowed", p, c)
		}
	}
	if path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("manifest: bad file path %q: not a clean relative path", p)
	}
	return nil
}
