package codegen

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// lowerEmbedding gathers rows of the token table (f32, f16, or packed
// int8/int4: package wgsl's Embedding reads the packed layout directly),
// split into row ranges when the table exceeds the binding limit.
func (b *builder) lowerEmbedding(n *ir.Node) error {
	t, err := constTensor(n, 1)
	if err != nil {
		return err
	}
	d, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	m, err := b.matrix(t)
	if err != nil {
		return fmt.Errorf("embedding table: %w", err)
	}
	if int64(m.cols) != d {
		return fmt.Errorf("table %q has rows of %d, want %d", t.Name, m.cols, d)
	}
	parts, err := b.splits(m, false)
	if err != nil {
		return err
	}
	ids, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	y := buf(b.alloc(n.Outputs[0], d))
	for _, p := range parts {
		k := wgsl.Embedding{Vocab: m.rows, Dim: int(d), Weights: m.weights}
		if len(parts) > 1 {
			k.RowStart, k.RowCount = p[0], p[1]
		}
		binds := []Bind{buf(bufStep), ids}
		for i, name := range m.names {
			wb, err := b.weight(name, int64(p[0])*m.rowB[i])
			if err != nil {
				return err
			}
			binds = append(binds, wb)
		}
		if err := b.emit(n.Name, k, append(binds, y)); err != nil {
			return err
		}
	}
	return nil
}

// lowerRoPE rotates its input in place; the inverse frequencies (with the
// config's rope scaling folded in, as the reference executor computes them)
// live in a const buffer shared by every node with the same values.
func (b *builder) lowerRoPE(n *ir.Node) error {
	w, err := width(n.Inputs[0])
	if err != nil {
		return err
	}
	hd, err := intAttr(n, "head_dim")
	if err != nil {
		return err
	}
	theta, err := floatAttr(n, "theta")
	if err != nil {
		return err
	}
	if hd <= 0 || int(w)%hd != 0 {
		return fmt.Errorf("width %d is not a multiple of head_dim %d", w, hd)
	}
	inv, err := exec.RopeInvFreq(hd, theta, b.c.RopeScaling)
	if err != nil {
		return err
	}
	if b.lastUse[n.Inputs[0].Name] != b.nodeIdx {
		return fmt.Errorf("input %q is used after the in-place rope", n.Inputs[0].Name)
	}
	x, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	b.alias(n.Outputs[0], n.Inputs[0])
	return b.emit(n.Name, wgsl.RoPE{Heads: int(w) / hd, HeadDim: hd}, []Bind{buf(bufStep), buf(b.constF32(inv)), x})
}

// constF32 returns the name of a const buffer holding v (little-endian
// f32), defining it on first use.
func (b *builder) constF32(v []float32) string {
	data := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
	}
	for _, bf := range b.prog.Buffers {
		if bf.Kind == KindConst && string(bf.Data) == string(data) {
			return bf.Name
		}
	}
	name := fmt.Sprintf("const%d", b.nconst)
	b.nconst++
	b.addBuffer(name, KindConst, int64(len(data)))
	b.prog.Buffers[b.buffers[name]].Data = data
	return name
}

// alias makes value out live in value in's buffer (in-place kernels).
func (b *builder) alias(out, in *ir.Value) {
	b.loc[out.Name] = b.loc[in.Name]
	b.actSizes[out.Name] = b.actSizes[in.Name]
}

func (b *builder) lowerAttention(n *ir.Node) error {
	heads, err := intAttr(n, "heads")
	if err != nil {
		return err
	}
	kvHeads, err := intAttr(n, "kv_heads")
	if err != nil {
		return err
	}
	hd, err := intAttr(n, "head_dim")
	if err != nil {
		return err
	}
	layer, err := intAttr(n, "layer")
	if err != nil {
		return err
	}
	if b.c.SlidingWindow > 0 {
		return fmt.Errorf("sliding-window attention is not supported by the attention kernel")
	}
	ctx := b.o.ContextLength
	kvBytes := 4 * int64(kvHeads) * int64(hd) * int64(ctx)
	kc, vc := fmt.Sprintf("kv.%d.k", layer), fmt.Sprintf("kv.%d.v", layer)
	b.addBuffer(kc, KindKV, kvBytes)
	b.addBuffer(vc, KindKV, kvBytes)
	q, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	kw := wgsl.KVWrite{KVHeads: kvHeads, HeadDim: hd, MaxCtx: ctx}
	for i, cache := range []string{kc, vc} {
		src, err := b.act(n.Inputs[1+i])
		if err != nil {
			return err
		}
		if err := b.emit(n.Name, kw, []Bind{buf(bufStep), src, buf(cache)}); err != nil {
			return err
		}
	}
	w, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	o := buf(b.alloc(n.Outputs[0], w))
	k := wgsl.Attention{Heads: heads, KVHeads: kvHeads, HeadDim: hd, MaxCtx: ctx}
	return b.emit(n.Name, k, []Bind{buf(bufStep), q, buf(kc), buf(vc), o})
}

func (b *builder) lowerSiLUMul(n *ir.Node) error {
	w, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	g, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	u, err := b.act(n.Inputs[1])
	if err != nil {
		return err
	}
	out := buf(b.alloc(n.Outputs[0], w))
	return b.emit(n.Name, wgsl.SiLUMul{F: int(w)}, []Bind{buf(bufStep), g, u, out})
}

// lowerAdd accumulates in place into the operand whose last use is this
// node (the residual stream in a Llama block; addition is commutative, so
// either operand will do). The output lives in that operand's buffer.
func (b *builder) lowerAdd(n *ir.Node) error {
	w, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	if len(n.Inputs) != 2 || n.Inputs[0] == nil || n.Inputs[1] == nil || n.Inputs[0].Tensor != nil || n.Inputs[1].Tensor != nil {
		return fmt.Errorf("want two activation inputs")
	}
	acc, x := n.Inputs[0], n.Inputs[1]
	if b.lastUse[acc.Name] != b.nodeIdx {
		acc, x = x, acc
	}
	if b.lastUse[acc.Name] != b.nodeIdx {
		return fmt.Errorf("both inputs (%q, %q) are used after the add, so neither can hold the sum in place", n.Inputs[0].Name, n.Inputs[1].Name)
	}
	ab, err := b.act(acc)
	if err != nil {
		return err
	}
	xb, err := b.act(x)
	if err != nil {
		return err
	}
	if ab.Buffer == xb.Buffer {
		return fmt.Errorf("both inputs live in buffer %q (x + x is not supported in place)", ab.Buffer)
	}
	b.alias(n.Outputs[0], acc)
	return b.emit(n.Name, wgsl.Add{D: int(w)}, []Bind{buf(bufStep), xb, ab})
}

// buildSampling adds the greedy pass (argmax of the logits into the token
// buffer) and the sample pass (temperature, top-k, top-p and the host's
// uniform draw, from the sample_params uniform).
func (b *builder) buildSampling() error {
	b.prog.Greedy.Rows = []int{1}
	if err := b.emitIn(&b.prog.Greedy, 1, "argmax", wgsl.Argmax{N: b.c.VocabSize}, []Bind{buf(bufLogits), buf(bufToken)}); err != nil {
		return fmt.Errorf("codegen: greedy pass: %w", err)
	}
	b.addBuffer(bufSample, KindUniform, wgsl.SamplingUniformBytes)
	b.prog.Inputs.SampleParams = bufSample
	b.prog.SampleMaxK = min(b.o.SampleMaxK, b.c.VocabSize)
	b.prog.Sample = &Pass{Rows: []int{1}}
	k := wgsl.Sample{N: b.c.VocabSize, MaxK: b.prog.SampleMaxK}
	if err := b.emitIn(b.prog.Sample, 1, "sample", k, []Bind{buf(bufSample), buf(bufLogits), buf(bufToken)}); err != nil {
		return fmt.Errorf("codegen: sample pass: %w", err)
	}
	return nil
}
