package textdata

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead: any file content, in any format, reads or fails cleanly; what
// reads tokenizes with a byte tokenizer.
func FuzzRead(f *testing.F) {
	f.Add([]byte("plain text\n"), uint8(FormatText))
	f.Add([]byte("{\"text\": \"a\"}\n{\"text\": \"\\u00e9\"}\n"), uint8(FormatJSONL))
	f.Add([]byte("[1, 2, 3]"), uint8(FormatJSONIDs))
	f.Add([]byte("\x93NUMPY\x01\x00v\x00{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }                                                            \n\x01\x00"), uint8(FormatNPY))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, format uint8) {
		p := filepath.Join(dir, "data")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := Read(p, Options{Format: Format(format%4 + 1)})
		if err != nil {
			return
		}
		if _, err := Tokenize(d, fakeTok{1}); err != nil && d.Docs != nil {
			t.Fatalf("Tokenize of read text failed: %v", err)
		}
	})
}
