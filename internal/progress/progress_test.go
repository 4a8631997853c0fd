package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, false)
	r.interval = 0
	b := r.Start("quantize blocks", 3)
	b.Add(1)
	b.Add(1)
	b.Add(1)
	b.Finish()
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Errorf("non-terminal output contains carriage returns: %q", out)
	}
	for _, want := range []string{"quantize blocks: started (3 steps)", "1/3", "2/3", "done (3 steps)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

func TestThrottledAndQuiet(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, false)
	r.interval = time.Hour
	b := r.Start("x", 100)
	for i := 0; i < 100; i++ {
		b.Add(1)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("throttled bar printed %d lines, want 1 (the start line)", n)
	}
	buf.Reset()
	q := New(&buf, true)
	qb := q.Start("x", 2)
	qb.Add(2)
	qb.Finish()
	if buf.Len() != 0 {
		t.Errorf("quiet reporter printed %q", buf.String())
	}
}
