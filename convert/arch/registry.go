// Package arch holds architecture knowledge: one file per family (llama.go)
// and this one registry. A family parses config.json into ir.Config, maps
// source tensor names onto canonical names (convert/names.go) — target
// driven: every target tensor must be found and every source tensor mapped
// or declared unused — and builds the IR graph.
package arch

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// Family is one architecture family.
type Family struct {
	// Name is the registry name ("llama").
	Name string
	// Architectures lists the HF "architectures" values this family reads.
	Architectures []string
	// ParseConfig strictly parses config.json bytes for one of Architectures.
	ParseConfig func(file string, raw []byte) (ir.Config, error)
	// Targets lists the canonical tensors the family needs for cfg, each
	// with its source-name candidates and expected shape.
	Targets func(cfg ir.Config) []Target
	// Unused reports whether a source tensor may be ignored (with the reason).
	Unused func(cfg ir.Config, name string) (reason string, ok bool)
	// Build makes the IR graph over the mapped tensors.
	Build func(cfg ir.Config, tensors []*ir.Tensor) (*ir.Graph, error)
}

// Target is one canonical tensor and where it may come from.
type Target struct {
	Name     string   // canonical name
	Sources  []string // source names, first match wins
	Shape    ir.Shape // expected shape
	Optional bool     // absent is fine (e.g. lm_head when tied)
}

var families []*Family

// Register adds a family; called from each family file's init.
func Register(f *Family) { families = append(families, f) }

// Supported returns the sorted HF architecture names smelt reads.
func Supported() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.Architectures...)
	}
	sort.Strings(out)
	return out
}

// Lookup finds the family for an HF architecture name.
func Lookup(architecture string) (*Family, error) {
	for _, f := range families {
		for _, a := range f.Architectures {
			if a == architecture {
				return f, nil
			}
		}
	}
	return nil, fmt.Errorf("convert: unknown architecture %q; supported: %s", architecture, strings.Join(Supported(), ", "))
}

// entryPath is the path of the file holding e, for errors.
func entryPath(inv *tensorfile.Inventory, e *tensorfile.Entry) string {
	return filepath.Join(inv.Dir, e.File)
}

// Mapping is the result of mapping an inventory onto a family's targets.
type Mapping struct {
	Tensors []*ir.Tensor      // canonical tensors, sorted by name
	Source  map[string]string // canonical name → source name
	Unused  map[string]string // source name → reason it is not used
}

// Map maps inv onto f's targets for cfg, checking shapes and dtypes.
func Map(f *Family, cfg ir.Config, inv *tensorfile.Inventory) (*Mapping, error) {
	m := &Mapping{Source: map[string]string{}, Unused: map[string]string{}}
	used := map[string]bool{}
	for _, t := range f.Targets(cfg) {
		var e *tensorfile.Entry
		for _, s := range t.Sources {
			if e = inv.Lookup(s); e != nil {
				break
			}
		}
		if e == nil {
			if t.Optional {
				continue
			}
			files := make([]string, len(inv.Files))
			for i, f := range inv.Files {
				files[i] = filepath.Join(inv.Dir, f)
			}
			return nil, fmt.Errorf("convert: %s model: tensor %q (canonical %q) not found in %s", cfg.Arch, t.Sources[0], t.Name, strings.Join(files, ", "))
		}
		if !e.Shape.Equal(t.Shape) {
			return nil, fmt.Errorf("convert: %s: tensor %q: shape %v, config.json implies %v", entryPath(inv, e), e.Name, e.Shape, t.Shape)
		}
		if !e.DType.IsFloat() {
			return nil, fmt.Errorf("convert: %s: tensor %q: dtype %v, want a float type (f32, f16, bf16)", entryPath(inv, e), e.Name, e.DType)
		}
		used[e.Name] = true
		m.Source[t.Name] = e.Name
		m.Tensors = append(m.Tensors, &ir.Tensor{
			Name: t.Name, DType: e.DType, Shape: e.Shape, Source: e.Source,
			SrcDType: e.DType, SrcShape: e.Shape,
		})
	}
	for _, e := range inv.Entries {
		if used[e.Name] {
			continue
		}
		reason, ok := f.Unused(cfg, e.Name)
		if !ok {
			return nil, fmt.Errorf("convert: %s: source tensor %q is neither mapped nor declared unused by the %s family", entryPath(inv, e), e.Name, f.Name)
		}
		m.Unused[e.Name] = reason
	}
	sort.Slice(m.Tensors, func(i, j int) bool { return m.Tensors[i].Name < m.Tensors[j].Name })
	return m, nil
}
