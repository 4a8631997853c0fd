package ir

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Print writes a stable, line-oriented text dump of g to w: the config as
// one JSON line, the graph inputs, one line per node in order, the graph
// outputs, and the tensor table in its order. The same graph always prints
// the same bytes (attributes are sorted by key), so dumps work as goldens
// and as pass-by-pass diffs (pipeline.Runner's Dump). Example:
//
//	config {"arch":"LlamaForCausalLM","family":"llama",...}
//	input %input_ids i32 [?]
//	%embed = Embedding(%input_ids, @token_embd.weight) f32 [? 64]
//	%blk.0.attn_norm = RMSNorm(%embed, @blk.0.attn_norm.weight) f32 [? 64] {eps=1e-05}
//	output %logits
//	tensor @token_embd.weight f32 [512 64] source=model.safetensors
//
// Values are written %name, constants @name. A node whose name differs from
// its single output's name, or that has several outputs, is annotated
// "# node NAME". Tensor lines add the stored dtype/shape when transforms
// change them ("from f16 [8 64]"), the transforms in order, and the
// quantization scheme.
func Print(w io.Writer, g *Graph) error {
	bw := bufio.NewWriter(w)
	cfg, err := json.Marshal(g.Config)
	if err != nil {
		return fmt.Errorf("ir: print config: %w", err)
	}
	fmt.Fprintf(bw, "config %s\n", cfg)
	for _, v := range g.Inputs {
		fmt.Fprintf(bw, "input %s %s\n", valueRef(v), valueType(v))
	}
	for _, n := range g.Nodes {
		printNode(bw, n)
	}
	for _, v := range g.Outputs {
		fmt.Fprintf(bw, "output %s\n", valueRef(v))
	}
	for _, t := range g.Tensors {
		printTensor(bw, t)
	}
	return bw.Flush()
}

func valueRef(v *Value) string {
	switch {
	case v == nil:
		return "<nil>"
	case v.Tensor != nil:
		return "@" + v.Tensor.Name
	}
	return "%" + v.Name
}

func valueType(v *Value) string {
	if v == nil {
		return "<nil>"
	}
	return v.DType.String() + " " + v.Shape.String()
}

func printNode(w io.Writer, n *Node) {
	outs := make([]string, len(n.Outputs))
	for i, o := range n.Outputs {
		outs[i] = valueRef(o)
	}
	ins := make([]string, len(n.Inputs))
	for i, v := range n.Inputs {
		ins[i] = valueRef(v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s = %s(%s)", strings.Join(outs, ", "), n.Op, strings.Join(ins, ", "))
	if len(n.Outputs) == 1 {
		fmt.Fprintf(&b, " %s", valueType(n.Outputs[0]))
	}
	if len(n.Attrs) > 0 {
		keys := make([]string, 0, len(n.Attrs))
		for k := range n.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(" {")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%v", k, n.Attrs[k]) // %v prints nested maps sorted
		}
		b.WriteByte('}')
	}
	if len(n.Outputs) != 1 || n.Outputs[0] == nil || n.Outputs[0].Name != n.Name {
		fmt.Fprintf(&b, " # node %s", n.Name)
	}
	fmt.Fprintln(w, b.String())
}

func printTensor(w io.Writer, t *Tensor) {
	if t == nil {
		fmt.Fprintln(w, "tensor <nil>")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tensor @%s %s %s", t.Name, t.DType, t.Shape)
	if t.SrcDType != Invalid && (t.SrcDType != t.DType || !t.SrcShape.Equal(t.Shape)) {
		fmt.Fprintf(&b, " from %s %s", t.SrcDType, t.SrcShape)
	}
	if t.Source != nil {
		fmt.Fprintf(&b, " source=%s", t.Source.Location())
	} else {
		b.WriteString(" source=none")
	}
	for _, tr := range t.Transforms {
		fmt.Fprintf(&b, " transform=%s", tr.Name())
	}
	if q := t.Quant; q != nil {
		fmt.Fprintf(&b, " quant=%s rows=%d cols=%d scales=@%s", q.Scheme, q.Rows, q.Cols, q.Scales)
		if q.Zeros != "" {
			fmt.Fprintf(&b, " zeros=@%s", q.Zeros)
		}
	}
	fmt.Fprintln(w, b.String())
}
