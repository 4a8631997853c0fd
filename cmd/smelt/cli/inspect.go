package cli

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/x448/float16"

	"github.com/smeltml/smelt/convert"
	_ "github.com/smeltml/smelt/convert/onnx"    // registers the .onnx reader
	_ "github.com/smeltml/smelt/convert/pytorch" // registers the pytorch_model.bin reader
	"github.com/smeltml/smelt/convert/tensorfile"
	"github.com/smeltml/smelt/internal/ir"
)

func init() { register(NewCmdInspect) }

// InspectOptions are the flags of `smelt inspect`.
type InspectOptions struct {
	Path        string
	Tensors     string // regexp filter on tensor names
	JSON        bool
	Digest      bool
	DigestRound string // "", "f16" or "bf16": round values before hashing
}

// NewCmdInspect reports what a model folder, weight file or ONNX file holds.
func NewCmdInspect(env *Env) *cobra.Command {
	opts := &InspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show a model's architecture, configuration and tensors",
		Long: `inspect reads a Hugging Face model folder (config.json + safetensors, sharded
safetensors or pytorch_model.bin), a single weight file, or an ONNX file, and
reports the architecture, key configuration values, parameter count, bytes per
dtype and a per-tensor table. Only headers are read, unless --digest is given.
A folder is read through model.safetensors.index.json, else model.safetensors,
else pytorch_model.bin; name a file to read that one. The parameter count is
that of the tensors the architecture uses (a tied lm_head copy is listed as
unused and not counted); without config.json every stored tensor counts.
The report is built completely before anything is printed: on bad input
inspect prints one error line on stderr, nothing on stdout, and exits 2.

--digest adds the sha256 of each tensor's values as little-endian f32, so one
model saved in different formats or dtypes can be compared. The same values
give the same digest whatever the file format (safetensors, pytorch_model.bin,
ONNX) or stored dtype (an f16 tensor is widened exactly to f32 first). An f16
copy of an f32 model matches the original hashed with --digest-round f16:
every f32 value is rounded to f16 (round to nearest, ties to even, as
numpy/torch .half() do), widened back to f32, then hashed; equal digests mean
the copy holds exactly the rounded original. --digest-round bf16 does the same
for a bf16 copy.

A bundle (a folder holding manifest.json) gets a manifest summary instead:
stored bytes per dtype and per quantization scheme, shards, kernels,
requirements, provenance, whether every file matches its integrity, the
signature's status (present, key id, payload = manifest.json; check it with
smelt verify --pubkey) and the tensor table (--tensors filters it).`,
		Example: `  smelt inspect testdata/stories260K
  smelt inspect ../shared/models/ref29m --tensors 'blk\.0\.' --json
  smelt inspect model.onnx
  smelt inspect stories260K --digest --digest-round f16   # compare with an f16 copy
  smelt inspect stories260K/pytorch_model.bin --digest     # same digests as model.safetensors
  smelt inspect out/demo                                   # a bundle`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			return runInspect(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Tensors, "tensors", "", "only list tensors whose name matches this regular expression")
	f.BoolVar(&opts.JSON, "json", false, "print a JSON report instead of tables")
	f.BoolVar(&opts.Digest, "digest", false, "hash each tensor's values (sha256 of little-endian f32)")
	f.StringVar(&opts.DigestRound, "digest-round", "", "round values to f16 or bf16 before hashing (compare against a lower-precision copy)")
	return cmd
}

// InspectReport is the --json output of inspect.
type InspectReport struct {
	Path          string            `json:"path"`
	Format        string            `json:"format"`
	Files         []string          `json:"files"`
	Architecture  string            `json:"architecture"`
	Family        string            `json:"family,omitempty"`
	Config        *ir.Config        `json:"config,omitempty"`
	Parameters    int64             `json:"parameters"`
	BytesPerDType map[string]int64  `json:"bytes_per_dtype"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Tensors       []InspectTensor   `json:"tensors"`
	Unused        map[string]string `json:"unused,omitempty"`
}

// InspectTensor is one row of the per-tensor table.
type InspectTensor struct {
	Name      string  `json:"name"`
	Canonical string  `json:"canonical,omitempty"`
	DType     string  `json:"dtype"`
	Shape     []int64 `json:"shape"`
	Bytes     int64   `json:"bytes"`
	File      string  `json:"file"`
	Digest    string  `json:"digest,omitempty"`
}

func runInspect(env *Env, opts *InspectOptions) error {
	var filter *regexp.Regexp
	if opts.Tensors != "" {
		var err error
		if filter, err = regexp.Compile(opts.Tensors); err != nil {
			return fmt.Errorf("inspect: --tensors: %v", err)
		}
	}
	switch opts.DigestRound {
	case "", "f16", "bf16":
	default:
		return fmt.Errorf("inspect: --digest-round %q: want f16 or bf16", opts.DigestRound)
	}
	if opts.DigestRound != "" && !opts.Digest {
		return fmt.Errorf("inspect: --digest-round needs --digest")
	}
	if isBundlePath(opts.Path) {
		return runInspectBundle(env, opts, filter) // inspect_bundle.go
	}
	rep := &InspectReport{Path: opts.Path, BytesPerDType: map[string]int64{}}
	var inv *tensorfile.Inventory
	canonical := map[string]string{}
	dir := opts.Path
	if st, err := os.Stat(opts.Path); err != nil {
		return fmt.Errorf("inspect: %w", err)
	} else if !st.IsDir() {
		dir = filepath.Dir(opts.Path)
	}
	_, cfgErr := os.Stat(filepath.Join(dir, "config.json"))
	if cfgErr == nil && !strings.HasSuffix(opts.Path, ".onnx") {
		m, err := convert.Load(opts.Path)
		if err != nil {
			return err
		}
		defer m.Close()
		inv = m.Inventory
		cfg := m.Graph.Config
		rep.Architecture, rep.Family, rep.Config = cfg.Arch, m.Family.Name, &cfg
		for c, s := range m.Mapping.Source {
			canonical[s] = c
		}
		rep.Unused = m.Mapping.Unused
		for _, t := range m.Graph.Tensors {
			n, _ := t.Shape.NumElements()
			rep.Parameters += n
		}
	} else {
		var err error
		if inv, err = convert.OpenWeights(opts.Path); err != nil {
			return err
		}
		defer inv.Close()
		if inv.Format == "onnx" {
			rep.Architecture = "onnx graph (not mapped onto an architecture)"
		} else {
			rep.Architecture = "unknown (no config.json beside the weights)"
		}
		for _, e := range inv.Entries {
			n, _ := e.Shape.NumElements()
			rep.Parameters += n
		}
	}
	rep.Format, rep.Files, rep.Metadata = inv.Format, inv.Files, inv.Metadata
	for _, e := range inv.Entries {
		rep.BytesPerDType[e.DType.String()] += e.NBytes
		if filter != nil && !filter.MatchString(e.Name) && !filter.MatchString(canonical[e.Name]) {
			continue
		}
		row := InspectTensor{Name: e.Name, Canonical: canonical[e.Name], DType: e.DType.String(), Shape: e.Shape, Bytes: e.NBytes, File: e.File}
		if row.Shape == nil {
			row.Shape = []int64{}
		}
		if opts.Digest {
			d, err := tensorDigest(e, opts.DigestRound)
			if err != nil {
				return err
			}
			row.Digest = d
		}
		rep.Tensors = append(rep.Tensors, row)
	}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printInspect(env.Stdout, rep)
}

// tensorDigest is the sha256 of the tensor's values as little-endian f32,
// optionally rounded to f16/bf16 first. Values are decoded in chunks, so
// memory stays flat whatever the tensor's size.
func tensorDigest(e *tensorfile.Entry, round string) (string, error) {
	b, err := e.Source.Bytes()
	if err != nil {
		return "", fmt.Errorf("inspect: %s: tensor %q: %w", e.File, e.Name, err)
	}
	size := e.DType.Bits() / 8
	if size == 0 || e.DType.Bits()%8 != 0 {
		return "", fmt.Errorf("inspect: %s: tensor %q: cannot digest %v values", e.File, e.Name, e.DType)
	}
	const chunk = 4096
	h := sha256.New()
	buf := make([]byte, 4*chunk)
	for off := 0; off < len(b); off += chunk * size {
		vals, err := ir.DecodeFloat32(e.DType, b[off:min(off+chunk*size, len(b))])
		if err != nil {
			return "", fmt.Errorf("inspect: %s: tensor %q: %w", e.File, e.Name, err)
		}
		for j, v := range vals {
			switch round {
			case "f16":
				v = float16.Fromfloat32(v).Float32()
			case "bf16":
				v = math.Float32frombits(uint32(ir.F32ToBF16(v)) << 16)
			}
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
		}
		h.Write(buf[:4*len(vals)])
	}
	if r, ok := e.Source.(interface{ Release() error }); ok {
		r.Release() // advisory: drop the mmapped pages from the resident set
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func printInspect(w io.Writer, rep *InspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "path:\t%s\n", rep.Path)
	fmt.Fprintf(tw, "format:\t%s (%s)\n", rep.Format, strings.Join(rep.Files, ", "))
	fmt.Fprintf(tw, "architecture:\t%s\n", rep.Architecture)
	if c := rep.Config; c != nil {
		fmt.Fprintf(tw, "layers:\t%d\n", c.NumLayers)
		fmt.Fprintf(tw, "hidden / intermediate:\t%d / %d\n", c.HiddenSize, c.IntermediateSize)
		fmt.Fprintf(tw, "heads / kv heads / head dim:\t%d / %d / %d\n", c.NumHeads, c.NumKVHeads, c.HeadDim)
		fmt.Fprintf(tw, "vocab / context:\t%d / %d\n", c.VocabSize, c.MaxPositionEmbeddings)
		rs := "none"
		if c.RopeScaling != nil {
			rs = fmt.Sprintf("%s x%g", c.RopeScaling.Type, c.RopeScaling.Factor)
		}
		fmt.Fprintf(tw, "rope theta / scaling:\t%g / %s\n", c.RopeTheta, rs)
		fmt.Fprintf(tw, "tied embeddings / qkv bias:\t%v / %v\n", c.TieWordEmbeddings, c.AttentionBias)
	}
	fmt.Fprintf(tw, "parameters:\t%s\n", groupDigits(rep.Parameters))
	var dts []string
	for d := range rep.BytesPerDType {
		dts = append(dts, d)
	}
	sort.Strings(dts)
	for _, d := range dts {
		fmt.Fprintf(tw, "bytes %s:\t%s\n", d, groupDigits(rep.BytesPerDType[d]))
	}
	keys := make([]string, 0, len(rep.Metadata))
	for k := range rep.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "metadata %s:\t%s\n", k, rep.Metadata[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "NAME\tCANONICAL\tDTYPE\tSHAPE\tBYTES\tFILE"
	if len(rep.Tensors) > 0 && rep.Tensors[0].Digest != "" {
		hdr += "\tSHA256(F32)"
	}
	fmt.Fprintln(tw, hdr)
	for _, t := range rep.Tensors {
		canon := t.Canonical
		if canon == "" {
			canon = "-"
			if r, ok := rep.Unused[t.Name]; ok {
				canon = "(unused: " + r + ")"
			}
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%v\t%d\t%s", t.Name, canon, t.DType, ir.Shape(t.Shape), t.Bytes, t.File)
		if t.Digest != "" {
			line += "\t" + t.Digest
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// groupDigits formats n with thousands separators (29,368,832).
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
