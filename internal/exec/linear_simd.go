//go:build goexperiment.simd && amd64

package exec

import (
	"runtime"
	"sync"

	"simd/archsimd"
)

// With GOEXPERIMENT=simd (Go's experimental simd/archsimd package) on a CPU
// with AVX2 and FMA, Linear uses the kernels below instead of gonum's
// Sgemm when T > 1 and K is a multiple of 8 (gonum's Sgemv stays faster
// for T == 1). Semantics are Linear's; only the
// float32 summation order differs: y[t,n] accumulates x[t,k]*w[n,k] in 8
// lanes (lane j sums k ≡ j mod 8 in increasing k, fused multiply-adds),
// then adds the lanes as ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)). Each output
// is computed by one goroutine in that fixed order, so results do not
// depend on GOMAXPROCS.
func init() {
	if archsimd.X86.AVX2() && archsimd.X86.FMA() {
		simdLinear = linearSIMD
	}
}

// simdBlockRows is the number of weight rows a worker sweeps over all
// input rows before moving on (64 rows of K=512 f32 are 128 KiB: they stay
// in L2 while the inputs stream through).
const simdBlockRows = 64

func linearSIMD(y, x []float32, T int, w []float32, N, K int) {
	if T == 1 {
		linearTile(y, x, w, T, N, K, 0, N)
		return
	}
	nBlocks := (N + simdBlockRows - 1) / simdBlockRows
	workers := min(runtime.GOMAXPROCS(0), nBlocks)
	if workers <= 1 {
		linearTile(y, x, w, T, N, K, 0, N)
		return
	}
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := wk; b < nBlocks; b += workers {
				linearTile(y, x, w, T, N, K, b*simdBlockRows, min((b+1)*simdBlockRows, N))
			}
		}()
	}
	wg.Wait()
}

// linearTile computes y[t, n0:n1] for every row t.
func linearTile(y, x, w []float32, T, N, K, n0, n1 int) {
	t := 0
	for ; t+2 <= T; t += 2 {
		x0, x1 := x[t*K:(t+1)*K], x[(t+1)*K:(t+2)*K]
		n := n0
		for ; n+4 <= n1; n += 4 {
			dot2x4(y[t*N+n:], y[(t+1)*N+n:], x0, x1, w[n*K:(n+4)*K], K)
		}
		for ; n < n1; n++ {
			y[t*N+n] = dot1(x0, w[n*K:(n+1)*K])
			y[(t+1)*N+n] = dot1(x1, w[n*K:(n+1)*K])
		}
	}
	if t < T {
		x0 := x[t*K : (t+1)*K]
		n := n0
		for ; n+4 <= n1; n += 4 {
			dot1x4(y[t*N+n:], x0, w[n*K:(n+4)*K], K)
		}
		for ; n < n1; n++ {
			y[t*N+n] = dot1(x0, w[n*K:(n+1)*K])
		}
	}
}

// hsum adds the 8 lanes of v in the fixed order documented above.
func hsum(v archsimd.Float32x8) float32 {
	s := v.GetLo().Add(v.GetHi()) // (l0+l4, l1+l5, l2+l6, l3+l7)
	s = s.AddPairs(s)             // ((l0+l4)+(l1+l5), (l2+l6)+(l3+l7), ...)
	return s.GetElem(0) + s.GetElem(1)
}

// dot2x4 writes the 2×4 block y0[0:4], y1[0:4] of x0, x1 against the 4
// weight rows in w ([4, K]).
func dot2x4(y0, y1, x0, x1, w []float32, K int) {
	w0, w1, w2, w3 := w[:K], w[K:2*K], w[2*K:3*K], w[3*K:4*K]
	var a00, a01, a02, a03, a10, a11, a12, a13 archsimd.Float32x8
	for k := 0; k+8 <= K; k += 8 {
		p := archsimd.LoadFloat32x8Slice(x0[k : k+8])
		q := archsimd.LoadFloat32x8Slice(x1[k : k+8])
		v := archsimd.LoadFloat32x8Slice(w0[k : k+8])
		a00 = p.MulAdd(v, a00)
		a10 = q.MulAdd(v, a10)
		v = archsimd.LoadFloat32x8Slice(w1[k : k+8])
		a01 = p.MulAdd(v, a01)
		a11 = q.MulAdd(v, a11)
		v = archsimd.LoadFloat32x8Slice(w2[k : k+8])
		a02 = p.MulAdd(v, a02)
		a12 = q.MulAdd(v, a12)
		v = archsimd.LoadFloat32x8Slice(w3[k : k+8])
		a03 = p.MulAdd(v, a03)
		a13 = q.MulAdd(v, a13)
	}
	y0[0], y0[1], y0[2], y0[3] = hsum(a00), hsum(a01), hsum(a02), hsum(a03)
	y1[0], y1[1], y1[2], y1[3] = hsum(a10), hsum(a11), hsum(a12), hsum(a13)
}

// dot1x4 writes y0[0:4] for one input row against 4 weight rows.
func dot1x4(y0, x0, w []float32, K int) {
	w0, w1, w2, w3 := w[:K], w[K:2*K], w[2*K:3*K], w[3*K:4*K]
	var a0, a1, a2, a3 archsimd.Float32x8
	for k := 0; k+8 <= K; k += 8 {
		p := archsimd.LoadFloat32x8Slice(x0[k : k+8])
		a0 = p.MulAdd(archsimd.LoadFloat32x8Slice(w0[k:k+8]), a0)
		a1 = p.MulAdd(archsimd.LoadFloat32x8Slice(w1[k:k+8]), a1)
		a2 = p.MulAdd(archsimd.LoadFloat32x8Slice(w2[k:k+8]), a2)
		a3 = p.MulAdd(archsimd.LoadFloat32x8Slice(w3[k:k+8]), a3)
	}
	y0[0], y0[1], y0[2], y0[3] = hsum(a0), hsum(a1), hsum(a2), hsum(a3)
}

// dot1 is one output.
func dot1(x0, w0 []float32) float32 {
	var a archsimd.Float32x8
	for k := 0; k+8 <= len(x0); k += 8 {
		a = archsimd.LoadFloat32x8Slice(x0[k:k+8]).MulAdd(archsimd.LoadFloat32x8Slice(w0[k:k+8]), a)
	}
	return hsum(a)
}
