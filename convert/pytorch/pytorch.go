package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/big"
	"math/bits"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nlpodyssey/gopickle/types"

	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// Open reads the tensor table of a PyTorch checkpoint written by
// torch.save (pytorch_model.bin): the zip format of torch >= 1.6, or the
// legacy pickle-stream format (_use_new_zipfile_serialization=False). Only
// the pickle is read; tensor bytes stay in a read-only mmap of the file until
// an entry's Source is read. Call Close on the result to unmap it.
//
// Errors name the file (and the tensor): `convert: pytorch_model.bin:
// pickle references disallowed global "os.system"`.
func Open(path string) (*tensorfile.Inventory, error) {
	name := filepath.Base(path)
	data, unmap, err := tensorfile.Mmap(path)
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", name, err)
	}
	inv, err := load(name, data)
	if err != nil {
		unmap()
		return nil, err
	}
	inv.Dir = filepath.Dir(path)
	inv.AddCloser(unmap)
	return inv, nil
}

// legacyMagic is how torch's legacy format starts: a protocol-2 pickle of
// the magic number 0x1950a86a20f9469cfc6c (PROTO 2, LONG1 10 bytes, STOP).
var legacyMagic = []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")

// load reads the checkpoint held in data; name is used in errors and as the
// entries' File.
func load(name string, data []byte) (*tensorfile.Inventory, error) {
	inv := &tensorfile.Inventory{Format: "pytorch", Files: []string{name}, Metadata: map[string]string{}}
	var err error
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		err = loadZip(inv, name, data)
	case bytes.HasPrefix(data, legacyMagic):
		err = loadLegacy(inv, name, data)
	case len(data) >= 262 && string(data[257:262]) == "ustar":
		err = fmt.Errorf("tar-format checkpoint (torch < 0.4) is not supported; re-save it with torch.save")
	case len(data) > 0 && data[0] == 0x80:
		err = fmt.Errorf("a pickle without torch's magic number: not a torch.save checkpoint")
	default:
		err = fmt.Errorf("not a PyTorch checkpoint (neither a zip archive nor a legacy torch pickle)")
	}
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", name, err)
	}
	return inv, nil
}

// storage is one storage record: its bytes in the mapped file.
type storage struct {
	ref    *storageRef
	record string // "pytorch_model/data/3", for Location
	data   []byte
	offset int64 // of data in the file
	crc    uint32
	hasCRC bool
	once   sync.Once
	err    error
}

// bytes returns the record, checking its CRC-32 on first use.
func (s *storage) bytes(file string) ([]byte, error) {
	if s.hasCRC {
		s.once.Do(func() {
			if got := crc32.ChecksumIEEE(s.data); got != s.crc {
				s.err = fmt.Errorf("convert: %s: record %s: crc32 %08x, zip directory says %08x", file, s.record, got, s.crc)
			}
		})
	}
	return s.data, s.err
}

func loadZip(inv *tensorfile.Inventory, name string, data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	files := make(map[string]*zip.File, len(zr.File))
	var pkls []string
	for _, f := range zr.File {
		if _, dup := files[f.Name]; dup {
			return fmt.Errorf("zip: record %q appears twice", f.Name)
		}
		files[f.Name] = f
		if dir, base := path.Split(f.Name); base == "data.pkl" && dir != "" && strings.Count(dir, "/") == 1 {
			pkls = append(pkls, f.Name)
		}
	}
	if len(pkls) != 1 {
		return fmt.Errorf("zip: want exactly one <archive>/data.pkl record, found %d", len(pkls))
	}
	prefix := strings.TrimSuffix(pkls[0], "data.pkl")
	if _, ok := files[prefix+"constants.pkl"]; ok {
		return fmt.Errorf("a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
	}
	inv.Metadata["pytorch.format"] = "zip"
	inv.Metadata["pytorch.archive"] = strings.TrimSuffix(prefix, "/")
	if f, ok := files[prefix+"byteorder"]; ok {
		b, err := readSmall(f, 16)
		if err != nil {
			return err
		}
		if string(b) != "little" {
			return fmt.Errorf("byteorder record says %q; only little-endian checkpoints are supported", b)
		}
		inv.Metadata["pytorch.byteorder"] = "little"
	}
	if f, ok := files[prefix+"version"]; ok {
		b, err := readSmall(f, 16)
		if err != nil {
			return err
		}
		inv.Metadata["pytorch.version"] = strings.TrimSpace(string(b))
	}
	pkl, err := readSmall(files[pkls[0]], MaxPickleBytes)
	if err != nil {
		return err
	}
	seen := map[string]*storageRef{}
	v, _, err := unpickle(pkl, persistentStorage(seen, false))
	if _, ok := err.(*DisallowedGlobalError); ok {
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: %w", pkls[0], err)
	}
	storages := make(map[string]*storage, len(seen))
	for key, ref := range seen {
		rec := prefix + "data/" + key
		f, ok := files[rec]
		if !ok {
			return fmt.Errorf("storage %q: record %s is missing", key, rec)
		}
		if f.Method != zip.Store {
			return fmt.Errorf("record %s is compressed (method %d); torch writes storages uncompressed", rec, f.Method)
		}
		off, err := f.DataOffset()
		if err != nil {
			return fmt.Errorf("record %s: %w", rec, err)
		}
		st, err := storageIn(data, ref, rec, off, f.UncompressedSize64)
		if err != nil {
			return err
		}
		if f.CompressedSize64 != f.UncompressedSize64 {
			return fmt.Errorf("record %s: stored with %d bytes but %d uncompressed", rec, f.CompressedSize64, f.UncompressedSize64)
		}
		st.crc, st.hasCRC = f.CRC32, true
		storages[key] = st
	}
	return addTensors(inv, name, v, storages)
}

// storageIn checks that the record of size bytes at off lies inside data
// and holds exactly ref.numel elements.
func storageIn(data []byte, ref *storageRef, rec string, off int64, size uint64) (*storage, error) {
	es := int64(ref.dtype.Bits() / 8)
	want := ref.numel * es // numel <= MaxInt64/8, checked in persistentStorage
	if size != uint64(want) {
		return nil, fmt.Errorf("record %s has %d bytes, want %d for %d x %v", rec, size, want, ref.numel, ref.dtype)
	}
	if off < 0 || off > int64(len(data)) || int64(len(data))-off < want {
		return nil, fmt.Errorf("record %s (%d bytes at offset %d) runs past the end of the file (%d bytes)", rec, want, off, len(data))
	}
	return &storage{ref: ref, record: rec, data: data[off : off+want : off+want], offset: off}, nil
}

// readSmall reads a whole zip record of at most limit bytes.
func readSmall(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record %s has %d bytes, more than the %d-byte limit", f.Name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	return b, nil
}

// loadLegacy reads torch's pre-1.6 format: five pickles (magic number,
// protocol version 1001, sys_info, the object, the sorted storage keys),
// then for each key an int64 element count and the storage's raw bytes.
func loadLegacy(inv *tensorfile.Inventory, name string, data []byte) error {
	pos := 0
	next := func(what string, pl func(interface{}) (interface{}, error)) (interface{}, error) {
		v, n, err := unpickle(data[pos:], pl)
		if _, ok := err.(*DisallowedGlobalError); ok {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("legacy format: %s: %w", what, err)
		}
		pos += n
		return v, nil
	}
	v, err := next("magic number", nil)
	if err != nil {
		return err
	}
	if m, ok := v.(*big.Int); !ok || m.Text(16) != "1950a86a20f9469cfc6c" {
		return fmt.Errorf("legacy format: bad magic number %v", v)
	}
	if v, err = next("protocol version", nil); err != nil {
		return err
	}
	if v != 1001 {
		return fmt.Errorf("legacy format: protocol version %v, want 1001", v)
	}
	if v, err = next("sys_info", nil); err != nil {
		return err
	}
	if d, ok := v.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le != true {
			return fmt.Errorf("legacy format: big-endian checkpoints are not supported")
		}
	}
	seen := map[string]*storageRef{}
	obj, err := next("object", persistentStorage(seen, true))
	if err != nil {
		return err
	}
	if v, err = next("storage keys", nil); err != nil {
		return err
	}
	list, ok := v.(*types.List)
	if !ok {
		return fmt.Errorf("legacy format: storage keys are %T, want a list", v)
	}
	inv.Metadata["pytorch.format"] = "legacy"
	storages := make(map[string]*storage, len(seen))
	for i := 0; i < list.Len(); i++ {
		key, ok := list.Get(i).(string)
		if !ok {
			return fmt.Errorf("legacy format: storage key %v is not a string", list.Get(i))
		}
		ref, ok := seen[key]
		if !ok || storages[key] != nil {
			return fmt.Errorf("legacy format: storage key %q is unreferenced or repeated", key)
		}
		if len(data)-pos < 8 {
			return fmt.Errorf("legacy format: storage %q: truncated before its size", key)
		}
		if n := binary.LittleEndian.Uint64(data[pos:]); n != uint64(ref.numel) {
			return fmt.Errorf("legacy format: storage %q holds %d elements, the pickle says %d", key, n, ref.numel)
		}
		pos += 8
		es := int64(ref.dtype.Bits() / 8)
		st, err := storageIn(data, ref, "storage "+key, int64(pos), uint64(ref.numel*es))
		if err != nil {
			return fmt.Errorf("legacy format: %w", err)
		}
		storages[key] = st
		pos += int(ref.numel * es)
	}
	if len(storages) != len(seen) {
		return fmt.Errorf("legacy format: %d storages referenced, %d stored", len(seen), len(storages))
	}
	return addTensors(inv, name, obj, storages)
}

// addTensors turns the unpickled state_dict into entries.
func addTensors(inv *tensorfile.Inventory, name string, v interface{}, storages map[string]*storage) error {
	var keys []interface{}
	var vals []interface{}
	switch d := v.(type) {
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			keys, vals = append(keys, ent.Key), append(vals, ent.Value)
		}
	case *types.Dict:
		for _, ent := range *d {
			keys, vals = append(keys, ent.Key), append(vals, ent.Value)
		}
	default:
		return fmt.Errorf("checkpoint holds %s, want a state_dict (a dict of tensors)", describe(v))
	}
	seen := make(map[string]bool, len(keys))
	users := map[string][]string{} // storage key -> tensors viewing it
	for i, k := range keys {
		key, ok := k.(string)
		if !ok {
			return fmt.Errorf("state_dict key %v is %s, want a string", k, describe(k))
		}
		if seen[key] {
			return fmt.Errorf("tensor %q appears twice", key)
		}
		seen[key] = true
		t, ok := vals[i].(*tensorRef)
		if !ok {
			return fmt.Errorf("entry %q is %s, not a tensor (only state_dict checkpoints are supported)", key, describe(vals[i]))
		}
		e, err := entry(name, key, t, storages[t.storage.key])
		if err != nil {
			return fmt.Errorf("tensor %q: %w", key, err)
		}
		inv.Entries = append(inv.Entries, e)
		users[t.storage.key] = append(users[t.storage.key], key)
	}
	inv.Metadata["pytorch.storages"] = strconv.Itoa(len(storages))
	var shared []string
	for _, names := range users {
		if len(names) > 1 {
			sort.Strings(names)
			shared = append(shared, strings.Join(names, ","))
		}
	}
	if len(shared) > 0 {
		sort.Strings(shared)
		inv.Metadata["pytorch.shared"] = strings.Join(shared, ";")
	}
	return inv.Sort()
}

func describe(v interface{}) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "a str"
	case int, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case bool:
		return "a bool"
	case *types.Dict, *types.OrderedDict:
		return "a dict"
	case *types.List:
		return "a list"
	case *types.Tuple:
		return "a tuple"
	case *storageRef:
		return "a storage"
	}
	return fmt.Sprintf("a %T", v)
}

// entry checks the view t against its storage and builds the Entry: a
// zero-copy slice when the view is dense row-major, a gathering Source
// otherwise. All index arithmetic is overflow-checked; a view must lie
// inside its storage and may not be larger than it (stride-0 broadcast
// views, which would allocate more than the file holds, are refused).
func entry(file, key string, t *tensorRef, st *storage) (*tensorfile.Entry, error) {
	shape := ir.Shape(t.size)
	n, err := shape.NumElements()
	if err != nil {
		return nil, err
	}
	es := int64(t.dtype.Bits() / 8)
	storageBytes := int64(len(st.data))
	nbytes, err := mulAdd(n, es, 0)
	if err != nil || nbytes > storageBytes {
		return nil, fmt.Errorf("%v %v needs %d elements of %d bytes, storage %s has %d bytes", t.dtype, shape, n, es, st.record, storageBytes)
	}
	loc := file + ":" + st.record
	e := &tensorfile.Entry{Name: key, DType: t.dtype, Shape: shape, File: file, NBytes: nbytes}
	if n == 0 {
		if t.offset > storageBytes/es {
			return nil, fmt.Errorf("storage offset %d is past the end of storage %s (%d elements)", t.offset, st.record, storageBytes/es)
		}
		e.Offset = -1
		e.Source = &ir.BytesSource{Data: []byte{}, Loc: loc}
		return e, nil
	}
	// last = offset + sum((size_i-1) * stride_i): the highest element index.
	last := t.offset
	for i := range t.size {
		if last, err = mulAdd(t.size[i]-1, t.stride[i], last); err != nil {
			return nil, fmt.Errorf("size %v with stride %v overflows", t.size, t.stride)
		}
	}
	end, err := mulAdd(last+1, es, 0)
	if err != nil || last == math.MaxInt64 || end > storageBytes {
		return nil, fmt.Errorf("view (offset %d, size %v, stride %v) reaches element %d, past the end of storage %s (%d elements of %v)",
			t.offset, t.size, t.stride, last, st.record, storageBytes/es, t.dtype)
	}
	begin := t.offset * es // <= end, no overflow
	if contiguous(t.size, t.stride) {
		e.Offset = st.offset + begin
		e.Source = &viewSource{file: file, st: st, begin: begin, end: begin + nbytes, loc: loc}
		return e, nil
	}
	e.Offset = -1
	e.Source = &gatherSource{file: file, st: st, es: es, offset: t.offset, size: t.size, stride: t.stride, nbytes: nbytes, loc: loc + " (strided)"}
	return e, nil
}

// mulAdd returns a*b + c for non-negative a, b, c, or an error on overflow.
func mulAdd(a, b, c int64) (int64, error) {
	if a < 0 || b < 0 || c < 0 {
		return 0, fmt.Errorf("negative operand")
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	sum, carry := bits.Add64(lo, uint64(c), 0)
	if hi != 0 || carry != 0 || sum > math.MaxInt64 {
		return 0, fmt.Errorf("overflow")
	}
	return int64(sum), nil
}

// contiguous reports whether stride is the dense row-major stride of size
// (dimensions of size 1 may have any stride).
func contiguous(size, stride []int64) bool {
	want := int64(1)
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return false
		}
		want *= size[i] // cannot overflow: the element count was checked
	}
	return true
}

// viewSource is a zero-copy slice of a storage.
type viewSource struct {
	file       string
	st         *storage
	begin, end int64
	loc        string
}

func (v *viewSource) Bytes() ([]byte, error) {
	b, err := v.st.bytes(v.file)
	if err != nil {
		return nil, err
	}
	return b[v.begin:v.end:v.end], nil
}

func (v *viewSource) Location() string { return v.loc }

// gatherSource copies a strided view into a fresh dense buffer (nbytes,
// which entry bounded by the storage size).
type gatherSource struct {
	file         string
	st           *storage
	es, offset   int64
	size, stride []int64
	nbytes       int64
	loc          string
}

func (g *gatherSource) Bytes() ([]byte, error) {
	src, err := g.st.bytes(g.file)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, g.nbytes)
	r := len(g.size)
	idx := make([]int64, r)
	inner, innerStride := int64(1), int64(1)
	if r > 0 {
		inner, innerStride = g.size[r-1], g.stride[r-1]
	}
	for {
		// element index of idx with the innermost index 0
		at := g.offset
		for i := 0; i < r-1; i++ {
			at += idx[i] * g.stride[i]
		}
		if innerStride == 1 {
			out = append(out, src[at*g.es:(at+inner)*g.es]...)
		} else {
			for j := int64(0); j < inner; j++ {
				p := (at + j*innerStride) * g.es
				out = append(out, src[p:p+g.es]...)
			}
		}
		// advance the outer indices (odometer)
		i := r - 2
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < g.size[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return out, nil
		}
	}
}

func (g *gatherSource) Location() string { return g.loc }
