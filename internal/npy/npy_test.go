package npy

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/testmodels"
)

// header builds a version 1.0 preamble for dict, padded as numpy does.
func header(dict string) []byte {
	pad := 64 - (10+len(dict)+1)%64
	h := dict + strings.Repeat(" ", pad) + "\n"
	return append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(h)), byte(len(h) >> 8)}, h...)
}

func TestDecodeWorkedExample(t *testing.T) {
	// The package doc's example, written out byte by byte.
	b := header("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }")
	if got, want := len(b), 128; got != want {
		t.Fatalf("preamble+header = %d bytes, want %d", got, want)
	}
	if got, want := b[8], byte(0x76); got != want {
		t.Fatalf("header length byte = %#x, want %#x", got, want)
	}
	b = append(b, 0x01, 0x00, 0x01, 0x02)
	a, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := a.Ints()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1, 513}, ids); diff != "" {
		t.Errorf("Ints() mismatch (-want +got):\n%s", diff)
	}
	if !bytes.Equal(Encode(a), b) {
		t.Errorf("Encode(Decode(b)) != b")
	}
}

func TestDecodeTypes(t *testing.T) {
	tests := []struct {
		name    string
		dict    string
		data    []byte
		ints    []int
		floats  []float32
		wantErr string
	}{
		{"int8", "{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }", []byte{0xff, 0x7f, 0x80}, []int{-1, 127, -128}, nil, ""},
		{"uint8", "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", []byte{0xff, 0x01}, []int{255, 1}, nil, ""},
		{"int16 big-endian", "{'descr': '>i2', 'fortran_order': False, 'shape': (1,), }", []byte{0xff, 0xfe}, []int{-2}, nil, ""},
		{"int32", "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00}, []int{-1, 65536}, nil, ""},
		{"int64 2-d", "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }", []byte{5, 0, 0, 0, 0, 0, 0, 0}, []int{5}, nil, ""},
		{"uint64 overflow", "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }", []byte{0, 0, 0, 0, 0, 0, 0, 0x80}, []int{}, nil, "overflows int"},
		{"float16", "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00}, nil, []float32{1, -2, float32(math.Ldexp(1, -24))}, ""},
		{"float32", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", []byte{0x00, 0x00, 0xc0, 0x3f}, nil, []float32{1.5}, ""},
		{"float64 keys reordered", "{'shape': (1,), 'fortran_order': False, 'descr': '<f8', }", []byte{0, 0, 0, 0, 0, 0, 0xf0, 0xbf}, nil, []float32{-1}, ""},
		{"short data", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", []byte{0, 0, 0, 0}, nil, nil, "needs 8 data bytes, file has 4"},
		{"object dtype", "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", nil, nil, nil, "unsupported dtype"},
		{"unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), 'x': 1}", nil, nil, nil, "unknown key"},
		{"missing shape", "{'descr': '<f4', 'fortran_order': False}", nil, nil, nil, "key \"shape\" missing"},
		{"negative dim", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", nil, nil, nil, "not a non-negative integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Decode(append(header(tt.dict), tt.data...))
			if err == nil && tt.ints != nil {
				var got []int
				got, err = a.Ints()
				if err == nil {
					if diff := cmp.Diff(tt.ints, got); diff != "" {
						t.Errorf("Ints() mismatch (-want +got):\n%s", diff)
					}
				}
			}
			if err == nil && tt.floats != nil {
				var got []float32
				got, err = a.Float32s()
				if err == nil {
					if diff := cmp.Diff(tt.floats, got); diff != "" {
						t.Errorf("Float32s() mismatch (-want +got):\n%s", diff)
					}
				}
			}
			if err == nil && tt.ints == nil && tt.floats == nil && tt.wantErr == "" {
				t.Fatal("test case checks nothing")
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, want string
		b          []byte
	}{
		{"empty", "magic", nil},
		{"version 9", "unsupported format version 9.0", []byte("\x93NUMPY\x09\x00\x00\x00")},
		{"header past end", "runs past the end", []byte("\x93NUMPY\x01\x00\xff\x00{")},
		{"v2 huge header", "exceeds the limit", []byte("\x93NUMPY\x02\x00\xff\xff\xff\xff")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, a := range []*Array{
		{Descr: "<u2", Shape: []int{3}, Data: []byte{1, 0, 2, 0, 3, 0}},
		{Descr: "<f4", Shape: []int{1, 2}, Data: make([]byte, 8)},
		{Descr: "<i8", Shape: []int{}, Data: make([]byte, 8)},
		{Descr: "<i4", Shape: []int{0, 5}, FortranOrder: true, Data: []byte{}},
	} {
		b := Encode(a)
		if (len(b)-len(a.Data))%64 != 0 {
			t.Errorf("%v: data starts at %d, not a multiple of 64", a.Shape, len(b)-len(a.Data))
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%v)): %v", a.Shape, err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("round trip mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestReadRefs(t *testing.T) {
	tests := []struct {
		file  string
		descr string
		shape []int
		first int
	}{
		{"refs/stories260K/calib_ids.npy", "<u2", []int{193800}, 1},
		{"refs/ref29m/calib_ids.npy", "<u2", []int{152538}, 1},
	}
	for _, tt := range tests {
		a, err := ReadFile(testmodels.Path(t, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if a.Descr != tt.descr || !cmp.Equal(a.Shape, tt.shape) {
			t.Errorf("%s: %s %v, want %s %v", tt.file, a.Descr, a.Shape, tt.descr, tt.shape)
		}
		ids, err := a.Ints()
		if err != nil {
			t.Fatal(err)
		}
		if ids[0] != tt.first {
			t.Errorf("%s: first id %d, want %d", tt.file, ids[0], tt.first)
		}
	}
	a, err := ReadFile(testmodels.Path(t, "refs/stories260K/p0_last_logits.npy"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := a.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 512 || !cmp.Equal(a.Shape, []int{512}) {
		t.Errorf("p0_last_logits: shape %v, %d values, want [512]", a.Shape, len(f))
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(append(header("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }"), 1, 0, 1, 2))
	f.Add(append(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }"), 0, 0, 0x80, 0x3f))
	f.Add([]byte("\x93NUMPY\x02\x00\x08\x00\x00\x00{'a':1}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(b)
		if err != nil {
			return
		}
		if a.Descr[1] == 'f' {
			_, _ = a.Float32s()
		} else {
			_, _ = a.Ints()
		}
		if _, err := Decode(Encode(a)); err != nil {
			t.Fatalf("re-encoded array does not decode: %v", err)
		}
	})
}
