package dawn

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/testmodels"
)

const doubleKernel = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < arrayLength(&x)) { y[g.x] = 2.0 * x[g.x]; }
}
`

func TestRunAndValidate(t *testing.T) {
	r, err := Start(Options{Root: testmodels.RepoRoot()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in, err := r.Info()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adapter %v features %v", in.Adapter, in.Features)
	if got := in.Limits["maxStorageBufferBindingSize"]; got != 128<<20 {
		t.Errorf("default device maxStorageBufferBindingSize = %d, want WebGPU's default %d", got, 128<<20)
	}

	const n = 100
	x := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(x[4*i:], math.Float32bits(float32(i)-7.5))
	}
	res, err := r.Run(&Job{
		Kernels:    []Kernel{{Code: doubleKernel, Entry: "main"}},
		Buffers:    []Buffer{{Size: len(x), Data: x}, {Size: len(x) + 8}},
		Dispatches: []Dispatch{{Kernel: 0, Bindings: []int{0, 1}, Workgroups: [3]int{2, 1, 1}}},
		Read:       []int{1},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := res.Outputs[0]
	for i := range n {
		got := math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:]))
		if want := 2 * (float32(i) - 7.5); got != want {
			t.Fatalf("y[%d] = %v, want %v", i, got, want)
		}
	}

	errs, err := r.Validate([]Kernel{
		{Code: doubleKernel, Entry: "main"},
		{Code: strings.Replace(doubleKernel, "2.0 * x[g.x]", "2.0 * x", 1), Entry: "main"},
		{Code: strings.Replace(doubleKernel, "workgroup_size(64)", "workgroup_size(512)", 1), Entry: "main"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs[0]) != 0 {
		t.Errorf("valid kernel rejected: %v", errs[0])
	}
	if len(errs[1]) == 0 {
		t.Errorf("type error accepted by Tint")
	}
	if len(errs[2]) == 0 {
		t.Errorf("workgroup of 512 invocations accepted under default limits")
	}

	// A job error is reported and the runner keeps serving.
	if _, err := r.Run(&Job{Kernels: []Kernel{{Code: "fn x(", Entry: "main"}}}); err == nil {
		t.Errorf("broken kernel ran without error")
	}
	if _, err := r.Info(); err != nil {
		t.Errorf("runner dead after a failed job: %v", err)
	}
}
