package wgsl_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
	"github.com/smeltml/smelt/wgsl/ref"
)

var (
	wF32     = wgsl.Weights{Type: ir.F32}
	wF16     = wgsl.Weights{Type: ir.F16}
	int8Chan = func(k int) wgsl.Weights {
		return wgsl.Weights{Type: ir.U32, Bits: 8, GroupSize: k, Symmetric: true, Scale: ir.F32}
	}
	int8G64A  = wgsl.Weights{Type: ir.U32, Bits: 8, GroupSize: 64, Symmetric: false, Scale: ir.F16}
	int4G32S  = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 32, Symmetric: true, Scale: ir.F16}
	int4G32A  = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 32, Symmetric: false, Scale: ir.F16}
	int4G128A = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Symmetric: false, Scale: ir.F16}
	int4G128S = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Symmetric: true, Scale: ir.F32}
	int4G64AF = wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 64, Symmetric: false, Scale: ir.F32}
)

type matmulCase struct {
	name string
	p    wgsl.MatMul
	rows int
}

// matmulCases covers every weight format x mode x compute type on the
// shapes of stories260K (K=64: q/k/v/o, gate/up to 172, lm_head 512; its
// down_proj has K=172, which int4 cannot pack: 172 is not a multiple of 8,
// so the quantizer keeps it f16/f32 or int8 per-channel) and ref29m (K=512,
// N=512/256/1536/4096, down_proj K=1536), plus edge shapes.
func matmulCases() []matmulCase {
	var cs []matmulCase
	add := func(name string, rows int, p wgsl.MatMul) {
		cs = append(cs, matmulCase{name, p, rows})
	}
	all := []wgsl.Weights{wF32, wF16, int8Chan(64), int8G64A, int4G32S, int4G32A, int4G64AF}
	for _, w := range all {
		for _, c := range []ir.DType{ir.F32, ir.F16} {
			add("stories-qkv", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 64, Weights: w, Compute: c})
		}
		add("stories-gateup-prefill", 9, wgsl.MatMul{Mode: wgsl.GEMM, K: 64, N: 172, Weights: w, Compute: ir.F32})
	}
	for _, w := range []wgsl.Weights{wF32, wF16, int8Chan(172)} {
		add("stories-down", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 172, N: 64, Weights: w, Compute: ir.F32})
		add("stories-down-prefill", 5, wgsl.MatMul{Mode: wgsl.GEMM, K: 172, N: 64, Weights: w, Compute: ir.F32})
	}
	add("stories-lmhead-last", 6, wgsl.MatMul{Mode: wgsl.GEMV, K: 64, N: 512, Weights: int4G32S, Compute: ir.F32, LastRow: true})
	for _, w := range []wgsl.Weights{wF16, int8Chan(512), int4G128A, int4G128S} {
		for _, c := range []ir.DType{ir.F32, ir.F16} {
			add("ref29m-gateup", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 1536, Weights: w, Compute: c})
		}
		add("ref29m-kv-prefill", 40, wgsl.MatMul{Mode: wgsl.GEMM, K: 512, N: 256, Weights: w, Compute: ir.F32})
	}
	add("ref29m-down", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 1536, N: 512, Weights: int4G128A, Compute: ir.F32})
	add("ref29m-down-prefill", 33, wgsl.MatMul{Mode: wgsl.GEMM, K: 1536, N: 512, Weights: int4G128A, Compute: ir.F32})
	add("ref29m-lmhead-last", 3, wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 4096, Weights: int4G128A, Compute: ir.F16, LastRow: true})
	// edges: a row range (the other columns must stay untouched), bias,
	// several token rows through GEMV, one-thread-per-row GEMV, tiny shapes.
	add("split-gemv", 2, wgsl.MatMul{Mode: wgsl.GEMV, K: 128, N: 300, RowStart: 64, RowCount: 100, Weights: int4G32A, Compute: ir.F32, Bias: true})
	add("split-gemm", 35, wgsl.MatMul{Mode: wgsl.GEMM, K: 128, N: 300, RowStart: 200, RowCount: 100, Weights: int4G64AF, Compute: ir.F32, Bias: true})
	add("tpr1", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 256, N: 77, Weights: int4G32S, Compute: ir.F32, ThreadsPerRow: 1})
	add("tpr256", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 4096, N: 3, Weights: int4G128A, Compute: ir.F32, ThreadsPerRow: 256})
	// the multi-row int4 kernel: every rows-per-thread count, one to 256
	// threads per row, row counts that leave workgroups partly empty, a row
	// range with bias, several token rows, LastRow, sym/asym, f16/f32
	// scales, and the subgroup reduction (lavapipe's subgroups have 8
	// invocations, so TPR 32 exercises both the shuffles and the
	// workgroup-memory stage, TPR 4 the shuffles alone).
	for _, c := range []struct {
		name       string
		rows, k, n int
		w          wgsl.Weights
		tpr, rpt   int
		sg         bool
	}{
		{"rows-ref29m-gateup", 1, 512, 1536, int4G128A, 0, 4, false},
		{"rows-ref29m-down", 1, 1536, 512, int4G128A, 32, 2, false},
		{"rows-rpt1", 1, 256, 77, int4G32S, 8, 1, false},
		{"rows-rpt8", 2, 512, 300, int4G64AF, 16, 8, false},
		{"rows-tpr1", 1, 256, 77, int4G32A, 1, 4, false},
		{"rows-tpr256", 1, 4096, 5, int4G128S, 256, 2, false},
		{"rows-sg32", 3, 1024, 333, int4G128A, 32, 4, true},
		{"rows-sg4", 1, 256, 100, int4G32S, 4, 2, true},
		{"rows-sg256", 1, 8192, 9, int4G128A, 256, 1, true},
	} {
		add(c.name, c.rows, wgsl.MatMul{Mode: wgsl.GEMV, K: c.k, N: c.n, Weights: c.w, Compute: ir.F32, ThreadsPerRow: c.tpr, RowsPerThread: c.rpt, Subgroups: c.sg})
	}
	add("rows-split-bias", 2, wgsl.MatMul{Mode: wgsl.GEMV, K: 128, N: 300, RowStart: 64, RowCount: 100, Weights: int4G32A, Compute: ir.F32, Bias: true, RowsPerThread: 4, ThreadsPerRow: 4})
	add("rows-lmhead-last", 3, wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 4096, Weights: int4G128A, Compute: ir.F32, LastRow: true, RowsPerThread: 4, Subgroups: true})
	add("tiny", 1, wgsl.MatMul{Mode: wgsl.GEMV, K: 8, N: 1, Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 8, Symmetric: true, Scale: ir.F16}, Compute: ir.F32})
	add("tiny-f32-odd", 3, wgsl.MatMul{Mode: wgsl.GEMV, K: 7, N: 5, Weights: wF32, Compute: ir.F32, Bias: true})
	add("tiny-gemm", 1, wgsl.MatMul{Mode: wgsl.GEMM, K: 7, N: 5, Weights: wF32, Compute: ir.F32})
	return cs
}

// TestMatMul runs every case against ref.MatMul. Tolerance per output:
// f32 compute 1e-5 * sum_k |x[k] * w(n,k)| (+1e-6 * |bias|); f16 compute
// 3e-3 * sum_k |x[k] * w(n,k)| (x rounded to f16, products and the sum of one
// u32 word's 2 to 8 products in f16, word sums in f32).
func TestMatMul(t *testing.T) {
	for _, tt := range matmulCases() {
		t.Run(tt.name+"/"+tt.p.Name(), func(t *testing.T) {
			p := tt.p
			rc := p.RowCount
			if rc == 0 {
				rc = p.N - p.RowStart
			}
			r := rand.New(rand.NewPCG(2, uint64(p.K*7919+p.N)))
			m := randMatrix(r, p.Weights, p.N, p.K)
			x := randF32(r, tt.rows*p.K, 2)
			in := matrixBytes(m, p.Weights, p.RowStart, rc)
			in["x"] = f32bytes(x)
			var bias []float32
			if p.Bias {
				bias = randF32(r, p.N, 1)
				in["bias"] = f32bytes(bias[p.RowStart : p.RowStart+rc])
			}
			out, _ := run(t, launch{k: p, rows: tt.rows, in: in})
			want := ref.MatMul(x, m, bias)
			xr := x
			outRows := tt.rows
			if p.LastRow {
				xr = x[(tt.rows-1)*p.K:]
				want = want[(tt.rows-1)*p.N:]
				outRows = 1
			}
			got := bytesF32(out["y"])
			mag := make([]float64, outRows*p.N)
			for ti := 0; ti < outRows; ti++ {
				for n := p.RowStart; n < p.RowStart+rc; n++ {
					var s float64
					for k := 0; k < p.K; k++ {
						s += math.Abs(float64(xr[ti*p.K+k]) * float64(m.At(n, k)))
					}
					mag[ti*p.N+n] = s
				}
			}
			rel := 1e-5
			if p.Compute == ir.F16 {
				rel = 3e-3
			}
			var gotIn, wantIn []float32
			var tol []float64
			for ti := 0; ti < outRows; ti++ {
				row := ti * p.N
				checkUntouched(t, "y", out["y"], row, row+p.RowStart)
				checkUntouched(t, "y", out["y"], row+p.RowStart+rc, row+p.N)
				for n := p.RowStart; n < p.RowStart+rc; n++ {
					gotIn = append(gotIn, got[row+n])
					wantIn = append(wantIn, want[row+n])
					lim := rel*mag[row+n] + 1e-6
					if bias != nil {
						lim += 1e-6 * math.Abs(float64(bias[n]))
					}
					tol = append(tol, lim)
				}
			}
			checkClose(t, "y", gotIn, wantIn, func(i int) float64 { return tol[i] })
		})
	}
}
