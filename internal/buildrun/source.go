package buildrun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/smeltml/smelt/convert"
	_ "github.com/smeltml/smelt/convert/onnx"    // registers the .onnx reader
	_ "github.com/smeltml/smelt/convert/pytorch" // registers the pytorch_model.bin reader
	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/quantrun"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/tokenizer"
)

// Source kinds reported in SourceReport.Kind.
const (
	KindModel  = "model"  // a Hugging Face folder or a weight file
	KindBundle = "bundle" // a smelt bundle (verified when opened)
)

// modelMetaFiles are the non-weight files of a model folder that go into
// the source digests when present (they decide the config and the
// tokenizer).
var modelMetaFiles = []string{
	"config.json",
	"generation_config.json",
	"special_tokens_map.json",
	"tokenizer.json",
	"tokenizer.model",
	"tokenizer_config.json",
	"model.safetensors.index.json",
}

// source is an opened build input.
type source struct {
	kind    string
	graph   *ir.Graph
	tokJSON []byte // tokenizer.json bytes shipped in the bundle (nil: none)
	tok     *tokenizer.Tokenizer
	tokErr  error // why tok is nil
	files   []manifest.SourceFile
	close   func()
}

// openSource opens path as a bundle (a folder holding manifest.json,
// verified file by file) or a model folder / weight file. With digests it
// also hashes the source files.
func openSource(path string, digests bool) (*source, error) {
	if _, err := os.Stat(filepath.Join(path, manifest.ManifestFile)); err == nil {
		return openBundleSource(path, digests)
	}
	m, err := convert.Load(path)
	if err != nil {
		return nil, err
	}
	s := &source{kind: KindModel, graph: m.Graph, close: func() { m.Close() }}
	fail := func(err error) (*source, error) {
		m.Close()
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(m.Dir, "tokenizer.json")); err == nil {
		s.tokJSON = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("build: source: %w", err))
	}
	s.tok, s.tokErr = tokenizer.Load(m.Dir)
	if digests {
		names := map[string]bool{}
		for _, f := range m.Inventory.Files {
			names[filepath.ToSlash(f)] = true
		}
		for _, f := range modelMetaFiles {
			if _, err := os.Stat(filepath.Join(m.Dir, f)); err == nil {
				names[f] = true
			}
		}
		if s.files, err = digestFiles(m.Dir, names); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

func openBundleSource(dir string, digests bool) (*source, error) {
	g, m, err := bundle.Open(dir, bundle.OpenOptions{Verify: true})
	if err != nil {
		return nil, fmt.Errorf("build: source bundle %s: %w", dir, err)
	}
	s := &source{kind: KindBundle, graph: g, close: func() {}}
	if m.Tokenizer != "" {
		if s.tokJSON, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(m.Tokenizer))); err != nil {
			return nil, fmt.Errorf("build: source bundle %s: %w", dir, err)
		}
		s.tok, s.tokErr = tokenizer.NewFromJSON(s.tokJSON)
	} else {
		s.tokErr = fmt.Errorf("build: source bundle %s has no tokenizer", dir)
	}
	if digests {
		// manifest.json pins every other file by its SHA-384, and Open
		// has just checked them all.
		if s.files, err = digestFiles(dir, map[string]bool{manifest.ManifestFile: true}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// tokenizer returns the source's tokenizer, or why there is none.
func (s *source) tokenizer(what string) (*tokenizer.Tokenizer, error) {
	if s.tok == nil {
		return nil, fmt.Errorf("build: %s needs the source's tokenizer: %w", what, s.tokErr)
	}
	return s.tok, nil
}

// digestFiles hashes dir/name for every name (slash-separated, relative to
// dir), sorted by name.
func digestFiles(dir string, names map[string]bool) ([]manifest.SourceFile, error) {
	var out []manifest.SourceFile
	for n := range names {
		sum, size, err := quantrun.FileSHA256(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return nil, err
		}
		out = append(out, manifest.SourceFile{Path: n, NBytes: size, SHA256: sum})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
