package wgsl

import (
	"bytes"
	"embed"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"text/template"

	"github.com/smeltml/smelt/internal/ir"
)

//go:embed kernels/*.wgsl.tmpl
var kernelFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"add": func(a, b int) int { return a + b },
	"sub": func(a, b int) int { return a - b },
	"mul": func(a, b int) int { return a * b },
	"div": func(a, b int) int { return a / b },
	"seq": func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		return s
	},
}).ParseFS(kernelFS, "kernels/*.wgsl.tmpl"))

// Entry is the entry point of every kernel.
const Entry = "main"

// MaxWorkgroupsPerDim is WebGPU's default maxComputeWorkgroupsPerDimension.
const MaxWorkgroupsPerDim = 65535

// MaxBindingBytes is WebGPU's default maxStorageBufferBindingSize (128 MiB).
const MaxBindingBytes = 128 << 20

// Access is how a kernel binds a buffer.
type Access uint8

// Binding kinds.
const (
	Uniform   Access = iota + 1 // var<uniform>
	ReadOnly                    // var<storage, read>
	ReadWrite                   // var<storage, read_write>
)

// String returns "uniform", "read" or "read_write".
func (a Access) String() string {
	switch a {
	case Uniform:
		return "uniform"
	case ReadOnly:
		return "read"
	case ReadWrite:
		return "read_write"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// Size is the byte size a binding needs as a function of the step's row
// count T: Fixed + PerRow*T, rounded up to a multiple of 4.
type Size struct {
	Fixed  int64
	PerRow int64
}

// Bytes returns the size for rows rows.
func (s Size) Bytes(rows int) int64 { return (s.Fixed + s.PerRow*int64(rows) + 3) &^ 3 }

// Binding describes binding Index of bind group 0.
type Binding struct {
	Index  int
	Name   string // the WGSL variable name
	Access Access
	Size   Size // bytes the kernel may touch; a larger buffer is fine
}

// Requirements are what a kernel needs beyond WebGPU's defaults (features)
// and what it uses of the limits.
type Requirements struct {
	Features         []string // sorted: "shader-f16", "subgroups"
	Invocations      int      // invocations per workgroup (default limit 256)
	WorkgroupStorage int      // bytes of var<workgroup> (default limit 16384)
}

// Kernel is a kernel instance: its parameters fix every shape except the
// step's row count, which comes from the Step uniform (binding 0 of the
// kernels that have one) and from Dispatch's argument.
type Kernel interface {
	// Name is a stable, file-name-safe name that spells the parameters.
	Name() string
	// Validate reports parameters the kernel cannot run with.
	Validate() error
	// Bindings lists the kernel's bindings of group 0 in binding order.
	Bindings() []Binding
	// Requires lists the features and resources the kernel needs.
	Requires() Requirements
	// Workgroup is the @workgroup_size of the entry point.
	Workgroup() [3]int
	// Dispatch returns the workgroup counts for a step of rows rows.
	Dispatch(rows int) ([3]int, error)
	// Render validates the parameters and returns the WGSL source.
	Render() (string, error)
}

// StepUniformBytes is the size of the Step uniform:
//
//	struct Step { rows: u32, pos0: u32, pad0: u32, pad1: u32 }
//
// rows is the number of tokens of the step (T), pos0 the position of its
// first token (the number of tokens already in the KV cache). One Step buffer
// can serve every dispatch of a forward pass.
const StepUniformBytes = 16

func stepBinding() Binding {
	return Binding{Index: 0, Name: "step", Access: Uniform, Size: Size{Fixed: StepUniformBytes}}
}

// render executes the named template with data.
func render(name string, data map[string]any) (string, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name+".wgsl.tmpl", data); err != nil {
		return "", fmt.Errorf("wgsl: render %s: %w", name, err)
	}
	return tidy(b.String()), nil
}

// tidy drops blank-line runs and trailing spaces that template actions leave.
func tidy(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := true
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			if blank {
				continue
			}
			blank = true
		} else {
			blank = false
		}
		out = append(out, l)
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}

// grid returns workgroup counts for n workgroups laid out in x then y (a
// kernel recovers the linear index as wid.y * num_workgroups.x + wid.x).
func grid(n int) ([3]int, error) {
	if n < 0 {
		return [3]int{}, fmt.Errorf("wgsl: negative workgroup count %d", n)
	}
	if n <= MaxWorkgroupsPerDim {
		return [3]int{max(n, 1), 1, 1}, nil
	}
	y := (n + MaxWorkgroupsPerDim - 1) / MaxWorkgroupsPerDim
	if y > MaxWorkgroupsPerDim {
		return [3]int{}, fmt.Errorf("wgsl: %d workgroups exceed %d x %d", n, MaxWorkgroupsPerDim, MaxWorkgroupsPerDim)
	}
	x := (n + y - 1) / y
	return [3]int{x, y, 1}, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

func features(f16, subgroups bool) []string {
	var fs []string
	if f16 {
		fs = append(fs, "shader-f16")
	}
	if subgroups {
		fs = append(fs, "subgroups")
	}
	sort.Strings(fs)
	return fs
}

// computeName returns "f32" or "f16" and checks the compute type.
func checkCompute(op string, c ir.DType) error {
	if c != ir.F32 && c != ir.F16 {
		return fmt.Errorf("wgsl: %s: compute type %v, want f32 or f16", op, c)
	}
	return nil
}
