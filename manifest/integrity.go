package manifest

import (
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// Integrity returns the Subresource Integrity value of a SHA-384 digest:
// "sha384-" + standard base64 (with padding), usable as-is in
// fetch(url, {integrity}).
func Integrity(sum [48]byte) string {
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// IntegrityOf returns the Integrity of data.
func IntegrityOf(data []byte) string { return Integrity(sha512.Sum384(data)) }

// ParseIntegrity parses an Integrity value. Only the exact form Integrity
// writes is accepted: one "sha384-" token, canonical padded base64 of 48
// bytes, no options, no whitespace.
func ParseIntegrity(s string) ([48]byte, error) {
	var sum [48]byte
	b64, ok := strings.CutPrefix(s, "sha384-")
	if !ok {
		return sum, fmt.Errorf("integrity %q: want sha384-<base64>", s)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(b) != len(sum) || base64.StdEncoding.EncodeToString(b) != b64 {
		return sum, fmt.Errorf("integrity %q: not the base64 of a 48-byte SHA-384 digest", s)
	}
	copy(sum[:], b)
	return sum, nil
}

// hashReader returns the SHA-384 and length of r's bytes.
func hashReader(r io.Reader) ([48]byte, int64, error) {
	h := sha512.New384()
	n, err := io.Copy(h, r)
	var sum [48]byte
	if err != nil {
		return sum, n, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}
