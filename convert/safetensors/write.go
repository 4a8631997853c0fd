package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/smeltml/smelt/internal/ir"
)

// WriteTensor is one tensor for Write: Data holds its dense little-endian
// bytes (exactly Shape.ByteSize(DType)), or Data is nil and Fill writes them.
type WriteTensor struct {
	Name  string
	DType ir.DType
	Shape ir.Shape
	Data  []byte
	// Fill, when Data is nil, streams the tensor's bytes to w (for large
	// generated tensors that should not sit in memory). It must write
	// exactly Shape.ByteSize(DType) bytes.
	Fill func(w io.Writer) error
}

// EncodeHeader returns the 8-byte length prefix plus the JSON header for
// tensors stored in the given order, back to back from data offset 0, with
// metadata (may be nil) as __metadata__. Keys are written sorted (the JSON
// encoder sorts map keys); the header is padded with spaces to a multiple
// of 8 bytes, as the reference writer does.
func EncodeHeader(tensors []WriteTensor, metadata map[string]string) ([]byte, error) {
	type rec struct {
		DType       string   `json:"dtype"`
		Shape       ir.Shape `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		name, ok := DTypeName(t.DType)
		if !ok {
			return nil, fmt.Errorf("safetensors: tensor %q: dtype %v has no safetensors spelling", t.Name, t.DType)
		}
		n, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if t.Data != nil && int64(len(t.Data)) != n {
			return nil, fmt.Errorf("safetensors: tensor %q: %d data bytes, want %d for %v %v", t.Name, len(t.Data), n, t.DType, t.Shape)
		}
		if t.Data == nil && t.Fill == nil && n != 0 {
			return nil, fmt.Errorf("safetensors: tensor %q: neither Data nor Fill given for %d bytes", t.Name, n)
		}
		if _, dup := hdr[t.Name]; dup || t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: tensor name %q used twice or reserved", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = ir.Shape{}
		}
		hdr[t.Name] = rec{DType: name, Shape: shape, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	if pad := len(js) % 8; pad != 0 {
		js = append(js, bytes.Repeat([]byte{' '}, 8-pad)...)
	}
	out := make([]byte, 8, 8+len(js))
	binary.LittleEndian.PutUint64(out, uint64(len(js)))
	return append(out, js...), nil
}

// Write writes a safetensors file holding tensors in the given order (data
// back to back, no holes) with optional metadata. It is the inverse of
// ParseHeader plus the data buffer, used to generate test fixtures and
// benchmark models.
func Write(w io.Writer, tensors []WriteTensor, metadata map[string]string) error {
	hdr, err := EncodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	for _, t := range tensors {
		n, _ := t.Shape.ByteSize(t.DType)
		if t.Data != nil || t.Fill == nil {
			if _, err := w.Write(t.Data); err != nil {
				return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
			}
			continue
		}
		cw := &countWriter{w: w}
		if err := t.Fill(cw); err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if cw.n != n {
			return fmt.Errorf("safetensors: tensor %q: Fill wrote %d bytes, want %d", t.Name, cw.n, n)
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
