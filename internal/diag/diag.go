// Package diag carries warnings: things smelt did that the user may want to
// know about but that are not errors (a tensor kept in f16 because a rule
// said so, a tokenizer field ignored). Each warning kind has a stable ID,
// "W-" + stage + "-" + what in upper case (W-QUANT-KEEP-F16), that users may
// silence (--silence W-QUANT-KEEP-F16) and that scripts may match. IDs are
// part of smelt's interface: once released, an ID keeps its meaning.
//
// Errors carry no IDs: an error stops the job and its message says what is
// wrong; only warnings are collected here.
//
// A package declares its warnings once, at package level:
//
//	var KeepF16 = diag.Register("W-QUANT-KEEP-F16", "a tensor matched a keep rule and stays in f16")
//
// and reports them through the Collector the command passes down:
//
//	c.Warn(KeepF16, "blk.0.attn_q.weight", "rule %q keeps it", rule)
//
// which prints as
//
//	warning W-QUANT-KEEP-F16: blk.0.attn_q.weight: rule "norm" keeps it
package diag

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// ID is a registered warning identifier. The only way to get one is
// Register, so every ID a package can emit is documented in the registry.
type ID struct{ name string }

// String returns the ID's name ("W-QUANT-KEEP-F16").
func (id ID) String() string { return id.name }

// Info describes one registered warning.
type Info struct {
	ID  string
	Doc string
}

var (
	regMu    sync.Mutex
	registry = map[string]string{}
	idFormat = regexp.MustCompile(`^W-[A-Z0-9]+(-[A-Z0-9]+)+$`)
)

// Register declares a warning ID with a one-line description and returns
// it. It is called from package-level var declarations; a malformed or
// duplicate name is a programming error and panics at program start.
func Register(name, doc string) ID {
	regMu.Lock()
	defer regMu.Unlock()
	if !idFormat.MatchString(name) {
		panic(fmt.Sprintf("diag: warning ID %q does not match W-STAGE-WHAT (upper case letters, digits, dashes)", name))
	}
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("diag: warning ID %q registered twice", name))
	}
	if strings.TrimSpace(doc) == "" {
		panic(fmt.Sprintf("diag: warning ID %q has no description", name))
	}
	registry[name] = doc
	return ID{name}
}

// Known returns every registered warning, sorted by ID (for `smelt help`
// and the README table).
func Known() []Info {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]Info, 0, len(registry))
	for id, doc := range registry {
		out = append(out, Info{ID: id, Doc: doc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Diagnostic is one warning.
type Diagnostic struct {
	ID      ID
	Subject string // what it is about: a tensor, a file, a rule ("" if none)
	Message string
}

// String formats the warning as one line:
// "warning W-QUANT-KEEP-F16: blk.0.attn_q.weight: message".
func (d Diagnostic) String() string {
	if d.Subject == "" {
		return fmt.Sprintf("warning %s: %s", d.ID, d.Message)
	}
	return fmt.Sprintf("warning %s: %s: %s", d.ID, d.Subject, d.Message)
}

// Collector gathers warnings from one job. It is safe for concurrent use.
type Collector struct {
	mu       sync.Mutex
	silenced map[string]bool
	dropped  map[string]int
	list     []Diagnostic
}

// NewCollector returns a collector that drops the warnings whose IDs are
// in silence. Every name must be a registered ID: a typo in --silence is an
// error, not a silently ignored flag.
func NewCollector(silence []string) (*Collector, error) {
	c := &Collector{silenced: map[string]bool{}, dropped: map[string]int{}}
	regMu.Lock()
	defer regMu.Unlock()
	for _, s := range silence {
		if _, ok := registry[s]; !ok {
			known := make([]string, 0, len(registry))
			for id := range registry {
				known = append(known, id)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("diag: cannot silence unknown warning %q (known: %s)", s, strings.Join(known, ", "))
		}
		c.silenced[s] = true
	}
	return c, nil
}

// Warn records a warning unless its ID is silenced.
func (c *Collector) Warn(id ID, subject, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.silenced[id.name] {
		c.dropped[id.name]++
		return
	}
	c.list = append(c.list, Diagnostic{ID: id, Subject: subject, Message: fmt.Sprintf(format, args...)})
}

// Diagnostics returns the recorded warnings sorted by ID, then subject,
// then message, so that the report does not depend on goroutine timing.
func (c *Collector) Diagnostics() []Diagnostic {
	c.mu.Lock()
	out := append([]Diagnostic(nil), c.list...)
	c.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ID != b.ID {
			return a.ID.name < b.ID.name
		}
		if a.Subject != b.Subject {
			return a.Subject < b.Subject
		}
		return a.Message < b.Message
	})
	return out
}

// Silenced returns how many warnings of each silenced ID were dropped.
func (c *Collector) Silenced() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.dropped))
	for k, v := range c.dropped {
		out[k] = v
	}
	return out
}

// WriteTo writes the warnings, one line each, in Diagnostics order, then
// one line per silenced ID that dropped warnings.
func (c *Collector) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, d := range c.Diagnostics() {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	dropped := c.Silenced()
	ids := make([]string, 0, len(dropped))
	for id := range dropped {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(&b, "(%d %s warnings silenced)\n", dropped[id], id)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}
