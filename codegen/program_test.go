package codegen

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/testmodels"
)

// seedProgram returns the encoded program of the embedded model.
func seedProgram(tb testing.TB, opts Options) []byte {
	tb.Helper()
	g := loadGraph(tb, filepath.Join(testmodels.RepoRoot(), "testdata", "stories260K"))
	low, err := Plan(g, opts)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := low.Program.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// TestDecodeProgramRejects: programs a runtime must not execute are errors
// that say what is wrong.
func TestDecodeProgramRejects(t *testing.T) {
	good := string(seedProgram(t, Options{ContextLength: 8, MaxRows: 4}))
	if _, err := DecodeProgram([]byte(good)); err != nil {
		t.Fatalf("the planned program does not decode: %v", err)
	}
	replace := func(old, new string) func() (string, error) {
		return func() (string, error) {
			if !strings.Contains(good, old) {
				return "", fmt.Errorf("%q not in the program", old)
			}
			return strings.Replace(good, old, new, 1), nil
		}
	}
	tests := []struct {
		name string
		bad  func() (string, error)
		want string
	}{
		{"version", replace(`"version":2`, `"version":1`), "program version 1"},
		{"unknown field", replace(`"version":2`, `"version":2,"extra":1`), "unknown field"},
		{"unknown buffer kind", replace(`"kind":"activation"`, `"kind":"texture"`), "unknown kind"},
		{"const data short of its size", replace(`"kind":"const","size":16,`, `"kind":"const","size":20,`), "16 bytes of data, want its size 20"},
		{"data on a uniform", replace(`"kind":"uniform","size":16}`, `"kind":"uniform","size":16,"data":"AAAAAAAAAAAAAAAAAAAAAA=="}`), "only const buffers"},
		{"undefined buffer", replace(`{"buffer":"act0"`, `{"buffer":"nope"`), `buffer "nope" is not defined`},
		{"binding past the buffer", replace(`"buffer":"step","offset":0,"size":16`, `"buffer":"step","offset":16,"size":16`), "outside buffer"},
		{"negative offset", replace(`"buffer":"step","offset":0,"size":16`, `"buffer":"step","offset":-4,"size":16`), "multiples of 4"},
		{"huge workgroups", replace(`"workgroups":[[1,1,1]`, `"workgroups":[[70000,1,1]`), "workgroup count"},
		{"unsorted buckets", replace(`"rows":[1,4]`, `"rows":[4,1]`), "row buckets"},
		{"trailing data", func() (string, error) { return good + " {}", nil }, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad, err := tt.bad()
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeProgram([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeProgram: err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeProgram: manifest.program comes from a bundle that may be
// hostile. DecodeProgram never panics, and what it accepts survives
// encoding unchanged and passes its own check again.
func FuzzDecodeProgram(f *testing.F) {
	f.Add(seedProgram(f, Options{ContextLength: 8, MaxRows: 4}))
	f.Add(seedProgram(f, Options{ContextLength: 16, MaxBindingSize: 1 << 16}))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":2,"context_length":1,"max_rows":1,"vocab_size":1,"buffers":[{"name":"c","kind":"const","size":4,"data":"AAAAAA=="}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := DecodeProgram(raw)
		if err != nil {
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeProgram(enc)
		if err != nil {
			t.Fatalf("re-encoded program fails: %v", err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
