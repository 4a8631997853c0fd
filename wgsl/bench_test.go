package wgsl_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
)

// benchShape is a GEMV benchmark shape [N, K] and its weight format.
type benchShape struct {
	name string
	k, n int
	w    wgsl.Weights
}

var (
	int4G128AF16 = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Symmetric: false, Scale: ir.F16}
	int4G128SF16 = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Symmetric: true, Scale: ir.F16}
)

// benchShapes: K=N=2048, ref29m's decode linears, and Llama-3-8B's
// (q/o 4096x4096, gate/up 4096->14336, down 14336->4096, for GPUs).
func benchShapes() []benchShape {
	return []benchShape{
		{"2048x2048", 2048, 2048, int4G128AF16},
		{"2048x2048-sym", 2048, 2048, int4G128SF16},
		{"ref29m-qo", 512, 512, int4G128AF16},
		{"ref29m-gateup", 512, 1536, int4G128AF16},
		{"ref29m-down", 1536, 512, int4G128AF16},
		{"ref29m-lmhead", 512, 4096, int4G128AF16},
		{"llama8b-qo", 4096, 4096, int4G128AF16},
		{"llama8b-gateup", 4096, 14336, int4G128AF16},
		{"llama8b-down", 14336, 4096, int4G128AF16},
	}
}

// benchKernels are the GEMV variants timed for a shape.
func benchKernels(s benchShape) []wgsl.MatMul {
	base := wgsl.MatMul{Mode: wgsl.GEMV, K: s.k, N: s.n, Weights: s.w, Compute: ir.F32}
	f16 := base
	f16.Compute = ir.F16
	ks := []wgsl.MatMul{base, f16}
	for _, tpr := range []int{1, 32, 64, 128} {
		if tpr != base.TPR() && tpr <= s.k/32 {
			k := base
			k.ThreadsPerRow = tpr
			ks = append(ks, k)
		}
	}
	// the multi-row kernel: default threads per row, and on the GPU shapes
	// the configurations that were best on an H100 (the plan is short; see
	// gpu_run.sh for a grid over ThreadsPerRow x RowsPerThread).
	rows := []wgsl.MatMul{{ThreadsPerRow: 0, RowsPerThread: 4}, {ThreadsPerRow: 1, RowsPerThread: 4}}
	if s.k*s.n > 2048*4096 {
		rows = []wgsl.MatMul{{RowsPerThread: 4}, {ThreadsPerRow: 32, RowsPerThread: 4}, {ThreadsPerRow: 64, RowsPerThread: 4},
			{ThreadsPerRow: 128, RowsPerThread: 4}, {ThreadsPerRow: 32, RowsPerThread: 8}, {ThreadsPerRow: 128, RowsPerThread: 8},
			{ThreadsPerRow: 64, RowsPerThread: 4, Subgroups: true}}
	}
	seen := map[string]bool{}
	for _, v := range rows {
		k := base
		k.ThreadsPerRow, k.RowsPerThread, k.Subgroups = v.ThreadsPerRow, v.RowsPerThread, v.Subgroups
		if !seen[k.Name()] && k.Validate() == nil {
			seen[k.Name()] = true
			ks = append(ks, k)
		}
	}
	return ks
}

// weightBytes is the number of weight bytes a GEMV reads.
func weightBytes(k wgsl.MatMul) int64 {
	var n int64
	for _, b := range k.Bindings() {
		if b.Name == "qweight" || b.Name == "scales" || b.Name == "zeros" || b.Name == "w" {
			n += b.Size.Bytes(1)
		}
	}
	return n
}

// benchPlanFile lists the bench kernels for wgsl/testdata/bench/gemv_bench.mjs
// (a standalone Node script for GPUs without Go).
const benchPlanFile = "testdata/bench/gemv_plan.json"

type planEntry struct {
	Shape       string         `json:"shape"`
	Kernel      string         `json:"kernel"`
	File        string         `json:"file"`
	K           int            `json:"k"`
	N           int            `json:"n"`
	Features    []string       `json:"features"`
	Workgroups  [3]int         `json:"workgroups"`
	Bindings    []planBinding  `json:"bindings"`
	WeightBytes int64          `json:"weightBytes"`
	Uniform     map[string]int `json:"step"`
}

type planBinding struct {
	Name   string `json:"name"`
	Access string `json:"access"`
	Bytes  int64  `json:"bytes"`
}

// TestBenchPlan renders the benchmark kernels (goldens, Tint) and pins the
// plan the standalone bench script reads.
func TestBenchPlan(t *testing.T) {
	var plan []planEntry
	for _, s := range benchShapes() {
		for _, k := range benchKernels(s) {
			use(t, k)
			wg, err := k.Dispatch(1)
			if err != nil {
				t.Fatal(err)
			}
			e := planEntry{Shape: s.name, Kernel: k.Name(), File: "../golden/" + k.Name() + ".wgsl", K: s.k, N: s.n,
				Features: k.Requires().Features, Workgroups: wg, WeightBytes: weightBytes(k), Uniform: map[string]int{"rows": 1, "pos0": 0}}
			if e.Features == nil {
				e.Features = []string{}
			}
			for _, b := range k.Bindings() {
				e.Bindings = append(e.Bindings, planBinding{b.Name, b.Access.String(), b.Size.Bytes(1)})
			}
			plan = append(plan, e)
		}
	}
	got, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(benchPlanFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(benchPlanFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(benchPlanFile)
	if err != nil {
		t.Fatalf("%v (run go test ./wgsl -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale (run go test ./wgsl -update)", benchPlanFile)
	}
}

// BenchmarkGEMV times the int4 GEMV on Dawn (lavapipe here): ms per
// dispatch as measured by the runner (wall clock over repeated submits of
// one dispatch), and the weight bandwidth.
//
//	go test ./wgsl -run '^$' -bench GEMV -benchtime 5x
func BenchmarkGEMV(b *testing.B) {
	for _, s := range benchShapes() {
		if s.k*s.n > 2048*4096 {
			continue // GPU-sized shapes: see testdata/bench/gemv_bench.mjs
		}
		for _, k := range benchKernels(s) {
			b.Run(s.name+"/"+k.Name(), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				m := randMatrix(r, k.Weights, k.N, k.K)
				in := matrixBytes(m, k.Weights, 0, k.N)
				in["x"] = f32bytes(randF32(r, k.K, 1))
				l := launch{k: k, rows: 1, in: in, repeat: 20}
				run(b, l) // compile and warm up
				b.ResetTimer()
				var ms float64
				for range b.N {
					_, m := run(b, l)
					ms += m
				}
				ms /= float64(b.N)
				b.ReportMetric(ms, "ms/dispatch")
				b.ReportMetric(float64(weightBytes(k))/ms/1e6, "GB/s")
			})
		}
	}
}
