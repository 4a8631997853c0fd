package buildrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/ir"
	"github.com/smeltml/smelt/internal/recipe"
)

func TestCheckOut(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "models", "m")
	mk := func(p string, files ...string) string {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(p, f), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	mk(src, "config.json")
	file := filepath.Join(mk(filepath.Join(tmp, "f"), "plain"), "plain")
	tests := []struct {
		name, out string
		bad       bool
	}{
		{"beside", filepath.Join(tmp, "out"), false},
		{"inside the source", filepath.Join(src, "bundle"), false},
		{"the source", src, true},
		{"the source, unclean", filepath.Join(src, "..", "m") + "/", true},
		{"a parent of the source", filepath.Join(tmp, "models"), true},
		{"an empty folder", mk(filepath.Join(tmp, "empty")), false},
		{"a previous bundle", mk(filepath.Join(tmp, "prev"), "manifest.json", "x.bin"), false},
		{"a folder of other files", mk(filepath.Join(tmp, "docs"), "README"), true},
		{"a file", file, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOut(src, tt.out)
			if (err != nil) != tt.bad {
				t.Errorf("checkOut(%s, %s) = %v, want error %v", src, tt.out, err, tt.bad)
			}
		})
	}
}

// TestStoredBytes sums a hand-made table: a packed int4 weight with its
// scales and zeros counts under its scheme, float tensors under their
// dtype.
func TestStoredBytes(t *testing.T) {
	q := &ir.QuantInfo{Scheme: "int4-g32-asym", Bits: 4, GroupSize: 32, ScaleType: ir.F16, Rows: 8, Cols: 64, Scales: "w.scales", Zeros: "w.zeros"}
	g := &ir.Graph{Tensors: []*ir.Tensor{
		{Name: "w", DType: ir.U32, Shape: ir.Shape{8, 8}, Quant: q}, // 8·64·4/8 = 256 bytes
		{Name: "w.scales", DType: ir.F16, Shape: ir.Shape{8, 2}},    // 32
		{Name: "w.zeros", DType: ir.U8, Shape: ir.Shape{8, 1}},      // 8
		{Name: "norm", DType: ir.F32, Shape: ir.Shape{64}},          // 256
		{Name: "emb", DType: ir.F16, Shape: ir.Shape{10, 64}},       // 1280
	}}
	want := BytesReport{
		Total:    256 + 32 + 8 + 256 + 1280,
		ByDType:  map[string]int64{"u32": 256, "f16": 32 + 1280, "u8": 8, "f32": 256},
		ByScheme: map[string]int64{"int4-g32-asym": 256 + 32 + 8, "f32": 256, "f16": 1280},
	}
	if diff := cmp.Diff(want, StoredBytes(g)); diff != "" {
		t.Errorf("StoredBytes mismatch (-want +got):\n%s", diff)
	}
}

func TestRunArguments(t *testing.T) {
	if _, err := Run(Options{Out: "x"}); err == nil || !strings.Contains(err.Error(), "recipe") {
		t.Errorf("Run without a recipe: %v", err)
	}
	if _, err := Run(Options{Recipe: &recipe.Recipe{Version: 1, Source: "m"}}); err == nil || !strings.Contains(err.Error(), "output") {
		t.Errorf("Run without an output: %v", err)
	}
	rep, err := Run(Options{Recipe: &recipe.Recipe{Version: 1, Source: "no-such-model", Dir: t.TempDir()}, Out: filepath.Join(t.TempDir(), "out")})
	if err == nil || !strings.Contains(err.Error(), "no-such-model") {
		t.Errorf("Run with a missing source: %v", err)
	}
	if rep == nil || rep.Published || len(rep.Stages) != 1 || rep.Stages[0].Name != StageSource {
		t.Errorf("report of a failed source stage: %+v", rep)
	}
}
