package onnx

import (
	"testing"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
)

// FuzzONNX feeds arbitrary bytes to the model decoder (external data is
// refused: the reader has no folder). It must never panic; allocations are
// bounded by the input size and the MaxProto* budgets.
func FuzzONNX(f *testing.F) {
	f.Add(marshal(f, model(
		with(tensor("raw", onnxpb.TensorProto_FLOAT, 2), func(p *onnxpb.TensorProto) { p.RawData = f32s(1, 2) }),
		with(tensor("f", onnxpb.TensorProto_FLOAT, 2), func(p *onnxpb.TensorProto) { p.FloatData = []float32{1, 2} }),
		with(tensor("i8", onnxpb.TensorProto_INT8, 2), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{-1, 1} }),
		with(tensor("i4", onnxpb.TensorProto_INT4, 3), func(p *onnxpb.TensorProto) { p.Int32Data = []int32{0x12, 3} }),
		with(tensor("i64", onnxpb.TensorProto_INT64, 1), func(p *onnxpb.TensorProto) { p.Int64Data = []int64{-5} }),
		with(tensor("ext", onnxpb.TensorProto_FLOAT, 2), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			p.ExternalData = ext("w.bin", "offset", "0", "length", "8")
		}),
	)))
	f.Add(unpackedFloats(f, "w", 1, 2, 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &reader{name: "model.onnx", ext: map[string]*extFile{}}
		m, err := r.load(data)
		if err != nil {
			return
		}
		for _, e := range m.Inventory.Entries {
			b, err := e.Source.Bytes()
			if err == nil && int64(len(b)) != e.NBytes {
				t.Fatalf("%s: %d bytes, NBytes %d", e.Name, len(b), e.NBytes)
			}
		}
	})
}
