package convert

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/convert/safetensors"
	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

// Model is a model folder read through its architecture: the IR graph over
// lazily-read tensors, plus what the mapping found.
type Model struct {
	Dir       string                // model folder
	Graph     *ir.Graph             // canonical tensors + decoder graph
	Inventory *tensorfile.Inventory // every stored tensor (source names)
	Family    *arch.Family          // the architecture family
	Mapping   *arch.Mapping         // canonical ↔ source names, unused tensors
	ConfigRaw []byte                // config.json as read
}

// Close releases the weight files' mmaps.
func (m *Model) Close() error { return m.Inventory.Close() }

// openers maps a weight-file kind to its reader; readers for other formats
// register here from their own packages' init (see RegisterOpener).
var openers = map[string]func(path string) (*tensorfile.Inventory, error){
	"safetensors": safetensors.OpenFile,
}

// RegisterOpener adds a reader for a format ("pytorch", "onnx").
func RegisterOpener(format string, open func(path string) (*tensorfile.Inventory, error)) {
	openers[format] = open
}

// GraphMapper maps a weight file that carries its own compute graph (ONNX)
// onto family fam's canonical tensors. cfg holds the hyper-parameters from
// the config.json beside the file; the mapper checks them against the graph
// and returns them as the graph defines them.
type GraphMapper func(path string, fam *arch.Family, cfg ir.Config) (*tensorfile.Inventory, *arch.Mapping, ir.Config, error)

// graphMappers maps a weight-file format to its graph mapper (see
// RegisterGraphMapper).
var graphMappers = map[string]GraphMapper{}

// RegisterGraphMapper adds the graph mapper of a format ("onnx"); Load uses
// it for weight files of that format instead of name-based mapping.
func RegisterGraphMapper(format string, m GraphMapper) { graphMappers[format] = m }

// onnxModel returns the .onnx file OpenWeights would read at path, or "".
func onnxModel(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	if !st.IsDir() {
		if strings.HasSuffix(path, ".onnx") {
			return path
		}
		return ""
	}
	for _, name := range []string{safetensors.IndexFile, "model.safetensors", "pytorch_model.bin"} {
		if exists(filepath.Join(path, name)) {
			return ""
		}
	}
	if onnx, _ := filepath.Glob(filepath.Join(path, "*.onnx")); len(onnx) == 1 {
		return onnx[0]
	}
	return ""
}

// OpenWeights finds and opens the weights at path: a model folder
// (model.safetensors.index.json, model.safetensors, pytorch_model.bin or a
// single *.onnx, in that order of preference) or a single file.
func OpenWeights(path string) (*tensorfile.Inventory, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if !st.IsDir() {
		return openFileByExt(path)
	}
	if exists(filepath.Join(path, safetensors.IndexFile)) {
		return safetensors.OpenSharded(path)
	}
	for _, name := range []string{"model.safetensors", "pytorch_model.bin"} {
		if p := filepath.Join(path, name); exists(p) {
			return openFileByExt(p)
		}
	}
	onnx, _ := filepath.Glob(filepath.Join(path, "*.onnx"))
	if len(onnx) == 1 {
		return openFileByExt(onnx[0])
	}
	return nil, fmt.Errorf("convert: %s: no weights found (want model.safetensors, %s, pytorch_model.bin or one *.onnx file)", path, safetensors.IndexFile)
}

func openFileByExt(path string) (*tensorfile.Inventory, error) {
	format := ""
	switch {
	case strings.HasSuffix(path, ".safetensors"):
		format = "safetensors"
	case strings.HasSuffix(path, ".bin"), strings.HasSuffix(path, ".pt"), strings.HasSuffix(path, ".pth"):
		format = "pytorch"
	case strings.HasSuffix(path, ".onnx"):
		format = "onnx"
	default:
		return nil, fmt.Errorf("convert: %s: unknown weight file type (want .safetensors, .bin or .onnx)", path)
	}
	open, ok := openers[format]
	if !ok {
		return nil, fmt.Errorf("convert: %s: no %s reader is linked into this binary", path, format)
	}
	return open(path)
}

// readConfig reads config.json, refusing files over arch.MaxConfigBytes
// before reading them.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("convert: %s: config.json is required to map the weights onto an architecture: %w", filepath.Dir(path), err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("convert: %s: not a regular file", path)
	}
	if st.Size() > arch.MaxConfigBytes {
		return nil, fmt.Errorf("convert: %s: %d bytes, more than the %d-byte limit for a config file", path, st.Size(), arch.MaxConfigBytes)
	}
	raw, err := io.ReadAll(io.LimitReader(f, arch.MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("convert: %s: %w", path, err)
	}
	return raw, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Load reads a Hugging Face model folder (config.json + weights) and maps
// it onto its architecture. path may also be a weight file inside a folder
// that holds config.json. An ONNX model (a folder with one *.onnx and no
// safetensors/pytorch weights, or a .onnx file) is mapped by walking its
// graph (the registered GraphMapper, package convert/onnx); it too needs
// config.json beside it, for what the graph does not state (heads, kv
// heads, rope theta, ...).
func Load(path string) (*Model, error) {
	dir := path
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	} else if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	cfgPath := filepath.Join(dir, "config.json")
	if p := onnxModel(path); p != "" && !exists(cfgPath) {
		return nil, fmt.Errorf("convert: %s: an ONNX model needs config.json beside it for heads/kv heads/rope theta", filepath.Base(p))
	}
	raw, err := readConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	archName, err := arch.ConfigArchitecture(cfgPath, raw)
	if err != nil {
		return nil, err
	}
	fam, err := arch.Lookup(archName)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, cfgPath)
	}
	cfg, err := fam.ParseConfig(cfgPath, raw)
	if err != nil {
		return nil, err
	}
	inv, err := OpenWeights(path)
	if err != nil {
		return nil, err
	}
	var m *arch.Mapping
	if mapper, ok := graphMappers[inv.Format]; ok {
		file := filepath.Join(inv.Dir, inv.Files[0])
		inv.Close()
		if inv, m, cfg, err = mapper(file, fam, cfg); err != nil {
			return nil, err
		}
	} else if inv.Format == "onnx" {
		inv.Close()
		return nil, fmt.Errorf("convert: %s: no ONNX graph mapper is linked into this binary (import smelt/convert/onnx)", path)
	} else if m, err = arch.Map(fam, cfg, inv); err != nil {
		inv.Close()
		return nil, err
	}
	g, err := fam.Build(cfg, m.Tensors)
	if err != nil {
		inv.Close()
		return nil, err
	}
	return &Model{Dir: dir, Graph: g, Inventory: inv, Family: fam, Mapping: m, ConfigRaw: raw}, nil
}
