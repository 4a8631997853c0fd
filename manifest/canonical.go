package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Canonicalize returns the canonical form of one JSON document: object keys
// sorted by byte order, no insignificant whitespace, no trailing newline,
// strings escaped as Go's encoding/json does without HTML escaping (only
// '"', '\\', control characters, U+2028 and U+2029), integers in plain
// decimal, other numbers as encoding/json formats a float64. Invalid UTF-8,
// trailing data and invalid JSON are errors.
func Canonicalize(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("manifest: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("manifest: trailing data after the JSON document")
	}
	v, err := canonicalNumbers(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// canonicalNumbers rewrites every json.Number into its canonical spelling.
func canonicalNumbers(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := canonicalNumbers(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	case []any:
		for i, e := range x {
			c, err := canonicalNumbers(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), nil
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return json.Number(strconv.FormatUint(u, 10)), nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("manifest: number %s: %w", s, err)
		}
		fb, err := json.Marshal(f)
		if err != nil {
			return nil, fmt.Errorf("manifest: number %s: %w", s, err)
		}
		return json.Number(fb), nil
	}
	return v, nil
}
