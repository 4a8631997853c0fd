//go:build unix && !linux

package bundle

import "errors"

// exchange is not available: publish falls back to renaming aside.
func exchange(a, b string) error { return errors.New("no atomic exchange") }
