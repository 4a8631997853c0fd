// Package testmodels locates the shared test models (../shared/models, or
// $SMELT_MODELS) for tests. A missing folder fails the test: tests never
// skip silently because data is absent.
package testmodels

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the models folder: $SMELT_MODELS, else <repo>/../shared/models.
func Dir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("SMELT_MODELS")
	if d == "" {
		d = filepath.Join(RepoRoot(), "..", "shared", "models")
	}
	if _, err := os.Stat(filepath.Join(d, "README.md")); err != nil {
		t.Fatalf("test models not found at %s (set SMELT_MODELS): %v", d, err)
	}
	return d
}

// Path joins elem onto Dir.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Dir(t)}, elem...)...)
}

// RepoRoot is the smelt repository root (found from this file's location).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}
