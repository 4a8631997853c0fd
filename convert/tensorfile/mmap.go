package tensorfile

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mmap maps path read-only and returns the bytes and the unmap function;
// every reader (safetensors, pytorch zip, ONNX and its external data) maps
// its files through here. An empty file maps to an empty slice; anything
// but a regular file is refused.
func Mmap(path string) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file")
	}
	if st.Size() == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if int64(int(st.Size())) != st.Size() {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to map", st.Size())
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
