package codegen

import (
	"fmt"

	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
)

func (b *builder) lowerEmbedding(n *ir.Node) error {
	t, err := constTensor(n, 1)
	if err != nil {
		return err
	}
	d, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	dt, err := floatStorage(t)
	if err != nil {
		return fmt.Errorf("embedding table: %w (quantized tables wait for package wgsl's embedding kernel)", err)
	}
	if len(t.Shape) != 2 || t.Shape[1] != d {
		return fmt.Errorf("table %q has shape %v, want [vocab, %d]", t.Name, t.Shape, d)
	}
	m, err := b.matrix(t)
	if err != nil {
		return err
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
		k := embedKernel{V: int(t.Shape[0]), D: int(d), Table: dt}
		if len(parts) > 1 {
			k.R0, k.RC = p[0], p[1]
		}
		wb, err := b.weight(t.Name, int64(p[0])*m.rowB[0])
		if err != nil {
			return err
		}
		if err := b.emit(n.Name, k, []Bind{buf(bufStep), ids, wb, y}); err != nil {
			return err
		}
	}
	return nil
}

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
	// In place: the output lives in the input's buffer.
	b.loc[n.Outputs[0].Name] = x.Buffer
	b.actSizes[n.Outputs[0].Name] = b.actSizes[n.Inputs[0].Name]
	return b.emit(n.Name, ropeKernel{Heads: int(w) / hd, HeadDim: hd, InvFreq: inv}, []Bind{buf(bufStep), x})
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
	kw := kvWriteKernel{KVHeads: kvHeads, HeadDim: hd, Ctx: ctx}
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
	k := attnKernel{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Ctx: ctx}
	return b.emit(n.Name, k, []Bind{buf(bufStep), q, buf(kc), buf(vc), o})
}

func (b *builder) lowerElementwise(n *ir.Node, op string) error {
	w, err := width(n.Outputs[0])
	if err != nil {
		return err
	}
	x, err := b.act(n.Inputs[0])
	if err != nil {
		return err
	}
	y, err := b.act(n.Inputs[1])
	if err != nil {
		return err
	}
	out := buf(b.alloc(n.Outputs[0], w))
	return b.emit(n.Name, eltKernel{Op: op, W: int(w)}, []Bind{buf(bufStep), x, y, out})
}

func (b *builder) lowerSiLUMul(n *ir.Node) error { return b.lowerElementwise(n, "silu_mul") }

func (b *builder) lowerAdd(n *ir.Node) error { return b.lowerElementwise(n, "add") }

// buildSampling adds the greedy pass (argmax of the logits into the token
// buffer). The top-k/top-p sample pass waits for package wgsl's kernel.
func (b *builder) buildSampling() error {
	b.prog.Greedy.Rows = []int{1}
	k := argmaxKernel{N: b.c.VocabSize}
	if err := b.emitIn(&b.prog.Greedy, 1, "argmax", k, []Bind{buf(bufLogits), buf(bufToken)}); err != nil {
		return fmt.Errorf("codegen: greedy pass: %w", err)
	}
	return nil
}
