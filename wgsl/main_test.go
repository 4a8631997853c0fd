package wgsl_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/smeltml/smelt/internal/dawn"
	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/wgsl"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.wgsl")

const goldenDir = "testdata/golden"

var (
	runnerOnce sync.Once
	runner     *dawn.Runner
	runnerErr  error

	goldenMu   sync.Mutex
	goldenUsed = map[string]bool{}
)

// gpu returns the package's shared Dawn runner; a missing node or Dawn fails
// the test.
func gpu(t testing.TB) *dawn.Runner {
	t.Helper()
	runnerOnce.Do(func() {
		runner, runnerErr = dawn.Start(dawn.Options{Root: testmodels.RepoRoot()})
	})
	if runnerErr != nil {
		t.Fatalf("Dawn for Node is required: %v", runnerErr)
	}
	return runner
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if runner != nil {
		runner.Close()
	}
	// Orphaned goldens are only detectable when every test ran.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		files, _ := filepath.Glob(filepath.Join(goldenDir, "*.wgsl"))
		var orphans []string
		for _, f := range files {
			if !goldenUsed[filepath.Base(f)] {
				orphans = append(orphans, f)
			}
		}
		if len(orphans) > 0 {
			sort.Strings(orphans)
			if *update {
				for _, f := range orphans {
					os.Remove(f)
				}
				fmt.Printf("removed %d orphaned goldens\n", len(orphans))
			} else {
				fmt.Printf("FAIL: orphaned goldens (no test renders them; run with -update to remove):\n  %s\n", strings.Join(orphans, "\n  "))
				code = 1
			}
		}
	}
	os.Exit(code)
}

// use renders k, compares the text with its golden file (rewritten with
// -update) and validates it with Tint on Dawn's null backend. It returns the
// WGSL source.
func use(t testing.TB, k wgsl.Kernel) string {
	t.Helper()
	src, err := k.Render()
	if err != nil {
		t.Fatalf("render %s: %v", k.Name(), err)
	}
	file := k.Name() + ".wgsl"
	goldenMu.Lock()
	seen := goldenUsed[file]
	goldenUsed[file] = true
	goldenMu.Unlock()
	path := filepath.Join(goldenDir, file)
	if *update {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("golden %s: %v (run go test ./wgsl -update)", path, err)
		}
		if string(want) != src {
			t.Errorf("rendered %s differs from %s (run go test ./wgsl -update and review the diff)", k.Name(), path)
		}
	}
	if seen {
		return src
	}
	errs, err := gpu(t).Validate([]dawn.Kernel{{Code: src, Entry: wgsl.Entry}})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs[0]) > 0 {
		t.Fatalf("Tint rejects %s:\n%s\n--- source ---\n%s", k.Name(), strings.Join(errs[0], "\n"), numbered(src))
	}
	return src
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, l)
	}
	return b.String()
}
