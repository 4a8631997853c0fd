package pytorch

import (
	"archive/zip"
	"io"
	"testing"

	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/testmodels"
)

// FuzzPickle feeds arbitrary bytes to the checkpoint reader (zip, legacy
// and pickle paths) and to the pickle machine directly. It must never
// panic, and what it allocates is bounded by the input (scanPickle's caps)
// and by storages of at most 1 MiB here.
func FuzzPickle(f *testing.F) {
	s := fxStorage{key: "0", class: "FloatStorage", numel: 6, data: iota32(6)}
	tensors := []fxTensor{
		{name: "a", key: "0", size: []int64{2, 3}, stride: []int64{3, 1}},
		{name: "b", key: "0", size: []int64{3, 2}, stride: []int64{1, 3}},
		{name: "c", key: "0", offset: 2, size: []int64{2}, stride: []int64{1}, rebuild: "param"},
	}
	pk := statePickle(tensors, []fxStorage{s}, false)
	f.Add(pk)
	f.Add(plainDict(pk))
	f.Add(torchZip(f, pk, []fxStorage{s}))
	f.Add(torchLegacy(tensors, []fxStorage{s}))
	f.Add(globalPickle("os", "system"))
	f.Add(stackGlobalPickle("builtins", "eval"))
	f.Add([]byte("\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94(u."))
	zr, err := zip.OpenReader(testmodels.Path(f, "stories260K", "pytorch_model.bin"))
	if err != nil {
		f.Fatal(err)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		f.Fatal(err)
	}
	real, err := io.ReadAll(rc)
	if err != nil {
		f.Fatal(err)
	}
	zr.Close()
	f.Add(real)

	f.Fuzz(func(t *testing.T, data []byte) {
		if inv, err := load("f.bin", data); err == nil {
			readAll(t, inv)
		}
		seen := map[string]*storageRef{}
		v, _, err := unpickle(data, persistentStorage(seen, false))
		if err != nil {
			return
		}
		storages := map[string]*storage{}
		total := int64(0)
		for key, ref := range seen {
			n := ref.numel * int64(ref.dtype.Bits()/8)
			if total += n; n > 1<<20 || total > 1<<20 {
				return // keep the harness's own fake storages small
			}
			storages[key] = &storage{ref: ref, record: key, data: make([]byte, n)}
		}
		inv := &tensorfile.Inventory{Metadata: map[string]string{}}
		if addTensors(inv, "f.bin", v, storages) == nil {
			readAll(t, inv)
		}
	})
}

func readAll(t *testing.T, inv *tensorfile.Inventory) {
	for _, e := range inv.Entries {
		b, err := e.Source.Bytes()
		if err != nil {
			continue
		}
		if int64(len(b)) != e.NBytes {
			t.Fatalf("%s: %d bytes, NBytes %d", e.Name, len(b), e.NBytes)
		}
	}
}
