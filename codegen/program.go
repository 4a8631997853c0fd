package codegen

import (
	"encoding/json"
	"fmt"

	"github.com/smeltml/smelt/wgsl"
)

// ProgramVersion is the version of the program format this package writes
// and the runtime (runtime/smelt.js) reads.
const ProgramVersion = 2

// Program is the dispatch program of a bundle, stored as manifest.program.
// The runtime executes it without making decisions: it allocates Buffers,
// binds weights from the shards, and runs the steps of Prefill or Decode,
// then those of Sample (see doc.go for the execution model and a worked
// example).
type Program struct {
	Version       int          `json:"version"`        // ProgramVersion
	ContextLength int          `json:"context_length"` // KV cache capacity in tokens
	MaxRows       int          `json:"max_rows"`       // most tokens one prefill pass takes; longer prompts run in chunks
	VocabSize     int          `json:"vocab_size"`
	BOS           int          `json:"bos"`           // id prepended to prompts, or -1
	EOS           []int        `json:"eos,omitempty"` // generation stops at any of them
	Buffers       []Buffer     `json:"buffers"`       // every non-weight GPU buffer, by name
	Prefill       Pass         `json:"prefill"`       // a pass over 1..MaxRows tokens
	Decode        Pass         `json:"decode"`        // a pass over exactly one token
	Greedy        Pass         `json:"greedy"`        // logits -> token (argmax)
	Sample        *Pass        `json:"sample,omitempty"`
	SampleMaxK    int          `json:"sample_max_k,omitempty"` // largest top-k the sample pass supports
	Inputs        ProgramIO    `json:"io"`
	Weights       []WeightBind `json:"weights"` // every tensor the passes bind, with the bytes they need
}

// ProgramIO names the buffers the runtime writes and reads around a pass.
type ProgramIO struct {
	IDs          string `json:"ids"`           // u32 token ids [MaxRows], written before a pass
	Step         string `json:"step"`          // uniform Step {rows, pos0, 0, 0}, written before a pass
	Logits       string `json:"logits"`        // f32 [VocabSize]: logits of the pass's last token
	Token        string `json:"token"`         // u32 [4]: the sampled token id at word 0
	SampleParams string `json:"sample_params"` // uniform of the sample pass (see doc.go), or ""
}

// Buffer is a GPU buffer the runtime creates with the usages its Kind
// implies. Size is in bytes (a multiple of 4).
type Buffer struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // one of the BufferKind constants
	Size int64  `json:"size"`
	// Data is the content of a KindConst buffer (Size bytes, little-endian;
	// base64 in JSON), written once when the bundle loads.
	Data []byte `json:"data,omitempty"`
}

// Buffer kinds.
const (
	KindUniform    = "uniform"    // UNIFORM | COPY_DST
	KindInput      = "input"      // STORAGE | COPY_DST (token ids)
	KindActivation = "activation" // STORAGE (reused between values with disjoint lifetimes)
	KindKV         = "kv"         // STORAGE (KV cache of one layer, zero-initialized)
	KindOutput     = "output"     // STORAGE | COPY_SRC (logits, token)
	KindConst      = "const"      // STORAGE | COPY_DST, holding Data (RoPE inverse frequencies)
)

// WeightBind lists a stored tensor the program binds. The runtime finds the
// tensor's bytes through manifest.tensors (shard, offset) and binds them in
// place in the shard's GPU buffer (offsets are multiples of 256, the shard
// layout's alignment); a tensor split across shards is assembled in its own
// buffer.
type WeightBind struct {
	Tensor string `json:"tensor"`
	NBytes int64  `json:"nbytes"`
}

// Pass is a list of steps run in one command buffer. Rows lists the row
// buckets the pass was planned for, ascending; a pass over T tokens uses
// the smallest bucket >= T, and each dispatch step's Workgroups holds one
// entry per bucket (kernels skip rows >= step.rows).
type Pass struct {
	Rows  []int  `json:"rows"`
	Steps []Step `json:"steps"`
}

// Step is one dispatch of a kernel over bindings.
type Step struct {
	Kernel     string   `json:"kernel"`     // manifest.kernels[].name
	Bindings   []Bind   `json:"bindings"`   // in binding order (group 0, binding i)
	Workgroups [][3]int `json:"workgroups"` // per row bucket of the pass
	Node       string   `json:"node"`       // graph node it implements (for --explain and errors)
}

// Bind is one binding of a step: a range of a program buffer, or of a
// stored tensor. Size 0 means "to the end" (never emitted by Plan).
type Bind struct {
	Buffer string `json:"buffer,omitempty"`
	Tensor string `json:"tensor,omitempty"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
}

// Encode returns the program as compact JSON (manifest.program).
func (p *Program) Encode() (json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("codegen: encode program: %w", err)
	}
	return b, nil
}

// DecodeProgram parses a program from manifest.program, strictly (unknown
// fields are errors), and checks its internal references.
func DecodeProgram(raw []byte) (*Program, error) {
	var p Program
	if err := strictUnmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("codegen: program: %w", err)
	}
	if p.Version != ProgramVersion {
		return nil, fmt.Errorf("codegen: program version %d, this smelt reads %d", p.Version, ProgramVersion)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

// check verifies buffer and bucket references.
func (p *Program) check() error {
	bufs := map[string]Buffer{}
	for _, b := range p.Buffers {
		if _, dup := bufs[b.Name]; dup {
			return fmt.Errorf("codegen: program: buffer %q defined twice", b.Name)
		}
		if b.Size <= 0 || b.Size%4 != 0 {
			return fmt.Errorf("codegen: program: buffer %q has size %d, want a positive multiple of 4", b.Name, b.Size)
		}
		switch b.Kind {
		case KindConst:
			if int64(len(b.Data)) != b.Size {
				return fmt.Errorf("codegen: program: const buffer %q has %d bytes of data, want its size %d", b.Name, len(b.Data), b.Size)
			}
		case KindUniform, KindInput, KindActivation, KindKV, KindOutput:
			if len(b.Data) != 0 {
				return fmt.Errorf("codegen: program: %s buffer %q has data (only const buffers do)", b.Kind, b.Name)
			}
		default:
			return fmt.Errorf("codegen: program: buffer %q has unknown kind %q", b.Name, b.Kind)
		}
		bufs[b.Name] = b
	}
	weights := map[string]bool{}
	for _, w := range p.Weights {
		weights[w.Tensor] = true
	}
	ios := []string{p.Inputs.IDs, p.Inputs.Step, p.Inputs.Logits, p.Inputs.Token}
	if p.Sample != nil || p.Inputs.SampleParams != "" {
		if p.Sample == nil || p.Inputs.SampleParams == "" {
			return fmt.Errorf("codegen: program: a sample pass needs io.sample_params and the other way round")
		}
		if p.SampleMaxK < 1 {
			return fmt.Errorf("codegen: program: sample_max_k %d, want >= 1", p.SampleMaxK)
		}
		ios = append(ios, p.Inputs.SampleParams)
	}
	if p.ContextLength < 1 || p.MaxRows < 1 || p.VocabSize < 1 {
		return fmt.Errorf("codegen: program: context length %d, max rows %d, vocab size %d: want >= 1", p.ContextLength, p.MaxRows, p.VocabSize)
	}
	for _, io := range ios {
		if _, ok := bufs[io]; !ok {
			return fmt.Errorf("codegen: program: io buffer %q is not defined", io)
		}
	}
	passes := map[string]*Pass{"prefill": &p.Prefill, "decode": &p.Decode, "greedy": &p.Greedy}
	if p.Sample != nil {
		passes["sample"] = p.Sample
	}
	for name, ps := range passes {
		if len(ps.Rows) == 0 {
			return fmt.Errorf("codegen: program: pass %s has no row buckets", name)
		}
		for i, r := range ps.Rows {
			if r < 1 || r > p.MaxRows || (i > 0 && r <= ps.Rows[i-1]) {
				return fmt.Errorf("codegen: program: pass %s: row buckets %v, want ascending values in [1, %d]", name, ps.Rows, p.MaxRows)
			}
		}
		for i, s := range ps.Steps {
			if s.Kernel == "" {
				return fmt.Errorf("codegen: program: pass %s step %d (%s) names no kernel", name, i, s.Node)
			}
			if len(s.Workgroups) != len(ps.Rows) {
				return fmt.Errorf("codegen: program: pass %s step %d (%s): %d workgroup entries for %d row buckets", name, i, s.Node, len(s.Workgroups), len(ps.Rows))
			}
			for _, wg := range s.Workgroups {
				for _, n := range wg {
					if n < 0 || n > wgsl.MaxWorkgroupsPerDim {
						return fmt.Errorf("codegen: program: pass %s step %d (%s): workgroup count %v outside [0, %d]", name, i, s.Node, wg, wgsl.MaxWorkgroupsPerDim)
					}
				}
			}
			for j, b := range s.Bindings {
				if b.Offset < 0 || b.Offset%4 != 0 || b.Size <= 0 || b.Size%4 != 0 {
					return fmt.Errorf("codegen: program: pass %s step %d (%s) binding %d: offset %d size %d, want multiples of 4", name, i, s.Node, j, b.Offset, b.Size)
				}
				switch {
				case b.Buffer != "" && b.Tensor == "":
					buf, ok := bufs[b.Buffer]
					if !ok {
						return fmt.Errorf("codegen: program: pass %s step %d (%s): buffer %q is not defined", name, i, s.Node, b.Buffer)
					}
					if b.Size > buf.Size-b.Offset {
						return fmt.Errorf("codegen: program: pass %s step %d (%s): binding [%d, +%d) outside buffer %q of %d bytes", name, i, s.Node, b.Offset, b.Size, b.Buffer, buf.Size)
					}
				case b.Tensor != "" && b.Buffer == "":
					if !weights[b.Tensor] {
						return fmt.Errorf("codegen: program: pass %s step %d (%s): tensor %q is not in the weight list", name, i, s.Node, b.Tensor)
					}
				default:
					return fmt.Errorf("codegen: program: pass %s step %d (%s) binding %d: want exactly one of buffer and tensor", name, i, s.Node, j)
				}
			}
		}
	}
	return nil
}
