// Package progress reports long-running work: a redrawing bar
// (schollz/progressbar/v3) when stderr is a terminal, and plain periodic
// log lines otherwise, so CI logs don't fill with redraws. CI=true in the
// environment or Quiet forces plain lines / silence.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter creates progress bars on one writer.
type Reporter struct {
	w        io.Writer
	tty      bool
	quiet    bool
	interval time.Duration
}

// New returns a Reporter writing to w (normally os.Stderr). Bars redraw
// only when w is a terminal and $CI is not "true"; quiet disables output.
func New(w io.Writer, quiet bool) *Reporter {
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("CI") != "true" {
		tty = true
	}
	return &Reporter{w: w, tty: tty, quiet: quiet, interval: 5 * time.Second}
}

// Bar is one unit of tracked work.
type Bar struct {
	mu       sync.Mutex
	r        *Reporter
	pb       *progressbar.ProgressBar
	desc     string
	total    int64
	done     int64
	start    time.Time
	lastLine time.Time
}

// Start begins a bar of total steps described by desc.
func (r *Reporter) Start(desc string, total int64) *Bar {
	b := &Bar{r: r, desc: desc, total: total, start: time.Now()}
	if r == nil || r.quiet {
		return b
	}
	if r.tty {
		b.pb = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(r.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.w) }),
		)
		return b
	}
	fmt.Fprintf(r.w, "%s: started (%d steps)\n", desc, total)
	b.lastLine = b.start
	return b
}

// Add records n more steps done.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if b.pb != nil {
		_ = b.pb.Add64(n)
		return
	}
	if b.r == nil || b.r.quiet {
		return
	}
	if now := time.Now(); now.Sub(b.lastLine) >= b.r.interval && b.done < b.total {
		b.lastLine = now
		fmt.Fprintf(b.r.w, "%s: %d/%d (%.0f%%), %s elapsed\n", b.desc, b.done, b.total, 100*float64(b.done)/float64(max(b.total, 1)), now.Sub(b.start).Round(time.Second))
	}
}

// Finish ends the bar and prints the elapsed time once.
func (b *Bar) Finish() {
	if b == nil || b.r == nil || b.r.quiet {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pb != nil {
		_ = b.pb.Finish()
		return
	}
	fmt.Fprintf(b.r.w, "%s: done (%d steps) in %s\n", b.desc, b.done, time.Since(b.start).Round(time.Millisecond))
}
