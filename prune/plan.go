package prune

import (
	"fmt"
	"sort"

	"github.com/smeltml/smelt/internal/ir"
)

// Plan returns what Run(g, opts) will do, computed from g's config and the
// shapes and dtypes of its tensors alone: no weight is read and no
// calibration statistics are needed, so it works on a model of any size
// (`smelt prune --explain`). Shapes, bytes, the config after and the number
// of pruned elements are exactly Run's; what Plan cannot know is which
// rows, heads or blocks go (decided from the weights or statistics), the
// per-tensor split of a Global mask (Pruned and Sparsity -1 there) and the
// non-zero counts (-1: weights are assumed dense, so Sparsity =
// Pruned / elements). A plan of the layers method lists no tensors, only
// the bytes after.
func Plan(g *ir.Graph, opts Options) (*Report, error) {
	cfg := g.Config
	if err := checkOptions(cfg, opts); err != nil {
		return nil, err
	}
	rep := &Report{Method: opts.Method, Planned: true}
	for _, t := range g.Tensors {
		if t.Quant != nil {
			return nil, fmt.Errorf("prune: tensor %q is already quantized (%s); prune before quantizing", t.Name, t.Quant.Scheme)
		}
		b, err := t.Shape.ByteSize(t.DType)
		if err != nil {
			return nil, fmt.Errorf("prune: tensor %q: %w", t.Name, err)
		}
		rep.BytesBefore += b
	}
	linears := LinearNames(cfg)
	for _, n := range linears {
		t := g.Tensor(n)
		if t == nil {
			return nil, fmt.Errorf("prune: tensor %q missing", n)
		}
		if err := checkTensor(t, []int{outFeatures(cfg, n), inFeatures(cfg, n)}); err != nil {
			return nil, err
		}
		e, _ := t.Shape.NumElements()
		rep.LinearElements += e
	}
	// row adds a planned change of tensor name to shape after, with
	// pruned elements (-1: unknown per tensor).
	row := func(name string, after ir.Shape, pruned int64) {
		t := g.Tensor(name)
		r := TensorReport{Name: name, ShapeBefore: t.Shape, ShapeAfter: after, NonZeroBefore: -1, NonZeroAfter: -1, Pruned: pruned, Sparsity: -1}
		r.BytesBefore, _ = t.Shape.ByteSize(t.DType)
		r.BytesAfter, _ = after.ByteSize(t.DType)
		before, _ := t.Shape.NumElements()
		if pruned >= 0 && before > 0 {
			r.Sparsity = float64(pruned) / float64(before)
			rep.Pruned += pruned
		}
		rep.Tensors = append(rep.Tensors, r)
	}
	after := cfg
	switch opts.Method {
	case "magnitude", "wanda":
		scope := opts.Scope
		if opts.Method == "wanda" {
			scope = PerRow
		}
		for _, n := range linears {
			t := g.Tensor(n)
			rows, cols := t.Shape[0], t.Shape[1]
			switch scope {
			case PerRow:
				row(n, t.Shape, rows*int64(opts.Sparsity*float64(cols)))
			case PerTensor:
				row(n, t.Shape, int64(opts.Sparsity*float64(rows*cols)))
			case Global:
				row(n, t.Shape, -1)
			default:
				return nil, fmt.Errorf("prune: unknown scope %d", scope)
			}
		}
		if scope == Global {
			rep.Pruned = int64(opts.Sparsity * float64(rep.LinearElements))
		}
	case "nm":
		for _, n := range linears {
			t := g.Tensor(n)
			row(n, t.Shape, t.Shape[0]*t.Shape[1]/int64(opts.M)*int64(opts.M-opts.N))
		}
	case "structured-mlp":
		keep := int64(mlpKept(cfg.IntermediateSize, opts.Sparsity, opts.Align))
		inter, d := int64(cfg.IntermediateSize), int64(cfg.HiddenSize)
		for i := 0; i < cfg.NumLayers; i++ {
			row(ir.LayerTensor(i, ir.FFNDown), ir.Shape{d, keep}, d*(inter-keep))
			row(ir.LayerTensor(i, ir.FFNGate), ir.Shape{keep, d}, d*(inter-keep))
			row(ir.LayerTensor(i, ir.FFNUp), ir.Shape{keep, d}, d*(inter-keep))
		}
		after.IntermediateSize = int(keep)
	case "structured-heads":
		keepG, _ := headGroupsKept(cfg, opts.Sparsity)
		group := cfg.NumHeads / cfg.NumKVHeads
		q, kv := int64(keepG*group*cfg.HeadDim), int64(keepG*cfg.HeadDim)
		q0, kv0, d := int64(cfg.NumHeads*cfg.HeadDim), int64(cfg.NumKVHeads*cfg.HeadDim), int64(cfg.HiddenSize)
		for i := 0; i < cfg.NumLayers; i++ {
			L := func(k string) string { return ir.LayerTensor(i, k) }
			row(L(ir.AttnQ), ir.Shape{q, d}, (q0-q)*d)
			row(L(ir.AttnK), ir.Shape{kv, d}, (kv0-kv)*d)
			row(L(ir.AttnV), ir.Shape{kv, d}, (kv0-kv)*d)
			row(L(ir.AttnOutput), ir.Shape{d, q}, (q0-q)*d)
			if cfg.AttentionBias {
				for _, b := range []struct {
					name    string
					n0, n1  int64
					wantLen int
				}{{L(ir.AttnQBias), q0, q, int(q0)}, {L(ir.AttnKBias), kv0, kv, int(kv0)}, {L(ir.AttnVBias), kv0, kv, int(kv0)}} {
					t := g.Tensor(b.name)
					if t == nil {
						return nil, fmt.Errorf("prune: tensor %q missing", b.name)
					}
					if err := checkTensor(t, []int{b.wantLen}); err != nil {
						return nil, err
					}
					row(b.name, ir.Shape{b.n1}, b.n0-b.n1)
				}
			}
		}
		after.NumKVHeads = keepG
		after.NumHeads = keepG * group
	case "layers":
		drop, _ := layersDropped(cfg, opts.Sparsity)
		block := make([]int64, cfg.NumLayers)
		for _, t := range g.Tensors {
			if i, _, ok := blockIndex(t.Name); ok && i < cfg.NumLayers {
				b, _ := t.Shape.ByteSize(t.DType)
				block[i] += b
			}
		}
		sorted := append([]int64(nil), block...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
		if sorted[0] != sorted[len(sorted)-1] {
			return nil, fmt.Errorf("prune: layers: blocks differ in size (%d to %d bytes), so the bytes after depend on which go", sorted[0], sorted[len(sorted)-1])
		}
		per := rep.LinearElements / int64(cfg.NumLayers)
		rep.Pruned = int64(drop) * per
		rep.BytesAfter = rep.BytesBefore - int64(drop)*block[0]
		after.NumLayers = cfg.NumLayers - drop
		rep.Notes = append(rep.Notes, fmt.Sprintf("removes %d of %d blocks (%d bytes each); which ones is decided from the %s", drop, cfg.NumLayers, block[0], importanceSource(opts)))
	}
	if opts.Method != "layers" {
		rep.BytesAfter = rep.BytesBefore
		for _, r := range rep.Tensors {
			rep.BytesAfter += r.BytesAfter - r.BytesBefore
		}
	}
	sort.Slice(rep.Tensors, func(i, j int) bool { return rep.Tensors[i].Name < rep.Tensors[j].Name })
	rep.Config = after
	if act, _ := UsesActivations(opts); act {
		rep.Notes = append(rep.Notes, "needs calibration statistics (activation importance)")
	}
	return rep, nil
}

func importanceSource(opts Options) string {
	if act, _ := UsesActivations(opts); act {
		return "calibration statistics"
	}
	return "weight magnitudes"
}
