// Package pipeline runs passes over an IR graph in an order derived from
// declared constraints, as Go's SSA backend does with its pass table.
//
// A Pipeline is built once from a list of Passes and a list of
// Constraints ("A runs before B, because …"). New checks the table: unique,
// non-empty pass names, a Run function for each pass, constraints that name
// known passes and carry a Why, and no cycle. The order is the listing
// order adjusted by the constraints (a stable topological sort: among the
// passes whose predecessors have run, the one listed first goes next).
//
// Shuffled returns the same table in a seeded random order that still
// honours every constraint; tests run it to flush out undeclared
// dependencies between passes (Go issue 18169).
//
// Run executes the passes, recording each one's wall time, optionally
// checking the graph (ir.Graph.Check) before the first pass and after
// every pass, and optionally writing an ir.Print dump after each pass.
package pipeline

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/smeltml/smelt/internal/ir"
)

// Pass is one transformation of the graph.
type Pass struct {
	// Name identifies the pass in constraints, errors, timings and dumps
	// ("fuse-qkv").
	Name string
	// Doc says in one line what the pass does (for --explain).
	Doc string
	// Run transforms g in place. An error stops the pipeline.
	Run func(g *ir.Graph) error
}

// Constraint requires pass Before to run before pass After.
type Constraint struct {
	Before, After string
	// Why explains the dependency; it is required, so that the table
	// documents itself ("quantize plan reads the fused qkv tensor").
	Why string
}

// Pipeline is a checked pass table with its run order.
type Pipeline struct {
	passes      []Pass // in listing order
	constraints []Constraint
	order       []int // indices into passes
}

// New checks the pass table and computes the run order.
func New(passes []Pass, constraints []Constraint) (*Pipeline, error) {
	p := &Pipeline{passes: passes, constraints: constraints}
	index := map[string]int{}
	for i, ps := range passes {
		if ps.Name == "" {
			return nil, fmt.Errorf("pipeline: pass %d has no name", i)
		}
		if _, dup := index[ps.Name]; dup {
			return nil, fmt.Errorf("pipeline: pass %q is listed twice", ps.Name)
		}
		if ps.Run == nil {
			return nil, fmt.Errorf("pipeline: pass %q has no Run function", ps.Name)
		}
		index[ps.Name] = i
	}
	for _, c := range constraints {
		for _, n := range []string{c.Before, c.After} {
			if _, ok := index[n]; !ok {
				return nil, fmt.Errorf("pipeline: constraint %q before %q names unknown pass %q", c.Before, c.After, n)
			}
		}
		if strings.TrimSpace(c.Why) == "" {
			return nil, fmt.Errorf("pipeline: constraint %q before %q has no Why", c.Before, c.After)
		}
	}
	order, err := p.topo(nil)
	if err != nil {
		return nil, err
	}
	p.order = order
	return p, nil
}

// topo returns a topological order of the passes. With rng nil, among the
// ready passes the earliest listed is taken; otherwise a random ready one.
func (p *Pipeline) topo(rng *rand.Rand) ([]int, error) {
	n := len(p.passes)
	index := make(map[string]int, n)
	for i, ps := range p.passes {
		index[ps.Name] = i
	}
	succ := make([][]int, n)
	indeg := make([]int, n)
	for _, c := range p.constraints {
		a, b := index[c.Before], index[c.After]
		succ[a] = append(succ[a], b)
		indeg[b]++
	}
	done := make([]bool, n)
	order := make([]int, 0, n)
	for len(order) < n {
		var ready []int
		for i := 0; i < n; i++ {
			if !done[i] && indeg[i] == 0 {
				ready = append(ready, i)
			}
		}
		if len(ready) == 0 {
			return nil, fmt.Errorf("pipeline: ordering constraints form a cycle: %s", p.cycle(succ, done))
		}
		pick := ready[0]
		if rng != nil {
			pick = ready[rng.IntN(len(ready))]
		}
		done[pick] = true
		order = append(order, pick)
		for _, s := range succ[pick] {
			indeg[s]--
		}
	}
	return order, nil
}

// cycle finds one cycle among the passes not yet ordered and spells it
// out with the Why of each edge: "a → b (why) → a".
func (p *Pipeline) cycle(succ [][]int, done []bool) string {
	why := map[[2]int]string{}
	index := map[string]int{}
	for i, ps := range p.passes {
		index[ps.Name] = i
	}
	for _, c := range p.constraints {
		why[[2]int{index[c.Before], index[c.After]}] = c.Why
	}
	// Every remaining pass has a remaining predecessor, so walking
	// successors restricted to remaining passes from any remaining pass
	// must revisit a pass.
	state := make([]int, len(p.passes)) // 0 new, 1 on stack, 2 finished
	var stack []int
	var found []int
	var dfs func(v int) bool
	dfs = func(v int) bool {
		state[v] = 1
		stack = append(stack, v)
		for _, s := range succ[v] {
			if done[s] {
				continue
			}
			if state[s] == 1 {
				for i, x := range stack {
					if x == s {
						found = append(append([]int(nil), stack[i:]...), s)
						return true
					}
				}
			}
			if state[s] == 0 && dfs(s) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[v] = 2
		return false
	}
	for i := range p.passes {
		if !done[i] && state[i] == 0 && dfs(i) {
			break
		}
	}
	var b strings.Builder
	for i, v := range found {
		if i > 0 {
			fmt.Fprintf(&b, " → ")
		}
		fmt.Fprintf(&b, "%q", p.passes[v].Name)
		if i+1 < len(found) {
			fmt.Fprintf(&b, " (%s)", why[[2]int{v, found[i+1]}])
		}
	}
	return b.String()
}

// Shuffled returns a copy of p whose order is a seeded random topological
// order: passes with no constraint between them run in a random order. The
// same seed always gives the same order.
func (p *Pipeline) Shuffled(seed uint64) *Pipeline {
	q := &Pipeline{passes: p.passes, constraints: p.constraints}
	order, err := q.topo(rand.New(rand.NewPCG(seed, 0x5eed)))
	if err != nil {
		return p // unreachable: New rejected cycles
	}
	q.order = order
	return q
}

// Order returns the pass names in run order.
func (p *Pipeline) Order() []string {
	out := make([]string, len(p.order))
	for i, j := range p.order {
		out[i] = p.passes[j].Name
	}
	return out
}

// Explain writes the run order with each pass's Doc, then the constraints
// with their Why, one per line.
func (p *Pipeline) Explain(w io.Writer) error {
	var b strings.Builder
	for i, j := range p.order {
		fmt.Fprintf(&b, "%2d. %s", i+1, p.passes[j].Name)
		if d := p.passes[j].Doc; d != "" {
			fmt.Fprintf(&b, ": %s", d)
		}
		b.WriteByte('\n')
	}
	for _, c := range p.constraints {
		fmt.Fprintf(&b, "%s before %s: %s\n", c.Before, c.After, c.Why)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Options control a Run.
type Options struct {
	// Check runs g.Check() on the input graph and after every pass; the
	// first failure stops the run and names the pass that broke the graph.
	// Tests always set it.
	Check bool
	// Dump, when non-nil, receives "# after PASS" and an ir.Print of the
	// graph after each pass (or only after the passes in DumpOnly).
	Dump io.Writer
	// DumpOnly limits dumps to these pass names (all passes when empty).
	DumpOnly []string
	// Now is the clock for timings (time.Now when nil).
	Now func() time.Time
}

// Timing is one pass's wall time.
type Timing struct {
	Pass     string
	Duration time.Duration
}

// Report is what a Run did: the passes run, in order, with their times.
type Report struct {
	Timings []Timing
}

// Total is the sum of the pass times.
func (r *Report) Total() time.Duration {
	var t time.Duration
	for _, x := range r.Timings {
		t += x.Duration
	}
	return t
}

// Run executes the passes on g in order. On error the report holds the
// passes that completed, plus the failing one.
func (p *Pipeline) Run(g *ir.Graph, opts Options) (*Report, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	dumpOnly := map[string]bool{}
	for _, n := range opts.DumpOnly {
		dumpOnly[n] = true
	}
	rep := &Report{}
	if opts.Check {
		if err := g.Check(); err != nil {
			return rep, fmt.Errorf("pipeline: input graph: %w", err)
		}
	}
	for _, j := range p.order {
		ps := p.passes[j]
		start := now()
		err := runPass(ps, g)
		rep.Timings = append(rep.Timings, Timing{Pass: ps.Name, Duration: now().Sub(start)})
		if err != nil {
			return rep, fmt.Errorf("pipeline: pass %q: %w", ps.Name, err)
		}
		if opts.Check {
			if err := g.Check(); err != nil {
				return rep, fmt.Errorf("pipeline: after pass %q: %w", ps.Name, err)
			}
		}
		if opts.Dump != nil && (len(dumpOnly) == 0 || dumpOnly[ps.Name]) {
			if _, err := fmt.Fprintf(opts.Dump, "# after %s\n", ps.Name); err != nil {
				return rep, fmt.Errorf("pipeline: dump: %w", err)
			}
			if err := ir.Print(opts.Dump, g); err != nil {
				return rep, fmt.Errorf("pipeline: dump after %q: %w", ps.Name, err)
			}
		}
	}
	return rep, nil
}

// runPass runs one pass, turning a panic into an error (a pass bug must
// not take the whole tool down without naming the pass).
func runPass(ps Pass, g *ir.Graph) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New(fmt.Sprint("panic: ", r))
		}
	}()
	return ps.Run(g)
}
