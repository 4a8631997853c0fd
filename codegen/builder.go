package codegen

import (
	"fmt"
	"sort"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// Fixed buffer names of every program.
const (
	bufStep   = "step"
	bufIDs    = "ids"
	bufLogits = "logits"
	bufToken  = "token"
	bufSample = "sample_params"
)

// builder accumulates one program over the graph, pass by pass.
type builder struct {
	g    *ir.Graph
	o    Options
	c    ir.Config
	prog *Program

	kernels map[string]wgsl.Kernel
	buffers map[string]int // name -> index in prog.Buffers
	weights map[string]int64
	nconst  int

	// per pass
	pass     *Pass
	prefill  bool
	rows     int               // rows the pass's activation buffers hold
	loc      map[string]string // value name -> buffer holding it
	free     map[int64][]string
	inUse    map[string]bool
	nextAct  int
	lastUse  map[string]int // value name -> index of the last node reading it
	nodeIdx  int
	output   *ir.Value // the logits value
	actSizes map[string]int64
}

func newBuilder(g *ir.Graph, o Options) *builder {
	c := g.Config
	p := &Program{
		Version:       ProgramVersion,
		ContextLength: o.ContextLength,
		MaxRows:       o.MaxRows,
		VocabSize:     c.VocabSize,
		BOS:           c.BOSTokenID,
		EOS:           append([]int(nil), c.EOSTokenIDs...),
		Inputs: ProgramIO{
			IDs: bufIDs, Step: bufStep, Logits: bufLogits, Token: bufToken,
		},
	}
	return &builder{g: g, o: o, c: c, prog: p, kernels: map[string]wgsl.Kernel{},
		buffers: map[string]int{}, weights: map[string]int64{}, actSizes: map[string]int64{}}
}

// addBuffer defines a program buffer, or grows an existing one.
func (b *builder) addBuffer(name, kind string, size int64) {
	size = (size + 3) &^ 3
	if i, ok := b.buffers[name]; ok {
		if b.prog.Buffers[i].Size < size {
			b.prog.Buffers[i].Size = size
		}
		return
	}
	b.buffers[name] = len(b.prog.Buffers)
	b.prog.Buffers = append(b.prog.Buffers, Buffer{Name: name, Kind: kind, Size: size})
}

func (b *builder) build() error {
	if len(b.g.Outputs) != 1 {
		return fmt.Errorf("codegen: graph has %d outputs, want 1 (logits)", len(b.g.Outputs))
	}
	b.output = b.g.Outputs[0]
	if b.output.Def == nil || b.output.Def.Op != "Linear" {
		return fmt.Errorf("codegen: graph output %q is not produced by a Linear node (the logits head)", b.output.Name)
	}
	if len(b.g.Inputs) != 1 || b.g.Inputs[0].DType != ir.I32 {
		return fmt.Errorf("codegen: graph needs one i32 input (token ids), has %d inputs", len(b.g.Inputs))
	}
	b.addBuffer(bufStep, KindUniform, wgsl.StepUniformBytes)
	b.addBuffer(bufIDs, KindInput, 4*int64(b.o.MaxRows))
	b.addBuffer(bufLogits, KindOutput, 4*int64(b.c.VocabSize))
	b.addBuffer(bufToken, KindOutput, 16)

	b.lastUse = map[string]int{}
	for i, n := range b.g.Nodes {
		for _, in := range n.Inputs {
			if in != nil && in.Tensor == nil {
				b.lastUse[in.Name] = i
			}
		}
	}
	for _, pre := range []bool{true, false} {
		if err := b.buildPass(pre); err != nil {
			return err
		}
	}
	if err := b.buildSampling(); err != nil {
		return err
	}
	return nil
}

func (b *builder) buildPass(prefill bool) error {
	b.prefill = prefill
	b.loc = map[string]string{}
	b.free = map[int64][]string{}
	b.inUse = map[string]bool{}
	b.nextAct = 0
	if prefill {
		b.pass = &b.prog.Prefill
		b.pass.Rows = rowBuckets(b.o.MaxRows)
		b.rows = b.o.MaxRows
	} else {
		b.pass = &b.prog.Decode
		b.pass.Rows = []int{1}
		b.rows = 1
	}
	b.loc[b.g.Inputs[0].Name] = bufIDs
	for i, n := range b.g.Nodes {
		b.nodeIdx = i
		if err := b.lower(n); err != nil {
			return fmt.Errorf("codegen: node %q (%s): %w", n.Name, n.Op, err)
		}
		for _, in := range n.Inputs {
			if in != nil && in.Tensor == nil && b.lastUse[in.Name] == i {
				b.release(in.Name)
			}
		}
	}
	return nil
}

// alloc gives value v (width elements of f32 per row) a buffer for the
// pass's rows, reusing a free one of the same size.
func (b *builder) alloc(v *ir.Value, width int64) string {
	size := 4 * width * int64(b.rows)
	var name string
	if l := b.free[size]; len(l) > 0 {
		name = l[len(l)-1]
		b.free[size] = l[:len(l)-1]
	} else {
		// Reuse the names of the other pass's buffers, in order, so that
		// prefill and decode share memory.
		name = fmt.Sprintf("act%d", b.nextAct)
		for b.inUse[name] {
			b.nextAct++
			name = fmt.Sprintf("act%d", b.nextAct)
		}
		b.nextAct++
		b.addBuffer(name, KindActivation, size)
	}
	b.inUse[name] = true
	b.loc[v.Name] = name
	b.actSizes[v.Name] = size
	return name
}

// release returns the buffer of value name to the pool.
func (b *builder) release(name string) {
	buf, ok := b.loc[name]
	if !ok || buf == bufIDs || !b.inUse[buf] {
		return
	}
	for other, ob := range b.loc { // an in-place op may have aliased it
		if ob == buf && other != name && b.lastUse[other] > b.nodeIdx {
			return
		}
	}
	delete(b.inUse, buf)
	size := b.actSizes[name]
	b.free[size] = append(b.free[size], buf)
}

// act returns the binding of value v's buffer.
func (b *builder) act(v *ir.Value) (Bind, error) {
	buf, ok := b.loc[v.Name]
	if !ok {
		return Bind{}, fmt.Errorf("value %q has no buffer (not computed yet)", v.Name)
	}
	return Bind{Buffer: buf}, nil
}

// buf returns the binding of a named program buffer.
func buf(name string) Bind { return Bind{Buffer: name} }

// weight returns the binding of stored tensor name at byte offset off.
func (b *builder) weight(name string, off int64) (Bind, error) {
	t := b.g.Tensor(name)
	if t == nil {
		return Bind{}, fmt.Errorf("tensor %q missing", name)
	}
	n, err := t.Shape.ByteSize(t.DType)
	if err != nil {
		return Bind{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	b.weights[name] = n
	return Bind{Tensor: name, Offset: off}, nil
}

// emit appends a dispatch of kernel k with binds (one per kernel binding,
// sizes filled from the kernel's declared sizes) to the current pass.
func (b *builder) emit(node string, k wgsl.Kernel, binds []Bind) error {
	return b.emitIn(b.pass, b.rows, node, k, binds)
}

func (b *builder) emitIn(pass *Pass, rows int, node string, k wgsl.Kernel, binds []Bind) error {
	if err := k.Validate(); err != nil {
		return err
	}
	decl := k.Bindings()
	if len(decl) != len(binds) {
		return fmt.Errorf("kernel %s has %d bindings, lowering gave %d (internal error)", k.Name(), len(decl), len(binds))
	}
	out := make([]Bind, len(binds))
	for i, bd := range binds {
		if decl[i].Index != i {
			return fmt.Errorf("kernel %s: binding %d has index %d (internal error)", k.Name(), i, decl[i].Index)
		}
		size := decl[i].Size.Bytes(rows)
		if size == 0 {
			size = 4
		}
		bd.Size = size
		if bd.Offset%BindingAlignment != 0 {
			return fmt.Errorf("kernel %s binding %q: offset %d is not a multiple of %d", k.Name(), decl[i].Name, bd.Offset, BindingAlignment)
		}
		if size > b.o.MaxBindingSize {
			return fmt.Errorf("kernel %s binding %q: %d bytes exceed the binding limit %d", k.Name(), decl[i].Name, size, b.o.MaxBindingSize)
		}
		switch {
		case bd.Buffer != "":
			bi, ok := b.buffers[bd.Buffer]
			if !ok {
				return fmt.Errorf("kernel %s binding %q: buffer %q undefined (internal error)", k.Name(), decl[i].Name, bd.Buffer)
			}
			if have := b.prog.Buffers[bi].Size; bd.Offset+size > have {
				return fmt.Errorf("kernel %s binding %q: needs %d bytes at %d of buffer %q of %d bytes (internal error)", k.Name(), decl[i].Name, size, bd.Offset, bd.Buffer, have)
			}
		case bd.Tensor != "":
			have := (b.weights[bd.Tensor] + 3) &^ 3
			if bd.Offset+size > have {
				return fmt.Errorf("kernel %s binding %q: needs %d bytes at %d of tensor %q of %d bytes", k.Name(), decl[i].Name, size, bd.Offset, bd.Tensor, have)
			}
		}
		out[i] = bd
	}
	wg := make([][3]int, len(pass.Rows))
	for i, r := range pass.Rows {
		w, err := k.Dispatch(r)
		if err != nil {
			return err
		}
		wg[i] = w
	}
	if prev, ok := b.kernels[k.Name()]; ok && fmt.Sprintf("%#v", prev) != fmt.Sprintf("%#v", k) {
		return fmt.Errorf("kernel name %s names two different instances (internal error)", k.Name())
	}
	b.kernels[k.Name()] = k
	pass.Steps = append(pass.Steps, Step{Kernel: k.Name(), Bindings: out, Workgroups: wg, Node: node})
	return nil
}

func (b *builder) finish() (*Lowering, error) {
	p := b.prog
	names := make([]string, 0, len(b.weights))
	for n := range b.weights {
		names = append(names, n)
	}
	sort.Strings(names)
	var wbytes int64
	for _, n := range names {
		p.Weights = append(p.Weights, WeightBind{Tensor: n, NBytes: b.weights[n]})
		wbytes += b.weights[n]
	}
	ks := make([]wgsl.Kernel, 0, len(b.kernels))
	feats := map[string]bool{}
	maxInv, maxWS := 0, 0
	for _, k := range b.kernels {
		ks = append(ks, k)
		r := k.Requires()
		for _, f := range r.Features {
			feats[f] = true
		}
		maxInv = max(maxInv, r.Invocations)
		maxWS = max(maxWS, r.WorkgroupStorage)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name() < ks[j].Name() })
	req := Requirements{ContextLength: b.o.ContextLength, WeightBytes: wbytes, Limits: map[string]int64{}}
	for f := range feats {
		req.Features = append(req.Features, f)
	}
	sort.Strings(req.Features)
	if maxInv > 256 {
		req.Limits["maxComputeInvocationsPerWorkgroup"] = int64(maxInv)
	}
	if maxWS > 16384 {
		req.Limits["maxComputeWorkgroupStorageSize"] = int64(maxWS)
	}
	if b.o.MaxBindingSize > DefaultMaxBindingSize {
		req.Limits["maxStorageBufferBindingSize"] = b.o.MaxBindingSize
	}
	for _, buf := range p.Buffers {
		if buf.Kind == KindKV {
			req.KVBytes += buf.Size
		} else {
			req.ScratchBytes += buf.Size
		}
	}
	req.VRAM = req.WeightBytes + req.KVBytes + req.ScratchBytes
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w (internal error)", err)
	}
	return &Lowering{Options: b.o, Program: p, Kernels: ks, Requirements: req}, nil
}
