package ir

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// goldensUsed records which golden files the tests compared, so TestMain
// can fail on orphans (a golden no test reads any more).
var goldensUsed = map[string]bool{}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldensUsed[name] = true
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden (go test ./internal/ir -update rewrites it):\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		files, _ := filepath.Glob(filepath.Join("testdata", "*.golden"))
		for _, f := range files {
			if !goldensUsed[filepath.Base(f)] {
				fmt.Fprintf(os.Stderr, "golden file %s is read by no test\n", f)
				code = 1
			}
		}
	}
	os.Exit(code)
}
