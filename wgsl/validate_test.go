package wgsl_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/dawn"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// TestTintRejects checks that the Tint validation used by every test is
// live: broken variants of a real kernel are rejected.
func TestTintRejects(t *testing.T) {
	src := use(t, wgsl.RMSNorm{D: 64, Eps: 1e-5, Weight: ir.F32})
	broken := map[string]string{
		"type error":           strings.Replace(src, "y[base + i] = (x[base + i] * inv) * weight(i);", "y[base + i] = base;", 1),
		"undeclared":           strings.Replace(src, "let inv =", "let inv = nothere +", 1),
		"too many invocations": strings.Replace(src, "const WG: u32 = 64u;", "const WG: u32 = 512u;", 1),
		"f16 without enable":   strings.Replace(src, "var ss = 0.0;", "var ss = 0.0h;", 1),
	}
	for name, code := range broken {
		if code == src {
			t.Fatalf("%s: mutation did not apply", name)
		}
		errs, err := gpu(t).Validate([]dawn.Kernel{{Code: code, Entry: wgsl.Entry}})
		if err != nil {
			t.Fatal(err)
		}
		if len(errs[0]) == 0 {
			t.Errorf("%s: Tint accepted a broken shader", name)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	int4 := wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 32, Symmetric: true, Scale: ir.F16}
	tests := []struct {
		name string
		k    wgsl.Kernel
		want string
	}{
		{"int4 K=172", wgsl.MatMul{Mode: wgsl.GEMV, K: 172, N: 64, Weights: int4, Compute: ir.F32}, "does not divide"},
		{"int4 group 4", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 4, Scale: ir.F16}, Compute: ir.F32}, "multiple of 8"},
		{"3 bits", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: wgsl.Weights{Type: ir.U32, Bits: 3, GroupSize: 32, Scale: ir.F16}, Compute: ir.F32}, "want 4 or 8"},
		{"bf16 scales", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 32, Scale: ir.BF16}, Compute: ir.F32}, "scale type"},
		{"f16 odd K", wgsl.MatMul{Mode: wgsl.GEMV, K: 7, N: 64, Weights: wgsl.Weights{Type: ir.F16}, Compute: ir.F32}, "even row length"},
		{"row range", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, RowStart: 60, RowCount: 8, Weights: int4, Compute: ir.F32}, "row range"},
		{"over binding limit", wgsl.MatMul{Mode: wgsl.GEMV, K: 8192, N: 5000, Weights: wgsl.Weights{Type: ir.F32}, Compute: ir.F32}, "split the rows"},
		{"gemm f16", wgsl.MatMul{Mode: wgsl.GEMM, K: 64, N: 64, Weights: int4, Compute: ir.F16}, "f32 only"},
		{"tpr 3", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: int4, Compute: ir.F32, ThreadsPerRow: 3}, "power of two"},
		{"rpt 3", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: int4, Compute: ir.F32, RowsPerThread: 3}, "1, 2, 4 or 8"},
		{"rpt int8", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: wgsl.Weights{Type: ir.U32, Bits: 8, GroupSize: 32, Scale: ir.F16}, Compute: ir.F32, RowsPerThread: 2}, "int4 weights"},
		{"rpt group 8", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 8, Scale: ir.F16}, Compute: ir.F32, RowsPerThread: 2}, "multiples of 32"},
		{"rpt f16", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: int4, Compute: ir.F16, RowsPerThread: 2}, "computes in f32"},
		{"rpt gemm", wgsl.MatMul{Mode: wgsl.GEMM, K: 64, N: 64, Weights: int4, Compute: ir.F32, RowsPerThread: 2}, "GEMV options"},
		{"sg one-row", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: int4, Compute: ir.F32, Subgroups: true}, "rows-per-thread"},
		{"no mode", wgsl.MatMul{K: 64, N: 64, Weights: int4, Compute: ir.F32}, "mode"},
		{"compute bf16", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: int4, Compute: ir.BF16}, "compute type"},
		{"embedding range", wgsl.Embedding{Vocab: 10, Dim: 8, RowStart: 5, RowCount: 6, Weights: wgsl.Weights{Type: ir.F32}}, "row range"},
		{"rope odd", wgsl.RoPE{Heads: 2, HeadDim: 7}, "even head dim"},
		{"rope stride", wgsl.RoPE{Heads: 2, HeadDim: 8, RowStride: 16, Offset: 8}, "past the row stride"},
		{"kv stride", wgsl.KVWrite{KVHeads: 2, HeadDim: 8, MaxCtx: 4, SrcStride: 8}, "past the row stride"},
		{"gqa", wgsl.Attention{Heads: 6, KVHeads: 4, HeadDim: 8, MaxCtx: 16}, "not a multiple"},
		{"attention cache", wgsl.Attention{Heads: 8, KVHeads: 8, HeadDim: 128, MaxCtx: 1 << 16}, "binding limit"},
		{"silumul", wgsl.SiLUMul{}, "width"},
		{"add", wgsl.Add{}, "width"},
		{"softmax", wgsl.Softmax{}, "width"},
		{"argmax", wgsl.Argmax{}, "logits"},
		{"sample k", wgsl.Sample{N: 10, MaxK: 300}, "max k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.k.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, rerr := tt.k.Render(); rerr == nil {
				t.Errorf("Render() succeeded on invalid parameters")
			}
		})
	}
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name string
		k    wgsl.Kernel
		rows int
		want [3]int
	}{
		{"gemv default tpr", wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 512, Weights: int4G128A, Compute: ir.F32}, 1, [3]int{16, 1, 1}},
		{"gemv rows", wgsl.MatMul{Mode: wgsl.GEMV, K: 2048, N: 2048, Weights: int4G128A, Compute: ir.F32}, 3, [3]int{256, 3, 1}},
		{"gemv last", wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 512, Weights: int4G32S, Compute: ir.F32, LastRow: true}, 9, [3]int{8, 1, 1}},
		{"gemm", wgsl.MatMul{Mode: wgsl.GEMM, K: 64, N: 172, Weights: wF32, Compute: ir.F32}, 33, [3]int{3, 2, 1}},
		{"rmsnorm spill", wgsl.RMSNorm{D: 64, Eps: 1e-5, Weight: ir.F32}, 70000, [3]int{35000, 2, 1}},
		{"add", wgsl.Add{D: 512}, 3, [3]int{6, 1, 1}},
		{"add spill", wgsl.Add{D: 4096}, 4200, [3]int{33600, 2, 1}},
		{"attention", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 64, MaxCtx: 512}, 7, [3]int{8, 7, 1}},
		{"sample", wgsl.Sample{N: 4096, MaxK: 64}, 7, [3]int{1, 1, 1}},
	}
	for _, tt := range tests {
		got, err := tt.k.Dispatch(tt.rows)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Dispatch(%d) mismatch (-want +got):\n%s", tt.name, tt.rows, diff)
		}
		if got[0]*got[1] < 1 {
			t.Errorf("%s: empty dispatch", tt.name)
		}
	}
}

func TestBindingsWorkedExample(t *testing.T) {
	k := wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 512, Compute: ir.F32,
		Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Scale: ir.F16}}
	want := []wgsl.Binding{
		{Index: 0, Name: "step", Access: wgsl.Uniform, Size: wgsl.Size{Fixed: 16}},
		{Index: 1, Name: "x", Access: wgsl.ReadOnly, Size: wgsl.Size{PerRow: 2048}},
		{Index: 2, Name: "qweight", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: 131072}},
		{Index: 3, Name: "scales", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: 4096}},
		{Index: 4, Name: "zeros", Access: wgsl.ReadOnly, Size: wgsl.Size{Fixed: 1024}},
		{Index: 5, Name: "y", Access: wgsl.ReadWrite, Size: wgsl.Size{PerRow: 2048}},
	}
	if diff := cmp.Diff(want, k.Bindings()); diff != "" {
		t.Errorf("Bindings() mismatch (-want +got):\n%s", diff)
	}
	if got, want := k.Workgroup(), [3]int{256, 1, 1}; got != want {
		t.Errorf("Workgroup() = %v, want %v", got, want)
	}
	if got, want := k.Requires(), (wgsl.Requirements{Invocations: 256, WorkgroupStorage: 1024}); !cmp.Equal(got, want) {
		t.Errorf("Requires() = %+v, want %+v", got, want)
	}
	f16 := k
	f16.Compute = ir.F16
	if got := f16.Requires().Features; !cmp.Equal(got, []string{"shader-f16"}) {
		t.Errorf("f16 compute Requires().Features = %v, want [shader-f16]", got)
	}
}
