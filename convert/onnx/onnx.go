package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// MaxModelBytes is the largest .onnx file Open reads: protobuf messages are
// limited to 2 GiB, so larger models keep their weights in external data.
const MaxModelBytes = math.MaxInt32

// Model is an opened ONNX model: the graph and its initializers' inventory.
type Model struct {
	// Proto is the model with the data fields (raw_data, float_data, ...) of
	// graph.initializer cleared; the data is in Inventory.
	Proto *onnxpb.ModelProto
	// Inventory lists graph.initializer in name order, with lazy sources.
	Inventory *tensorfile.Inventory
}

// Close releases the model's mapped files.
func (m *Model) Close() error { return m.Inventory.Close() }

// Open lists the initializers of the ONNX model at path (see OpenModel).
func Open(path string) (*tensorfile.Inventory, error) {
	m, err := OpenModel(path)
	if err != nil {
		return nil, err
	}
	return m.Inventory, nil
}

// OpenModel reads the ONNX model at path. The file is mapped read-only;
// tensor data is read only when an entry's Source is: raw_data and external
// data are zero-copy views, typed fields (float_data, int32_data, ...) are
// decoded on read. External data files must lie inside the model's folder.
// Inventory.Metadata holds the graph's description for reports: onnx.ir_version,
// onnx.opset ("ai.onnx=17"), onnx.producer, onnx.graph, onnx.nodes, onnx.ops
// ("Add=12,Cast=3"), onnx.inputs and onnx.outputs ("input_ids:i64[batch,sequence]"),
// and onnx.meta.<key> for metadata_props.
func OpenModel(path string) (*Model, error) {
	name := filepath.Base(path)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", name, err)
	}
	if st.Size() > MaxModelBytes {
		return nil, fmt.Errorf("convert: %s: %d bytes, more than protobuf's 2 GiB limit (%d)", name, st.Size(), int64(MaxModelBytes))
	}
	data, unmap, err := tensorfile.Mmap(path)
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", name, err)
	}
	r := &reader{name: name, dir: filepath.Dir(path), ext: map[string]*extFile{}}
	m, err := r.load(data)
	if err != nil {
		r.closeAll()
		unmap()
		return nil, err
	}
	m.Inventory.Dir = r.dir
	m.Inventory.AddCloser(unmap)
	for _, e := range r.extOrder {
		m.Inventory.AddCloser(e.unmap)
	}
	return m, nil
}

// reader holds the state of one OpenModel call.
type reader struct {
	name     string // model file name, for errors and Entry.File
	dir      string // model folder; "" means external data is refused (fuzzing)
	ext      map[string]*extFile
	extOrder []*extFile
}

// extFile is a mapped external data file.
type extFile struct {
	rel   string // location as written (slash-separated), for Entry.File
	data  []byte
	unmap func() error
}

func (r *reader) closeAll() {
	for _, e := range r.extOrder {
		e.unmap()
	}
}

func (r *reader) errorf(format string, args ...interface{}) error {
	return fmt.Errorf("convert: "+r.name+": "+format, args...)
}

// load decodes the model in data (the mapped file).
func (r *reader) load(data []byte) (*Model, error) {
	skel, inits, err := split(data)
	if err != nil {
		return nil, r.errorf("not a valid ONNX model: %v", err)
	}
	var c budget
	if err := c.check(skel, modelDescriptor, 0); err != nil {
		return nil, r.errorf("model too large to decode: %v", err)
	}
	mp := &onnxpb.ModelProto{}
	if err := (proto.UnmarshalOptions{RecursionLimit: maxProtoDepth + 1}).Unmarshal(skel, mp); err != nil {
		return nil, r.errorf("not a valid ONNX model: %v", err)
	}
	if mp.Graph == nil {
		return nil, r.errorf("model has no graph")
	}
	g := mp.Graph
	if len(g.Initializer) != len(inits) {
		return nil, r.errorf("internal error: %d initializers, %d data records", len(g.Initializer), len(inits))
	}
	if len(g.SparseInitializer) > 0 {
		return nil, r.errorf("sparse initializer %q is not supported", g.SparseInitializer[0].GetValues().GetName())
	}
	inv := &tensorfile.Inventory{Format: "onnx", Files: []string{r.name}, Metadata: metadata(mp)}
	seen := make(map[string]bool, len(inits))
	for i, t := range g.Initializer {
		if t.Name == "" {
			return nil, r.errorf("initializer %d has no name", i)
		}
		if seen[t.Name] {
			return nil, r.errorf("initializer %q appears twice", t.Name)
		}
		seen[t.Name] = true
		e, err := r.entry(data, t, inits[i])
		if err != nil {
			return nil, r.errorf("initializer %q: %v", t.Name, err)
		}
		inv.Entries = append(inv.Entries, e)
	}
	for _, e := range r.extOrder {
		inv.Files = append(inv.Files, e.rel)
	}
	if err := inv.Sort(); err != nil {
		return nil, err
	}
	return &Model{Proto: mp, Inventory: inv}, nil
}

// dtypes maps the ONNX element types smelt reads to ir types.
var dtypes = map[onnxpb.TensorProto_DataType]ir.DType{
	onnxpb.TensorProto_FLOAT: ir.F32, onnxpb.TensorProto_FLOAT16: ir.F16, onnxpb.TensorProto_BFLOAT16: ir.BF16,
	onnxpb.TensorProto_DOUBLE: ir.F64, onnxpb.TensorProto_INT64: ir.I64, onnxpb.TensorProto_INT32: ir.I32,
	onnxpb.TensorProto_INT16: ir.I16, onnxpb.TensorProto_INT8: ir.I8, onnxpb.TensorProto_UINT8: ir.U8,
	onnxpb.TensorProto_UINT32: ir.U32, onnxpb.TensorProto_BOOL: ir.Bool,
	onnxpb.TensorProto_INT4: ir.I4, onnxpb.TensorProto_UINT4: ir.U4,
}

// typedField is the typed data field the ONNX spec assigns to each dtype.
func typedField(d ir.DType) protowire.Number {
	switch d {
	case ir.F32:
		return tensorFloatData
	case ir.F64:
		return tensorDoubleData
	case ir.I64:
		return tensorInt64Data
	case ir.U32:
		return tensorUint64Data
	}
	return tensorInt32Data // i32, i16, i8, u8, bool, f16, bf16, i4, u4
}

// wireTypes is the unpacked wire type of each repeated typed field
// (raw_data and packed fields use the bytes type).
var wireTypes = map[protowire.Number]protowire.Type{
	tensorFloatData: protowire.Fixed32Type, tensorDoubleData: protowire.Fixed64Type,
	tensorInt32Data: protowire.VarintType, tensorInt64Data: protowire.VarintType, tensorUint64Data: protowire.VarintType,
	tensorRawData: protowire.BytesType,
}

var fieldNames = map[protowire.Number]string{
	tensorFloatData: "float_data", tensorInt32Data: "int32_data", tensorStringData: "string_data",
	tensorInt64Data: "int64_data", tensorRawData: "raw_data", tensorDoubleData: "double_data", tensorUint64Data: "uint64_data",
}

// entry builds the inventory entry of initializer t with data d.
func (r *reader) entry(data []byte, t *onnxpb.TensorProto, d initData) (*tensorfile.Entry, error) {
	dt, ok := dtypes[onnxpb.TensorProto_DataType(t.DataType)]
	if !ok {
		return nil, fmt.Errorf("data type %v (%d) is not supported", onnxpb.TensorProto_DataType(t.DataType), t.DataType)
	}
	shape := ir.Shape(append([]int64{}, t.Dims...))
	nbytes, err := shape.ByteSize(dt)
	if err != nil {
		return nil, err
	}
	if t.Segment != nil {
		return nil, fmt.Errorf("segmented tensors are not supported")
	}
	e := &tensorfile.Entry{Name: t.Name, DType: dt, Shape: shape, File: r.name, Offset: -1, NBytes: nbytes}
	switch t.DataLocation {
	case onnxpb.TensorProto_DEFAULT:
	case onnxpb.TensorProto_EXTERNAL:
		if len(d.fields) > 0 {
			return nil, fmt.Errorf("external data and %s both present", fieldNames[d.fields[0].num])
		}
		return e, r.external(e, t)
	default:
		return nil, fmt.Errorf("data_location %d is not DEFAULT or EXTERNAL", int32(t.DataLocation))
	}
	if len(t.ExternalData) > 0 {
		return nil, fmt.Errorf("external_data given but data_location is DEFAULT")
	}
	loc := r.name + ":" + t.Name
	if len(d.fields) == 0 {
		if nbytes != 0 {
			return nil, fmt.Errorf("%v %v has no data", dt, shape)
		}
		e.Source = &ir.BytesSource{Data: []byte{}, Loc: loc}
		return e, nil
	}
	want := typedField(dt)
	for _, f := range d.fields {
		if f.num != d.fields[0].num {
			return nil, fmt.Errorf("both %s and %s present", fieldNames[d.fields[0].num], fieldNames[f.num])
		}
		if f.num != tensorRawData && f.num != want {
			return nil, fmt.Errorf("%s present for a %v tensor (want raw_data or %s)", fieldNames[f.num], dt, fieldNames[want])
		}
		if f.typ != protowire.BytesType && f.typ != wireTypes[f.num] {
			return nil, fmt.Errorf("%s has wire type %d", fieldNames[f.num], f.typ)
		}
	}
	if d.fields[0].num == tensorRawData {
		if len(d.fields) != 1 {
			return nil, fmt.Errorf("raw_data appears %d times", len(d.fields))
		}
		f := d.fields[0]
		if int64(len(f.val)) != nbytes {
			return nil, fmt.Errorf("raw_data has %d bytes, want %d for %v %v", len(f.val), nbytes, dt, shape)
		}
		e.Offset = f.off
		e.Source = &ir.BytesSource{Data: f.val[:len(f.val):len(f.val)], Loc: loc}
		return e, nil
	}
	// Typed field: count the values now, decode them when read.
	n, err := shape.NumElements()
	if err != nil {
		return nil, err
	}
	if dt == ir.I4 || dt == ir.U4 {
		n = (n + 1) / 2 // one packed byte per int32_data value
	}
	count, err := countValues(d.fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", fieldNames[want], err)
	}
	if count != n {
		return nil, fmt.Errorf("%s has %d values, want %d for %v %v", fieldNames[want], count, n, dt, shape)
	}
	e.Source = &typedSource{name: r.name, tensor: t.Name, dtype: dt, fields: d.fields, nbytes: nbytes, loc: loc + " (" + fieldNames[want] + ")"}
	return e, nil
}

// countValues counts the values of a repeated scalar field's occurrences.
func countValues(fields []dataField) (int64, error) {
	var n int64
	for _, f := range fields {
		switch {
		case f.typ != protowire.BytesType:
			n++
		case f.num == tensorFloatData || f.num == tensorDoubleData:
			w := 4
			if f.num == tensorDoubleData {
				w = 8
			}
			if len(f.val)%w != 0 {
				return 0, fmt.Errorf("packed field of %d bytes is not a multiple of %d", len(f.val), w)
			}
			n += int64(len(f.val) / w)
		default:
			for b := f.val; len(b) > 0; n++ {
				_, k := protowire.ConsumeVarint(b)
				if k < 0 {
					return 0, protowire.ParseError(k)
				}
				b = b[k:]
			}
		}
	}
	return n, nil
}

// typedSource decodes typed data fields into dense little-endian bytes.
type typedSource struct {
	name, tensor string
	dtype        ir.DType
	fields       []dataField
	nbytes       int64
	loc          string
}

func (s *typedSource) Location() string { return s.loc }

func (s *typedSource) Bytes() ([]byte, error) {
	out := make([]byte, 0, s.nbytes)
	for _, f := range s.fields {
		if f.num == tensorFloatData || f.num == tensorDoubleData {
			// fixed32/fixed64 are little-endian IEEE values, as stored
			out = append(out, f.val...)
			continue
		}
		b := f.val
		for len(b) > 0 {
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return nil, fmt.Errorf("convert: %s: initializer %q: %v", s.name, s.tensor, protowire.ParseError(k))
			}
			b = b[k:]
			var err error
			if out, err = appendValue(out, s.dtype, v); err != nil {
				return nil, fmt.Errorf("convert: %s: initializer %q: %v", s.name, s.tensor, err)
			}
		}
	}
	if int64(len(out)) != s.nbytes {
		return nil, fmt.Errorf("convert: %s: initializer %q: typed data decodes to %d bytes, want %d", s.name, s.tensor, len(out), s.nbytes)
	}
	return out, nil
}

// appendValue appends the varint-coded value v of a typed field as dtype d,
// checking its range (int32_data holds int8/uint8/int16/bool values,
// float16/bfloat16 bit patterns and packed int4/uint4 byte pairs).
func appendValue(out []byte, d ir.DType, v uint64) ([]byte, error) {
	i := int64(v)
	inRange := func(lo, hi int64) error {
		if int64(int32(i)) != i && d != ir.I64 {
			return fmt.Errorf("value %d does not fit int32_data", i)
		}
		if i < lo || i > hi {
			return fmt.Errorf("value %d out of range [%d, %d] for %v", i, lo, hi, d)
		}
		return nil
	}
	switch d {
	case ir.I64:
		return binary.LittleEndian.AppendUint64(out, v), nil
	case ir.U32:
		if v > math.MaxUint32 {
			return nil, fmt.Errorf("value %d out of range for u32", v)
		}
		return binary.LittleEndian.AppendUint32(out, uint32(v)), nil
	case ir.I32:
		if err := inRange(math.MinInt32, math.MaxInt32); err != nil {
			return nil, err
		}
		return binary.LittleEndian.AppendUint32(out, uint32(int32(i))), nil
	case ir.I16:
		if err := inRange(math.MinInt16, math.MaxInt16); err != nil {
			return nil, err
		}
		return binary.LittleEndian.AppendUint16(out, uint16(int16(i))), nil
	case ir.F16, ir.BF16:
		if err := inRange(0, math.MaxUint16); err != nil {
			return nil, err
		}
		return binary.LittleEndian.AppendUint16(out, uint16(i)), nil
	case ir.I8:
		if err := inRange(math.MinInt8, math.MaxInt8); err != nil {
			return nil, err
		}
		return append(out, byte(int8(i))), nil
	case ir.U8:
		if err := inRange(0, math.MaxUint8); err != nil {
			return nil, err
		}
		return append(out, byte(i)), nil
	case ir.Bool:
		if err := inRange(0, 1); err != nil {
			return nil, err
		}
		return append(out, byte(i)), nil
	case ir.I4, ir.U4:
		if err := inRange(math.MinInt8, math.MaxUint8); err != nil {
			return nil, err
		}
		return append(out, byte(i)), nil
	}
	return nil, fmt.Errorf("no typed-field decoding for %v", d)
}

// external resolves an initializer's external data: a local path inside
// the model folder (no "..", not absolute, no symlink leading out), an
// offset and length inside that file, and exactly NBytes bytes.
func (r *reader) external(e *tensorfile.Entry, t *onnxpb.TensorProto) error {
	kv := map[string]string{}
	for _, p := range t.ExternalData {
		if _, dup := kv[p.Key]; dup {
			return fmt.Errorf("external_data key %q appears twice", p.Key)
		}
		switch p.Key {
		case "location", "offset", "length", "checksum", "basepath":
		default:
			return fmt.Errorf("unknown external_data key %q", p.Key)
		}
		kv[p.Key] = p.Value
	}
	loc, ok := kv["location"]
	if !ok || loc == "" {
		return fmt.Errorf("external data has no location")
	}
	f, err := r.extFile(loc)
	if err != nil {
		return err
	}
	size := int64(len(f.data))
	off, err := parseSize(kv, "offset", 0)
	if err != nil {
		return err
	}
	if off > size {
		return fmt.Errorf("external data offset %d is past the end of %s (%d bytes)", off, loc, size)
	}
	n, err := parseSize(kv, "length", size-off)
	if err != nil {
		return err
	}
	if n > size-off {
		return fmt.Errorf("external data (offset %d, length %d) runs past the end of %s (%d bytes)", off, n, loc, size)
	}
	if n != e.NBytes {
		return fmt.Errorf("external data has %d bytes, want %d for %v %v", n, e.NBytes, e.DType, e.Shape)
	}
	e.File, e.Offset = f.rel, off
	e.Source = &ir.BytesSource{Data: f.data[off : off+n : off+n], Loc: f.rel + ":" + strconv.FormatInt(off, 10)}
	return nil
}

func parseSize(kv map[string]string, key string, def int64) (int64, error) {
	s, ok := kv[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s[0] == '+' {
		return 0, fmt.Errorf("external data %s %q is not a non-negative integer", key, s)
	}
	return n, nil
}

// extFile maps the external data file at location (once per file).
func (r *reader) extFile(location string) (*extFile, error) {
	escapes := fmt.Errorf("external data location %q escapes the model folder", location)
	rel := filepath.FromSlash(location)
	if !filepath.IsLocal(rel) || r.dir == "" {
		return nil, escapes
	}
	dir, err := filepath.EvalSymlinks(r.dir)
	if err != nil {
		return nil, fmt.Errorf("model folder: %v", err)
	}
	full, err := filepath.EvalSymlinks(filepath.Join(dir, rel))
	if err != nil {
		return nil, fmt.Errorf("external data file %q: %v", location, err)
	}
	inside, err := filepath.Rel(dir, full)
	if err != nil || !filepath.IsLocal(inside) {
		return nil, escapes
	}
	if f, ok := r.ext[full]; ok {
		return f, nil
	}
	data, unmap, err := tensorfile.Mmap(full)
	if err != nil {
		return nil, fmt.Errorf("external data file %q: %v", location, err)
	}
	f := &extFile{rel: filepath.ToSlash(inside), data: data, unmap: unmap}
	r.ext[full] = f
	r.extOrder = append(r.extOrder, f)
	return f, nil
}

// metadata describes the model for reports (see OpenModel).
func metadata(m *onnxpb.ModelProto) map[string]string {
	md := map[string]string{
		"onnx.ir_version": strconv.FormatInt(m.IrVersion, 10),
		"onnx.producer":   strings.TrimSpace(m.ProducerName + " " + m.ProducerVersion),
	}
	var opsets []string
	for _, o := range m.OpsetImport {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		opsets = append(opsets, fmt.Sprintf("%s=%d", d, o.Version))
	}
	sort.Strings(opsets)
	md["onnx.opset"] = strings.Join(opsets, ",")
	for _, p := range m.MetadataProps {
		md["onnx.meta."+p.Key] = p.Value
	}
	g := m.Graph
	md["onnx.graph"] = g.Name
	md["onnx.nodes"] = strconv.Itoa(len(g.Node))
	ops := map[string]int{}
	for _, n := range g.Node {
		op := n.OpType
		if n.Domain != "" && n.Domain != "ai.onnx" {
			op = n.Domain + "." + op
		}
		ops[op]++
	}
	var hist []string
	for op, n := range ops {
		hist = append(hist, fmt.Sprintf("%s=%d", op, n))
	}
	sort.Strings(hist)
	md["onnx.ops"] = strings.Join(hist, ",")
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.Name] = true
	}
	var ins, outs []string
	for _, v := range g.Input {
		if !inits[v.Name] { // IR < 4 lists initializers as inputs too
			ins = append(ins, valueInfo(v))
		}
	}
	for _, v := range g.Output {
		outs = append(outs, valueInfo(v))
	}
	md["onnx.inputs"] = strings.Join(ins, "; ")
	md["onnx.outputs"] = strings.Join(outs, "; ")
	return md
}

// valueInfo formats a graph input or output: "input_ids:i64[batch,sequence]".
func valueInfo(v *onnxpb.ValueInfoProto) string {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return v.Name + ":non-tensor"
	}
	elem := strings.ToLower(onnxpb.TensorProto_DataType(tt.ElemType).String())
	if d, ok := dtypes[onnxpb.TensorProto_DataType(tt.ElemType)]; ok {
		elem = d.String()
	}
	if tt.Shape == nil {
		return v.Name + ":" + elem
	}
	dims := make([]string, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		switch {
		case d.GetDimParam() != "":
			dims[i] = d.GetDimParam()
		case d.GetValue() != nil:
			dims[i] = strconv.FormatInt(d.GetDimValue(), 10)
		default:
			dims[i] = "?"
		}
	}
	return v.Name + ":" + elem + "[" + strings.Join(dims, ",") + "]"
}
