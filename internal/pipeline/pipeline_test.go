package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/ir"
)

func nop(*ir.Graph) error { return nil }

func passes(names ...string) []Pass {
	out := make([]Pass, len(names))
	for i, n := range names {
		out[i] = Pass{Name: n, Run: nop}
	}
	return out
}

func TestNewOrder(t *testing.T) {
	tests := []struct {
		name  string
		ps    []Pass
		cons  []Constraint
		order []string
	}{
		{"listing order without constraints", passes("c", "a", "b"), nil, []string{"c", "a", "b"}},
		{"constraint moves a pass earlier", passes("b", "a"), []Constraint{{"a", "b", "b reads what a writes"}}, []string{"a", "b"}},
		{"chain", passes("c", "b", "a", "d"), []Constraint{{"a", "b", "x"}, {"b", "c", "y"}}, []string{"a", "b", "c", "d"}},
		{"stable among ready passes", passes("x", "b", "y", "a"), []Constraint{{"a", "b", "z"}}, []string{"x", "y", "a", "b"}},
		{"empty table", nil, nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.ps, tt.cons)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.order, p.Order()); diff != "" {
				t.Errorf("Order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		ps   []Pass
		cons []Constraint
		want string
	}{
		{"unknown pass", passes("a", "b"), []Constraint{{"a", "c", "why"}}, `pipeline: constraint "a" before "c" names unknown pass "c"`},
		{"unknown first pass", passes("a"), []Constraint{{"z", "a", "why"}}, `names unknown pass "z"`},
		{"missing why", passes("a", "b"), []Constraint{{"a", "b", "  "}}, `pipeline: constraint "a" before "b" has no Why`},
		{"two-pass cycle", passes("a", "b"), []Constraint{{"a", "b", "ab"}, {"b", "a", "ba"}},
			`pipeline: ordering constraints form a cycle: "a" (ab) → "b" (ba) → "a"`},
		{"three-pass cycle after a free pass", passes("free", "a", "b", "c"), []Constraint{{"a", "b", "1"}, {"b", "c", "2"}, {"c", "a", "3"}},
			`cycle: "a" (1) → "b" (2) → "c" (3) → "a"`},
		{"self loop", passes("a"), []Constraint{{"a", "a", "me"}}, `cycle: "a" (me) → "a"`},
		{"duplicate pass", passes("a", "a"), nil, `pipeline: pass "a" is listed twice`},
		{"empty name", passes(""), nil, "pipeline: pass 0 has no name"},
		{"no run", []Pass{{Name: "a"}}, nil, `pipeline: pass "a" has no Run function`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.ps, tt.cons)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want %q", err, tt.want)
			}
		})
	}
}

// chainGraph is a valid graph: input → n Add nodes (x + x).
func chainGraph(n int) *ir.Graph {
	g := &ir.Graph{}
	x := &ir.Value{Name: "x", DType: ir.F32, Shape: ir.Shape{-1, 4}}
	g.Inputs = []*ir.Value{x}
	for i := 0; i < n; i++ {
		nd := &ir.Node{Name: fmt.Sprintf("add%d", i), Op: "Add", Inputs: []*ir.Value{x, x}, Attrs: map[string]any{}}
		x = &ir.Value{Name: nd.Name, DType: ir.F32, Shape: ir.Shape{-1, 4}, Def: nd}
		nd.Outputs = []*ir.Value{x}
		g.Nodes = append(g.Nodes, nd)
	}
	g.Outputs = []*ir.Value{x}
	return g
}

// tag is a pass that records an attribute on every node: passes with
// different keys commute.
func tag(name, key string, val any) Pass {
	return Pass{Name: name, Doc: "sets " + key, Run: func(g *ir.Graph) error {
		for _, n := range g.Nodes {
			n.Attrs[key] = val
		}
		return nil
	}}
}

// sum is a pass that depends on "scale" and "offset" having run.
func sum(name string) Pass {
	return Pass{Name: name, Run: func(g *ir.Graph) error {
		for _, n := range g.Nodes {
			s, ok1 := n.Attrs["scale"].(int)
			o, ok2 := n.Attrs["offset"].(int)
			if !ok1 || !ok2 {
				return fmt.Errorf("node %q: scale and offset must be set first", n.Name)
			}
			n.Attrs["sum"] = s + o
		}
		return nil
	}}
}

// TestShuffledIndependentPasses runs the same pass table in many seeded
// orders: every order honours the constraints, covers all passes, is
// reproducible per seed, and gives the same graph (Print bytes).
func TestShuffledIndependentPasses(t *testing.T) {
	ps := []Pass{tag("a", "a", 1), tag("b", "b", 2), tag("c", "c", "x"), tag("scale", "scale", 3), tag("offset", "offset", 4), sum("sum"), tag("d", "d", 5.5)}
	cons := []Constraint{
		{"scale", "sum", "sum reads the scale attribute"},
		{"offset", "sum", "sum reads the offset attribute"},
	}
	p, err := New(ps, cons)
	if err != nil {
		t.Fatal(err)
	}
	var ref bytes.Buffer
	g := chainGraph(3)
	if _, err := p.Run(g, Options{Check: true}); err != nil {
		t.Fatal(err)
	}
	ir.Print(&ref, g)
	orders := map[string]bool{}
	for seed := uint64(0); seed < 64; seed++ {
		q := p.Shuffled(seed)
		order := q.Order()
		if diff := cmp.Diff(order, p.Shuffled(seed).Order()); diff != "" {
			t.Fatalf("seed %d: two shuffles differ:\n%s", seed, diff)
		}
		pos := map[string]int{}
		for i, n := range order {
			pos[n] = i
		}
		if len(pos) != len(ps) {
			t.Fatalf("seed %d: order %v is not a permutation of the passes", seed, order)
		}
		for _, c := range cons {
			if pos[c.Before] > pos[c.After] {
				t.Errorf("seed %d: order %v runs %s before %s", seed, order, c.After, c.Before)
			}
		}
		orders[strings.Join(order, ",")] = true
		g := chainGraph(3)
		if _, err := q.Run(g, Options{Check: true}); err != nil {
			t.Fatalf("seed %d, order %v: %v", seed, order, err)
		}
		var got bytes.Buffer
		ir.Print(&got, g)
		if !bytes.Equal(got.Bytes(), ref.Bytes()) {
			t.Errorf("seed %d, order %v: graph differs from the listed order's", seed, order)
		}
	}
	if len(orders) < 10 {
		t.Errorf("64 seeds gave only %d distinct orders", len(orders))
	}
}

// TestShuffleFindsMissingConstraint shows what the shuffle is for: without
// the constraints, some seed runs "sum" too early and the run fails.
func TestShuffleFindsMissingConstraint(t *testing.T) {
	p, err := New([]Pass{tag("scale", "scale", 3), tag("offset", "offset", 4), sum("sum")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(chainGraph(1), Options{Check: true}); err != nil {
		t.Fatalf("listed order fails: %v", err)
	}
	failed := false
	for seed := uint64(0); seed < 32 && !failed; seed++ {
		_, err := p.Shuffled(seed).Run(chainGraph(1), Options{Check: true})
		failed = err != nil
	}
	if !failed {
		t.Error("no shuffled order exposed the undeclared dependency of sum on scale/offset")
	}
}

func TestRunCheckAndErrors(t *testing.T) {
	breakGraph := Pass{Name: "break", Run: func(g *ir.Graph) error { g.Nodes[0].Op = "Bogus"; return nil }}
	fail := Pass{Name: "fail", Run: func(*ir.Graph) error { return errors.New("boom") }}
	panics := Pass{Name: "panics", Run: func(g *ir.Graph) error { _ = g.Nodes[99]; return nil }}
	ran := 0
	count := Pass{Name: "count", Run: func(*ir.Graph) error { ran++; return nil }}
	tests := []struct {
		name      string
		ps        []Pass
		check     bool
		input     *ir.Graph
		want      string
		wantTimed []string
		wantRan   int
	}{
		{"check names the breaking pass", []Pass{count, breakGraph, {Name: "after", Run: nop}}, true, chainGraph(2),
			`pipeline: after pass "break": ir: graph check failed`, []string{"count", "break"}, 1},
		{"broken graph passes without Check", []Pass{breakGraph, count}, false, chainGraph(2), "", []string{"break", "count"}, 1},
		{"pass error stops the run", []Pass{fail, count}, true, chainGraph(1), `pipeline: pass "fail": boom`, []string{"fail"}, 0},
		{"panic becomes an error", []Pass{panics, count}, false, chainGraph(1), `pipeline: pass "panics": panic: runtime error: index out of range`, []string{"panics"}, 0},
		{"invalid input graph", []Pass{count}, true, func() *ir.Graph { g := chainGraph(1); g.Outputs[0] = &ir.Value{Name: "ghost"}; return g }(),
			"pipeline: input graph: ir: graph check failed", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran = 0
			p, err := New(tt.ps, nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := p.Run(tt.input, Options{Check: tt.check})
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Run error = %v, want %q", err, tt.want)
			}
			var timed []string
			for _, x := range rep.Timings {
				timed = append(timed, x.Pass)
			}
			if diff := cmp.Diff(tt.wantTimed, timed); diff != "" {
				t.Errorf("timed passes (-want +got):\n%s", diff)
			}
			if ran != tt.wantRan {
				t.Errorf("count ran %d times, want %d", ran, tt.wantRan)
			}
		})
	}
}

func TestRunTimingsAndDumps(t *testing.T) {
	p, err := New([]Pass{tag("one", "k1", 1), tag("two", "k2", 2), tag("three", "k3", 3)}, []Constraint{{"two", "one", "test"}})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(0, 0)
	step := time.Duration(0)
	now := func() time.Time { step += time.Millisecond; clock = clock.Add(step); return clock }
	var dump bytes.Buffer
	g := chainGraph(1)
	rep, err := p.Run(g, Options{Check: true, Dump: &dump, DumpOnly: []string{"one", "three"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Each pass sees two clock reads: start after k ms steps, end after k+1.
	want := []Timing{{"two", 2 * time.Millisecond}, {"one", 4 * time.Millisecond}, {"three", 6 * time.Millisecond}}
	if diff := cmp.Diff(want, rep.Timings); diff != "" {
		t.Errorf("Timings (-want +got):\n%s", diff)
	}
	if got, want := rep.Total(), 12*time.Millisecond; got != want {
		t.Errorf("Total = %v, want %v", got, want)
	}
	// Independently: the dump after "one" is Print of a graph with k1 and
	// k2 set; after "three" of the final graph.
	ref := chainGraph(1)
	ref.Nodes[0].Attrs["k2"], ref.Nodes[0].Attrs["k1"] = 2, 1
	var wantDump bytes.Buffer
	wantDump.WriteString("# after one\n")
	ir.Print(&wantDump, ref)
	ref.Nodes[0].Attrs["k3"] = 3
	wantDump.WriteString("# after three\n")
	ir.Print(&wantDump, ref)
	if diff := cmp.Diff(wantDump.String(), dump.String()); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
	var ex bytes.Buffer
	if err := p.Explain(&ex); err != nil {
		t.Fatal(err)
	}
	wantEx := " 1. two: sets k2\n 2. one: sets k1\n 3. three: sets k3\ntwo before one: test\n"
	if ex.String() != wantEx {
		t.Errorf("Explain = %q, want %q", ex.String(), wantEx)
	}
}

func TestRealTimings(t *testing.T) {
	p, _ := New([]Pass{{Name: "sleep", Run: func(*ir.Graph) error { time.Sleep(2 * time.Millisecond); return nil }}}, nil)
	rep, err := p.Run(chainGraph(1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Timings[0].Duration; d < 2*time.Millisecond {
		t.Errorf("sleep pass took %v, want >= 2ms", d)
	}
}
