package codegen

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/convert"
	"github.com/smeltml/smelt/internal/dawn"
	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

func loadGraph(t testing.TB, dir string) *ir.Graph {
	t.Helper()
	m, err := convert.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m.Graph
}

// TestPlanGolden pins the plan (buffers, kernels, every dispatch) of the
// embedded model and of ref29m (read from its headers and config only).
func TestPlanGolden(t *testing.T) {
	tests := []struct {
		name string
		dir  func(t *testing.T) string
		opts Options
	}{
		{"stories260K", func(*testing.T) string { return filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K") }, Options{}},
		{"stories260K-f16-ctx64", func(*testing.T) string { return filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K") }, Options{F16: true, ContextLength: 64, MaxRows: 16}},
		{"ref29m", func(t *testing.T) string { return testmodels.Path(t, "ref29m") }, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := loadGraph(t, tt.dir(t))
			low, err := Plan(g, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := low.Explain(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name+".plan")
			useGolden(tt.name + ".plan")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./codegen -update)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("plan differs from %s (-want +got):\n%s", path, diff)
			}
			// The program survives its JSON form.
			raw, err := low.Program.Encode()
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeProgram(raw)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(low.Program, back); diff != "" {
				t.Errorf("program JSON round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanInvariants checks properties every plan must have: no dispatch
// binds one buffer twice when one binding writes (WebGPU forbids it), every
// offset is 256-aligned, and the VRAM estimate covers the KV cache.
func TestPlanInvariants(t *testing.T) {
	g := loadGraph(t, filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"))
	for _, opts := range []Options{{}, {ContextLength: 7, MaxRows: 3}, {MaxBindingSize: 1 << 16}} {
		low, err := Plan(g, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		c := g.Config
		wantKV := int64(2*c.NumLayers*c.NumKVHeads*c.HeadDim*4) * int64(low.Options.ContextLength)
		if low.Requirements.KVBytes != wantKV {
			t.Errorf("%+v: kv bytes %d, want %d", opts, low.Requirements.KVBytes, wantKV)
		}
		p := low.Program
		for _, pass := range []*Pass{&p.Prefill, &p.Decode, &p.Greedy} {
			for i, s := range pass.Steps {
				k := low.Kernel(s.Kernel)
				seen := map[string]bool{}
				for j, b := range s.Bindings {
					if b.Offset%BindingAlignment != 0 {
						t.Errorf("%+v: step %d (%s) binding %d offset %d not aligned", opts, i, s.Node, j, b.Offset)
					}
					if b.Buffer == "" {
						continue
					}
					if seen[b.Buffer] {
						t.Errorf("%+v: step %d (%s %s) binds buffer %q twice", opts, i, s.Node, s.Kernel, b.Buffer)
					}
					seen[b.Buffer] = true
					_ = k
				}
			}
		}
	}
}

// TestSplitLargeWeights forces row splits with a small binding limit and
// checks that the ranges tile every row exactly once, at aligned offsets.
func TestSplitLargeWeights(t *testing.T) {
	g := loadGraph(t, filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"))
	// token_embd is 512x64 f32 = 128 KiB: the tied logits head must split.
	low, err := Plan(g, Options{MaxBindingSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var ranges []string
	var covered int
	for _, s := range low.Program.Decode.Steps {
		if s.Node != "logits" {
			continue
		}
		ranges = append(ranges, s.Kernel)
		w := s.Bindings[2]
		if w.Tensor != ir.TokenEmbedding || w.Size > 1<<16 {
			t.Errorf("logits split binds %+v", w)
		}
		covered += int(w.Size / (64 * 4))
	}
	if len(ranges) != 2 || covered != 512 {
		t.Errorf("logits head split into %v covering %d rows, want 2 ranges covering 512", ranges, covered)
	}
	if _, err := Plan(g, Options{MaxBindingSize: 1000}); err == nil || !strings.Contains(err.Error(), "binding size") {
		t.Errorf("a binding limit below 64 KiB: err %v, want a binding size error", err)
	}
}

// TestKernelsValidate compiles every kernel of the stories260K and ref29m
// plans (f32 and f16) with Tint on Dawn's null backend.
func TestKernelsValidate(t *testing.T) {
	r, err := dawn.Start(dawn.Options{Root: testmodels.RepoRoot()})
	if err != nil {
		t.Fatalf("Dawn for Node is required: %v", err)
	}
	defer r.Close()
	var ks []dawn.Kernel
	var names []string
	for _, dir := range []string{filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"), testmodels.Path(t, "ref29m")} {
		g := loadGraph(t, dir)
		for _, f16 := range []bool{false, true} {
			low, err := Plan(g, Options{F16: f16})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range low.Kernels {
				src, err := k.Render()
				if err != nil {
					t.Fatal(err)
				}
				ks = append(ks, dawn.Kernel{Code: src, Entry: "main"})
				names = append(names, k.Name())
			}
		}
	}
	res, err := r.Validate(ks)
	if err != nil {
		t.Fatal(err)
	}
	for i, errs := range res {
		if len(errs) > 0 {
			t.Errorf("kernel %s: %s", names[i], strings.Join(errs, "; "))
		}
	}
}
