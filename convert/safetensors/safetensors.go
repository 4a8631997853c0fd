package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
	"golang.org/x/sys/unix"
)

// MaxHeaderBytes bounds the JSON header (as the reference implementation does).
const MaxHeaderBytes = 100 << 20

// IndexFile is the name of the sharded-model index.
const IndexFile = "model.safetensors.index.json"

var dtypes = map[string]ir.DType{
	"F64": ir.F64, "F32": ir.F32, "F16": ir.F16, "BF16": ir.BF16,
	"I64": ir.I64, "I32": ir.I32, "I16": ir.I16, "I8": ir.I8,
	"U8": ir.U8, "U32": ir.U32, "BOOL": ir.Bool,
}

// DTypeName returns the safetensors spelling of d ("F16").
func DTypeName(d ir.DType) (string, bool) {
	for k, v := range dtypes {
		if v == d {
			return k, true
		}
	}
	return "", false
}

// HeaderEntry is one tensor's record in a header.
type HeaderEntry struct {
	Name        string
	DType       ir.DType
	Shape       ir.Shape
	Begin, End  int64 // relative to the data buffer
	rawDTypeStr string
}

// Header is a parsed and validated safetensors header.
type Header struct {
	DataStart int64 // 8 + header length
	Entries   []HeaderEntry
	Metadata  map[string]string
}

// ParseHeader parses and validates the header of a file of fileSize bytes
// whose first bytes are in prefix (which must hold at least the whole header).
// name is used in errors.
func ParseHeader(name string, prefix []byte, fileSize int64) (*Header, error) {
	if len(prefix) < 8 || fileSize < 8 {
		return nil, fmt.Errorf("convert: %s: file is %d bytes, too short for a safetensors header", name, fileSize)
	}
	n := binary.LittleEndian.Uint64(prefix[:8])
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("convert: %s: header length %d exceeds the %d-byte limit", name, n, MaxHeaderBytes)
	}
	if int64(n) > fileSize-8 {
		return nil, fmt.Errorf("convert: %s: header length %d runs past the end of the %d-byte file", name, n, fileSize)
	}
	if int64(len(prefix)) < 8+int64(n) {
		return nil, fmt.Errorf("convert: %s: truncated header: have %d of %d bytes", name, len(prefix)-8, n)
	}
	raw := prefix[8 : 8+n]
	h := &Header{DataStart: 8 + int64(n), Metadata: map[string]string{}}
	dataSize := fileSize - h.DataStart
	if err := decodeHeaderJSON(raw, h); err != nil {
		return nil, fmt.Errorf("convert: %s: header: %w", name, err)
	}
	for i := range h.Entries {
		e := &h.Entries[i]
		want, err := e.Shape.ByteSize(e.DType)
		if err != nil {
			return nil, fmt.Errorf("convert: %s: tensor %q: %v", name, e.Name, err)
		}
		if e.Begin < 0 || e.End < e.Begin {
			return nil, fmt.Errorf("convert: %s: tensor %q: data_offsets [%d, %d] are not an increasing pair", name, e.Name, e.Begin, e.End)
		}
		if e.End > dataSize {
			return nil, fmt.Errorf("convert: %s: tensor %q: data_offsets end %d beyond the %d-byte data buffer", name, e.Name, e.End, dataSize)
		}
		if e.End-e.Begin != want {
			return nil, fmt.Errorf("convert: %s: tensor %q: %d bytes in data_offsets, want %d for %s %v", name, e.Name, e.End-e.Begin, want, e.rawDTypeStr, e.Shape)
		}
	}
	if err := checkLayout(h.Entries, dataSize); err != nil {
		return nil, fmt.Errorf("convert: %s: %w", name, err)
	}
	sort.Slice(h.Entries, func(i, j int) bool { return h.Entries[i].Name < h.Entries[j].Name })
	return h, nil
}

// checkLayout verifies that the tensors' byte ranges do not overlap and
// cover the data buffer [0, dataSize) without holes, as the format requires
// (a hole could hide a second payload: a polyglot file). Empty tensors
// (begin == end) take no bytes and may sit anywhere in range.
func checkLayout(entries []HeaderEntry, dataSize int64) error {
	byOffset := make([]*HeaderEntry, 0, len(entries))
	for i := range entries {
		if entries[i].End > entries[i].Begin {
			byOffset = append(byOffset, &entries[i])
		}
	}
	sort.Slice(byOffset, func(i, j int) bool {
		if byOffset[i].Begin != byOffset[j].Begin {
			return byOffset[i].Begin < byOffset[j].Begin
		}
		return byOffset[i].Name < byOffset[j].Name
	})
	var covered int64 // every byte below covered belongs to a tensor in prev
	var prev *HeaderEntry
	for _, e := range byOffset {
		if e.Begin < covered {
			return fmt.Errorf("tensors %q [%d, %d) and %q [%d, %d) overlap", prev.Name, prev.Begin, prev.End, e.Name, e.Begin, e.End)
		}
		if e.Begin > covered {
			return fmt.Errorf("bytes [%d, %d) of the data buffer belong to no tensor", covered, e.Begin)
		}
		covered, prev = e.End, e
	}
	if covered != dataSize {
		return fmt.Errorf("bytes [%d, %d) of the data buffer belong to no tensor", covered, dataSize)
	}
	return nil
}

// decodeHeaderJSON walks the header object token by token so duplicate keys
// and wrong types are caught instead of silently overwritten.
func decodeHeaderJSON(raw []byte, h *Header) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, found %v", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("want a key, found %v", tok)
		}
		if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if key == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return fmt.Errorf("__metadata__: want an object of strings: %v", err)
			}
			h.Metadata = md
			continue
		}
		var rec struct {
			DType       *string  `json:"dtype"`
			Shape       *[]int64 `json:"shape"`
			DataOffsets *[]int64 `json:"data_offsets"`
		}
		sub := json.RawMessage{}
		if err := dec.Decode(&sub); err != nil {
			return fmt.Errorf("tensor %q: invalid JSON: %v", key, err)
		}
		d := json.NewDecoder(bytes.NewReader(sub))
		d.DisallowUnknownFields()
		if err := d.Decode(&rec); err != nil {
			return fmt.Errorf("tensor %q: %v", key, err)
		}
		if rec.DType == nil || rec.Shape == nil || rec.DataOffsets == nil {
			return fmt.Errorf("tensor %q: want dtype, shape and data_offsets", key)
		}
		dt, ok := dtypes[*rec.DType]
		if !ok {
			return fmt.Errorf("tensor %q: unsupported dtype %q", key, *rec.DType)
		}
		if len(*rec.DataOffsets) != 2 {
			return fmt.Errorf("tensor %q: data_offsets has %d values, want 2", key, len(*rec.DataOffsets))
		}
		for _, dim := range *rec.Shape {
			if dim < 0 {
				return fmt.Errorf("tensor %q: negative dim in shape %v", key, *rec.Shape)
			}
		}
		h.Entries = append(h.Entries, HeaderEntry{
			Name: key, DType: dt, Shape: ir.Shape(*rec.Shape),
			Begin: (*rec.DataOffsets)[0], End: (*rec.DataOffsets)[1], rawDTypeStr: *rec.DType,
		})
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the header object")
	}
	return nil
}

// mapped is one mmapped file.
type mapped struct {
	data []byte
	name string
}

type source struct {
	m          *mapped
	begin, end int64
}

func (s *source) Bytes() ([]byte, error) { return s.m.data[s.begin:s.end:s.end], nil }
func (s *source) Location() string       { return s.m.name }

// Release tells the kernel that the tensor's pages of the mapping are not
// needed any more (madvise MADV_DONTNEED on the whole pages inside the
// tensor's range), so that a pass over every tensor of a large model (a
// digest, a conversion) keeps a flat resident set. The mapping stays valid:
// a later Bytes faults the pages back in from the file.
func (s *source) Release() error {
	page := int64(os.Getpagesize())
	begin := (s.begin + page - 1) / page * page
	end := s.end / page * page
	if end <= begin {
		return nil
	}
	return unix.Madvise(s.m.data[begin:end], unix.MADV_DONTNEED)
}

// openFile maps one safetensors file and appends its entries to inv.
func openFile(inv *tensorfile.Inventory, dir, rel string) error {
	path := filepath.Join(dir, rel)
	data, closer, err := tensorfile.Mmap(path)
	if err != nil {
		return fmt.Errorf("convert: %s: %w", path, err)
	}
	h, err := ParseHeader(path, data, int64(len(data)))
	if err != nil {
		closer()
		return err
	}
	inv.AddCloser(closer)
	m := &mapped{data: data, name: rel}
	for _, e := range h.Entries {
		inv.Entries = append(inv.Entries, &tensorfile.Entry{
			Name: e.Name, DType: e.DType, Shape: e.Shape, File: rel,
			Offset: h.DataStart + e.Begin, NBytes: e.End - e.Begin,
			Source: &source{m: m, begin: h.DataStart + e.Begin, end: h.DataStart + e.End},
		})
	}
	for k, v := range h.Metadata {
		if inv.Metadata == nil {
			inv.Metadata = map[string]string{}
		}
		inv.Metadata[k] = v
	}
	inv.Files = append(inv.Files, rel)
	return nil
}

// OpenFile opens a single safetensors file.
func OpenFile(path string) (*tensorfile.Inventory, error) {
	inv := &tensorfile.Inventory{Dir: filepath.Dir(path), Format: "safetensors"}
	if err := openFile(inv, inv.Dir, filepath.Base(path)); err != nil {
		return nil, err
	}
	if err := inv.Sort(); err != nil {
		inv.Close()
		return nil, err
	}
	return inv, nil
}

// Index is model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenSharded opens a sharded model through the index file in dir.
func OpenSharded(dir string) (*tensorfile.Inventory, error) {
	indexPath := filepath.Join(dir, IndexFile)
	raw, err := readBounded(indexPath, MaxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	var idx Index
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("convert: %s: %v", indexPath, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("convert: %s: trailing data after the JSON object", indexPath)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("convert: %s: weight_map is empty", indexPath)
	}
	var totalSize *int64
	if ts, ok := idx.Metadata["total_size"]; ok {
		n, isNum := ts.(json.Number)
		v, err := n.Int64()
		if !isNum || err != nil || v < 0 {
			return nil, fmt.Errorf("convert: %s: metadata total_size %v, want a non-negative integer", indexPath, ts)
		}
		totalSize = &v
	}
	names := make([]string, 0, len(idx.WeightMap))
	for tensor := range idx.WeightMap {
		names = append(names, tensor)
	}
	sort.Strings(names) // deterministic errors
	var files []string
	seen := map[string]bool{}
	for _, tensor := range names {
		f := idx.WeightMap[tensor]
		if !filepath.IsLocal(f) {
			return nil, fmt.Errorf("convert: %s: tensor %q: shard path %q escapes the model folder", indexPath, tensor, f)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	sort.Strings(files)
	inv := &tensorfile.Inventory{Dir: dir, Format: "safetensors"}
	for _, f := range files {
		if err := checkInside(dir, f); err != nil {
			inv.Close()
			return nil, fmt.Errorf("convert: %s: %w", indexPath, err)
		}
		if err := openFile(inv, dir, f); err != nil {
			inv.Close()
			return nil, err
		}
	}
	if err := inv.Sort(); err != nil {
		inv.Close()
		return nil, err
	}
	for _, e := range inv.Entries {
		want, ok := idx.WeightMap[e.Name]
		if !ok {
			inv.Close()
			return nil, fmt.Errorf("convert: %s: tensor %q is in %s but not in the weight_map", indexPath, e.Name, e.File)
		}
		if want != e.File {
			inv.Close()
			return nil, fmt.Errorf("convert: %s: tensor %q: weight_map says %s, found in %s", indexPath, e.Name, want, e.File)
		}
	}
	if len(inv.Entries) != len(idx.WeightMap) {
		for _, name := range names {
			if f := idx.WeightMap[name]; inv.Lookup(name) == nil {
				inv.Close()
				return nil, fmt.Errorf("convert: %s: tensor %q listed in weight_map is missing from %s", indexPath, name, f)
			}
		}
	}
	if totalSize != nil {
		var total int64
		for _, e := range inv.Entries {
			total += e.NBytes
		}
		if *totalSize != total {
			inv.Close()
			return nil, fmt.Errorf("convert: %s: metadata total_size %d, the shards' tensors hold %d bytes", indexPath, *totalSize, total)
		}
	}
	return inv, nil
}

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d-byte limit", path, st.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// checkInside rejects a relative path that resolves (through symlinks)
// outside dir.
func checkInside(dir, rel string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return fmt.Errorf("shard %q: %w", rel, err)
	}
	r, err := filepath.Rel(root, p)
	if err != nil || !filepath.IsLocal(r) {
		return fmt.Errorf("shard %q resolves outside the model folder", rel)
	}
	return nil
}
