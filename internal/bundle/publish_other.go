//go:build !unix

package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// publish renames tmp to dir, renaming an existing dir aside first.
func publish(tmp, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("bundle: publish: %w", err)
		}
		return nil
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("bundle: publish: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.Rename(old, dir)
		return fmt.Errorf("bundle: publish: %w", err)
	}
	os.RemoveAll(old)
	return nil
}

// removeStale does nothing here (no portable liveness check).
func removeStale(parent, base string) {}
