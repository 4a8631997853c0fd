// Package bundletest builds small, valid IR graphs with deterministic
// weights for tests of bundle writers and readers (package bundle, the
// CLI's sign/verify commands, the browser-side verification test).
package bundletest

import (
	"math/rand/v2"

	"github.com/smeltml/smelt/internal/ir"
)

// Graph returns a one-block Llama-shaped graph over hidden size 64 and a
// 32-token vocabulary: an f16 embedding, f32 norms and an int4-g32-asym
// packed attn_q weight with its f16 scales and u8 zero points (the layout
// of package quantize), with Embedding, RMSNorm, Linear and Add nodes.
// Weights are pseudo-random bytes from seed; extraBytes > 0 adds an u8
// tensor "zz.extra" of that many bytes (to make shards split or fill).
func Graph(seed uint64, extraBytes int64) *ir.Graph {
	rng := rand.New(rand.NewPCG(seed, 0x5e1))
	tensor := func(name string, d ir.DType, s ir.Shape) *ir.Tensor {
		n, err := s.ByteSize(d)
		if err != nil {
			panic(err) // fixed shapes above
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if d == ir.F16 { // keep halves finite: clear the top exponent bit
			for i := 1; i < len(b); i += 2 {
				b[i] &^= 0x40
			}
		}
		return &ir.Tensor{Name: name, DType: d, Shape: s, Source: &ir.BytesSource{Data: b, Loc: "bundletest"}}
	}
	const hidden, vocab = 64, 32
	q := ir.LayerTensor(0, ir.AttnQ)
	emb := tensor(ir.TokenEmbedding, ir.F16, ir.Shape{vocab, hidden})
	attnNorm := tensor(ir.LayerTensor(0, ir.AttnNorm), ir.F32, ir.Shape{hidden})
	wq := tensor(q, ir.U32, ir.Shape{hidden, hidden * 4 / 32})
	wq.Quant = &ir.QuantInfo{Scheme: "int4-g32-asym", Bits: 4, GroupSize: 32, ScaleType: ir.F16,
		Rows: hidden, Cols: hidden, Scales: q + ".scales", Zeros: q + ".zeros", Algorithm: "rtn"}
	scales := tensor(q+".scales", ir.F16, ir.Shape{hidden, hidden / 32})
	zeros := tensor(q+".zeros", ir.U8, ir.Shape{hidden, 1})
	outNorm := tensor(ir.OutputNorm, ir.F32, ir.Shape{hidden})
	g := &ir.Graph{
		Config: ir.Config{Arch: "LlamaForCausalLM", Family: "llama", HiddenSize: hidden, IntermediateSize: 128,
			NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 16, VocabSize: vocab, MaxPositionEmbeddings: 128,
			RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true, HiddenAct: "silu", BOSTokenID: 1, EOSTokenIDs: []int{2}},
		Tensors: []*ir.Tensor{emb, attnNorm, wq, scales, zeros, outNorm},
	}
	if extraBytes > 0 {
		g.Tensors = append(g.Tensors, tensor("zz.extra", ir.U8, ir.Shape{extraBytes}))
	}
	g.SortTensors()
	c := func(t *ir.Tensor) *ir.Value {
		return &ir.Value{Name: t.Name, DType: t.DType, Shape: t.Shape, Tensor: t}
	}
	ids := &ir.Value{Name: "ids", DType: ir.I32, Shape: ir.Shape{-1}}
	g.Inputs = []*ir.Value{ids}
	node := func(name, op string, attrs map[string]any, ins ...*ir.Value) *ir.Value {
		n := &ir.Node{Name: name, Op: op, Inputs: ins, Attrs: attrs}
		out := &ir.Value{Name: name + ".out", DType: ir.F32, Shape: ir.Shape{-1, hidden}, Def: n}
		n.Outputs = []*ir.Value{out}
		g.Nodes = append(g.Nodes, n)
		return out
	}
	x := node("embed", "Embedding", nil, ids, c(emb))
	h := node("blk.0.attn_norm", "RMSNorm", map[string]any{"eps": 1e-5}, x, c(attnNorm))
	y := node("blk.0.attn_q", "Linear", map[string]any{"heads": 4, "variant": "q4", "perm": []int{0, 1}}, h, c(wq))
	z := node("blk.0.residual", "Add", nil, x, y)
	out := node("output_norm", "RMSNorm", map[string]any{"eps": 1e-5}, z, c(outNorm))
	g.Outputs = []*ir.Value{out}
	return g
}
