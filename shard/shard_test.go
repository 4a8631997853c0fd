package shard

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlan(t *testing.T) {
	one := func(s int, off, n int64) []Part { return []Part{{Shard: s, Offset: off, NBytes: n}} }
	tests := []struct {
		name   string
		items  []Item
		opts   Options
		want   []Placement
		shards []Shard
	}{
		{
			name:  "empty",
			items: nil,
			want:  []Placement{},
		},
		{
			name:   "aligned packing",
			items:  []Item{{"a", 10}, {"b", 256}, {"c", 1}},
			opts:   Options{ShardSize: 1024},
			want:   []Placement{{"a", 10, one(0, 0, 10)}, {"b", 256, one(0, 256, 256)}, {"c", 1, one(0, 512, 1)}},
			shards: []Shard{{"shards/00000.bin", 513}},
		},
		{
			name:  "does not fit: next shard",
			items: []Item{{"a", 600}, {"b", 600}, {"c", 100}},
			opts:  Options{ShardSize: 1024},
			want:  []Placement{{"a", 600, one(0, 0, 600)}, {"b", 600, one(1, 0, 600)}, {"c", 100, one(1, 768, 100)}},
			shards: []Shard{
				{"shards/00000.bin", 600}, {"shards/00001.bin", 868},
			},
		},
		{
			name:  "exactly the cap",
			items: []Item{{"a", 1024}, {"b", 1}},
			opts:  Options{ShardSize: 1024},
			want:  []Placement{{"a", 1024, one(0, 0, 1024)}, {"b", 1, one(1, 0, 1)}},
			shards: []Shard{
				{"shards/00000.bin", 1024}, {"shards/00001.bin", 1},
			},
		},
		{
			name:  "split: fresh shard, whole shards, tail shared",
			items: []Item{{"a", 10}, {"big", 2500}, {"c", 100}},
			opts:  Options{ShardSize: 1024},
			want: []Placement{
				{"a", 10, one(0, 0, 10)},
				{"big", 2500, []Part{{1, 0, 1024}, {2, 0, 1024}, {3, 0, 452}}},
				{"c", 100, one(3, 512, 100)},
			},
			shards: []Shard{
				{"shards/00000.bin", 10}, {"shards/00001.bin", 1024}, {"shards/00002.bin", 1024}, {"shards/00003.bin", 612},
			},
		},
		{
			name:  "zero-byte items",
			items: []Item{{"a", 0}, {"b", 5}, {"c", 0}},
			opts:  Options{ShardSize: 512, Alignment: 4},
			want:  []Placement{{"a", 0, one(0, 0, 0)}, {"b", 5, one(0, 0, 5)}, {"c", 0, one(0, 8, 0)}},
			shards: []Shard{
				{"shards/00000.bin", 8},
			},
		},
		{
			name:  "default options",
			items: []Item{{"a", 1}, {"b", DefaultShardSize}},
			want:  []Placement{{"a", 1, one(0, 0, 1)}, {"b", DefaultShardSize, one(1, 0, DefaultShardSize)}},
			shards: []Shard{
				{"shards/00000.bin", 1}, {"shards/00001.bin", DefaultShardSize},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Plan(tt.items, tt.opts)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if diff := cmp.Diff(tt.want, l.Items); diff != "" {
				t.Errorf("Plan items (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.shards, l.Shards); diff != "" {
				t.Errorf("Plan shards (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name  string
		items []Item
		opts  Options
		want  string
	}{
		{"alignment not a power of two", nil, Options{Alignment: 100}, "alignment 100 is not a power of two"},
		{"cap not a multiple", nil, Options{ShardSize: 1000}, "shard size 1000 is not a positive multiple of the alignment 256"},
		{"negative cap", nil, Options{ShardSize: -256}, "not a positive multiple"},
		{"duplicate", []Item{{"a", 1}, {"a", 2}}, Options{}, `item "a" appears twice`},
		{"negative size", []Item{{"a", -1}}, Options{}, `item "a" has negative size -1`},
		{"empty name", []Item{{"", 1}}, Options{}, "empty name"},
		{"too many shards", []Item{{"a", 256 * (MaxShards + 1)}}, Options{ShardSize: 256}, "more than 100000 shards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.items, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Plan error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestPlanInvariants checks the layout rules on random item lists.
func TestPlanInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		const capSize = 4096
		var items []Item
		for i := range rng.IntN(40) {
			n := rng.Int64N(capSize * 2)
			if rng.IntN(3) == 0 {
				n = rng.Int64N(64)
			}
			items = append(items, Item{fmt.Sprintf("t%03d", i), n})
		}
		l, err := Plan(items, Options{ShardSize: capSize, Alignment: 64})
		if err != nil {
			t.Fatal(err)
		}
		checkLayout(t, fmt.Sprintf("iteration %d", iter), items, l)
	}
}

func checkLayout(t *testing.T, what string, items []Item, l *Layout) {
	t.Helper()
	type span struct{ lo, hi int64 }
	used := make([][]span, len(l.Shards))
	lastShard := 0
	for i, p := range l.Items {
		if p.Name != items[i].Name || p.NBytes != items[i].NBytes {
			t.Fatalf("%s: item %d is %q/%d, want %q/%d (order kept)", what, i, p.Name, p.NBytes, items[i].Name, items[i].NBytes)
		}
		if p.NBytes <= l.ShardSize && len(p.Parts) != 1 {
			t.Errorf("%s: %q (%d bytes) split into %d parts though it fits a shard", what, p.Name, p.NBytes, len(p.Parts))
		}
		var sum int64
		for k, pt := range p.Parts {
			if pt.Offset%l.Alignment != 0 {
				t.Errorf("%s: %q part %d offset %d not aligned", what, p.Name, k, pt.Offset)
			}
			if pt.Shard < lastShard {
				t.Errorf("%s: %q goes back to shard %d after %d", what, p.Name, pt.Shard, lastShard)
			}
			if k > 0 && (pt.Shard != p.Parts[k-1].Shard+1 || pt.Offset != 0 || p.Parts[k-1].NBytes != l.ShardSize) {
				t.Errorf("%s: %q part %d does not continue the previous full part", what, p.Name, k)
			}
			lastShard = pt.Shard
			if pt.Offset+pt.NBytes > l.Shards[pt.Shard].NBytes || l.Shards[pt.Shard].NBytes > l.ShardSize {
				t.Errorf("%s: %q part %d ends past its shard", what, p.Name, k)
			}
			for _, s := range used[pt.Shard] {
				if pt.NBytes > 0 && pt.Offset < s.hi && s.lo < pt.Offset+pt.NBytes {
					t.Errorf("%s: %q part %d overlaps another item", what, p.Name, k)
				}
			}
			used[pt.Shard] = append(used[pt.Shard], span{pt.Offset, pt.Offset + pt.NBytes})
			sum += pt.NBytes
		}
		if sum != p.NBytes {
			t.Errorf("%s: %q parts sum to %d, want %d", what, p.Name, sum, p.NBytes)
		}
	}
	for s, sh := range l.Shards {
		var end int64
		for _, sp := range used[s] {
			end = max(end, sp.hi)
		}
		if end != sh.NBytes {
			t.Errorf("%s: shard %d is %d bytes, its last item ends at %d", what, s, sh.NBytes, end)
		}
	}
}

// genItems returns n items with deterministic pseudo-random contents.
func genItems(seed uint64, n int, maxBytes int64) ([]Item, [][]byte) {
	rng := rand.New(rand.NewPCG(seed, 7))
	items := make([]Item, n)
	data := make([][]byte, n)
	for i := range items {
		sz := rng.Int64N(maxBytes)
		b := make([]byte, sz)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		items[i] = Item{fmt.Sprintf("blk.%03d.weight", i), sz}
		data[i] = b
	}
	return items, data
}

// TestWrite checks written shards against the layout read back
// independently: each part's bytes at its offset, zero gaps, and the digest.
func TestWrite(t *testing.T) {
	items, data := genItems(3, 60, 9000)
	l, err := Plan(items, Options{ShardSize: 4096, Alignment: 256})
	if err != nil {
		t.Fatal(err)
	}
	var calls [60]atomic.Int32
	dir := t.TempDir()
	ws, err := Write(dir, l, func(i int) ([]byte, error) {
		calls[i].Add(1)
		return data[i], nil
	}, WriteOptions{Parallelism: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Errorf("data(%d) called %d times, want 1", i, n)
		}
	}
	files := make([][]byte, len(l.Shards))
	covered := make([][]bool, len(l.Shards))
	for s, sh := range l.Shards {
		b, err := os.ReadFile(filepath.Join(dir, sh.Path))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != sh.NBytes || ws[s].NBytes != sh.NBytes || ws[s].Path != sh.Path {
			t.Errorf("shard %s: file %d bytes, written %+v, layout %d", sh.Path, len(b), ws[s].NBytes, sh.NBytes)
		}
		if got, want := ws[s].SHA384, sha512.Sum384(b); got != want {
			t.Errorf("shard %s: digest %x, want %x", sh.Path, got, want)
		}
		files[s], covered[s] = b, make([]bool, len(b))
	}
	for i, p := range l.Items {
		var got []byte
		for _, pt := range p.Parts {
			got = append(got, files[pt.Shard][pt.Offset:pt.Offset+pt.NBytes]...)
			for k := pt.Offset; k < pt.Offset+pt.NBytes; k++ {
				covered[pt.Shard][k] = true
			}
		}
		if !bytes.Equal(got, data[i]) {
			t.Errorf("item %q: bytes read back differ", p.Name)
		}
	}
	for s := range files {
		for k, c := range covered[s] {
			if !c && files[s][k] != 0 {
				t.Fatalf("shard %d byte %d is a gap but holds %#x", s, k, files[s][k])
			}
		}
	}
}

func TestWriteDeterministic(t *testing.T) {
	items, data := genItems(4, 40, 6000)
	l, err := Plan(items, Options{ShardSize: 2048, Alignment: 64})
	if err != nil {
		t.Fatal(err)
	}
	var first []Written
	for _, par := range []int{1, 2, 8} {
		ws, err := Write(t.TempDir(), l, func(i int) ([]byte, error) { return data[i], nil }, WriteOptions{Parallelism: par, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = ws
		} else if diff := cmp.Diff(first, ws); diff != "" {
			t.Errorf("Parallelism %d gives different shards (-1 +%d):\n%s", par, par, diff)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	items := []Item{{"a", 10}, {"b", 20}}
	l, err := Plan(items, Options{ShardSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	tests := []struct {
		name string
		data DataFunc
		want string
	}{
		{"callback error", func(i int) ([]byte, error) { return nil, boom }, `shard: item "a": boom`},
		{"short data", func(i int) ([]byte, error) { return make([]byte, 3), nil }, `item "a": data is 3 bytes, layout says 10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Write(t.TempDir(), l, tt.data, WriteOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("existing file", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "shards"), 0o755)
		os.WriteFile(filepath.Join(dir, "shards", "00000.bin"), nil, 0o644)
		_, err := Write(dir, l, func(i int) ([]byte, error) { return make([]byte, items[i].NBytes), nil }, WriteOptions{})
		if err == nil || !strings.Contains(err.Error(), "exists") {
			t.Errorf("Write over an existing shard: error = %v, want 'exists'", err)
		}
	})
}

// BenchmarkWrite measures plan+write+SHA-384 throughput on a generated model
// of 1 GiB in tensors of 1–64 MiB (a few larger than the cap, so split).
// Run: go test ./shard -run '^$' -bench Write -benchtime 3x -cpu 2
func BenchmarkWrite(b *testing.B) {
	const total = 1 << 30
	rng := rand.New(rand.NewPCG(9, 9))
	var items []Item
	for sum, i := int64(0), 0; sum < total; i++ {
		n := min(int64(1<<20+rng.IntN(63<<20)), total-sum)
		items = append(items, Item{fmt.Sprintf("t%04d", i), n})
		sum += n
	}
	src := make([]byte, 64<<20)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("1GiB/sync=%v", sync), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				dir := b.TempDir()
				l, err := Plan(items, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Write(dir, l, func(i int) ([]byte, error) { return src[:items[i].NBytes], nil }, WriteOptions{NoSync: !sync}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
	}
}
