// Package bundle writes and opens smelt bundles: the directory a browser
// fetches (manifest.json, manifest.sig, shards/, kernels/, runtime/, ...;
// the format is documented in package manifest).
//
// Write streams every tensor's bytes once into the shard writer, adds the
// extra files, writes manifest.json last (and manifest.sig when given a
// key), and publishes the directory atomically: everything is written into
// a temporary directory beside the target, fsynced, then renamed into
// place. On Linux an existing bundle is swapped out in one
// renameat2(RENAME_EXCHANGE) and removed afterwards; elsewhere it is
// renamed aside first. A crash at any point leaves the target either
// absent or holding the previous complete bundle, never a partial one;
// leftover temporary directories (".NAME.tmp-PID-*") of dead processes are
// removed by the next Write to the same target.
//
// Output is deterministic: the same graph and options give byte-identical
// files whatever GOMAXPROCS is (signatures included: Ed25519 and RFC 6979
// ECDSA are deterministic).
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/shard"
)

// File is an extra file of a bundle (a kernel, the runtime, the tokenizer,
// a demo page), by bundle-relative slash-separated path.
type File struct {
	Path string
	Data []byte
}

// WriteOptions configure Write. Everything but the graph that goes into the
// manifest comes from here; Write decides nothing beyond the shard plan.
type WriteOptions struct {
	ShardSize    int64                 // shard cap (default shard.DefaultShardSize)
	ExtraFiles   []File                // kernels/*.wgsl, runtime/*.js, tokenizer.json, index.html, ...
	Tokenizer    string                // path of the tokenizer among ExtraFiles, if any
	Kernels      []manifest.Kernel     // kernel table (paths among ExtraFiles)
	Program      json.RawMessage       // dispatch program (codegen's format)
	Requirements manifest.Requirements //
	Provenance   manifest.Provenance   // set Provenance.Smelt to the tool version
	Arch         string                // manifest model.arch (default g.Config.Family)
	Key          *manifest.PrivateKey  // when set, manifest.sig is written before publishing
	Parallelism  int                   // shard writers at once (default GOMAXPROCS)
}

// Write writes g as a bundle at dir (see the package documentation).
// g must pass g.Check. If dir exists it must be a directory that is empty
// or holds a manifest.json (a previous bundle), which is replaced.
func Write(dir string, g *ir.Graph, opts WriteOptions) (err error) {
	if g == nil {
		return errors.New("bundle: nil graph")
	}
	if err := g.Check(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := checkReplaceable(dir); err != nil {
		return err
	}

	tensors := append([]*ir.Tensor(nil), g.Tensors...)
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	items := make([]shard.Item, len(tensors))
	for i, t := range tensors {
		n, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			return fmt.Errorf("bundle: tensor %q: %w", t.Name, err)
		}
		items[i] = shard.Item{Name: t.Name, NBytes: n}
	}
	layout, err := shard.Plan(items, shard.Options{ShardSize: opts.ShardSize})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	extras, err := checkExtras(opts, layout)
	if err != nil {
		return err
	}
	graph, err := manifest.FromIR(g)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}

	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	removeStale(parent, base)
	tmp, err := os.MkdirTemp(parent, tempPrefix(base)+fmt.Sprint(os.Getpid())+"-")
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}

	written, err := shard.Write(tmp, layout, func(i int) ([]byte, error) { return tensors[i].Data() }, shard.WriteOptions{Parallelism: opts.Parallelism})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	m := &manifest.Manifest{
		Format:       manifest.Format,
		Model:        manifest.Model{Arch: opts.Arch, Config: g.Config},
		Tokenizer:    opts.Tokenizer,
		Graph:        graph,
		Tensors:      make([]manifest.Tensor, len(tensors)),
		Shards:       make([]string, len(layout.Shards)),
		Kernels:      opts.Kernels,
		Program:      opts.Program,
		Requirements: opts.Requirements,
		Provenance:   opts.Provenance,
	}
	if m.Model.Arch == "" {
		m.Model.Arch = g.Config.Family
	}
	for i, w := range written {
		m.Shards[i] = w.Path
		m.Files = append(m.Files, manifest.File{Path: w.Path, NBytes: w.NBytes, Integrity: manifest.Integrity(w.SHA384)})
	}
	for i, t := range tensors {
		p := layout.Items[i]
		mt := manifest.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Quant: t.Quant,
			Shard: p.Parts[0].Shard, Offset: p.Parts[0].Offset, NBytes: p.NBytes}
		if len(p.Parts) > 1 {
			for _, pt := range p.Parts {
				mt.Parts = append(mt.Parts, manifest.Part{Shard: pt.Shard, Offset: pt.Offset, NBytes: pt.NBytes})
			}
		}
		m.Tensors[i] = mt
	}
	for _, f := range extras {
		if err := writeFile(tmp, f.Path, f.Data); err != nil {
			return err
		}
		m.Files = append(m.Files, manifest.File{Path: f.Path, NBytes: int64(len(f.Data)), Integrity: manifest.IntegrityOf(f.Data)})
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	m.ID = manifest.BundleID(m.Files)
	mb, err := manifest.Encode(m)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := writeFile(tmp, manifest.ManifestFile, mb); err != nil {
		return err
	}
	if opts.Key != nil {
		sig, err := manifest.Sign(mb, opts.Key)
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if err := writeFile(tmp, manifest.SignatureFile, sig); err != nil {
			return err
		}
	}
	if err := syncDirs(tmp); err != nil {
		return err
	}
	return publish(tmp, dir)
}

func tempPrefix(base string) string { return "." + base + ".tmp-" }

// checkReplaceable refuses to replace anything but nothing, an empty
// directory or a previous bundle.
func checkReplaceable(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("bundle: output %s exists and is not a directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, manifest.ManifestFile)); err == nil {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("bundle: output %s exists, is not empty and holds no %s: refusing to replace it", dir, manifest.ManifestFile)
	}
	return nil
}

// checkExtras validates and sorts the extra files.
func checkExtras(opts WriteOptions, layout *shard.Layout) ([]File, error) {
	extras := append([]File(nil), opts.ExtraFiles...)
	sort.Slice(extras, func(i, j int) bool { return extras[i].Path < extras[j].Path })
	paths := map[string]bool{}
	for _, s := range layout.Shards {
		paths[s.Path] = true
	}
	for i, f := range extras {
		if err := manifest.CheckPath(f.Path); err != nil {
			return nil, fmt.Errorf("bundle: extra file: %w", err)
		}
		if f.Path == manifest.ManifestFile || f.Path == manifest.SignatureFile || strings.HasPrefix(f.Path, "shards/") {
			return nil, fmt.Errorf("bundle: extra file %q: the name is reserved", f.Path)
		}
		if i > 0 && extras[i-1].Path == f.Path {
			return nil, fmt.Errorf("bundle: extra file %q given twice", f.Path)
		}
		paths[f.Path] = true
	}
	if opts.Tokenizer != "" && !paths[opts.Tokenizer] {
		return nil, fmt.Errorf("bundle: tokenizer %q is not among the extra files", opts.Tokenizer)
	}
	for _, k := range opts.Kernels {
		if !paths[k.Path] {
			return nil, fmt.Errorf("bundle: kernel %q: file %q is not among the extra files", k.Name, k.Path)
		}
	}
	return extras, nil
}

// writeFile creates dir/rel (and its parents) with data and fsyncs it.
func writeFile(dir, rel string, data []byte) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("bundle: %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("bundle: %s: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bundle: %s: %w", rel, err)
	}
	return nil
}

// syncDirs fsyncs every directory under root, deepest first, then root.
func syncDirs(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("bundle: fsync %s: %w", p, err)
	}
	return nil
}

// Sign signs dir/manifest.json with key and writes dir/manifest.sig
// atomically (temporary file, fsync, rename, fsync of dir). The manifest
// must decode strictly.
func Sign(dir string, key *manifest.PrivateKey) error {
	_, mb, err := manifest.ReadManifest(dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	sig, err := manifest.Sign(mb, key)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	const tmpPattern = ".manifest.sig.tmp-"
	if ents, err := os.ReadDir(dir); err == nil { // leftovers of an interrupted Sign
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tmpPattern) {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	f, err := os.CreateTemp(dir, tmpPattern+"*")
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(sig)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(dir, manifest.SignatureFile))
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("bundle: writing %s: %w", manifest.SignatureFile, werr)
	}
	return syncDir(dir)
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Verify checks every file's size and SHA-384 against the manifest, and
	// that no file is missing or extra, before returning.
	Verify bool
	// PublicKey, when set, also requires a valid manifest.sig by this key
	// (implies Verify).
	PublicKey *manifest.PublicKey
}

// Open reads dir/manifest.json strictly and returns the graph it
// describes, whose tensors read exactly the stored bytes from the shards
// (lazily, on each Data call), and the manifest.
func Open(dir string, opts OpenOptions) (*ir.Graph, *manifest.Manifest, error) {
	var m *manifest.Manifest
	var err error
	if opts.PublicKey != nil {
		if err := manifest.Verify(dir, opts.PublicKey); err != nil {
			return nil, nil, err
		}
	}
	m, _, err = manifest.ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	if opts.Verify && opts.PublicKey == nil {
		if err := manifest.CheckFiles(dir, m); err != nil {
			return nil, nil, err
		}
	}
	g := &ir.Graph{Config: m.Model.Config}
	for i := range m.Tensors {
		mt := &m.Tensors[i]
		parts := mt.Parts
		if len(parts) == 0 {
			parts = []manifest.Part{{Shard: mt.Shard, Offset: mt.Offset, NBytes: mt.NBytes}}
		}
		src := &shardSource{dir: dir, name: mt.Name, nbytes: mt.NBytes}
		for _, p := range parts {
			src.parts = append(src.parts, sourcePart{path: m.Shards[p.Shard], offset: p.Offset, nbytes: p.NBytes})
		}
		var q *ir.QuantInfo
		if mt.Quant != nil {
			qc := *mt.Quant
			q = &qc
		}
		g.Tensors = append(g.Tensors, &ir.Tensor{Name: mt.Name, DType: mt.DType, Shape: mt.Shape, Quant: q, Source: src})
	}
	if err := m.Graph.Build(g); err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	if err := g.Check(); err != nil {
		return nil, nil, fmt.Errorf("bundle: %s: %w", manifest.ManifestFile, err)
	}
	return g, m, nil
}

// shardSource reads a tensor's bytes from its shard(s).
type shardSource struct {
	dir    string
	name   string
	nbytes int64
	parts  []sourcePart
}

type sourcePart struct {
	path           string
	offset, nbytes int64
}

// Bytes reads the tensor's stored bytes (a fresh slice per call).
func (s *shardSource) Bytes() ([]byte, error) {
	out := make([]byte, s.nbytes)
	at := out
	for _, p := range s.parts {
		f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(p.path)))
		if err != nil {
			return nil, fmt.Errorf("bundle: tensor %q: %w", s.name, err)
		}
		_, err = f.ReadAt(at[:p.nbytes], p.offset)
		f.Close()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%s is shorter than the manifest says", p.path)
			}
			return nil, fmt.Errorf("bundle: tensor %q: %w", s.name, err)
		}
		at = at[p.nbytes:]
	}
	return out, nil
}

// Location names the first shard and offset.
func (s *shardSource) Location() string {
	if len(s.parts) == 0 {
		return s.dir
	}
	return fmt.Sprintf("%s@%d", filepath.Join(s.dir, filepath.FromSlash(s.parts[0].path)), s.parts[0].offset)
}
