package exec

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/textdata"
)

func TestRopeInvFreq(t *testing.T) {
	llama31 := &ir.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	for _, tt := range []struct {
		name    string
		hd      int
		theta   float64
		sc      *ir.RopeScaling
		want    []float32 // exact values, when given
		wantErr string
	}{
		{name: "default", hd: 8, theta: 10000, want: []float32{1, 0.1, 0.01, 0.001}},
		{name: "linear", hd: 8, theta: 10000, sc: &ir.RopeScaling{Type: "linear", Factor: 4}, want: []float32{0.25, 0.025, 0.0025, 0.00025}},
		{name: "llama3.1", hd: 128, theta: 500000, sc: llama31},
		{name: "llama3.2", hd: 64, theta: 500000, sc: &ir.RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}},
		{name: "odd", hd: 7, theta: 10000, wantErr: "even"},
		{name: "theta", hd: 8, theta: 0, wantErr: "rope_theta"},
		{name: "yarn", hd: 8, theta: 10000, sc: &ir.RopeScaling{Type: "yarn", Factor: 2}, wantErr: `"yarn" is not supported`},
		{name: "factor", hd: 8, theta: 10000, sc: &ir.RopeScaling{Type: "linear"}, wantErr: "factor 0"},
		{name: "llama3 bands", hd: 8, theta: 10000, sc: &ir.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 4, HighFreqFactor: 1, OriginalMaxPositionEmbeddings: 8192}, wantErr: "low < high"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RopeInvFreq(tt.hd, tt.theta, tt.sc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RopeInvFreq = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("RopeInvFreq (-want +got):\n%s", diff)
				}
				return
			}
			want := oracleInvFreq(ir.Config{HeadDim: tt.hd, RopeTheta: tt.theta, RopeScaling: tt.sc})
			for i := range want {
				if float32(want[i]) != got[i] {
					t.Errorf("inv_freq[%d] = %v, oracle %v", i, got[i], want[i])
				}
			}
			// The highest frequency is kept, the lowest divided by factor.
			base := 1 / math.Pow(tt.theta, float64(tt.hd-2)/float64(tt.hd))
			if got[0] != 1 {
				t.Errorf("inv_freq[0] = %v, want 1 (wavelength 2π is below the high-frequency band)", got[0])
			}
			if w := float32(base / tt.sc.Factor); got[len(got)-1] != w {
				t.Errorf("inv_freq[last] = %v, want %v (low frequency divided by %v)", got[len(got)-1], w, tt.sc.Factor)
			}
		})
	}
}

func TestPerplexityWindows(t *testing.T) {
	for _, tt := range []struct {
		n, ctx, stride int
		want           []Window
		wantErr        string
	}{
		{n: 10, ctx: 4, stride: 2, want: []Window{{0, 4, 1}, {2, 6, 4}, {4, 8, 6}, {6, 10, 8}}},
		{n: 10, ctx: 4, stride: 4, want: []Window{{0, 4, 1}, {4, 8, 5}, {8, 10, 9}}},
		{n: 9, ctx: 4, stride: 4, want: []Window{{0, 4, 1}, {4, 8, 5}}},
		{n: 3, ctx: 512, stride: 512, want: []Window{{0, 3, 1}}},
		{n: 11, ctx: 4, stride: 3, want: []Window{{0, 4, 1}, {3, 7, 4}, {6, 10, 7}, {9, 11, 10}}},
		{n: 1, ctx: 4, stride: 4, wantErr: "at least 2 tokens"},
		{n: 10, ctx: 4, stride: 5, wantErr: "stride 5"},
		{n: 10, ctx: 4, stride: 0, wantErr: "stride 0"},
		{n: 10, ctx: 1, stride: 1, wantErr: "context 1"},
	} {
		got, err := PerplexityWindows(tt.n, tt.ctx, tt.stride)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("PerplexityWindows(%d, %d, %d) = %v, want an error containing %q", tt.n, tt.ctx, tt.stride, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("PerplexityWindows(%d, %d, %d) (-want +got):\n%s", tt.n, tt.ctx, tt.stride, diff)
		}
		// Every target 1..n-1 is scored at most once, and all of them when stride < ctx.
		seen := map[int]int{}
		for _, w := range got {
			for t := w.ScoreFrom; t < w.End; t++ {
				seen[t]++
			}
		}
		for tok, c := range seen {
			if c != 1 || tok < 1 {
				t.Errorf("n=%d ctx=%d stride=%d: target %d scored %d times", tt.n, tt.ctx, tt.stride, tok, c)
			}
		}
		if tt.stride < tt.ctx && len(seen) != tt.n-1 {
			t.Errorf("n=%d ctx=%d stride=%d: %d targets scored, want %d", tt.n, tt.ctx, tt.stride, len(seen), tt.n-1)
		}
	}
}

// TestPerplexityWindowsTextdata checks that the executor's windows are
// those of internal/textdata (the data reader's statement of the protocol).
func TestPerplexityWindowsTextdata(t *testing.T) {
	for n := 2; n <= 40; n++ {
		ids := make([]int, n)
		for ctx := 2; ctx <= 9; ctx++ {
			for stride := 1; stride <= ctx; stride++ {
				got, err := PerplexityWindows(n, ctx, stride)
				if err != nil {
					t.Fatal(err)
				}
				want, err := textdata.Windows(ids, ctx, stride)
				if err != nil {
					t.Fatal(err)
				}
				var conv []Window
				for _, w := range want {
					conv = append(conv, Window{Start: w.Start, End: w.Start + len(w.IDs), ScoreFrom: w.Start + w.First})
				}
				if diff := cmp.Diff(conv, got); diff != "" {
					t.Fatalf("n=%d ctx=%d stride=%d (-textdata +exec):\n%s", n, ctx, stride, diff)
				}
			}
		}
	}
}

// TestPerplexityOracle checks Perplexity's sum against NLLs computed from
// the float64 oracle's logits on a synthetic model, window by window.
func TestPerplexityOracle(t *testing.T) {
	sc := synthConfigs()[0]
	g := synthGraph(t, sc)
	m := mustLoad(t, g, Options{})
	ids := make([]int, 23)
	for i := range ids {
		ids[i] = (i*7 + 3) % sc.cfg.VocabSize
	}
	for _, stride := range []int{8, 5} {
		r, err := m.Perplexity(ids, 8, stride, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws, _ := PerplexityWindows(len(ids), 8, stride)
		var sum float64
		var n int
		for _, w := range ws {
			logits := oracleForward(t, g, ids[w.Start:w.End])
			for tok := w.ScoreFrom; tok < w.End; tok++ {
				row := logits[tok-1-w.Start]
				p := softmax64(row)
				sum -= math.Log(p[ids[tok]])
				n++
			}
		}
		if r.Scored != n || r.Windows != len(ws) {
			t.Errorf("stride %d: scored %d in %d windows, want %d in %d", stride, r.Scored, r.Windows, n, len(ws))
		}
		if math.Abs(r.NLLSum-sum) > 1e-4*sum {
			t.Errorf("stride %d: NLL sum %v, oracle %v", stride, r.NLLSum, sum)
		}
		if want := math.Exp(sum / float64(n)); math.Abs(r.PPL-want) > 1e-4*want {
			t.Errorf("stride %d: ppl %v, oracle %v", stride, r.PPL, want)
		}
	}
}

func TestLogSoftmax(t *testing.T) {
	for _, tt := range []struct {
		logits []float32
		target int
		want   float64
	}{
		{[]float32{0, 0}, 1, -math.Ln2},
		{[]float32{1000, 1000, 1000, 1000}, 2, -math.Log(4)}, // no overflow
		{[]float32{-1000, 0}, 1, 0},
		{[]float32{2, 1, 0}, 0, 2 - math.Log(math.Exp(2)+math.Exp(1)+1)},
	} {
		if got := LogSoftmax(tt.logits, tt.target); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("LogSoftmax(%v, %d) = %v, want %v", tt.logits, tt.target, got, tt.want)
		}
	}
}

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	for _, tt := range []struct {
		x    []float32
		want int
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{3, 3, 2}, 0},
		{[]float32{nan, -1, -2}, 1},
		{[]float32{float32(math.Inf(-1)), float32(math.Inf(-1))}, 0},
		{[]float32{nan, nan}, 0},
	} {
		if got := Argmax(tt.x); got != tt.want {
			t.Errorf("Argmax(%v) = %d, want %d", tt.x, got, tt.want)
		}
	}
}

func TestOpsSmall(t *testing.T) {
	// RMSNorm of [3, 4] with w = [1, 2]: rms = sqrt(12.5 + eps).
	y := make([]float32, 2)
	RMSNorm(y, []float32{3, 4}, 1, 2, []float32{1, 2}, 0)
	if want := []float32{float32(3 / math.Sqrt(12.5)), float32(8 / math.Sqrt(12.5))}; cmp.Diff(want, y) != "" {
		t.Errorf("RMSNorm = %v, want %v", y, want)
	}
	// RoPE by 90° of head [1 2 | 3 4] (half 2; both pairs rotate by π/2).
	x := []float32{1, 2, 3, 4}
	RoPE(x, 1, 1, 4, []float32{0, 0}, []float32{1, 1})
	if want := []float32{-3, -4, 1, 2}; cmp.Diff(want, x) != "" {
		t.Errorf("RoPE by π/2 = %v, want %v", x, want)
	}
	// Linear with bias: [1 2] · [[1 0] [0 1] [1 1]]ᵀ + [0 0 1] for T = 1 and 2.
	w := []float32{1, 0, 0, 1, 1, 1}
	for _, T := range []int{1, 2} {
		x := []float32{1, 2, 1, 2}
		y := make([]float32, 3*T)
		Linear(y, x, T, w, 3, 2, []float32{0, 0, 1})
		want := []float32{1, 2, 4, 1, 2, 4}[:3*T]
		if diff := cmp.Diff(want, y); diff != "" {
			t.Errorf("Linear T=%d (-want +got):\n%s", T, diff)
		}
	}
	// SiLUMul: silu(0) = 0, silu(1) = 1/(1+e^-1).
	g := []float32{0, 1}
	SiLUMul(g, []float32{5, 2}, 2)
	if want := []float32{0, float32(2 / (1 + math.Exp(-1)))}; cmp.Diff(want, g) != "" {
		t.Errorf("SiLUMul = %v, want %v", g, want)
	}
}

func TestSampler(t *testing.T) {
	logits := []float32{1, 3, 2.5, -1, 0}
	greedy, err := NewSampler(SamplerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := greedy.Sample(logits); got != 1 {
		t.Errorf("greedy Sample = %d, want 1", got)
	}
	for _, o := range []SamplerOptions{{Temperature: 1, TopK: 1, Seed: 3}, {Temperature: 5, TopP: 1e-9, Seed: 3}} {
		s, _ := NewSampler(o)
		for range 20 {
			if got := s.Sample(logits); got != 1 {
				t.Fatalf("%+v: Sample = %d, want the argmax 1", o, got)
			}
		}
	}
	// Temperature 1, top-k 2: tokens 1 and 2 with p ∝ e^3 : e^2.5.
	s, _ := NewSampler(SamplerOptions{Temperature: 1, TopK: 2, Seed: 42})
	counts := map[int]int{}
	const n = 20000
	for range n {
		counts[s.Sample(logits)]++
	}
	p1 := 1 / (1 + math.Exp(-0.5))
	if len(counts) != 2 || math.Abs(float64(counts[1])/n-p1) > 0.02 {
		t.Errorf("top-k 2 counts %v, want only 1 and 2 with P(1) ≈ %.3f", counts, p1)
	}
	// At temperature 1, p(1) = 0.553, p(2) = 0.335: top-p 0.5 keeps only
	// token 1, top-p 0.8 keeps tokens 1 and 2.
	for _, tc := range []struct {
		topP float64
		want map[int]bool
	}{{0.5, map[int]bool{1: true}}, {0.8, map[int]bool{1: true, 2: true}}} {
		s, _ := NewSampler(SamplerOptions{Temperature: 1, TopP: tc.topP, Seed: 9})
		got := map[int]bool{}
		for range 2000 {
			got[s.Sample(logits)] = true
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("top-p %v: tokens drawn (-want +got):\n%s", tc.topP, diff)
		}
	}
	// Same seed, same tokens.
	a, _ := NewSampler(SamplerOptions{Temperature: 0.8, TopP: 0.9, Seed: 7})
	b, _ := NewSampler(SamplerOptions{Temperature: 0.8, TopP: 0.9, Seed: 7})
	for i := range 100 {
		if x, y := a.Sample(logits), b.Sample(logits); x != y {
			t.Fatalf("draw %d: %d vs %d with the same seed", i, x, y)
		}
	}
	if allocs := testing.AllocsPerRun(20, func() { a.Sample(logits) }); allocs != 0 {
		t.Errorf("Sample allocates %v times per call, want 0", allocs)
	}
	for _, o := range []SamplerOptions{{Temperature: -1}, {TopK: -1}, {TopP: 1.5}, {Temperature: math.NaN()}} {
		if _, err := NewSampler(o); err == nil {
			t.Errorf("NewSampler(%+v): no error", o)
		}
	}
}
