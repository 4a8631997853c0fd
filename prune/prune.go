package prune

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/internal/ir"
)

// Methods accepted by Options.Method.
var Methods = []string{"magnitude", "wanda", "nm", "structured-mlp", "structured-heads", "layers"}

// DefaultAlign is the default of Options.Align: kept MLP widths stay a
// multiple of 32, so INT4 groups of 32 (and 8-wide GPU vector loads) still
// divide them.
const DefaultAlign = 32

// Options selects a pruning method.
type Options struct {
	Method   string  // one of Methods
	Sparsity float64 // fraction removed, in (0, 1) (every method but nm)
	N, M     int     // nm: keep N of every M consecutive input columns, 0 < N < M
	Scope    Scope   // magnitude's comparison group; wanda is always PerRow
	// Importance for nm and the structured methods: "magnitude" (weights
	// only) or "activations" (needs Stats; for nm this is Wanda's score).
	// Empty means activations when Stats is given, else magnitude.
	Importance string
	// Align rounds the kept MLP width down to a multiple of Align (0 means
	// DefaultAlign); at least Align channels are kept.
	Align int
	Stats *Stats
}

// Stats are calibration statistics gathered by the reference executor
// (internal/prunerun.CollectStats).
type Stats struct {
	// InputNorms maps a linear weight's canonical name to ‖X_k‖₂, the L2
	// norm of its input channel k over all calibration tokens.
	InputNorms map[string][]float32
	// BlockInfluence[i] = mean over tokens of 1 − cos(h_in, h_out) of block
	// i (how much the block changes the residual stream; ShortGPT's Block
	// Influence score). Only the layers method reads it.
	BlockInfluence []float64
	// Tokens is the number of calibration tokens the statistics cover.
	Tokens int
}

// UsesActivations reports whether opts selects weights with calibration
// statistics: wanda always; nm and the structured methods with Importance
// "activations" (or empty Importance when opts.Stats is set).
func UsesActivations(opts Options) (bool, error) {
	switch opts.Method {
	case "wanda":
		return true, nil
	case "magnitude":
		return false, nil
	}
	switch opts.Importance {
	case "":
		return opts.Stats != nil, nil
	case "magnitude":
		return false, nil
	case "activations":
		return true, nil
	}
	return false, fmt.Errorf("prune: importance %q: want magnitude or activations", opts.Importance)
}

// NeedsBlockInfluence reports whether opts reads Stats.BlockInfluence
// (layer removal ranked by activations).
func NeedsBlockInfluence(opts Options) bool {
	act, err := UsesActivations(opts)
	return err == nil && act && opts.Method == "layers"
}

// TensorReport is one row of the report: a tensor Run changed or removed.
type TensorReport struct {
	Name        string   `json:"name"`
	ShapeBefore ir.Shape `json:"shape_before"`
	ShapeAfter  ir.Shape `json:"shape_after"` // nil when removed
	// NonZeroBefore and NonZeroAfter count non-zero values (-1 in a plan:
	// no weight is read).
	NonZeroBefore int64 `json:"nonzero_before"`
	NonZeroAfter  int64 `json:"nonzero_after"`
	// Pruned counts the elements this run masked (set to zero, whether
	// or not they were zero already) or removed; -1 in a plan where the
	// split between tensors is only known by running (Scope Global).
	Pruned      int64 `json:"pruned"`
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	// Sparsity is the fraction of the elements before pruning that are
	// zero or gone after it: 1 − NonZeroAfter / elements before (removed
	// rows and columns count as zeros), or in a plan Pruned / elements
	// before (weights assumed dense); -1 when unknown.
	Sparsity float64 `json:"sparsity"`
	Removed  bool    `json:"removed,omitempty"` // whole tensor dropped (layer pruning)
}

// Report describes what a pruning run did (or, from Plan, will do).
type Report struct {
	Method  string `json:"method"`
	Planned bool   `json:"planned,omitempty"` // from Plan: nothing was read or run
	// Tensors lists the changed and removed tensors, sorted by name. A plan
	// of the layers method lists none (which blocks go is decided from the
	// weights).
	Tensors     []TensorReport `json:"tensors"`
	BytesBefore int64          `json:"bytes_before"` // all tensor bytes of the model
	BytesAfter  int64          `json:"bytes_after"`
	// LinearElements is the element count of the blocks' linear weights
	// before pruning, Pruned how many of them this run masked or removed
	// (exact in a plan too); Pruned/LinearElements is the sparsity the
	// method reached on those weights.
	LinearElements int64     `json:"linear_elements"`
	Pruned         int64     `json:"pruned"`
	Config         ir.Config `json:"config"` // after
	Notes          []string  `json:"notes,omitempty"`
}

// Write prints the report as a table.
func (r *Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tensor\tshape before\tshape after\tsparsity\tbytes before\tbytes after\t")
	for _, t := range r.Tensors {
		after := t.ShapeAfter.String()
		if t.Removed {
			after = "removed"
		}
		sp := "?"
		if t.Sparsity >= 0 {
			sp = fmt.Sprintf("%.2f%%", 100*t.Sparsity)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%d\t%d\t\n", t.Name, t.ShapeBefore, after, sp, t.BytesBefore, t.BytesAfter)
	}
	sp := "?"
	if r.LinearElements > 0 {
		sp = fmt.Sprintf("%.2f%%", 100*float64(r.Pruned)/float64(r.LinearElements))
	}
	fmt.Fprintf(tw, "all tensors (sparsity: block linears)\t\t\t%s\t%d\t%d\t\n", sp, r.BytesBefore, r.BytesAfter)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "bytes: %d → %d (%+.2f%%)\n", r.BytesBefore, r.BytesAfter, 100*(float64(r.BytesAfter)/float64(max(r.BytesBefore, 1))-1))
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

// linearKinds are the per-block linear weights pruning touches.
var linearKinds = []string{ir.AttnQ, ir.AttnK, ir.AttnV, ir.AttnOutput, ir.FFNGate, ir.FFNUp, ir.FFNDown}

// LinearNames lists the weights the unstructured and N:M methods prune:
// the seven linears of every block, in block order.
func LinearNames(cfg ir.Config) []string {
	var names []string
	for i := 0; i < cfg.NumLayers; i++ {
		for _, k := range linearKinds {
			names = append(names, ir.LayerTensor(i, k))
		}
	}
	return names
}

// model is a mutable copy of the tensors of a graph.
type model struct {
	cfg     ir.Config
	order   []string
	tensors map[string]*ir.Tensor
	data    map[string][]float32 // decoded weights
	dirty   map[string]bool      // data differs from the source
	report  map[string]*TensorReport
	notes   []string
}

func newModel(g *ir.Graph) *model {
	m := &model{cfg: g.Config, tensors: map[string]*ir.Tensor{}, data: map[string][]float32{},
		dirty: map[string]bool{}, report: map[string]*TensorReport{}}
	for _, t := range g.Tensors {
		m.order = append(m.order, t.Name)
		m.tensors[t.Name] = t
	}
	return m
}

// get decodes a tensor once, checking it is a float matrix (or vector)
// of the expected shape.
func (m *model) get(name string, dims ...int) ([]float32, error) {
	t := m.tensors[name]
	if t == nil {
		return nil, fmt.Errorf("prune: tensor %q missing", name)
	}
	if err := checkTensor(t, dims); err != nil {
		return nil, err
	}
	if d, ok := m.data[name]; ok {
		return d, nil
	}
	d, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("prune: tensor %q: %w", name, err)
	}
	m.data[name] = d
	return d, nil
}

func checkTensor(t *ir.Tensor, dims []int) error {
	if t.Quant != nil {
		return fmt.Errorf("prune: tensor %q is already quantized (%s); prune before quantizing", t.Name, t.Quant.Scheme)
	}
	switch t.DType {
	case ir.F32, ir.F16, ir.BF16:
	default:
		return fmt.Errorf("prune: tensor %q has dtype %v, want f32, f16 or bf16", t.Name, t.DType)
	}
	want := make(ir.Shape, len(dims))
	for i, d := range dims {
		want[i] = int64(d)
	}
	if !t.Shape.Equal(want) {
		return fmt.Errorf("prune: tensor %q has shape %v, want %v (from the config)", t.Name, t.Shape, want)
	}
	return nil
}

// touch records that name's values change (its report row starts from the
// original tensor).
func (m *model) touch(name string) {
	m.dirty[name] = true
	if m.report[name] != nil {
		return
	}
	t := m.tensors[name]
	r := &TensorReport{Name: name, ShapeBefore: t.Shape}
	r.NonZeroBefore = countNonZero(m.data[name])
	r.BytesBefore, _ = t.Shape.ByteSize(t.DType)
	m.report[name] = r
}

// set replaces a tensor's values and shape (structured removal).
func (m *model) set(name string, d []float32, shape ir.Shape) {
	m.touch(name)
	m.data[name] = d
	t := *m.tensors[name]
	before, _ := t.Shape.NumElements()
	after, _ := shape.NumElements()
	m.report[name].Pruned = before - after
	t.Shape = shape
	m.tensors[name] = &t
}

func countNonZero(d []float32) int64 {
	var n int64
	for _, v := range d {
		if v != 0 {
			n++
		}
	}
	return n
}

// checkOptions validates opts against a config (shared by Run and Plan).
func checkOptions(cfg ir.Config, opts Options) error {
	if !isMethod(opts.Method) {
		return fmt.Errorf("prune: unknown method %q (want %s)", opts.Method, strings.Join(Methods, ", "))
	}
	if cfg.NumLayers <= 0 || cfg.HiddenSize <= 0 || cfg.IntermediateSize <= 0 || cfg.NumHeads <= 0 || cfg.NumKVHeads <= 0 || cfg.HeadDim <= 0 {
		return fmt.Errorf("prune: config has no complete decoder shape (layers %d, hidden %d, intermediate %d, heads %d/%d, head_dim %d)",
			cfg.NumLayers, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim)
	}
	if cfg.NumHeads%cfg.NumKVHeads != 0 {
		return fmt.Errorf("prune: %d attention heads are not a multiple of %d kv heads", cfg.NumHeads, cfg.NumKVHeads)
	}
	if _, err := UsesActivations(opts); err != nil {
		return err
	}
	if opts.Method == "nm" {
		if opts.N <= 0 || opts.M <= opts.N {
			return fmt.Errorf("prune: n:m %d:%d: want 0 < n < m (e.g. 2:4)", opts.N, opts.M)
		}
		for _, k := range []int{cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHeads * cfg.HeadDim} {
			if k%opts.M != 0 {
				return fmt.Errorf("prune: n:m %d:%d: a linear has %d input columns, not a multiple of %d", opts.N, opts.M, k, opts.M)
			}
		}
		return nil
	}
	if !(opts.Sparsity > 0 && opts.Sparsity < 1) {
		return fmt.Errorf("prune: sparsity %g: want in (0, 1)", opts.Sparsity)
	}
	if opts.Align < 0 {
		return fmt.Errorf("prune: align %d: want >= 0", opts.Align)
	}
	switch opts.Method {
	case "structured-mlp":
		if keep := mlpKept(cfg.IntermediateSize, opts.Sparsity, opts.Align); keep >= cfg.IntermediateSize {
			return fmt.Errorf("prune: sparsity %g with align %d removes no MLP channel of %d", opts.Sparsity, opts.Align, cfg.IntermediateSize)
		}
	case "structured-heads":
		if _, err := headGroupsKept(cfg, opts.Sparsity); err != nil {
			return err
		}
	case "layers":
		if _, err := layersDropped(cfg, opts.Sparsity); err != nil {
			return err
		}
	}
	return nil
}

func isMethod(s string) bool {
	for _, m := range Methods {
		if m == s {
			return true
		}
	}
	return false
}

// checkStats checks that the statistics the method reads are there and
// have the right sizes.
func checkStats(cfg ir.Config, opts Options) error {
	act, err := UsesActivations(opts)
	if err != nil || !act {
		return err
	}
	if opts.Stats == nil {
		return fmt.Errorf("prune: method %s with activation importance needs calibration statistics (give calibration data)", opts.Method)
	}
	if opts.Method == "layers" {
		if n := len(opts.Stats.BlockInfluence); n != cfg.NumLayers {
			return fmt.Errorf("prune: layers: calibration has block influence for %d blocks, want %d", n, cfg.NumLayers)
		}
		return nil
	}
	var names []string
	switch opts.Method {
	case "structured-mlp":
		for i := 0; i < cfg.NumLayers; i++ {
			names = append(names, ir.LayerTensor(i, ir.FFNDown))
		}
	case "structured-heads":
		for i := 0; i < cfg.NumLayers; i++ {
			names = append(names, ir.LayerTensor(i, ir.AttnOutput))
		}
	default:
		names = LinearNames(cfg)
	}
	for _, n := range names {
		want := inFeatures(cfg, n)
		if got := len(opts.Stats.InputNorms[n]); got != want {
			return fmt.Errorf("prune: calibration statistics have %d input norms for %q, want %d", got, n, want)
		}
	}
	return nil
}

// inFeatures is the input width of a block linear.
func inFeatures(cfg ir.Config, name string) int {
	switch {
	case strings.HasSuffix(name, ir.FFNDown):
		return cfg.IntermediateSize
	case strings.HasSuffix(name, ir.AttnOutput):
		return cfg.NumHeads * cfg.HeadDim
	}
	return cfg.HiddenSize
}

// outFeatures is the output width of a block linear.
func outFeatures(cfg ir.Config, name string) int {
	switch {
	case strings.HasSuffix(name, ir.FFNGate), strings.HasSuffix(name, ir.FFNUp):
		return cfg.IntermediateSize
	case strings.HasSuffix(name, ir.AttnQ):
		return cfg.NumHeads * cfg.HeadDim
	case strings.HasSuffix(name, ir.AttnK), strings.HasSuffix(name, ir.AttnV):
		return cfg.NumKVHeads * cfg.HeadDim
	}
	return cfg.HiddenSize
}

// Run prunes g and returns the new graph and a report. g is not modified;
// unchanged tensors of the result share g's sources, changed ones hold
// their new bytes in memory (in the tensor's original dtype).
func Run(g *ir.Graph, opts Options) (*ir.Graph, *Report, error) {
	if err := checkOptions(g.Config, opts); err != nil {
		return nil, nil, err
	}
	if err := checkStats(g.Config, opts); err != nil {
		return nil, nil, err
	}
	for _, t := range g.Tensors {
		if t.Quant != nil {
			return nil, nil, fmt.Errorf("prune: tensor %q is already quantized (%s); prune before quantizing", t.Name, t.Quant.Scheme)
		}
	}
	act, _ := UsesActivations(opts)
	m := newModel(g)
	var err error
	switch opts.Method {
	case "magnitude", "wanda":
		err = m.unstructured(opts, act)
	case "nm":
		err = m.nm(opts, act)
	case "structured-mlp":
		err = m.structuredMLP(opts, act)
	case "structured-heads":
		err = m.structuredHeads(opts, act)
	case "layers":
		err = m.layers(opts, act)
	}
	if err != nil {
		return nil, nil, err
	}
	return m.finish(g, opts, act)
}

func (m *model) linear(name string) ([]float32, int, int, error) {
	rows, cols := outFeatures(m.cfg, name), inFeatures(m.cfg, name)
	w, err := m.get(name, rows, cols)
	return w, rows, cols, err
}

func scores(name string, w []float32, rows, cols int, act bool, stats *Stats) ([]float32, error) {
	if !act {
		return MagnitudeScores(w), nil
	}
	s, err := WandaScores(w, rows, cols, stats.InputNorms[name])
	if err != nil {
		return nil, fmt.Errorf("%w (tensor %q)", err, name)
	}
	return s, nil
}

func (m *model) unstructured(opts Options, act bool) error {
	scope := opts.Scope
	if opts.Method == "wanda" {
		scope = PerRow
	}
	names := LinearNames(m.cfg)
	var all [][]float32
	for _, name := range names {
		w, rows, cols, err := m.linear(name)
		if err != nil {
			return err
		}
		s, err := scores(name, w, rows, cols, act, opts.Stats)
		if err != nil {
			return err
		}
		m.touch(name)
		switch scope {
		case PerRow:
			m.report[name].Pruned = int64(MaskRows(w, s, rows, cols, opts.Sparsity))
		case PerTensor:
			m.report[name].Pruned = int64(MaskTensor(w, s, opts.Sparsity))
		case Global:
			all = append(all, s)
		default:
			return fmt.Errorf("prune: unknown scope %d", scope)
		}
	}
	if scope == Global {
		thr, atThr := GlobalThreshold(all, opts.Sparsity)
		for i, name := range names {
			w := m.data[name]
			n := 0
			for j, s := range all[i] {
				if s < thr || (s == thr && atThr > 0) {
					if s == thr {
						atThr--
					}
					w[j] = 0
					n++
				}
			}
			m.report[name].Pruned = int64(n)
		}
	}
	return nil
}

func (m *model) nm(opts Options, act bool) error {
	for _, name := range LinearNames(m.cfg) {
		w, rows, cols, err := m.linear(name)
		if err != nil {
			return err
		}
		s, err := scores(name, w, rows, cols, act, opts.Stats)
		if err != nil {
			return err
		}
		m.touch(name)
		n, err := MaskNM(w, s, rows, cols, opts.N, opts.M)
		if err != nil {
			return fmt.Errorf("%w (tensor %q)", err, name)
		}
		m.report[name].Pruned = int64(n)
	}
	return nil
}

func rowNorm(w []float32, cols, r int) float64 {
	s := 0.0
	for _, v := range w[r*cols : (r+1)*cols] {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

func colNorm(w []float32, rows, cols, c int) float64 {
	s := 0.0
	for r := 0; r < rows; r++ {
		v := float64(w[r*cols+c])
		s += v * v
	}
	return math.Sqrt(s)
}

// keepRows returns rows of a rows×cols matrix listed in keep (sorted).
func keepRows(w []float32, cols int, keep []int) []float32 {
	out := make([]float32, 0, len(keep)*cols)
	for _, r := range keep {
		out = append(out, w[r*cols:(r+1)*cols]...)
	}
	return out
}

// keepCols returns the columns listed in keep of a rows×cols matrix.
func keepCols(w []float32, rows, cols int, keep []int) []float32 {
	out := make([]float32, 0, rows*len(keep))
	for r := 0; r < rows; r++ {
		for _, c := range keep {
			out = append(out, w[r*cols+c])
		}
	}
	return out
}

// topK returns the indices of the k highest importances, sorted ascending
// (ties toward the lower index).
func topK(imp []float64, k int) []int {
	idx := make([]int, len(imp))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return imp[idx[a]] > imp[idx[b]] })
	keep := append([]int(nil), idx[:k]...)
	sort.Ints(keep)
	return keep
}

// mlpKept is the MLP width structured-mlp keeps: ⌊inter·(1−p)⌋ rounded
// down to a multiple of align, at least align (at most inter).
func mlpKept(inter int, p float64, align int) int {
	if align <= 0 {
		align = DefaultAlign
	}
	keep := int(float64(inter)*(1-p)) / align * align
	if keep < align {
		keep = min(align, inter)
	}
	return keep
}

// structuredMLP removes intermediate channels: rows of gate and up and the
// matching columns of down. Importance of channel j: with activations,
// ‖X_j‖·‖down[:, j]‖ (X = down's input, silu(gate)·up); by magnitude,
// ‖gate[j]‖·‖up[j]‖·‖down[:, j]‖ — an estimate of the channel's output size.
func (m *model) structuredMLP(opts Options, act bool) error {
	inter, d := m.cfg.IntermediateSize, m.cfg.HiddenSize
	keepN := mlpKept(inter, opts.Sparsity, opts.Align)
	for i := 0; i < m.cfg.NumLayers; i++ {
		gn, un, dn := ir.LayerTensor(i, ir.FFNGate), ir.LayerTensor(i, ir.FFNUp), ir.LayerTensor(i, ir.FFNDown)
		gw, err := m.get(gn, inter, d)
		if err != nil {
			return err
		}
		uw, err := m.get(un, inter, d)
		if err != nil {
			return err
		}
		dw, err := m.get(dn, d, inter)
		if err != nil {
			return err
		}
		imp := make([]float64, inter)
		for j := range imp {
			if act {
				imp[j] = float64(opts.Stats.InputNorms[dn][j]) * colNorm(dw, d, inter, j)
			} else {
				imp[j] = rowNorm(gw, d, j) * rowNorm(uw, d, j) * colNorm(dw, d, inter, j)
			}
		}
		keep := topK(imp, keepN)
		m.set(gn, keepRows(gw, d, keep), ir.Shape{int64(keepN), int64(d)})
		m.set(un, keepRows(uw, d, keep), ir.Shape{int64(keepN), int64(d)})
		m.set(dn, keepCols(dw, d, inter, keep), ir.Shape{int64(d), int64(keepN)})
	}
	m.cfg.IntermediateSize = keepN
	return nil
}

// headGroupsKept is the number of GQA groups structured-heads keeps:
// kv_heads − ⌊p·kv_heads⌋, at least 1; removing none is an error.
func headGroupsKept(cfg ir.Config, p float64) (int, error) {
	kvh := cfg.NumKVHeads
	keep := max(kvh-int(p*float64(kvh)), 1)
	if keep == kvh {
		return 0, fmt.Errorf("prune: sparsity %g removes no attention group (%d kv heads): raise it to at least %g", p, kvh, 1/float64(kvh))
	}
	return keep, nil
}

// structuredHeads removes whole GQA groups (one kv head and the query heads
// that share it): rows of q, k, v (and their biases) and the matching
// columns of the output projection. Importance of group g: with
// activations, Σ over its output-projection input channels c of
// ‖X_c‖·‖o[:, c]‖; by magnitude, (‖q_g‖+‖k_g‖+‖v_g‖)·‖o[:, g]‖ (Frobenius
// norms of the group's slices). Every layer loses the same number of groups
// (the config has one head count).
func (m *model) structuredHeads(opts Options, act bool) error {
	kvh, hd, d := m.cfg.NumKVHeads, m.cfg.HeadDim, m.cfg.HiddenSize
	rep := m.cfg.NumHeads / kvh
	keepG, err := headGroupsKept(m.cfg, opts.Sparsity)
	if err != nil {
		return err
	}
	qw := rep * hd // query rows per group
	qcols := m.cfg.NumHeads * hd
	for i := 0; i < m.cfg.NumLayers; i++ {
		L := func(k string) string { return ir.LayerTensor(i, k) }
		q, err := m.get(L(ir.AttnQ), qcols, d)
		if err != nil {
			return err
		}
		k, err := m.get(L(ir.AttnK), kvh*hd, d)
		if err != nil {
			return err
		}
		v, err := m.get(L(ir.AttnV), kvh*hd, d)
		if err != nil {
			return err
		}
		o, err := m.get(L(ir.AttnOutput), d, qcols)
		if err != nil {
			return err
		}
		imp := make([]float64, kvh)
		for g := 0; g < kvh; g++ {
			if act {
				x := opts.Stats.InputNorms[L(ir.AttnOutput)]
				for c := g * qw; c < (g+1)*qw; c++ {
					imp[g] += float64(x[c]) * colNorm(o, d, qcols, c)
				}
				continue
			}
			var qs, ks, vs, os float64
			for r := g * qw; r < (g+1)*qw; r++ {
				n := rowNorm(q, d, r)
				qs += n * n
			}
			for r := g * hd; r < (g+1)*hd; r++ {
				n1, n2 := rowNorm(k, d, r), rowNorm(v, d, r)
				ks += n1 * n1
				vs += n2 * n2
			}
			for c := g * qw; c < (g+1)*qw; c++ {
				n := colNorm(o, d, qcols, c)
				os += n * n
			}
			imp[g] = (math.Sqrt(qs) + math.Sqrt(ks) + math.Sqrt(vs)) * math.Sqrt(os)
		}
		groups := topK(imp, keepG)
		var qRows, kvRows []int
		for _, g := range groups {
			for r := g * qw; r < (g+1)*qw; r++ {
				qRows = append(qRows, r)
			}
			for r := g * hd; r < (g+1)*hd; r++ {
				kvRows = append(kvRows, r)
			}
		}
		m.set(L(ir.AttnQ), keepRows(q, d, qRows), ir.Shape{int64(len(qRows)), int64(d)})
		m.set(L(ir.AttnK), keepRows(k, d, kvRows), ir.Shape{int64(len(kvRows)), int64(d)})
		m.set(L(ir.AttnV), keepRows(v, d, kvRows), ir.Shape{int64(len(kvRows)), int64(d)})
		m.set(L(ir.AttnOutput), keepCols(o, d, qcols, qRows), ir.Shape{int64(d), int64(len(qRows))})
		if m.cfg.AttentionBias {
			for _, b := range []struct {
				name string
				rows []int
				n    int
			}{{L(ir.AttnQBias), qRows, qcols}, {L(ir.AttnKBias), kvRows, kvh * hd}, {L(ir.AttnVBias), kvRows, kvh * hd}} {
				bw, err := m.get(b.name, b.n)
				if err != nil {
					return err
				}
				m.set(b.name, keepRows(bw, 1, b.rows), ir.Shape{int64(len(b.rows))})
			}
		}
	}
	m.cfg.NumKVHeads = keepG
	m.cfg.NumHeads = keepG * rep
	return nil
}

// layersDropped is the number of blocks the layers method removes:
// ⌊p·layers⌋, at most layers−1; removing none is an error.
func layersDropped(cfg ir.Config, p float64) (int, error) {
	nl := cfg.NumLayers
	drop := int(p * float64(nl))
	if drop == 0 {
		return 0, fmt.Errorf("prune: sparsity %g removes no layer of %d: raise it to at least %g", p, nl, 1/float64(nl))
	}
	return min(drop, nl-1), nil
}

// blockIndex parses the block index of "blk.<i>.<rest>".
func blockIndex(name string) (int, string, bool) {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return 0, "", false
	}
	num, tail, ok := strings.Cut(rest, ".")
	if !ok || num == "" {
		return 0, "", false
	}
	i := 0
	for _, c := range num {
		if c < '0' || c > '9' || i > 1<<20 {
			return 0, "", false
		}
		i = i*10 + int(c-'0')
	}
	return i, tail, true
}

// layers removes the ⌊p·L⌋ blocks with the lowest importance and
// renumbers the rest. Importance: with activations, Stats.BlockInfluence;
// by magnitude, ‖attn_output‖·‖ffn_down‖ (Frobenius; how much the block
// can write into the residual stream). At least one block is kept.
func (m *model) layers(opts Options, act bool) error {
	nl := m.cfg.NumLayers
	drop, err := layersDropped(m.cfg, opts.Sparsity)
	if err != nil {
		return err
	}
	imp := make([]float64, nl)
	for i := range imp {
		if act {
			imp[i] = opts.Stats.BlockInfluence[i]
			continue
		}
		o, _, _, err := m.linear(ir.LayerTensor(i, ir.AttnOutput))
		if err != nil {
			return err
		}
		dn, _, _, err := m.linear(ir.LayerTensor(i, ir.FFNDown))
		if err != nil {
			return err
		}
		imp[i] = frob(o) * frob(dn)
	}
	keep := topK(imp, nl-drop)
	oldTensors, oldData := m.tensors, m.data
	m.tensors, m.data = map[string]*ir.Tensor{}, map[string][]float32{}
	var order []string
	for _, name := range m.order {
		li, tail, ok := blockIndex(name)
		if !ok {
			m.tensors[name] = oldTensors[name]
			order = append(order, name)
			continue
		}
		pos := sort.SearchInts(keep, li)
		if pos == len(keep) || keep[pos] != li {
			t := oldTensors[name]
			r := &TensorReport{Name: name, ShapeBefore: t.Shape, Removed: true}
			r.BytesBefore, _ = t.Shape.ByteSize(t.DType)
			r.Pruned, _ = t.Shape.NumElements()
			d, ok := oldData[name]
			if !ok {
				if d, err = t.Float32(); err != nil {
					return fmt.Errorf("prune: tensor %q: %w", name, err)
				}
			}
			r.NonZeroBefore = countNonZero(d)
			m.report[name] = r
			continue
		}
		newName := ir.LayerTensor(pos, tail)
		t := *oldTensors[name]
		t.Name = newName
		m.tensors[newName] = &t
		order = append(order, newName)
	}
	m.order = order
	m.cfg.NumLayers = nl - drop
	m.notes = append(m.notes, fmt.Sprintf("removed blocks %v of %d (importance %v); the others are renumbered in order", removedBlocks(keep, nl), nl, fmtImportance(imp)))
	return nil
}

func fmtImportance(imp []float64) string {
	parts := make([]string, len(imp))
	for i, v := range imp {
		parts[i] = fmt.Sprintf("%.4g", v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func removedBlocks(keep []int, nl int) []int {
	var out []int
	for i := 0; i < nl; i++ {
		if j := sort.SearchInts(keep, i); j == len(keep) || keep[j] != i {
			out = append(out, i)
		}
	}
	return out
}

func frob(w []float32) float64 {
	s := 0.0
	for _, v := range w {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// finish re-encodes changed tensors in their dtype, rebuilds the graph
// through the architecture family (so nodes, shapes and config agree) and
// fills the report.
func (m *model) finish(g *ir.Graph, opts Options, act bool) (*ir.Graph, *Report, error) {
	rep := &Report{Method: opts.Method, Notes: m.notes}
	for _, t := range g.Tensors {
		b, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			return nil, nil, fmt.Errorf("prune: tensor %q: %w", t.Name, err)
		}
		rep.BytesBefore += b
	}
	var tensors []*ir.Tensor
	for _, name := range m.order {
		t := m.tensors[name]
		if m.dirty[name] {
			d := m.data[name]
			enc, err := ir.EncodeFloat32(t.DType, d)
			if err != nil {
				return nil, nil, fmt.Errorf("prune: tensor %q: %w", name, err)
			}
			t = &ir.Tensor{Name: name, DType: t.DType, Shape: t.Shape, Source: &ir.BytesSource{Data: enc, Loc: "pruned"}}
			r := m.report[name]
			r.ShapeAfter = t.Shape
			r.NonZeroAfter = countNonZero(d)
			r.BytesAfter = int64(len(enc))
		}
		b, _ := t.Shape.ByteSize(t.DType)
		rep.BytesAfter += b
		tensors = append(tensors, t)
	}
	linear := map[string]bool{}
	for _, n := range LinearNames(g.Config) {
		linear[n] = true
		if t := g.Tensor(n); t != nil {
			e, _ := t.Shape.NumElements()
			rep.LinearElements += e
		}
	}
	for _, r := range m.report {
		before, _ := r.ShapeBefore.NumElements()
		if before > 0 {
			r.Sparsity = 1 - float64(r.NonZeroAfter)/float64(before)
		}
		if linear[r.Name] {
			rep.Pruned += r.Pruned
		}
		rep.Tensors = append(rep.Tensors, *r)
	}
	sort.Slice(rep.Tensors, func(i, j int) bool { return rep.Tensors[i].Name < rep.Tensors[j].Name })
	fam, err := arch.Lookup(m.cfg.Arch)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: %w", err)
	}
	ng, err := fam.Build(m.cfg, tensors)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: rebuilding the graph: %w", err)
	}
	if err := ng.Check(); err != nil {
		return nil, nil, fmt.Errorf("prune: the pruned graph is inconsistent: %w", err)
	}
	rep.Config = ng.Config
	if act {
		rep.Notes = append(rep.Notes, fmt.Sprintf("importance from calibration activations (%d tokens)", opts.Stats.Tokens))
	} else {
		rep.Notes = append(rep.Notes, "importance from weight magnitudes")
		if opts.Method != "magnitude" {
			rep.Notes = append(rep.Notes, "calibration activations usually rank much better (on ref29m, structured-mlp 25%: +226% perplexity by magnitudes, +43% by activations)")
		}
	}
	return ng, rep, nil
}
