package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
)

// BenchmarkONNXOpen opens generated 256 MiB models (64 f32 initializers of
// 1024x1024): "inline" with raw_data in model.onnx, "external" with the
// data in weights.bin. Open decodes only the skeleton; data stays mapped.
func BenchmarkONNXOpen(b *testing.B) {
	const n, rows, cols = 64, 1024, 1024
	dir := b.TempDir()
	data := make([]byte, rows*cols*4)
	for i := range data {
		data[i] = byte(i)
	}
	var inline, external []*onnxpb.TensorProto
	w, err := os.Create(filepath.Join(dir, "weights.bin"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("model.layers.%d.weight", i)
		inline = append(inline, with(tensor(name, onnxpb.TensorProto_FLOAT, rows, cols), func(p *onnxpb.TensorProto) { p.RawData = data }))
		external = append(external, with(tensor(name, onnxpb.TensorProto_FLOAT, rows, cols), func(p *onnxpb.TensorProto) {
			p.DataLocation = onnxpb.TensorProto_EXTERNAL
			p.ExternalData = ext("weights.bin", "offset", fmt.Sprint(i*len(data)), "length", fmt.Sprint(len(data)))
		}))
		if _, err := w.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	paths := map[string]string{}
	for kind, inits := range map[string][]*onnxpb.TensorProto{"inline": inline, "external": external} {
		paths[kind] = filepath.Join(dir, kind+".onnx")
		if err := os.WriteFile(paths[kind], marshal(b, model(inits...)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"inline", "external"} {
		b.Run(kind+"/256MiB", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				inv, err := Open(paths[kind])
				if err != nil {
					b.Fatal(err)
				}
				inv.Close()
			}
		})
	}
}
