package codegen

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"

	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/manifest"
	"github.com/smeltml/smelt/wgsl"
)

// runtimeFS holds the JS runtime and the demo page, copied into every
// bundle (integrity.js and tokenizer.js are maintained with the manifest
// and tokenizer packages; smelt.js, index.html and the Node launcher here).
//
//go:embed runtime/*.js runtime/*.mjs runtime/index.html
var runtimeFS embed.FS

// RuntimeFile returns an embedded runtime file by its name under runtime/
// ("smelt.js", "run.mjs", "bench.mjs", "index.html").
func RuntimeFile(name string) ([]byte, error) {
	b, err := runtimeFS.ReadFile("runtime/" + name)
	if err != nil {
		return nil, fmt.Errorf("codegen: runtime file %q: %w", name, err)
	}
	return b, nil
}

// bundleRuntime lists the embedded files every bundle gets, and their
// paths in the bundle.
// tokenizer.js goes in only with a tokenizer (smelt.js imports it then).
var bundleRuntime = []struct{ src, dst string }{
	{"runtime/smelt.js", "runtime/smelt.js"},
	{"runtime/integrity.js", "runtime/integrity.js"},
	{"runtime/index.html", "index.html"},
}

// pagePath is the demo page's path in a bundle.
const pagePath = "index.html"

// importMapPlaceholder is the import map of runtime/index.html before
// Generate writes the runtime's hashes into it.
const importMapPlaceholder = `<script type="importmap">{"integrity":{}}</script>`

// pinRuntime writes the integrity of every runtime module (path -> SRI) into
// the demo page's import map: a browser then refuses a module whose bytes
// differ, and the page checks them before it imports the runtime.
func pinRuntime(page []byte, pins map[string]string) ([]byte, error) {
	if bytes.Count(page, []byte(importMapPlaceholder)) != 1 {
		return nil, fmt.Errorf("codegen: runtime/index.html lacks the import map placeholder %s (internal error)", importMapPlaceholder)
	}
	m, err := json.Marshal(map[string]any{"integrity": pins}) // sorted keys
	if err != nil {
		return nil, fmt.Errorf("codegen: %w", err)
	}
	return bytes.Replace(page, []byte(importMapPlaceholder), []byte(`<script type="importmap">`+string(m)+`</script>`), 1), nil
}

// TokenizerPath is where Generate puts the tokenizer in a bundle.
const TokenizerPath = "tokenizer.json"

// Output is what Generate produces for bundle.Write: the extra files
// (kernels/*.wgsl, runtime/*.js, index.html, tokenizer.json), the kernel
// table, the program and the requirements.
type Output struct {
	Lowering     *Lowering
	Files        []bundle.File // sorted by path
	Kernels      []manifest.Kernel
	Program      json.RawMessage
	Requirements manifest.Requirements
	Tokenizer    string // TokenizerPath, or "" when no tokenizer was given
}

// Generate casts g's bf16 tensors to f32 in place (CastBF16: a bundle
// written from g afterwards stores them as f32), plans g (see Plan),
// renders every kernel instance to kernels/<name>.wgsl, and gathers the
// runtime files. tokenizerJSON, when not nil, is stored as tokenizer.json
// (the runtime's tokenizer.js reads Hugging Face tokenizer.json files).
func Generate(g *ir.Graph, opts Options, tokenizerJSON []byte) (*Output, error) {
	CastBF16(g)
	low, err := Plan(g, opts)
	if err != nil {
		return nil, err
	}
	out := &Output{Lowering: low}
	for _, k := range low.Kernels {
		src, err := k.Render()
		if err != nil {
			return nil, fmt.Errorf("codegen: kernel %s: %w", k.Name(), err)
		}
		path := "kernels/" + k.Name() + ".wgsl"
		out.Files = append(out.Files, bundle.File{Path: path, Data: []byte(src)})
		mk := manifest.Kernel{Name: k.Name(), Path: path, Entry: wgsl.Entry, Workgroup: k.Workgroup(), Requires: k.Requires().Features}
		for _, b := range k.Bindings() {
			mk.Bindings = append(mk.Bindings, manifest.Binding{Group: 0, Binding: b.Index, Name: b.Name, Type: bindingType(b.Access)})
		}
		out.Kernels = append(out.Kernels, mk)
	}
	runtime := bundleRuntime
	if tokenizerJSON != nil {
		runtime = append(runtime[:len(runtime):len(runtime)], struct{ src, dst string }{"runtime/tokenizer.js", "runtime/tokenizer.js"})
		out.Files = append(out.Files, bundle.File{Path: TokenizerPath, Data: tokenizerJSON})
		out.Tokenizer = TokenizerPath
	}
	pins := map[string]string{} // "./runtime/x.js" -> SRI, for index.html's import map
	var page []byte
	for _, r := range runtime {
		b, err := fs.ReadFile(runtimeFS, r.src)
		if err != nil {
			return nil, fmt.Errorf("codegen: runtime file %s is missing from this build of smelt: %w", r.src, err)
		}
		if r.dst == pagePath {
			page = b
			continue
		}
		pins["./"+r.dst] = manifest.IntegrityOf(b)
		out.Files = append(out.Files, bundle.File{Path: r.dst, Data: b})
	}
	page, err = pinRuntime(page, pins)
	if err != nil {
		return nil, err
	}
	out.Files = append(out.Files, bundle.File{Path: pagePath, Data: page})
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].Path < out.Files[j].Path })
	if out.Program, err = low.Program.Encode(); err != nil {
		return nil, err
	}
	rq := low.Requirements
	out.Requirements = manifest.Requirements{Features: rq.Features, VRAMBytes: rq.VRAM, ContextLength: rq.ContextLength}
	if len(rq.Limits) > 0 {
		out.Requirements.Limits = rq.Limits
	}
	return out, nil
}

// WriteOptions returns bundle write options carrying the output; the
// caller adds shard size, provenance and key.
func (o *Output) WriteOptions() bundle.WriteOptions {
	return bundle.WriteOptions{
		ExtraFiles:   o.Files,
		Tokenizer:    o.Tokenizer,
		Kernels:      o.Kernels,
		Program:      o.Program,
		Requirements: o.Requirements,
	}
}

func bindingType(a wgsl.Access) string {
	switch a {
	case wgsl.Uniform:
		return "uniform"
	case wgsl.ReadOnly:
		return "read-only-storage"
	}
	return "storage"
}
