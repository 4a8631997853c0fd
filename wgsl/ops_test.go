package wgsl_test

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/wgsl"
	"github.com/smeltml/smelt/wgsl/ref"
)

// TestEmbedding: exact (the kernel performs the reference's f32 operations).
// Ids include out-of-vocabulary ones (zero rows) and, for row-range
// instances, ids of other ranges (rows left untouched).
func TestEmbedding(t *testing.T) {
	tests := []struct {
		name   string
		p      wgsl.Embedding
		vocabs int // rows of the whole table
	}{
		{"stories-f32", wgsl.Embedding{Vocab: 512, Dim: 64, Weights: wF32}, 512},
		{"stories-f16", wgsl.Embedding{Vocab: 512, Dim: 64, Weights: wF16}, 512},
		{"stories-int4g32", wgsl.Embedding{Vocab: 512, Dim: 64, Weights: int4G32A}, 512},
		{"stories-int8", wgsl.Embedding{Vocab: 512, Dim: 64, Weights: int8Chan(64)}, 512},
		{"ref29m-int4g128", wgsl.Embedding{Vocab: 4096, Dim: 512, Weights: int4G128S}, 4096},
		{"ref29m-int8g64", wgsl.Embedding{Vocab: 4096, Dim: 512, Weights: int8G64A}, 4096},
		{"split-first", wgsl.Embedding{Vocab: 300, Dim: 40, RowCount: 100, Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 8, Scale: ir.F32}}, 300},
		{"split-last", wgsl.Embedding{Vocab: 300, Dim: 40, RowStart: 100, RowCount: 200, Weights: wF16}, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			rc := p.RowCount
			if rc == 0 {
				rc = p.Vocab - p.RowStart
			}
			r := rand.New(rand.NewPCG(3, uint64(p.Vocab+p.Dim)))
			m := randMatrix(r, p.Weights, tt.vocabs, p.Dim)
			ids := []uint32{0, uint32(p.Vocab - 1), uint32(p.Vocab), 1 << 31, uint32(p.RowStart), uint32(p.RowStart + rc - 1)}
			for range 13 {
				ids = append(ids, uint32(r.IntN(p.Vocab)))
			}
			in := matrixBytes(m, p.Weights, p.RowStart, rc)
			in["ids"] = u32bytes(ids)
			out, _ := run(t, launch{k: p, rows: len(ids), in: in})
			want := ref.Embedding(m, ids)
			for i, id := range ids {
				inRange := int(id) >= p.RowStart && int(id) < p.RowStart+rc
				oov := int64(id) >= int64(p.Vocab) && p.RowStart+rc == p.Vocab
				if !inRange && !oov {
					checkUntouched(t, "out", out["out"], i*p.Dim, (i+1)*p.Dim)
					continue
				}
				got := bytesF32(out["out"][4*i*p.Dim : 4*(i+1)*p.Dim])
				checkClose(t, name("out[id %d]", id), got, want[i*p.Dim:(i+1)*p.Dim], func(int) float64 { return 0 })
			}
		})
	}
}

// TestRoPE: tolerance 2^-20 * (|x[i]| + |x[i+d/2]|) + 1e-7 per output: the
// angle is reduced to [-π, π] exactly enough that the error is that of
// cos/sin there (GPU intrinsics are within ~2^-21 absolute; WGSL itself
// only promises 2^-11).
func TestRoPE(t *testing.T) {
	tests := []struct {
		name       string
		p          wgsl.RoPE
		rows, pos0 int
		theta      float64
	}{
		{"stories-q", wgsl.RoPE{Heads: 8, HeadDim: 8}, 5, 0, 10000},
		{"stories-k-decode", wgsl.RoPE{Heads: 4, HeadDim: 8}, 1, 511, 10000},
		{"ref29m-q", wgsl.RoPE{Heads: 8, HeadDim: 64}, 33, 100, 10000},
		{"ref29m-fused-qkv-k", wgsl.RoPE{Heads: 4, HeadDim: 64, RowStride: 1024, Offset: 512}, 7, 3000, 500000},
		{"long-positions", wgsl.RoPE{Heads: 2, HeadDim: 128}, 3, 100000, 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			stride := p.RowStride
			if stride == 0 {
				stride = p.Heads * p.HeadDim
			}
			r := rand.New(rand.NewPCG(4, uint64(stride)))
			x := randF32(r, tt.rows*stride, 2)
			inv := ref.InvFreq(tt.theta, p.HeadDim)
			out, _ := run(t, launch{k: p, rows: tt.rows, pos0: tt.pos0, in: map[string][]byte{"x": f32bytes(x), "inv_freq": f32bytes(inv)}})
			want := append([]float32(nil), x...)
			ref.RoPE(want, tt.rows, stride, p.Offset, p.Heads, p.HeadDim, inv, tt.pos0)
			half := p.HeadDim / 2
			checkClose(t, "x", bytesF32(out["x"]), want, func(i int) float64 {
				c := i % stride
				if c < p.Offset || c >= p.Offset+p.Heads*p.HeadDim {
					return 0 // untouched columns stay bit-identical
				}
				j := i + half
				if (c-p.Offset)%p.HeadDim >= half {
					j = i - half
				}
				return math.Ldexp(math.Abs(float64(x[i]))+math.Abs(float64(x[j])), -20) + 1e-7
			})
		})
	}
}

// TestKVWrite: exact copies; positions past MaxCtx are dropped.
func TestKVWrite(t *testing.T) {
	tests := []struct {
		name       string
		p          wgsl.KVWrite
		rows, pos0 int
	}{
		{"stories-prefill", wgsl.KVWrite{KVHeads: 4, HeadDim: 8, MaxCtx: 512}, 9, 0},
		{"ref29m-decode", wgsl.KVWrite{KVHeads: 4, HeadDim: 64, MaxCtx: 512}, 1, 200},
		{"fused-qkv-v", wgsl.KVWrite{KVHeads: 4, HeadDim: 64, MaxCtx: 128, SrcStride: 1024, SrcOffset: 768}, 6, 40},
		{"overflow", wgsl.KVWrite{KVHeads: 2, HeadDim: 16, MaxCtx: 16}, 5, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			stride := p.SrcStride
			if stride == 0 {
				stride = p.KVHeads * p.HeadDim
			}
			r := rand.New(rand.NewPCG(5, uint64(stride)))
			src := randF32(r, tt.rows*stride, 1)
			cache := randF32(r, p.KVHeads*p.MaxCtx*p.HeadDim, 1)
			out, _ := run(t, launch{k: p, rows: tt.rows, pos0: tt.pos0, in: map[string][]byte{"src": f32bytes(src), "cache": f32bytes(cache)}})
			want := append([]float32(nil), cache...)
			ref.KVWrite(want, src, tt.rows, stride, p.SrcOffset, p.KVHeads, p.HeadDim, p.MaxCtx, tt.pos0)
			checkClose(t, "cache", bytesF32(out["cache"]), want, func(int) float64 { return 0 })
		})
	}
}

// TestAttention: tolerance 2e-5 * max|v| + 1e-6 per output (scores and the
// online softmax in f32). Cache positions past the causal limit hold NaN: a
// kernel that reads them fails.
func TestAttention(t *testing.T) {
	tests := []struct {
		name       string
		p          wgsl.Attention
		rows, pos0 int
	}{
		{"stories-prefill", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 8, MaxCtx: 512}, 11, 0},
		{"stories-decode", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 8, MaxCtx: 512}, 1, 300},
		{"ref29m-prefill", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 64, MaxCtx: 512}, 70, 0},
		{"ref29m-chunked-prefill", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 64, MaxCtx: 512}, 13, 100},
		{"ref29m-decode", wgsl.Attention{Heads: 8, KVHeads: 4, HeadDim: 64, MaxCtx: 512}, 1, 511},
		{"mha-fused-q-hd80", wgsl.Attention{Heads: 3, KVHeads: 3, HeadDim: 80, MaxCtx: 200, QStride: 720, QOffset: 0, Scale: 0.05}, 4, 60},
		{"mqa-overflow", wgsl.Attention{Heads: 4, KVHeads: 1, HeadDim: 16, MaxCtx: 16}, 4, 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			stride := p.QStride
			if stride == 0 {
				stride = p.Heads * p.HeadDim
			}
			r := rand.New(rand.NewPCG(6, uint64(stride+tt.pos0)))
			q := randF32(r, tt.rows*stride, 2)
			n := p.KVHeads * p.MaxCtx * p.HeadDim
			kc, vc := randF32(r, n, 2), randF32(r, n, 3)
			filled := min(tt.pos0+tt.rows, p.MaxCtx)
			nan := float32(math.NaN())
			for h := 0; h < p.KVHeads; h++ {
				for i := (h*p.MaxCtx + filled) * p.HeadDim; i < (h+1)*p.MaxCtx*p.HeadDim; i++ {
					kc[i], vc[i] = nan, nan
				}
			}
			out, _ := run(t, launch{k: p, rows: tt.rows, pos0: tt.pos0, in: map[string][]byte{
				"q": f32bytes(q), "k_cache": f32bytes(kc), "v_cache": f32bytes(vc)}})
			scale := p.Scale
			if scale == 0 {
				scale = float32(1 / math.Sqrt(float64(p.HeadDim)))
			}
			want := ref.Attention(q, kc, vc, tt.rows, stride, p.QOffset, p.Heads, p.KVHeads, p.HeadDim, p.MaxCtx, tt.pos0, scale)
			checkClose(t, "o", bytesF32(out["o"]), want, func(int) float64 { return 2e-5*3 + 1e-6 })
		})
	}
}

// TestSiLUMul: tolerance 1e-5 * |want| + 1e-6 * |u| (f32 exp within a few
// ULP for |g| < 10).
func TestSiLUMul(t *testing.T) {
	for _, p := range []wgsl.SiLUMul{{F: 172}, {F: 1536}, {F: 1536, Fused: true}, {F: 5, Fused: true}} {
		t.Run(p.Name(), func(t *testing.T) {
			const rows = 3
			r := rand.New(rand.NewPCG(7, uint64(p.F)))
			g, u := randF32(r, rows*p.F, 10), randF32(r, rows*p.F, 2)
			in := map[string][]byte{}
			if p.Fused {
				gu := make([]float32, 0, 2*rows*p.F)
				for t := 0; t < rows; t++ {
					gu = append(gu, g[t*p.F:(t+1)*p.F]...)
					gu = append(gu, u[t*p.F:(t+1)*p.F]...)
				}
				in["gu"] = f32bytes(gu)
			} else {
				in["g"], in["u"] = f32bytes(g), f32bytes(u)
			}
			out, _ := run(t, launch{k: p, rows: rows, in: in})
			want := ref.SiLUMul(g, u)
			checkClose(t, "out", bytesF32(out["out"]), want, func(i int) float64 {
				return 1e-5*math.Abs(float64(want[i])) + 1e-6*math.Abs(float64(u[i]))
			})
		})
	}
}

// TestAdd: exact.
func TestAdd(t *testing.T) {
	for _, p := range []wgsl.Add{{D: 64}, {D: 512}, {D: 3}} {
		t.Run(p.Name(), func(t *testing.T) {
			const rows = 5
			r := rand.New(rand.NewPCG(8, uint64(p.D)))
			acc, x := randF32(r, rows*p.D, 4), randF32(r, rows*p.D, 4)
			out, _ := run(t, launch{k: p, rows: rows, in: map[string][]byte{"acc": f32bytes(acc), "x": f32bytes(x)}})
			checkClose(t, "acc", bytesF32(out["acc"]), ref.Add(acc, x), func(int) float64 { return 0 })
		})
	}
}

// TestSoftmax: tolerance 1e-5 * |want| + 1e-9.
func TestSoftmax(t *testing.T) {
	for _, p := range []wgsl.Softmax{{N: 8}, {N: 512}, {N: 4096}, {N: 1000}} {
		t.Run(p.Name(), func(t *testing.T) {
			const rows = 3
			r := rand.New(rand.NewPCG(9, uint64(p.N)))
			x := randF32(r, rows*p.N, 12)
			out, _ := run(t, launch{k: p, rows: rows, in: map[string][]byte{"x": f32bytes(x)}})
			want := ref.Softmax(x, p.N)
			checkClose(t, "y", bytesF32(out["y"]), want, func(i int) float64 { return 1e-5*math.Abs(float64(want[i])) + 1e-9 })
		})
	}
}

// logitCases are logit vectors with ties, NaN and infinities.
func logitCases(r *rand.Rand, n int) map[string][]float32 {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cs := map[string][]float32{"random": randF32(r, n, 10)}
	tie := randF32(r, n, 5)
	tie[n/3], tie[n-1], tie[min(7, n-1)] = 20, 20, 20
	cs["ties"] = tie
	nans := randF32(r, n, 5)
	nans[0], nans[n/2] = nan, nan
	cs["nan"] = nans
	cs["all-nan"] = make([]float32, n)
	for i := range cs["all-nan"] {
		cs["all-nan"][i] = nan
	}
	minf := randF32(r, n, 5)
	minf[n/2] = inf
	cs["inf"] = minf
	ints := make([]float32, n) // many exact ties below the top
	for i := range ints {
		ints[i] = float32(r.IntN(4))
	}
	cs["int-ties"] = ints
	return cs
}

// TestArgmax: exact index.
func TestArgmax(t *testing.T) {
	for _, p := range []wgsl.Argmax{{N: 512}, {N: 4096}, {N: 100}, {N: 128256}} {
		r := rand.New(rand.NewPCG(10, uint64(p.N)))
		for cname, x := range logitCases(r, p.N) {
			t.Run(p.Name()+"/"+cname, func(t *testing.T) {
				out, _ := run(t, launch{k: p, rows: 1, in: map[string][]byte{"logits": f32bytes(x)}})
				if got, want := binary.LittleEndian.Uint32(out["out"]), ref.Argmax(x); got != want {
					t.Errorf("argmax = %d (%v), want %d (%v)", got, x[got%uint32(p.N)], want, x[want])
				}
			})
		}
	}
}

// TestSample: exact token id. Each case's draw r is moved until the
// reference picks the same token for r ± 1e-4 and top_p ± 1e-4, so
// rounding differences of f32 exp (a few ULP) cannot flip the choice.
func TestSample(t *testing.T) {
	type params struct {
		temp float32
		topK int
		topP float32
	}
	settings := []params{
		{0, 0, 1}, {1, 1, 1}, {0.8, 40, 0.95}, {1, 0, 1}, {0.5, 5, 0.5}, {1.3, 0, 0.9}, {0.7, 300, 1},
	}
	for _, p := range []wgsl.Sample{{N: 512, MaxK: 64}, {N: 4096, MaxK: 64}, {N: 1000, MaxK: 256}, {N: 3, MaxK: 8}} {
		r := rand.New(rand.NewPCG(11, uint64(p.N)))
		for cname, x := range logitCases(r, p.N) {
			if cname == "inf" {
				continue // exp(inf - inf) is NaN: no defined distribution
			}
			for si, s := range settings {
				var u float32
				for try := 0; ; try++ {
					u = r.Float32()
					w := ref.Sample(x, s.temp, s.topK, s.topP, u, p.MaxK)
					stable := true
					for _, d := range []float32{-1e-4, 1e-4} {
						if ref.Sample(x, s.temp, s.topK, s.topP, min(max(u+d, 0), 0.99999), p.MaxK) != w ||
							ref.Sample(x, s.temp, s.topK, s.topP+d, u, p.MaxK) != w {
							stable = false
						}
					}
					if stable || try > 100 {
						break
					}
				}
				t.Run(name("%s/%s/%d", p.Name(), cname, si), func(t *testing.T) {
					uni := make([]byte, 16)
					binary.LittleEndian.PutUint32(uni[0:], math.Float32bits(s.temp))
					binary.LittleEndian.PutUint32(uni[4:], uint32(s.topK))
					binary.LittleEndian.PutUint32(uni[8:], math.Float32bits(s.topP))
					binary.LittleEndian.PutUint32(uni[12:], math.Float32bits(u))
					out, _ := run(t, launch{k: p, rows: 1, in: map[string][]byte{"logits": f32bytes(x)}, uni: map[string][]byte{"sampling": uni}})
					if got, want := binary.LittleEndian.Uint32(out["out"]), ref.Sample(x, s.temp, s.topK, s.topP, u, p.MaxK); got != want {
						t.Errorf("sample(temp %v, top_k %d, top_p %v, r %v) = %d, want %d", s.temp, s.topK, s.topP, u, got, want)
					}
				})
			}
		}
	}
}
