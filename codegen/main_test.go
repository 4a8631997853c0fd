package codegen

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.plan goldens (and remove orphaned ones)")

var (
	goldenMu   sync.Mutex
	goldenUsed = map[string]bool{}
)

// useGolden records that a test compared against testdata/name.
func useGolden(name string) {
	goldenMu.Lock()
	goldenUsed[name] = true
	goldenMu.Unlock()
}

// TestMain fails the run when a golden under testdata/ has no test (only
// when every test ran; -update removes such files).
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		files, _ := filepath.Glob(filepath.Join("testdata", "*.plan"))
		var orphans []string
		for _, f := range files {
			if !goldenUsed[filepath.Base(f)] {
				orphans = append(orphans, f)
			}
		}
		sort.Strings(orphans)
		switch {
		case len(orphans) > 0 && *update:
			for _, f := range orphans {
				os.Remove(f)
			}
			fmt.Printf("removed %d orphaned goldens\n", len(orphans))
		case len(orphans) > 0:
			fmt.Printf("FAIL: orphaned goldens (no test compares them; run go test ./codegen -update to remove):\n  %s\n", strings.Join(orphans, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}
