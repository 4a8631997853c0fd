package codegen

import (
	"fmt"
	"sort"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// Defaults of Options.
const (
	// DefaultMaxContext caps the context length taken from the model's
	// max_position_embeddings when Options.ContextLength is 0.
	DefaultMaxContext = 4096
	// DefaultMaxRows is the prefill chunk: activation buffers hold this many
	// token rows.
	DefaultMaxRows = 128
	// DefaultMaxBindingSize is WebGPU's default maxStorageBufferBindingSize.
	DefaultMaxBindingSize = wgsl.MaxBindingBytes
	// DefaultSampleMaxK is the largest top-k of the sample pass.
	DefaultSampleMaxK = 64
	// BindingAlignment is WebGPU's default minStorageBufferOffsetAlignment:
	// every binding offset Plan emits is a multiple of it.
	BindingAlignment = 256
)

// Options configure Plan.
type Options struct {
	// ContextLength is the KV cache capacity in tokens; 0 means the model's
	// max_position_embeddings capped at DefaultMaxContext.
	ContextLength int
	// MaxRows is the most tokens one prefill pass processes (0: DefaultMaxRows,
	// capped at the context length).
	MaxRows int
	// F16 selects f16-compute variants where they exist (matmul GEMV); the
	// bundle then requires the shader-f16 feature.
	F16 bool
	// Subgroups selects subgroup variants where they exist (none yet; the
	// option is recorded so that a bundle states what it was built for).
	Subgroups bool
	// MaxBindingSize is the storage-buffer binding limit the kernels must
	// respect (0: DefaultMaxBindingSize). Weights larger than it are split
	// into row ranges bound and dispatched separately.
	MaxBindingSize int64
	// SampleMaxK is the largest top-k the sample pass supports (0:
	// DefaultSampleMaxK).
	SampleMaxK int
}

func (o Options) withDefaults(c ir.Config) (Options, error) {
	if o.ContextLength == 0 {
		o.ContextLength = min(c.MaxPositionEmbeddings, DefaultMaxContext)
		if o.ContextLength <= 0 {
			o.ContextLength = DefaultMaxContext
		}
	}
	if o.ContextLength < 1 {
		return o, fmt.Errorf("codegen: context length %d, want >= 1", o.ContextLength)
	}
	if o.MaxRows == 0 {
		o.MaxRows = DefaultMaxRows
	}
	if o.MaxRows < 1 {
		return o, fmt.Errorf("codegen: max rows %d, want >= 1", o.MaxRows)
	}
	o.MaxRows = min(o.MaxRows, o.ContextLength)
	if o.MaxBindingSize == 0 {
		o.MaxBindingSize = DefaultMaxBindingSize
	}
	if o.MaxBindingSize < 1<<16 || o.MaxBindingSize%BindingAlignment != 0 {
		return o, fmt.Errorf("codegen: max binding size %d, want a multiple of %d of at least 64 KiB", o.MaxBindingSize, BindingAlignment)
	}
	if o.SampleMaxK == 0 {
		o.SampleMaxK = DefaultSampleMaxK
	}
	if o.SampleMaxK < 1 {
		return o, fmt.Errorf("codegen: sample max k %d, want >= 1", o.SampleMaxK)
	}
	return o, nil
}

// Lowering is the result of Plan: the dispatch program, the kernel
// instances it uses (by name, sorted), and the bundle's requirements.
type Lowering struct {
	Options      Options
	Program      *Program
	Kernels      []wgsl.Kernel // distinct instances, sorted by Name
	Requirements Requirements
}

// Requirements is what a device needs to run the program.
type Requirements struct {
	Features []string         // WebGPU features, sorted ("shader-f16")
	Limits   map[string]int64 // limits above WebGPU's defaults (none when empty)
	// VRAM is the estimated device memory: weights + KV cache +
	// activations + I/O buffers, in bytes.
	VRAM          int64
	WeightBytes   int64
	KVBytes       int64
	ScratchBytes  int64
	ContextLength int
}

// Kernel returns the kernel instance with the given name, or nil.
func (p *Lowering) Kernel(name string) wgsl.Kernel {
	i := sort.Search(len(p.Kernels), func(i int) bool { return p.Kernels[i].Name() >= name })
	if i < len(p.Kernels) && p.Kernels[i].Name() == name {
		return p.Kernels[i]
	}
	return nil
}

// Plan lowers graph g to kernel instances and a dispatch program. It is
// pure: it reads g's config, node list and tensor metadata (never tensor
// bytes) and opts.
//
// Lowering, per node (see lower.go): Embedding → embedding gather; RMSNorm
// → rmsnorm; Linear → matmul (GEMM in prefill, GEMV in decode; the logits
// head is a GEMV over the last row only, in both passes), split into row
// ranges when its weight exceeds the binding limit; RoPE → rope in place;
// Attention → KV-cache write of k and v, then attention (prefill or decode
// variant); SiLUMul → silu_mul; Add → add. After the pass, Greedy runs
// argmax over the logits and Sample runs top-k/top-p sampling.
//
// Buffers: every activation value gets a buffer from a pool; a buffer
// returns to the pool after the value's last use and is reused by a later
// value of the same byte size (greedy, in node order). Prefill and decode
// share the pool's buffers (they never run at the same time); a buffer's
// size is the largest any pass needs. A kernel never reads and writes the
// same buffer in one dispatch (WebGPU forbids it), except in-place kernels
// that bind it once as read_write.
//
// Weights stay in the shard buffers: bindings name the tensor, and the
// runtime binds the shard buffer at the tensor's offset (the shard layout
// aligns every tensor to 256 bytes, WebGPU's minStorageBufferOffsetAlignment).
func Plan(g *ir.Graph, opts Options) (*Lowering, error) {
	if g == nil {
		return nil, fmt.Errorf("codegen: nil graph")
	}
	o, err := opts.withDefaults(g.Config)
	if err != nil {
		return nil, err
	}
	c := g.Config
	if c.NumHeads <= 0 || c.NumKVHeads <= 0 || c.HeadDim <= 0 || c.HiddenSize <= 0 || c.VocabSize <= 0 {
		return nil, fmt.Errorf("codegen: config needs positive heads, kv heads, head dim, hidden size and vocab size")
	}
	// Activation buffers hold MaxRows rows of the widest value; fewer rows
	// per prefill pass keep each under the binding limit.
	var widest int64
	for _, n := range g.Nodes {
		for _, v := range n.Outputs {
			if v != nil && len(v.Shape) == 2 && (len(g.Outputs) == 0 || v != g.Outputs[0]) {
				widest = max(widest, v.Shape[1])
			}
		}
	}
	if widest > 0 && int64(o.MaxRows)*widest*4 > o.MaxBindingSize {
		o.MaxRows = int(max(1, o.MaxBindingSize/(widest*4)))
	}
	b := newBuilder(g, o)
	if err := b.build(); err != nil {
		return nil, err
	}
	return b.finish()
}

// rowBuckets returns the prefill row buckets: powers of 4 below maxRows,
// then maxRows.
func rowBuckets(maxRows int) []int {
	var rs []int
	for r := 1; r < maxRows; r *= 4 {
		rs = append(rs, r)
	}
	return append(rs, maxRows)
}
