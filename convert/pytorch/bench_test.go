package pytorch

import (
	"archive/zip"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPyTorchOpen opens a generated 256 MiB zip checkpoint (64 f32
// tensors of 1024x1024): "open" lists it (pickle + zip directory only),
// "open+read" also reads every tensor (CRC-32 check of each storage).
func BenchmarkPyTorchOpen(b *testing.B) {
	const tensors, rows, cols = 64, 1024, 1024
	path := filepath.Join(b.TempDir(), "pytorch_model.bin")
	var ts []fxTensor
	var ss []fxStorage
	for i := 0; i < tensors; i++ {
		key := fmt.Sprint(i)
		ts = append(ts, fxTensor{name: fmt.Sprintf("model.layers.%d.weight", i), key: key, size: []int64{rows, cols}, stride: []int64{cols, 1}})
		ss = append(ss, fxStorage{key: key, class: "FloatStorage", numel: rows * cols})
	}
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := zip.NewWriter(out)
	add := func(name string, data []byte) {
		f, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	add("archive/data.pkl", statePickle(ts, ss, false))
	data := iota32(rows * cols)
	for _, s := range ss {
		add("archive/data/"+s.key, data)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	total := int64(tensors * rows * cols * 4)

	b.Run("open/256MiB", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			inv, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			inv.Close()
		}
	})
	b.Run("open+read/256MiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			inv, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range inv.Entries {
				if _, err := e.Source.Bytes(); err != nil {
					b.Fatal(err)
				}
			}
			inv.Close()
		}
	})
}
