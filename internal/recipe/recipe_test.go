package recipe

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	src := `version: 1
source: stories260K
quantize:
  scheme: int4-g32-asym
  algo: gptq
  calibration:
    text: calib.txt
    sequences: 16
  rules:
    - match: 'ffn_down'
      scheme: keep
codegen:
  context: 256
shard_size: 32MiB
sign:
  key_env: SMELT_SIGNING_KEY
validate:
  text: calib.txt
  max_ppl_increase: 2%
  max_kl: 0.05
  min_top1: 0.9
`
	r, err := Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	kl, top1, ppl := 0.05, 0.9, Percent(0.02)
	want := &Recipe{
		Version: 1, Source: "stories260K",
		Quantize: &Quantize{Scheme: "int4-g32-asym", Algo: "gptq", Calibration: &Calibration{Text: "calib.txt", Sequences: 16},
			Rules: []Rule{{Match: "ffn_down", Scheme: "keep"}}},
		Codegen:   &Codegen{Context: 256},
		ShardSize: 32 << 20,
		Sign:      &Sign{KeyEnv: "SMELT_SIGNING_KEY"},
		Validate:  &Validate{Text: "calib.txt", MaxPPLIncrease: &ppl, MaxKL: &kl, MinTop1: &top1},
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown field with position", "version: 1\nsource: m\nquantise:\n  scheme: x\n", "[3:1]"},
		{"type error with position", "version: 1\nsource: m\ncodegen:\n  context: lots\n", "[4:"},
		{"yaml 1.1 no is not a bool", "version: 1\nsource: m\ncodegen:\n  f16: no\n", "[4:"},
		{"duplicate key", "version: 1\nversion: 1\nsource: m\n", "already defined"},
		{"bad version", "version: 2\nsource: m\n", "[1:10] version 2"},
		{"missing source", "version: 1\n", "source: required"},
		{"gptq without calibration", "version: 1\nsource: m\nquantize:\n  scheme: int4-g128-asym\n  algo: gptq\n", "calibration.text"},
		{"bad algo", "version: 1\nsource: m\nquantize:\n  scheme: int4-g128-asym\n  algo: hqq\n", "[5:9] quantize.algo \"hqq\""},
		{"bad regex", "version: 1\nsource: m\nquantize:\n  scheme: s\n  rules:\n    - match: '('\n      scheme: keep\n", "[6:14] quantize.rules[0].match"},
		{"bad size", "version: 1\nsource: m\nshard_size: 32 potatoes\n", "[3:13] size \"32 potatoes\""},
		{"size is not a scalar", "version: 1\nsource: m\nshard_size: [1]\n", "[3:13] size: want a number"},
		{"bad percent", "version: 1\nsource: m\nvalidate:\n  text: t\n  max_ppl_increase: lots%\n", "percentage"},
		{"two keys", "version: 1\nsource: m\nsign:\n  key_file: a\n  key_env: B\n", "exactly one"},
		{"prune sparsity", "version: 1\nsource: m\nprune:\n  method: magnitude\n  sparsity: 1.5\n", "[5:13] prune.sparsity"},
		{"calibration holdout", "version: 1\nsource: m\nquantize:\n  scheme: s\n  algo: gptq\n  calibration:\n    text: c\n    holdout: 1.5\n", "[8:14] quantize.calibration.holdout"},
		{"validate holdout", "version: 1\nsource: m\nvalidate:\n  text: t\n  holdout: -0.1\n", "[5:12] validate.holdout"},
		{"missing field points at its parent", "version: 1\nsource: m\nvalidate:\n  ctx: 8\n", "[4:3] validate.text: required"},
		{"prune nm", "version: 1\nsource: m\nprune:\n  method: nm\n  n: 4\n  m: 2\n", "0 < n < m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("r.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "recipe: r.yaml: [") {
				t.Errorf("error %q lacks the recipe: r.yaml: [line:column] prefix", err)
			}
		})
	}
}

func TestByteSizeAndPercent(t *testing.T) {
	for in, want := range map[string]ByteSize{"4096": 4096, "32MiB": 32 << 20, "1GB": 1e9, "2KiB": 2048} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]Percent{"2%": 0.02, "0.5": 0.5, "0%": 0} {
		if got, err := ParsePercent(in); err != nil || got != want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func FuzzRecipe(f *testing.F) {
	f.Add([]byte("version: 1\nsource: m\nquantize:\n  scheme: int4-g128-asym\n"))
	f.Add([]byte("version: 1\nsource: m\nshard_size: 32MiB\nvalidate:\n  text: t\n  max_ppl_increase: 2%\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.yaml", data)
	})
}
