package wgsl

import "fmt"

// Embedding gathers table rows for token ids (reference: ref.Embedding):
//
//	out[t, d] = w(ids[t], d)   for RowStart <= ids[t] < RowStart+RowCount
//	out[t, d] = 0              for ids[t] >= Vocab, by the instance whose range ends at Vocab
//
// other ids leave out row t untouched, so several instances over disjoint
// row ranges (a table over the binding limit) fill out together.
//
// Bindings, in order: 0 step (uniform Step); 1 ids u32 [T]; the weight
// bindings of Weights for table rows RowStart.. RowStart+RowCount-1 [., Dim];
// last out f32 [T, Dim] (read_write). One invocation per output element,
// 256 per workgroup: Dispatch(T) = ceil(T*Dim/256) workgroups (x then y).
type Embedding struct {
	Vocab, Dim int
	RowStart   int
	RowCount   int // 0 means Vocab - RowStart
	Weights    Weights
}

func (p Embedding) rows() int {
	if p.RowCount == 0 {
		return p.Vocab - p.RowStart
	}
	return p.RowCount
}

// Name implements Kernel.
func (p Embedding) Name() string {
	s := fmt.Sprintf("embedding_%v_v%d_d%d", p.Weights, p.Vocab, p.Dim)
	if p.RowStart != 0 || p.rows() != p.Vocab {
		s += fmt.Sprintf("_r%d+%d", p.RowStart, p.rows())
	}
	return s
}

// Validate implements Kernel.
func (p Embedding) Validate() error {
	if p.Vocab <= 0 || p.Dim <= 0 {
		return fmt.Errorf("wgsl: embedding: shape vocab=%d dim=%d, want > 0", p.Vocab, p.Dim)
	}
	if p.RowStart < 0 || p.RowCount < 0 || p.rows() <= 0 || p.RowStart+p.rows() > p.Vocab {
		return fmt.Errorf("wgsl: embedding: row range %d+%d outside [0, %d)", p.RowStart, p.RowCount, p.Vocab)
	}
	if err := p.Weights.validate("embedding", p.Dim); err != nil {
		return err
	}
	for _, b := range p.Bindings() {
		if b.Size.PerRow == 0 && b.Size.Fixed > MaxBindingBytes {
			return fmt.Errorf("wgsl: embedding: binding %q needs %d bytes, over the %d-byte binding limit: split the rows", b.Name, b.Size.Fixed, MaxBindingBytes)
		}
	}
	return nil
}

// Bindings implements Kernel.
func (p Embedding) Bindings() []Binding {
	bs := []Binding{stepBinding(), {Index: 1, Name: "ids", Access: ReadOnly, Size: Size{PerRow: 4}}}
	bs = append(bs, p.Weights.bindings(2, p.rows(), p.Dim)...)
	return append(bs, Binding{Index: len(bs), Name: "out", Access: ReadWrite, Size: Size{PerRow: 4 * int64(p.Dim)}})
}

// Requires implements Kernel.
func (p Embedding) Requires() Requirements { return Requirements{Invocations: 256} }

// Workgroup implements Kernel.
func (p Embedding) Workgroup() [3]int { return [3]int{256, 1, 1} }

// Dispatch implements Kernel.
func (p Embedding) Dispatch(rows int) ([3]int, error) { return grid(ceilDiv(rows*p.Dim, 256)) }

// Render implements Kernel.
func (p Embedding) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return render("embedding", merge(p.Weights.templateData(2, p.Dim), map[string]any{
		"Name": p.Name(), "Vocab": p.Vocab, "R0": p.RowStart, "RC": p.rows(),
		"ZeroOOV": p.RowStart+p.rows() == p.Vocab, "OutBind": len(p.Bindings()) - 1,
	}))
}
