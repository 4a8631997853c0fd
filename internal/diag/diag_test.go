package diag

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	testKeep  = Register("W-TEST-KEEP-F16", "a tensor stays in f16")
	testSkip  = Register("W-TEST-SKIP", "a field was skipped")
	testOther = Register("W-TEST-OTHER-2", "something else")
)

func TestCollector(t *testing.T) {
	c, err := NewCollector([]string{"W-TEST-SKIP"})
	if err != nil {
		t.Fatal(err)
	}
	c.Warn(testOther, "", "no subject %d", 1)
	c.Warn(testKeep, "blk.1.attn_q.weight", "rule %q keeps it", "attn")
	c.Warn(testSkip, "tokenizer.json", "dropped")
	c.Warn(testKeep, "blk.0.attn_q.weight", "rule %q keeps it", "attn")
	c.Warn(testSkip, "config.json", "dropped")
	got := make([]string, 0)
	for _, d := range c.Diagnostics() {
		got = append(got, d.String())
	}
	want := []string{
		`warning W-TEST-KEEP-F16: blk.0.attn_q.weight: rule "attn" keeps it`,
		`warning W-TEST-KEEP-F16: blk.1.attn_q.weight: rule "attn" keeps it`,
		`warning W-TEST-OTHER-2: no subject 1`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diagnostics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"W-TEST-SKIP": 2}, c.Silenced()); diff != "" {
		t.Errorf("Silenced (-want +got):\n%s", diff)
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), strings.Join(want, "\n")+"\n(2 W-TEST-SKIP warnings silenced)\n"; got != want {
		t.Errorf("WriteTo = %q, want %q", got, want)
	}
}

func TestNewCollectorUnknownID(t *testing.T) {
	_, err := NewCollector([]string{"W-TEST-KEEP-F61"})
	if err == nil || !strings.Contains(err.Error(), `cannot silence unknown warning "W-TEST-KEEP-F61" (known: `) || !strings.Contains(err.Error(), "W-TEST-KEEP-F16") {
		t.Errorf("NewCollector error = %v", err)
	}
}

func TestRegisterRejects(t *testing.T) {
	tests := []struct{ name, id, doc, want string }{
		{"lower case", "w-test-x", "d", "does not match"},
		{"no stage", "W-X", "d", "does not match"},
		{"spaces", "W-TEST X", "d", "does not match"},
		{"duplicate", "W-TEST-SKIP", "d", "registered twice"},
		{"no doc", "W-TEST-NODOC", " ", "has no description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("Register(%q) panic = %v, want %q", tt.id, r, tt.want)
				}
			}()
			Register(tt.id, tt.doc)
		})
	}
}

func TestKnownSorted(t *testing.T) {
	var ids []string
	for _, k := range Known() {
		ids = append(ids, k.ID)
	}
	if diff := cmp.Diff([]string{"W-TEST-KEEP-F16", "W-TEST-OTHER-2", "W-TEST-SKIP"}, ids); diff != "" {
		t.Errorf("Known (-want +got):\n%s", diff)
	}
}

func TestConcurrentWarn(t *testing.T) {
	c, _ := NewCollector(nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				c.Warn(testKeep, fmt.Sprintf("t%03d", j), "x")
			}
		}()
	}
	wg.Wait()
	d := c.Diagnostics()
	if len(d) != 800 || d[0].Subject != "t000" || d[799].Subject != "t099" {
		t.Errorf("%d diagnostics, first %q last %q", len(d), d[0].Subject, d[len(d)-1].Subject)
	}
}
