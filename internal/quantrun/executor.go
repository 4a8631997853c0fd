package quantrun

import (
	"sync"
	"time"

	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/quantize"
)

// Executor adapts an *exec.Model to quantize.Executor and measures where
// calibration spends its time. It is not safe for concurrent use (neither
// is calibration).
type Executor struct {
	m *exec.Model

	// Forward is the time spent in Embed and RunStage.
	Forward time.Duration
}

var _ quantize.Executor = (*Executor)(nil)

// NewExecutor wraps m.
func NewExecutor(m *exec.Model) *Executor { return &Executor{m: m} }

// Config returns the model's configuration.
func (e *Executor) Config() ir.Config { return e.m.Config }

// Embed returns the embeddings of ids.
func (e *Executor) Embed(ids []int) ([]float32, error) {
	t := time.Now()
	defer func() { e.Forward += time.Since(t) }()
	return e.m.Embed(ids)
}

// RunStage runs stage s of block i on one sequence (exec.Model.RunStage).
func (e *Executor) RunStage(i, s int, h, in, out []float32) error {
	t := time.Now()
	defer func() { e.Forward += time.Since(t) }()
	return e.m.RunStage(i, s, h, in, out)
}

// Weight returns the current float32 weights of a tensor.
func (e *Executor) Weight(name string) []float32 { return e.m.Weight(name) }

// SetWeight replaces a tensor's weights.
func (e *Executor) SetWeight(name string, w []float32) error { return e.m.SetWeight(name, w) }

// Gram is a quantize.GramFunc on the executor's linear kernel (the SIMD
// kernels under GOEXPERIMENT=simd, else gonum's Sgemm): with xᵀ the n×rows
// transpose of x, the upper triangle of xᵀx is computed in row panels of
// gramPanel, panel [i0, i1) as exec.Linear(xᵀ[i0:i1], xᵀ[i0:n]) — about
// half of the full product's work.
func Gram(g, x []float32, rows, n int) {
	pxt := gramBuf(n * rows)
	defer gramPool.Put(pxt)
	xt := *pxt
	for r := 0; r < rows; r++ {
		for i, v := range x[r*n : (r+1)*n] {
			xt[i*rows+r] = v
		}
	}
	ptmp := gramBuf(min(gramPanel, n) * n)
	defer gramPool.Put(ptmp)
	tmp := *ptmp
	for i0 := 0; i0 < n; i0 += gramPanel {
		i1 := min(i0+gramPanel, n)
		w := n - i0
		exec.Linear(tmp, xt[i0*rows:i1*rows], i1-i0, xt[i0*rows:], w, rows, nil)
		for i := i0; i < i1; i++ {
			copy(g[i*n+i0:(i+1)*n], tmp[(i-i0)*w:(i-i0+1)*w])
		}
	}
}

// gramPool recycles Gram's scratch (calibration calls it once per sequence
// and linear group).
var gramPool sync.Pool

func gramBuf(n int) *[]float32 {
	if b, ok := gramPool.Get().(*[]float32); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]float32, n)
	return &b
}

// gramPanel is the number of Gram rows per Linear call.
const gramPanel = 128

// LoadModel loads g into the reference executor, dequantizing packed
// tensors from exactly their stored bytes (quantize.DequantizeTensor).
func LoadModel(g *ir.Graph) (*exec.Model, error) {
	return exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
}
