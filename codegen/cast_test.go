package codegen

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/testmodels"
)

// TestCastBF16: a bf16 model is refused by Plan with a pointer to the cast;
// after CastBF16 every tensor reads as f32 with exactly the bf16 values,
// the graph checks, and it plans.
func TestCastBF16(t *testing.T) {
	g := loadGraph(t, filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"))
	want := map[string][]float32{}
	for _, tn := range g.Tensors {
		v, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		b, err := ir.EncodeFloat32(ir.BF16, v)
		if err != nil {
			t.Fatal(err)
		}
		if want[tn.Name], err = ir.DecodeFloat32(ir.BF16, b); err != nil {
			t.Fatal(err)
		}
		*tn = ir.Tensor{Name: tn.Name, DType: ir.BF16, Shape: tn.Shape, Source: &ir.BytesSource{Data: b}}
	}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil && v.Tensor != nil {
				v.DType = ir.BF16
			}
		}
	}
	if _, err := Plan(g, Options{ContextLength: 16}); err == nil || !strings.Contains(err.Error(), "CastBF16") {
		t.Fatalf("Plan of a bf16 graph: err %v, want one pointing at CastBF16", err)
	}
	if cast := CastBF16(g); len(cast) != len(g.Tensors) {
		t.Errorf("CastBF16 cast %d of %d tensors", len(cast), len(g.Tensors))
	}
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tn := range g.Tensors {
		got, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != ir.F32 || len(got) != len(want[tn.Name]) {
			t.Fatalf("%s: %v with %d values after the cast", tn.Name, tn.DType, len(got))
		}
		for i, w := range want[tn.Name] {
			if got[i] != w {
				t.Fatalf("%s[%d] = %v, want %v (the bf16 value)", tn.Name, i, got[i], w)
			}
		}
	}
	if _, err := Generate(g, Options{ContextLength: 16}, nil); err != nil {
		t.Fatal(err)
	}
	if cast := CastBF16(g); len(cast) != 0 {
		t.Errorf("second CastBF16 cast %v", cast)
	}
}
