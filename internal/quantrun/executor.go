package quantrun

import (
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

	// Forward is the time spent in Embed and RunBlock, excluding the
	// linear hook; Hook is the time spent in the hook (accumulating the
	// inputs' statistics).
	Forward, Hook time.Duration
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

// RunBlock runs block i on one sequence at positions 0 .. T-1, no cache.
func (e *Executor) RunBlock(i int, h []float32) error {
	t := time.Now()
	hook0 := e.Hook
	err := e.m.RunBlock(i, h, 0, nil)
	e.Forward += time.Since(t) - (e.Hook - hook0)
	return err
}

// Weight returns the current float32 weights of a tensor.
func (e *Executor) Weight(name string) []float32 { return e.m.Weight(name) }

// SetWeight replaces a tensor's weights.
func (e *Executor) SetWeight(name string, w []float32) error { return e.m.SetWeight(name, w) }

// SetLinearHook installs (nil: removes) the observer of every linear's
// input; the time spent in it is added to Hook.
func (e *Executor) SetLinearHook(f func(layer int, name string, x []float32, rows, cols int)) {
	if f == nil {
		e.m.SetLinearHook(nil)
		return
	}
	e.m.SetLinearHook(func(layer int, name string, x []float32, rows, cols int) {
		t := time.Now()
		f(layer, name, x, rows, cols)
		e.Hook += time.Since(t)
	})
}

// LoadModel loads g into the reference executor, dequantizing packed
// tensors from exactly their stored bytes (quantize.DequantizeTensor).
func LoadModel(g *ir.Graph) (*exec.Model, error) {
	return exec.Load(g, exec.Options{Dequantize: quantize.DequantizeTensor})
}
