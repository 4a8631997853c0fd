package quantize

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/smeltml/smelt/internal/ir"
)

func TestParseScheme(t *testing.T) {
	tests := []struct {
		name string
		want Scheme
	}{
		{"int4-g128-asym", Scheme{Bits: 4, GroupSize: 128, ScaleType: ir.F16}},
		{"int4-g32-sym", Scheme{Bits: 4, GroupSize: 32, Symmetric: true, ScaleType: ir.F16}},
		{"int4-g64-asym-f32", Scheme{Bits: 4, GroupSize: 64, ScaleType: ir.F32}},
		{"int8-channel-sym", Scheme{Bits: 8, Symmetric: true, ScaleType: ir.F16}},
		{"int8-g128-asym", Scheme{Bits: 8, GroupSize: 128, ScaleType: ir.F16}},
		{"int4-g16-sym-f32", Scheme{Bits: 4, GroupSize: 16, Symmetric: true, ScaleType: ir.F32}},
		{"int4-channel-asym", Scheme{Bits: 4, ScaleType: ir.F16}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseScheme(tt.name)
			if err != nil {
				t.Fatalf("ParseScheme(%q): %v", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseScheme(%q) mismatch (-want +got):\n%s", tt.name, diff)
			}
			if got.Name() != tt.name {
				t.Errorf("ParseScheme(%q).Name() = %q", tt.name, got.Name())
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseSchemeErrors(t *testing.T) {
	for _, name := range []string{
		"", "int4", "int3-g128-asym", "int4-g100-asym", "int4-g0-asym", "int4-g512-asym",
		"int4-g128", "int4-g128-both", "int4-g128-asym-f64", "int4-g0128-asym", "int4-g+128-asym",
		"int4-g128-asym-gptq", "INT4-g128-asym", "int4-g8-asym", "int4-g128-asym-f32-x",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseScheme(name)
			if err == nil {
				t.Fatalf("ParseScheme(%q) succeeded, want error", name)
			}
			if !strings.Contains(err.Error(), "int4-g128-asym") {
				t.Errorf("ParseScheme(%q) error %q does not quote the grammar", name, err)
			}
		})
	}
}

func TestParseSchemeAlgo(t *testing.T) {
	tests := []struct {
		name   string
		scheme string
		algo   Algorithm
	}{
		{"int4-g128-asym-gptq", "int4-g128-asym", AlgoGPTQ},
		{"int4-g32-sym-f32-awq", "int4-g32-sym-f32", AlgoAWQ},
		{"int8-channel-sym-rtn", "int8-channel-sym", AlgoRTN},
		{"int8-channel-sym", "int8-channel-sym", ""},
	}
	for _, tt := range tests {
		s, a, err := ParseSchemeAlgo(tt.name)
		if err != nil {
			t.Fatalf("ParseSchemeAlgo(%q): %v", tt.name, err)
		}
		if s.Name() != tt.scheme || a != tt.algo {
			t.Errorf("ParseSchemeAlgo(%q) = %s, %q; want %s, %q", tt.name, s.Name(), a, tt.scheme, tt.algo)
		}
	}
}

func TestCheckShape(t *testing.T) {
	tests := []struct {
		scheme     string
		rows, cols int
		ok         bool
	}{
		{"int4-g128-asym", 4, 256, true},
		{"int4-g128-asym", 4, 172, false},
		{"int4-channel-asym", 4, 172, false}, // not a multiple of 8
		{"int4-channel-asym", 4, 176, true},
		{"int8-channel-sym", 4, 172, true},
		{"int8-g32-sym", 4, 172, false},
		{"int4-g32-sym", 0, 32, false},
	}
	for _, tt := range tests {
		s, err := ParseScheme(tt.scheme)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckShape(tt.rows, tt.cols); (err == nil) != tt.ok {
			t.Errorf("%s.CheckShape(%d, %d) = %v, want ok=%v", tt.scheme, tt.rows, tt.cols, err, tt.ok)
		}
	}
}
