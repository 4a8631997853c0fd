//go:build unix

package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// publish moves the complete temporary bundle tmp to dir: a plain rename
// when dir does not exist, otherwise an atomic exchange (Linux) or a
// rename-aside (elsewhere), then removes the old bundle and fsyncs the
// parent directory.
func publish(tmp, dir string) error {
	parent := filepath.Dir(dir)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("bundle: publish: %w", err)
		}
		return syncDir(parent)
	}
	if err := exchange(tmp, dir); err == nil {
		// tmp now holds the old bundle.
		if err := syncDir(parent); err != nil {
			return err
		}
		os.RemoveAll(tmp)
		return nil
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("bundle: publish: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.Rename(old, dir) // put the old bundle back
		return fmt.Errorf("bundle: publish: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	os.RemoveAll(old)
	return nil
}

// removeStale removes temporary directories of earlier Writes to
// parent/base whose process is gone (names ".BASE.tmp-PID-*").
func removeStale(parent, base string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	prefix := tempPrefix(base)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}
