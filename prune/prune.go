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

// Options selects a pruning method.
type Options struct {
	Method   string  // one of Methods
	Sparsity float64 // fraction removed (unstructured, structured)
	N, M     int     // N:M (keep N of every M)
	Scope    Scope   // unstructured comparison group (magnitude); wanda is always PerRow
	// Importance for structured methods: "magnitude" (weights only) or
	// "activations" (needs Stats). Empty means activations when Stats is
	// given, else magnitude.
	Importance string
	// Align rounds the kept MLP width down to a multiple of Align (default
	// 32, so INT4 groups of 32 still divide it); at least Align is kept.
	Align int
	Stats *Stats
}

// Stats are calibration statistics gathered by the reference executor.
type Stats struct {
	// InputNorms maps a linear weight's canonical name to ‖X_k‖₂, the L2
	// norm of its input channel k over all calibration tokens.
	InputNorms map[string][]float32
	// BlockInfluence[i] = mean over tokens of 1 − cos(h_in, h_out) of block
	// i (how much the block changes the residual stream; ShortGPT's score).
	BlockInfluence []float64
	// Tokens is the number of calibration tokens the statistics cover.
	Tokens int
}

// TensorReport is one row of the report.
type TensorReport struct {
	Name                    string   `json:"name"`
	ShapeBefore, ShapeAfter ir.Shape `json:"-"`
	Before                  []int64  `json:"shape_before"`
	After                   []int64  `json:"shape_after"`
	NonZeroBefore           int64    `json:"nonzero_before"`
	NonZeroAfter            int64    `json:"nonzero_after"`
	BytesBefore             int64    `json:"bytes_before"`
	BytesAfter              int64    `json:"bytes_after"`
	Removed                 bool     `json:"removed,omitempty"` // whole tensor dropped (layer pruning)
}

// Sparsity is the fraction of zeros of the tensor after pruning, relative
// to its size before (removed rows count as zeros).
func (r TensorReport) Sparsity() float64 {
	n, _ := r.ShapeBefore.NumElements()
	if n == 0 {
		return 0
	}
	return 1 - float64(r.NonZeroAfter)/float64(n)
}

// Report describes what a pruning run did.
type Report struct {
	Method      string         `json:"method"`
	Tensors     []TensorReport `json:"tensors"`
	BytesBefore int64          `json:"bytes_before"` // all weight bytes of the model
	BytesAfter  int64          `json:"bytes_after"`
	Config      ir.Config      `json:"config"` // after
	Notes       []string       `json:"notes,omitempty"`
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
		fmt.Fprintf(tw, "%s\t%v\t%s\t%.2f%%\t%d\t%d\t\n", t.Name, t.ShapeBefore, after, 100*t.Sparsity(), t.BytesBefore, t.BytesAfter)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%d\t%d\t\n", r.BytesBefore, r.BytesAfter)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

// linearKinds are the per-block linear weights pruning touches.
var linearKinds = []string{ir.AttnQ, ir.AttnK, ir.AttnV, ir.AttnOutput, ir.FFNGate, ir.FFNUp, ir.FFNDown}

// model is a mutable copy of the tensors of a graph.
type model struct {
	cfg     ir.Config
	order   []string
	tensors map[string]*ir.Tensor
	data    map[string][]float32 // decoded (and possibly modified) weights
	report  map[string]*TensorReport
}

func newModel(g *ir.Graph) *model {
	m := &model{cfg: g.Config, tensors: map[string]*ir.Tensor{}, data: map[string][]float32{}, report: map[string]*TensorReport{}}
	for _, t := range g.Tensors {
		m.order = append(m.order, t.Name)
		m.tensors[t.Name] = t
	}
	return m
}

// get decodes a tensor once.
func (m *model) get(name string) ([]float32, ir.Shape, error) {
	t := m.tensors[name]
	if t == nil {
		return nil, nil, fmt.Errorf("prune: tensor %q missing", name)
	}
	if t.Quant != nil {
		return nil, nil, fmt.Errorf("prune: tensor %q is already quantized (%s); prune before quantizing", name, t.Quant.Scheme)
	}
	if d, ok := m.data[name]; ok {
		return d, t.Shape, nil
	}
	d, err := t.Float32()
	if err != nil {
		return nil, nil, fmt.Errorf("prune: %w", err)
	}
	m.data[name] = d
	r := &TensorReport{Name: name, ShapeBefore: t.Shape, ShapeAfter: t.Shape}
	r.NonZeroBefore = countNonZero(d)
	r.BytesBefore, _ = t.Shape.ByteSize(t.DType)
	m.report[name] = r
	return d, t.Shape, nil
}

// set replaces a tensor's values (and shape).
func (m *model) set(name string, d []float32, shape ir.Shape) {
	m.data[name] = d
	t := *m.tensors[name]
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

// Run prunes g and returns the new graph and a report. g is not modified.
func Run(g *ir.Graph, opts Options) (*ir.Graph, *Report, error) {
	m := newModel(g)
	var err error
	switch opts.Method {
	case "magnitude":
		err = m.unstructured(opts, false)
	case "wanda":
		err = m.unstructured(opts, true)
	case "nm":
		err = m.nm(opts)
	case "structured-mlp":
		err = m.structuredMLP(opts)
	case "structured-heads":
		err = m.structuredHeads(opts)
	case "layers":
		err = m.layers(opts)
	default:
		err = fmt.Errorf("prune: unknown method %q (want %s)", opts.Method, strings.Join(Methods, ", "))
	}
	if err != nil {
		return nil, nil, err
	}
	return m.finish(g, opts.Method)
}

func (m *model) linearNames() []string {
	var names []string
	for i := 0; i < m.cfg.NumLayers; i++ {
		for _, k := range linearKinds {
			names = append(names, ir.LayerTensor(i, k))
		}
	}
	return names
}

func checkSparsity(p float64) error {
	if !(p > 0 && p < 1) {
		return fmt.Errorf("prune: sparsity %g: want in (0, 1)", p)
	}
	return nil
}

func (m *model) scores(name string, w []float32, shape ir.Shape, wanda bool, stats *Stats) ([]float32, error) {
	if !wanda {
		return MagnitudeScores(w), nil
	}
	if stats == nil || stats.InputNorms[name] == nil {
		return nil, fmt.Errorf("prune: wanda: no calibration activation norms for %q (run with calibration data)", name)
	}
	return WandaScores(w, int(shape[0]), int(shape[1]), stats.InputNorms[name])
}

func (m *model) unstructured(opts Options, wanda bool) error {
	if err := checkSparsity(opts.Sparsity); err != nil {
		return err
	}
	scope := opts.Scope
	if wanda {
		scope = PerRow
	}
	names := m.linearNames()
	all := make([][]float32, len(names))
	for i, name := range names {
		w, shape, err := m.get(name)
		if err != nil {
			return err
		}
		s, err := m.scores(name, w, shape, wanda, opts.Stats)
		if err != nil {
			return err
		}
		all[i] = s
		switch scope {
		case PerRow:
			MaskRows(w, s, int(shape[0]), int(shape[1]), opts.Sparsity)
		case PerTensor:
			MaskTensor(w, s, opts.Sparsity)
		}
	}
	if scope == Global {
		thr, atThr := GlobalThreshold(all, opts.Sparsity)
		for i, name := range names {
			w := m.data[name]
			for j, s := range all[i] {
				if s < thr {
					w[j] = 0
				} else if s == thr && atThr > 0 {
					w[j] = 0
					atThr--
				}
			}
		}
	}
	return nil
}

func (m *model) nm(opts Options) error {
	for _, name := range m.linearNames() {
		w, shape, err := m.get(name)
		if err != nil {
			return err
		}
		s, err := m.scores(name, w, shape, opts.Importance == "activations", opts.Stats)
		if err != nil {
			return err
		}
		if _, err := MaskNM(w, s, int(shape[0]), int(shape[1]), opts.N, opts.M); err != nil {
			return fmt.Errorf("%w (tensor %q)", err, name)
		}
	}
	return nil
}

func useActivations(opts Options) (bool, error) {
	switch opts.Importance {
	case "":
		return opts.Stats != nil, nil
	case "magnitude":
		return false, nil
	case "activations":
		if opts.Stats == nil {
			return false, fmt.Errorf("prune: importance activations needs calibration data")
		}
		return true, nil
	}
	return false, fmt.Errorf("prune: importance %q: want magnitude or activations", opts.Importance)
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

// structuredMLP removes intermediate channels: rows of gate and up and the
// matching columns of down. Importance of channel j: with activations,
// ‖X_j‖·‖down[:, j]‖ (X = down's input, silu(gate)·up); by magnitude,
// ‖gate[j]‖·‖up[j]‖·‖down[:, j]‖ — an estimate of the channel's output size.
func (m *model) structuredMLP(opts Options) error {
	if err := checkSparsity(opts.Sparsity); err != nil {
		return err
	}
	act, err := useActivations(opts)
	if err != nil {
		return err
	}
	align := opts.Align
	if align <= 0 {
		align = 32
	}
	inter, d := m.cfg.IntermediateSize, m.cfg.HiddenSize
	keepN := int(float64(inter)*(1-opts.Sparsity)) / align * align
	if keepN < align {
		keepN = min(align, inter)
	}
	for i := 0; i < m.cfg.NumLayers; i++ {
		gn, un, dn := ir.LayerTensor(i, ir.FFNGate), ir.LayerTensor(i, ir.FFNUp), ir.LayerTensor(i, ir.FFNDown)
		gw, _, err := m.get(gn)
		if err != nil {
			return err
		}
		uw, _, err := m.get(un)
		if err != nil {
			return err
		}
		dw, _, err := m.get(dn)
		if err != nil {
			return err
		}
		imp := make([]float64, inter)
		for j := range imp {
			if act {
				x := opts.Stats.InputNorms[dn]
				if len(x) != inter {
					return fmt.Errorf("prune: no calibration activation norms for %q", dn)
				}
				imp[j] = float64(x[j]) * colNorm(dw, d, inter, j)
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

// structuredHeads removes whole GQA groups (one kv head and the query heads
// that share it): rows of q, k, v (and their biases) and the matching
// columns of the output projection. Importance of group g: with
// activations, Σ over its output-projection input channels c of
// ‖X_c‖·‖o[:, c]‖; by magnitude, (‖q_g‖+‖k_g‖+‖v_g‖)·‖o[:, g]‖ (Frobenius
// norms of the group's slices). Every layer loses the same number of groups
// (the config has one head count).
func (m *model) structuredHeads(opts Options) error {
	if err := checkSparsity(opts.Sparsity); err != nil {
		return err
	}
	act, err := useActivations(opts)
	if err != nil {
		return err
	}
	kvh, hd, d := m.cfg.NumKVHeads, m.cfg.HeadDim, m.cfg.HiddenSize
	rep := m.cfg.NumHeads / kvh
	keepG := kvh - int(opts.Sparsity*float64(kvh))
	if keepG < 1 {
		keepG = 1
	}
	if keepG == kvh {
		return fmt.Errorf("prune: sparsity %g removes no attention group (%d kv heads): raise it to at least %g", opts.Sparsity, kvh, 1/float64(kvh))
	}
	qw := rep * hd // query rows per group
	for i := 0; i < m.cfg.NumLayers; i++ {
		L := func(k string) string { return ir.LayerTensor(i, k) }
		q, _, err := m.get(L(ir.AttnQ))
		if err != nil {
			return err
		}
		k, _, err := m.get(L(ir.AttnK))
		if err != nil {
			return err
		}
		v, _, err := m.get(L(ir.AttnV))
		if err != nil {
			return err
		}
		o, _, err := m.get(L(ir.AttnOutput))
		if err != nil {
			return err
		}
		qcols := m.cfg.NumHeads * hd
		imp := make([]float64, kvh)
		for g := 0; g < kvh; g++ {
			if act {
				x := opts.Stats.InputNorms[L(ir.AttnOutput)]
				if len(x) != qcols {
					return fmt.Errorf("prune: no calibration activation norms for %q", L(ir.AttnOutput))
				}
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
			}{{L(ir.AttnQBias), qRows}, {L(ir.AttnKBias), kvRows}, {L(ir.AttnVBias), kvRows}} {
				bw, _, err := m.get(b.name)
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

// layers removes the ⌊p·L⌋ blocks with the lowest importance and
// renumbers the rest. Importance: with activations, Stats.BlockInfluence;
// by magnitude, ‖attn_output‖·‖ffn_down‖ (Frobenius; how much the block
// can write into the residual stream). At least one block is kept.
func (m *model) layers(opts Options) error {
	if err := checkSparsity(opts.Sparsity); err != nil {
		return err
	}
	act, err := useActivations(opts)
	if err != nil {
		return err
	}
	nl := m.cfg.NumLayers
	drop := int(opts.Sparsity * float64(nl))
	if drop == 0 {
		return fmt.Errorf("prune: sparsity %g removes no layer of %d: raise it to at least %g", opts.Sparsity, nl, 1/float64(nl))
	}
	if drop >= nl {
		drop = nl - 1
	}
	imp := make([]float64, nl)
	for i := range imp {
		if act {
			if len(opts.Stats.BlockInfluence) != nl {
				return fmt.Errorf("prune: layers: calibration has block influence for %d blocks, want %d", len(opts.Stats.BlockInfluence), nl)
			}
			imp[i] = opts.Stats.BlockInfluence[i]
			continue
		}
		o, _, err := m.get(ir.LayerTensor(i, ir.AttnOutput))
		if err != nil {
			return err
		}
		dn, _, err := m.get(ir.LayerTensor(i, ir.FFNDown))
		if err != nil {
			return err
		}
		imp[i] = frob(o) * frob(dn)
	}
	keep := topK(imp, nl-drop)
	prefix := func(i int) string { return fmt.Sprintf("blk.%d.", i) }
	oldTensors := m.tensors
	m.tensors = map[string]*ir.Tensor{}
	newData := map[string][]float32{}
	var order []string
	for _, name := range m.order {
		if !strings.HasPrefix(name, "blk.") {
			m.tensors[name] = oldTensors[name]
			if d, ok := m.data[name]; ok {
				newData[name] = d
			}
			order = append(order, name)
			continue
		}
		var li int
		fmt.Sscanf(name, "blk.%d.", &li)
		pos := sort.SearchInts(keep, li)
		if pos == len(keep) || keep[pos] != li {
			t := oldTensors[name]
			r := m.report[name]
			if r == nil {
				r = &TensorReport{Name: name, ShapeBefore: t.Shape}
				r.BytesBefore, _ = t.Shape.ByteSize(t.DType)
				if d, err := t.Float32(); err == nil {
					r.NonZeroBefore = countNonZero(d)
				}
				m.report[name] = r
			}
			r.Removed, r.ShapeAfter, r.NonZeroAfter, r.BytesAfter = true, nil, 0, 0
			continue
		}
		newName := prefix(pos) + strings.TrimPrefix(name, prefix(li))
		t := *oldTensors[name]
		t.Name = newName
		m.tensors[newName] = &t
		if d, ok := m.data[name]; ok {
			newData[newName] = d
			if r := m.report[name]; r != nil {
				delete(m.report, name)
				r.Name = name + " → " + newName
				m.report[newName] = r
			}
		}
		order = append(order, newName)
	}
	m.order, m.data = order, newData
	m.cfg.NumLayers = nl - drop
	return nil
}

func frob(w []float32) float64 {
	s := 0.0
	for _, v := range w {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// finish re-encodes modified tensors in their dtype and rebuilds the graph.
func (m *model) finish(g *ir.Graph, method string) (*ir.Graph, *Report, error) {
	rep := &Report{Method: method}
	for _, t := range g.Tensors {
		b, _ := t.Shape.ByteSize(t.DType)
		rep.BytesBefore += b
	}
	var tensors []*ir.Tensor
	for _, name := range m.order {
		t := m.tensors[name]
		if d, ok := m.data[name]; ok {
			enc, err := ir.EncodeFloat32(t.DType, d)
			if err != nil {
				return nil, nil, fmt.Errorf("prune: tensor %q: %w", name, err)
			}
			t = &ir.Tensor{Name: name, DType: t.DType, Shape: t.Shape, Source: &ir.BytesSource{Data: enc, Loc: "pruned"}}
			if r := m.report[name]; r != nil {
				r.ShapeAfter = t.Shape
				r.NonZeroAfter = countNonZero(d)
				r.BytesAfter = int64(len(enc))
			}
		}
		b, _ := t.Shape.ByteSize(t.DType)
		rep.BytesAfter += b
		tensors = append(tensors, t)
	}
	for _, r := range m.report {
		r.Before, r.After = r.ShapeBefore, r.ShapeAfter
		rep.Tensors = append(rep.Tensors, *r)
	}
	sort.Slice(rep.Tensors, func(i, j int) bool { return rep.Tensors[i].Name < rep.Tensors[j].Name })
	fam, err := arch.Lookup(m.cfg.Arch)
	if err != nil {
		return nil, nil, err
	}
	ng, err := fam.Build(m.cfg, tensors)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: rebuilding the graph: %w", err)
	}
	rep.Config = ng.Config
	return ng, rep, nil
}
