package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/ir"
)

// genTensor returns a tensor of the given dtype and shape filled with
// seeded pseudo-random bytes.
func genTensor(rng *rand.Rand, name string, d ir.DType, shape ...int64) WriteTensor {
	n, err := ir.Shape(shape).ByteSize(d)
	if err != nil {
		panic(err)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if d == ir.Bool {
		for i := range data {
			data[i] &= 1
		}
	}
	return WriteTensor{Name: name, DType: d, Shape: ir.Shape(shape), Data: data}
}

// writeFile writes a safetensors file into dir and returns its path.
func writeFile(t testing.TB, dir, name string, ts []WriteTensor, md map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, ts, md); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawFile builds a file from a literal header (not padded) and data.
func rawFile(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(out, header...), data...)
}

// mixed is a fixture covering every dtype, a scalar and an empty tensor.
func mixed(seed uint64) []WriteTensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	return []WriteTensor{
		genTensor(rng, "model.embed_tokens.weight", ir.F32, 16, 8),
		genTensor(rng, "b.f16", ir.F16, 3, 5),
		genTensor(rng, "c.bf16", ir.BF16, 7),
		genTensor(rng, "d.f64", ir.F64, 2, 2),
		genTensor(rng, "e.i64", ir.I64, 3),
		genTensor(rng, "f.i32", ir.I32, 1, 1, 3),
		genTensor(rng, "g.i16", ir.I16, 2),
		genTensor(rng, "h.i8", ir.I8, 5),
		genTensor(rng, "i.u8", ir.U8, 9),
		genTensor(rng, "j.u32", ir.U32, 1),
		genTensor(rng, "k.bool", ir.Bool, 4),
		genTensor(rng, "l.scalar", ir.F32),
		genTensor(rng, "m.empty", ir.F16, 0, 3),
	}
}

func TestOpenFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ts := mixed(1)
	p := writeFile(t, dir, "model.safetensors", ts, map[string]string{"format": "pt"})
	inv, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if got, want := inv.Format, "safetensors"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"model.safetensors"}, inv.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"format": "pt"}, inv.Metadata); diff != "" {
		t.Errorf("Metadata (-want +got):\n%s", diff)
	}
	hdr, err := EncodeHeader(ts, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name   string
		DType  ir.DType
		Shape  ir.Shape
		Offset int64
		NBytes int64
		Data   []byte
	}
	var want, got []row
	off := int64(len(hdr))
	for _, tt := range ts {
		want = append(want, row{tt.Name, tt.DType, tt.Shape, off, int64(len(tt.Data)), tt.Data})
		off += int64(len(tt.Data))
	}
	for _, e := range inv.Entries {
		b, err := e.Source.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != cap(b) {
			t.Errorf("%s: Bytes has cap %d > len %d: a caller could write past the tensor", e.Name, cap(b), len(b))
		}
		if e.File != "model.safetensors" || e.Source.Location() != "model.safetensors" {
			t.Errorf("%s: File %q Location %q, want model.safetensors", e.Name, e.File, e.Source.Location())
		}
		got = append(got, row{e.Name, e.DType, e.Shape, e.Offset, e.NBytes, b})
	}
	opt := cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) }) // nil == empty
	sortRows := func(rs []row) {
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				if rs[j].Name < rs[i].Name {
					rs[i], rs[j] = rs[j], rs[i]
				}
			}
		}
	}
	sortRows(want)
	if diff := cmp.Diff(want, got, opt); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

// TestWorkedExample checks the example in doc.go byte for byte.
func TestWorkedExample(t *testing.T) {
	w := WriteTensor{Name: "w", DType: ir.F16, Shape: ir.Shape{2, 2}, Data: []byte{0x00, 0x3c, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44}}
	var buf bytes.Buffer
	if err := Write(&buf, []WriteTensor{w}, nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if got, want := binary.LittleEndian.Uint64(b), uint64(56); got != want {
		t.Errorf("header length = %d, want %d", got, want)
	}
	if got, want := strings.TrimRight(string(b[8:64]), " "), `{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}`; got != want {
		t.Errorf("header = %s, want %s", got, want)
	}
	h, err := ParseHeader("w.safetensors", b, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := ir.DecodeFloat32(h.Entries[0].DType, b[h.DataStart+h.Entries[0].Begin:h.DataStart+h.Entries[0].End])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{1, 2, 3, 4}, vals); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

func TestParseHeaderHostile(t *testing.T) {
	valid := func() []byte {
		var buf bytes.Buffer
		if err := Write(&buf, mixed(2)[:3], nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	validHdrLen := int(binary.LittleEndian.Uint64(valid))
	withLen := func(n uint64, rest []byte) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	tests := []struct {
		name string
		file []byte
		want string // substring of the error
	}{
		{"empty file", nil, "too short for a safetensors header"},
		{"seven bytes", []byte{1, 2, 3, 4, 5, 6, 7}, "too short"},
		{"truncated in data", valid[:len(valid)-5], "beyond the"},
		{"truncated in header", valid[:8+validHdrLen/2], "runs past the end"},
		{"header length beyond the file", withLen(4096, []byte(`{}`)), "header length 4096 runs past the end of the 10-byte file"},
		{"header length over the cap", withLen(1<<40, []byte(`{}`)), "exceeds the 104857600-byte limit"},
		{"header length max uint64", withLen(^uint64(0), []byte(`{}`)), "exceeds"},
		{"overlapping offsets", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, make([]byte, 6)),
			`tensors "a" [0, 4) and "b" [2, 6) overlap`},
		{"overlap hidden behind an empty tensor", rawFile(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, make([]byte, 8)),
			`tensors "a" [0, 8) and "b" [4, 6) overlap`},
		{"identical ranges", rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)),
			"overlap"},
		{"hole between tensors", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}`, make([]byte, 6)),
			"bytes [2, 4) of the data buffer belong to no tensor"},
		{"trailing bytes after the data", append(bytes.Clone(valid), 0xde, 0xad), "belong to no tensor"},
		{"shape overflow", rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)),
			`tensor "a": ir: shape [4294967296 4294967296]: element count overflows int64`},
		{"shape overflow in the last dim", rawFile(`{"a":{"dtype":"U8","shape":[3,3074457345618258603],"data_offsets":[0,4]}}`, make([]byte, 4)),
			"overflows int64"},
		{"byte size overflow", rawFile(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}`, make([]byte, 8)),
			"byte size overflows int64"},
		{"dim beyond int64", rawFile(`{"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]}}`, make([]byte, 1)),
			`tensor "a"`},
		{"byte size not shape times dtype", rawFile(`{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}`, make([]byte, 12)),
			`tensor "a": 12 bytes in data_offsets, want 16 for F32 [2 2]`},
		{"duplicate keys", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)),
			`key "a" appears twice`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "appears twice"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)),
			`tensor "a": unsupported dtype "F8_E4M3"`},
		{"lowercase dtype", rawFile(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "unsupported dtype"},
		{"dtype not a string", rawFile(`{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), `tensor "a"`},
		{"negative dim", rawFile(`{"a":{"dtype":"U8","shape":[-1,4],"data_offsets":[0,4]}}`, make([]byte, 4)), "negative dim in shape [-1 4]"},
		{"fractional dim", rawFile(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, make([]byte, 1)), `tensor "a"`},
		{"trailing garbage after the JSON", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}xyz`, make([]byte, 1)), "trailing data after the header object"},
		{"second JSON object", rawFile(`{}{}`, nil), "trailing data after the header object"},
		{"not an object", rawFile(`[1,2]`, nil), "want a JSON object"},
		{"invalid JSON", rawFile(`{"a":`, nil), "invalid JSON"},
		{"header not UTF-8 JSON", rawFile("\xff\xfe", nil), "invalid JSON"},
		{"unknown field", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, make([]byte, 1)), `unknown field "x"`},
		{"missing data_offsets", rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, make([]byte, 1)), "want dtype, shape and data_offsets"},
		{"three offsets", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, make([]byte, 2)), "data_offsets has 3 values, want 2"},
		{"begin after end", rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}`, make([]byte, 2)), "are not an increasing pair"},
		{"negative begin", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, make([]byte, 1)), "not an increasing pair"},
		{"end beyond data", rawFile(`{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}`, make([]byte, 4)), "data_offsets end 16 beyond the 4-byte data buffer"},
		{"metadata not strings", rawFile(`{"__metadata__":{"n":1}}`, nil), "__metadata__: want an object of strings"},
		{"tensor record not an object", rawFile(`{"a":[1]}`, nil), `tensor "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader("x.safetensors", tt.file, int64(len(tt.file)))
			if err == nil {
				t.Fatalf("ParseHeader succeeded with %d entries, want error containing %q", len(h.Entries), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "convert: x.safetensors: ") {
				t.Errorf("error = %q, want it to name the file", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q spans several lines", err)
			}
		})
	}
}

func TestParseHeaderAccepts(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want int // entries
	}{
		{"empty header", rawFile(`{}`, nil), 0},
		{"only metadata", rawFile(`{"__metadata__":{"format":"pt"}}`, nil), 0},
		{"null metadata", rawFile(`{"__metadata__":null}`, nil), 0},
		{"empty tensor anywhere in range", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"e":{"dtype":"F32","shape":[0,7],"data_offsets":[1,1]}}`, make([]byte, 2)), 2},
		{"out-of-order offsets", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, make([]byte, 4)), 2},
		{"whitespace padding", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}      `, make([]byte, 1)), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader("x.safetensors", tt.file, int64(len(tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(h.Entries); got != tt.want {
				t.Errorf("%d entries, want %d", got, tt.want)
			}
		})
	}
}

func TestOpenFileErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(p, []byte{1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("OpenFile error = %v, want it to name %s", err, p)
	}
	_, err = OpenFile(filepath.Join(dir, "missing.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("OpenFile error = %v, want it to name missing.safetensors", err)
	}
	if _, err := OpenFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenFile(dir) error = %v, want not a regular file", err)
	}
}

// shardedFixture writes a model split into three shards plus an index and
// returns the folder and the tensors.
func shardedFixture(t *testing.T, mutate func(idx map[string]any, shards map[string][]WriteTensor)) (string, []WriteTensor) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	var all []WriteTensor
	shards := map[string][]WriteTensor{}
	wm := map[string]any{}
	var total int64
	for s := 1; s <= 3; s++ {
		f := fmt.Sprintf("model-%05d-of-00003.safetensors", s)
		for i := 0; i < 4; i++ {
			tt := genTensor(rng, fmt.Sprintf("model.layers.%d.w%d.weight", s, i), ir.F16, int64(2+i), 3)
			shards[f] = append(shards[f], tt)
			all = append(all, tt)
			wm[tt.Name] = f
			total += int64(len(tt.Data))
		}
	}
	idx := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm}
	if mutate != nil {
		mutate(idx, shards)
	}
	for f, ts := range shards {
		writeFile(t, dir, f, ts, map[string]string{"format": "pt"})
	}
	js, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFile), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, all
}

func TestOpenSharded(t *testing.T) {
	dir, all := shardedFixture(t, nil)
	inv, err := OpenSharded(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	want := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}
	if diff := cmp.Diff(want, inv.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if got, want := len(inv.Entries), len(all); got != want {
		t.Fatalf("%d entries, want %d", got, want)
	}
	for _, tt := range all {
		e := inv.Lookup(tt.Name)
		if e == nil {
			t.Errorf("tensor %q missing", tt.Name)
			continue
		}
		b, err := e.Source.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, tt.Data) {
			t.Errorf("tensor %q: bytes differ", tt.Name)
		}
		if !strings.HasPrefix(e.File, "model-0000") || e.Source.Location() != e.File {
			t.Errorf("tensor %q: File %q Location %q", tt.Name, e.File, e.Source.Location())
		}
	}
}

func TestOpenShardedHostile(t *testing.T) {
	first := "model.layers.1.w0.weight"
	tests := []struct {
		name   string
		mutate func(idx map[string]any, shards map[string][]WriteTensor)
		raw    string // replaces the index file when set
		want   string
	}{
		{"tensor missing from the weight_map", func(idx map[string]any, _ map[string][]WriteTensor) {
			delete(idx["weight_map"].(map[string]any), first)
		}, "", `tensor "model.layers.1.w0.weight" is in model-00001-of-00003.safetensors but not in the weight_map`},
		{"weight_map names a tensor no shard holds", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["weight_map"].(map[string]any)["ghost"] = "model-00002-of-00003.safetensors"
		}, "", `tensor "ghost" listed in weight_map is missing from model-00002-of-00003.safetensors`},
		{"weight_map names the wrong shard", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["weight_map"].(map[string]any)[first] = "model-00002-of-00003.safetensors"
		}, "", "weight_map says model-00002-of-00003.safetensors, found in model-00001-of-00003.safetensors"},
		{"path escaping the folder", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["weight_map"].(map[string]any)[first] = "../model-00001-of-00003.safetensors"
		}, "", `shard path "../model-00001-of-00003.safetensors" escapes the model folder`},
		{"absolute path", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["weight_map"].(map[string]any)[first] = "/etc/passwd"
		}, "", "escapes the model folder"},
		{"missing shard file", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["weight_map"].(map[string]any)[first] = "model-00009-of-00003.safetensors"
		}, "", "model-00009-of-00003.safetensors"},
		{"total_size mismatch", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["metadata"] = map[string]any{"total_size": 12345}
		}, "", "metadata total_size 12345, the shards' tensors hold 252 bytes"},
		{"total_size not a number", func(idx map[string]any, _ map[string][]WriteTensor) {
			idx["metadata"] = map[string]any{"total_size": "252"}
		}, "", "want a non-negative integer"},
		{"tensor in two shards", func(idx map[string]any, shards map[string][]WriteTensor) {
			f := "model-00002-of-00003.safetensors"
			shards[f] = append(shards[f], shards["model-00001-of-00003.safetensors"][0])
			idx["metadata"] = map[string]any{}
		}, "", `tensor "model.layers.1.w0.weight" appears in both`},
		{"empty weight_map", nil, `{"metadata":{},"weight_map":{}}`, "weight_map is empty"},
		{"unknown index field", nil, `{"weight_map":{"a":"b.safetensors"},"extra":1}`, `unknown field "extra"`},
		{"trailing data after the index", nil, `{"weight_map":{"a":"b.safetensors"}} x`, "trailing data"},
		{"malformed index", nil, `{"weight_map":`, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := shardedFixture(t, tt.mutate)
			if tt.raw != "" {
				if err := os.WriteFile(filepath.Join(dir, IndexFile), []byte(tt.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			inv, err := OpenSharded(dir)
			if err == nil {
				inv.Close()
				t.Fatalf("OpenSharded succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q spans several lines", err)
			}
		})
	}
}

func TestOpenShardedSymlinkOutside(t *testing.T) {
	dir, _ := shardedFixture(t, nil)
	outside := t.TempDir()
	f := "model-00001-of-00003.safetensors"
	if err := os.Rename(filepath.Join(dir, f), filepath.Join(outside, f)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, f), filepath.Join(dir, f)); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSharded(dir)
	if err == nil || !strings.Contains(err.Error(), "resolves outside the model folder") {
		t.Errorf("OpenSharded error = %v, want resolves outside the model folder", err)
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name string
		ts   []WriteTensor
		want string
	}{
		{"wrong data size", []WriteTensor{{Name: "a", DType: ir.F32, Shape: ir.Shape{2}, Data: make([]byte, 7)}}, "7 data bytes, want 8"},
		{"no data", []WriteTensor{{Name: "a", DType: ir.F32, Shape: ir.Shape{2}}}, "neither Data nor Fill"},
		{"duplicate", []WriteTensor{{Name: "a", DType: ir.U8, Shape: ir.Shape{1}, Data: []byte{1}}, {Name: "a", DType: ir.U8, Shape: ir.Shape{1}, Data: []byte{1}}}, "used twice"},
		{"i4 has no spelling", []WriteTensor{{Name: "a", DType: ir.I4, Shape: ir.Shape{2}, Data: []byte{1}}}, "no safetensors spelling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tt.ts, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write error = %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzSafetensorsHeader feeds arbitrary files to ParseHeader: it must never
// panic, and whatever it accepts must satisfy the documented invariants.
// Allocation is bounded by the input: the header is at most the file.
func FuzzSafetensorsHeader(f *testing.F) {
	for seed := uint64(0); seed < 3; seed++ {
		var buf bytes.Buffer
		if err := Write(&buf, mixed(seed), map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}`, make([]byte, 6)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)))
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "stories260K", "model.safetensors")); err == nil {
		n := 8 + binary.LittleEndian.Uint64(b)
		f.Add(b[:n+256]) // the real header and the start of the data
	} else {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		h, err := ParseHeader("fuzz.safetensors", file, int64(len(file)))
		if err != nil {
			if h != nil {
				t.Fatal("non-nil header with an error")
			}
			return
		}
		dataSize := int64(len(file)) - h.DataStart
		var sum int64
		for i, e := range h.Entries {
			if i > 0 && h.Entries[i-1].Name >= e.Name {
				t.Fatalf("entries not sorted/unique at %q", e.Name)
			}
			n, err := e.Shape.ByteSize(e.DType)
			if err != nil || n != e.End-e.Begin || e.Begin < 0 || e.End > dataSize {
				t.Fatalf("accepted bad entry %+v (size %d, err %v, data %d)", e, n, err, dataSize)
			}
			sum += n
		}
		if sum != dataSize {
			t.Fatalf("accepted entries covering %d of %d data bytes", sum, dataSize)
		}
	})
}

// TestReleaseKeepsData checks that dropping a tensor's pages does not lose
// its bytes: a later Bytes reads them back from the file.
func TestReleaseKeepsData(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ts := []WriteTensor{genTensor(rng, "small", ir.U8, 10), genTensor(rng, "big", ir.F32, 4096, 8)}
	inv, err := OpenFile(writeFile(t, t.TempDir(), "m.safetensors", ts, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	for _, want := range ts {
		e := inv.Lookup(want.Name)
		r, ok := e.Source.(interface{ Release() error })
		if !ok {
			t.Fatal("safetensors source has no Release")
		}
		if err := r.Release(); err != nil {
			t.Fatal(err)
		}
		got, _ := e.Source.Bytes()
		if !bytes.Equal(got, want.Data) {
			t.Errorf("%s: bytes differ after Release", want.Name)
		}
	}
}
