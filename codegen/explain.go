package codegen

import (
	"fmt"
	"io"
	"strings"
)

// Explain writes a human-readable form of the lowering: options,
// requirements, buffers, kernels and each pass's steps (what `smelt codegen
// --explain` prints, and what the plan goldens pin).
func (l *Lowering) Explain(w io.Writer) error {
	p := l.Program
	var b strings.Builder
	o := l.Options
	fmt.Fprintf(&b, "options: context %d, max rows %d, f16 %v, subgroups %v, max binding %d, sample max k %d\n",
		o.ContextLength, o.MaxRows, o.F16, o.Subgroups, o.MaxBindingSize, o.SampleMaxK)
	r := l.Requirements
	fmt.Fprintf(&b, "requirements: features %v, limits %v\n", r.Features, r.Limits)
	fmt.Fprintf(&b, "memory: weights %s + kv cache %s + scratch %s = %s\n", mib(r.WeightBytes), mib(r.KVBytes), mib(r.ScratchBytes), mib(r.VRAM))
	fmt.Fprintf(&b, "buffers (%d):\n", len(p.Buffers))
	for _, bf := range p.Buffers {
		fmt.Fprintf(&b, "  %-12s %-10s %d\n", bf.Name, bf.Kind, bf.Size)
	}
	fmt.Fprintf(&b, "weights (%d tensors)\n", len(p.Weights))
	fmt.Fprintf(&b, "kernels (%d):\n", len(l.Kernels))
	for _, k := range l.Kernels {
		fmt.Fprintf(&b, "  %s workgroup %v\n", k.Name(), k.Workgroup())
	}
	for _, ps := range []struct {
		name string
		p    *Pass
	}{{"prefill", &p.Prefill}, {"decode", &p.Decode}, {"greedy", &p.Greedy}, {"sample", p.Sample}} {
		if ps.p == nil {
			continue
		}
		fmt.Fprintf(&b, "pass %s: rows %v, %d dispatches\n", ps.name, ps.p.Rows, len(ps.p.Steps))
		for _, s := range ps.p.Steps {
			var bs []string
			for _, bd := range s.Bindings {
				name := bd.Buffer
				if name == "" {
					name = "@" + bd.Tensor
				}
				if bd.Offset != 0 {
					name += fmt.Sprintf("+%d", bd.Offset)
				}
				bs = append(bs, fmt.Sprintf("%s[%d]", name, bd.Size))
			}
			fmt.Fprintf(&b, "  %-22s %s (%s) wg %v\n", s.Node, s.Kernel, strings.Join(bs, ", "), s.Workgroups)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
