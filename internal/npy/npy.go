// Package npy reads NumPy .npy files (format versions 1.0, 2.0 and 3.0):
// the reference token ids and logits in ../shared/models/refs are stored
// this way.
//
// A .npy file is the magic "\x93NUMPY", a major and minor version byte, a
// header length (uint16 little-endian for 1.0, uint32 for 2.0 and 3.0), an
// ASCII (3.0: UTF-8) Python dict literal, padded with spaces and ended by
// '\n', and then the raw array data in C (row-major) or Fortran order.
//
// Worked example: numpy.save of np.array([1, 513], dtype="<u2") is
//
//	93 4e 55 4d 50 59 01 00 76 00                "\x93NUMPY" 1.0, header 118 bytes
//	7b 27 64 65 73 63 72 27 ...                  {'descr': '<u2', 'fortran_order': False, 'shape': (2,), }
//	... 20 0a                                    spaces up to a multiple of 64, then '\n'
//	01 00 01 02                                  1, 513 little-endian
//
// Read returns that as Array{Descr: "<u2", Shape: []int{2}, Data: 01 00 01 02}.
package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// MaxHeaderLen bounds the header dict; numpy itself refuses headers over
// 10,000 bytes unless told otherwise.
const MaxHeaderLen = 1 << 16

// Array is a decoded .npy array. Data holds the raw element bytes exactly
// as stored (byte order per Descr); its length is Len()*ItemSize().
type Array struct {
	// Descr is numpy's dtype string, e.g. "<u2", "<f4", "|u1".
	Descr string
	// Shape is the array shape; empty for a 0-d array.
	Shape []int
	// FortranOrder reports column-major data.
	FortranOrder bool
	// Data is the raw element bytes.
	Data []byte
}

// Len is the number of elements: the product of Shape (1 for a 0-d array).
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// ReadFile reads and decodes the .npy file at path.
func ReadFile(path string) (*Array, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	a, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", path, errors.Unwrap(err))
	}
	return a, nil
}

// Read decodes a .npy stream from r.
func Read(r io.Reader) (*Array, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	return Decode(b)
}

// Decode decodes a whole .npy file held in b. Data aliases b.
func Decode(b []byte) (*Array, error) {
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("npy: %w", fmt.Errorf(format, args...))
	}
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, wrap("not a .npy file (magic \\x93NUMPY missing)")
	}
	major := b[6]
	var hlen, off int
	switch major {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, wrap("file of %d bytes is shorter than a version %d preamble (12 bytes)", len(b), major)
		}
		h := binary.LittleEndian.Uint32(b[8:12])
		if h > MaxHeaderLen {
			return nil, wrap("header length %d exceeds the limit %d", h, MaxHeaderLen)
		}
		hlen, off = int(h), 12
	default:
		return nil, wrap("unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, b[7])
	}
	if off+hlen > len(b) {
		return nil, wrap("header of %d bytes runs past the end of the %d-byte file", hlen, len(b))
	}
	a, err := parseHeader(string(b[off : off+hlen]))
	if err != nil {
		return nil, wrap("header: %v", err)
	}
	size, err := itemSize(a.Descr)
	if err != nil {
		return nil, wrap("%v", err)
	}
	n := 1
	for _, d := range a.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt/size/d) {
			return nil, wrap("shape %v overflows", a.Shape)
		}
		n *= d
	}
	data := b[off+hlen:]
	if len(data) != n*size {
		return nil, wrap("shape %v of %q needs %d data bytes, file has %d", a.Shape, a.Descr, n*size, len(data))
	}
	a.Data = data
	return a, nil
}

// itemSize returns the bytes per element of the supported dtypes:
// bool, signed and unsigned integers, and floats of 2, 4 and 8 bytes.
func itemSize(descr string) (int, error) {
	if len(descr) < 3 || !strings.ContainsRune("<>|=", rune(descr[0])) || !strings.ContainsRune("biuf", rune(descr[1])) {
		return 0, fmt.Errorf("unsupported dtype %q", descr)
	}
	n, err := strconv.Atoi(descr[2:])
	if err != nil || (n != 1 && n != 2 && n != 4 && n != 8) || (descr[1] == 'f' && n == 1) || (descr[1] == 'b' && n != 1) {
		return 0, fmt.Errorf("unsupported dtype %q", descr)
	}
	return n, nil
}

// parseHeader parses the header dict, e.g.
// {'descr': '<u2', 'fortran_order': False, 'shape': (152538,), }.
// It accepts exactly the three keys numpy writes, in any order.
func parseHeader(h string) (*Array, error) {
	s := strings.TrimSpace(strings.TrimRight(h, "\n\x00 "))
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("%q is not a dict", h)
	}
	s = s[1 : len(s)-1]
	a := &Array{}
	seen := map[string]bool{}
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			break
		}
		key, rest, err := quoted(s)
		if err != nil {
			return nil, err
		}
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, ":") {
			return nil, fmt.Errorf("missing ':' after key %q", key)
		}
		rest = strings.TrimLeft(rest[1:], " ")
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		switch key {
		case "descr":
			a.Descr, rest, err = quoted(rest)
			if err != nil {
				return nil, fmt.Errorf("descr: %v", err)
			}
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				rest = rest[5:]
			case strings.HasPrefix(rest, "True"):
				a.FortranOrder, rest = true, rest[4:]
			default:
				return nil, fmt.Errorf("fortran_order is neither True nor False")
			}
		case "shape":
			if !strings.HasPrefix(rest, "(") {
				return nil, fmt.Errorf("shape is not a tuple")
			}
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return nil, fmt.Errorf("shape tuple not closed")
			}
			a.Shape = []int{}
			for _, f := range strings.Split(rest[1:end], ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				d, err := strconv.Atoi(strings.TrimSuffix(f, "L"))
				if err != nil || d < 0 {
					return nil, fmt.Errorf("shape dimension %q is not a non-negative integer", f)
				}
				a.Shape = append(a.Shape, d)
			}
			rest = rest[end+1:]
		default:
			return nil, fmt.Errorf("unknown key %q", key)
		}
		s = rest
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return nil, fmt.Errorf("key %q missing", k)
		}
	}
	return a, nil
}

// quoted reads a Python string literal in single or double quotes (without
// escapes) at the start of s and returns it and the rest of s.
func quoted(s string) (string, string, error) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", "", fmt.Errorf("expected a quoted string at %q", clip(s))
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", fmt.Errorf("unterminated string at %q", clip(s))
	}
	return s[1 : 1+end], s[end+2:], nil
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

func (a *Array) order() binary.ByteOrder {
	if a.Descr[0] == '>' {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// Ints returns the elements of an integer or bool array as int, in storage
// order. Unsigned 64-bit values above math.MaxInt64 are an error.
func (a *Array) Ints() ([]int, error) {
	size, err := itemSize(a.Descr)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	kind := a.Descr[1]
	if kind == 'f' {
		return nil, fmt.Errorf("npy: dtype %q is not an integer type", a.Descr)
	}
	bo := a.order()
	n := len(a.Data) / size
	out := make([]int, n)
	for i := range n {
		p := a.Data[i*size:]
		var u uint64
		switch size {
		case 1:
			u = uint64(p[0])
			if kind == 'i' {
				u = uint64(int64(int8(p[0])))
			}
		case 2:
			u = uint64(bo.Uint16(p))
			if kind == 'i' {
				u = uint64(int64(int16(u)))
			}
		case 4:
			u = uint64(bo.Uint32(p))
			if kind == 'i' {
				u = uint64(int64(int32(u)))
			}
		case 8:
			u = bo.Uint64(p)
			if kind == 'u' && u > math.MaxInt64 {
				return nil, fmt.Errorf("npy: element %d (%d) of %q overflows int", i, u, a.Descr)
			}
		}
		out[i] = int(int64(u))
	}
	return out, nil
}

// Float32s returns the elements of a float array as float32, in storage
// order (float64 values are rounded, float16 values widened).
func (a *Array) Float32s() ([]float32, error) {
	if len(a.Descr) < 3 || a.Descr[1] != 'f' {
		return nil, fmt.Errorf("npy: dtype %q is not a float type", a.Descr)
	}
	size, err := itemSize(a.Descr)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	bo := a.order()
	n := len(a.Data) / size
	out := make([]float32, n)
	for i := range n {
		p := a.Data[i*size:]
		switch size {
		case 2:
			out[i] = halfToFloat32(bo.Uint16(p))
		case 4:
			out[i] = math.Float32frombits(bo.Uint32(p))
		case 8:
			out[i] = float32(math.Float64frombits(bo.Uint64(p)))
		}
	}
	return out, nil
}

// halfToFloat32 widens an IEEE 754 binary16 value exactly.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		v := float32(mant) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | mant<<13)
}

// Encode writes a as a version 1.0 .npy file (version 2.0 if the header
// does not fit 1.0's 16-bit length), the way numpy.save lays it out: the
// header is padded with spaces so that the data starts at a multiple of 64.
func Encode(a *Array) []byte {
	var shape strings.Builder
	shape.WriteByte('(')
	for i, d := range a.Shape {
		if i > 0 {
			shape.WriteString(", ")
		}
		shape.WriteString(strconv.Itoa(d))
	}
	if len(a.Shape) == 1 {
		shape.WriteByte(',')
	}
	shape.WriteByte(')')
	fortran := "False"
	if a.FortranOrder {
		fortran = "True"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", a.Descr, fortran, shape.String())
	var buf bytes.Buffer
	pre := 10
	if len(dict)+1+pre+64 > math.MaxUint16 {
		pre = 12
	}
	pad := 64 - (pre+len(dict)+1)%64
	if pad == 64 {
		pad = 0
	}
	hlen := len(dict) + pad + 1
	buf.WriteString("\x93NUMPY")
	if pre == 10 {
		buf.Write([]byte{1, 0})
		buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(hlen)))
	} else {
		buf.Write([]byte{2, 0})
		buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(hlen)))
	}
	buf.WriteString(dict)
	buf.WriteString(strings.Repeat(" ", pad))
	buf.WriteByte('\n')
	buf.Write(a.Data)
	return buf.Bytes()
}
