// Package tensorfile defines what every weight-file reader (safetensors,
// PyTorch zip, ONNX) returns: an Inventory of stored tensors read from
// headers only, each with a lazy ir.Source for its bytes.
package tensorfile

import (
	"fmt"
	"sort"

	"github.com/smeltml/smelt/internal/ir"
)

// Entry is one tensor as stored in a file.
type Entry struct {
	Name   string    // name in the file ("model.layers.0.self_attn.q_proj.weight")
	DType  ir.DType  // stored dtype
	Shape  ir.Shape  // stored shape
	File   string    // file it lives in, relative to the inventory's Dir
	Offset int64     // byte offset of the data within File (for reports; -1 if not contiguous)
	NBytes int64     // stored byte size (= Shape.ByteSize(DType))
	Source ir.Source // lazy reader of exactly NBytes bytes, dense little-endian row-major
}

// Inventory is the list of tensors a model's weight files hold.
type Inventory struct {
	Dir     string   // model folder (or the folder of a single file)
	Format  string   // "safetensors", "pytorch", "onnx"
	Files   []string // weight files, relative to Dir
	Entries []*Entry // sorted by Name
	// Metadata is format-specific header metadata (safetensors __metadata__,
	// ONNX producer and opset, ...), for reports.
	Metadata map[string]string
	closers  []func() error
}

// AddCloser registers a function Close will call (an munmap, a file close).
func (inv *Inventory) AddCloser(f func() error) { inv.closers = append(inv.closers, f) }

// Close releases mmaps and files. Sources must not be used afterwards.
func (inv *Inventory) Close() error {
	var first error
	for i := len(inv.closers) - 1; i >= 0; i-- {
		if err := inv.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	inv.closers = nil
	return first
}

// Sort orders Entries by name and rejects duplicates.
func (inv *Inventory) Sort() error {
	sort.Slice(inv.Entries, func(i, j int) bool { return inv.Entries[i].Name < inv.Entries[j].Name })
	for i := 1; i < len(inv.Entries); i++ {
		if inv.Entries[i].Name == inv.Entries[i-1].Name {
			return fmt.Errorf("convert: tensor %q appears in both %s and %s", inv.Entries[i].Name, inv.Entries[i-1].File, inv.Entries[i].File)
		}
	}
	return nil
}

// Lookup returns the entry with the given name, or nil.
func (inv *Inventory) Lookup(name string) *Entry {
	i := sort.Search(len(inv.Entries), func(i int) bool { return inv.Entries[i].Name >= name })
	if i < len(inv.Entries) && inv.Entries[i].Name == name {
		return inv.Entries[i]
	}
	return nil
}
