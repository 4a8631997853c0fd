// Package shard lays weight tensors out in fixed-size shard files and writes
// them, hashing while writing.
//
// The layout is a pure function of the item list and the options (Plan); the
// writer (Write) makes no decisions: it fills the files the plan describes,
// concurrently, and reports each file's SHA-384 for Subresource Integrity.
//
// # Layout rules
//
// Items are placed in the order given (callers pass the canonical order:
// sorted by name). Each item starts at the next multiple of Alignment in the
// current shard; when it does not fit in the remaining space of the current
// shard, a new shard starts and the item goes at offset 0. Gaps are zero
// bytes; a shard ends right after its last item (no trailing padding).
//
// An item larger than ShardSize is split: it starts a fresh shard at offset 0
// and fills whole shards of exactly ShardSize bytes, its tail going at offset 0
// of the following shard, which later items may share. Such an item's
// Placement lists its Parts in order; concatenating the parts gives its bytes.
// Every other item has exactly one part.
//
// Alignment defaults to 256 bytes: WebGPU's default
// minStorageBufferOffsetAlignment and minUniformBufferOffsetAlignment, so a
// runtime that uploads a whole shard into one GPUBuffer can bind every tensor
// at its offset directly. ShardSize defaults to 32 MiB: small enough for HTTP
// caches, retries and the Cache API, large enough to keep request counts low
// (the cap MLC/WebLLM use). ShardSize must be a multiple of Alignment, so the
// parts of a split item all start aligned.
//
// Shard i is stored at ShardPath(i): "shards/00000.bin", "shards/00001.bin", ...
package shard

import (
	"fmt"
)

// Defaults for Options.
const (
	DefaultShardSize int64 = 32 << 20
	DefaultAlignment int64 = 256
	// MaxShards bounds the number of shards a plan may produce.
	MaxShards = 100000
)

// Item is one blob to place: a tensor's name and its size in bytes.
type Item struct {
	Name   string
	NBytes int64
}

// Options configure Plan. Zero fields take the defaults.
type Options struct {
	ShardSize int64 // cap on a shard's size in bytes (default DefaultShardSize)
	Alignment int64 // alignment of every item's offset (default DefaultAlignment; a power of two)
}

// Part is a contiguous piece of an item inside one shard.
type Part struct {
	Shard  int   // shard index
	Offset int64 // byte offset within the shard (a multiple of Alignment)
	NBytes int64
}

// Placement is where one item lives: one part, or several in order when the
// item is larger than ShardSize.
type Placement struct {
	Name   string
	NBytes int64
	Parts  []Part
}

// Shard is one shard file of a layout.
type Shard struct {
	Path   string // ShardPath(index)
	NBytes int64  // file size: end of its last part
}

// Layout is a complete plan: items in the order given, and the shard files.
type Layout struct {
	ShardSize int64
	Alignment int64
	Items     []Placement
	Shards    []Shard
}

// ShardPath is the bundle-relative path of shard i.
func ShardPath(i int) string { return fmt.Sprintf("shards/%05d.bin", i) }

func (o Options) withDefaults() (Options, error) {
	if o.ShardSize == 0 {
		o.ShardSize = DefaultShardSize
	}
	if o.Alignment == 0 {
		o.Alignment = DefaultAlignment
	}
	if o.Alignment < 1 || o.Alignment&(o.Alignment-1) != 0 {
		return o, fmt.Errorf("shard: alignment %d is not a power of two", o.Alignment)
	}
	if o.ShardSize < o.Alignment || o.ShardSize%o.Alignment != 0 {
		return o, fmt.Errorf("shard: shard size %d is not a positive multiple of the alignment %d", o.ShardSize, o.Alignment)
	}
	return o, nil
}

// Plan computes the layout of items (in the order given) under opts. It is
// pure and deterministic; it rejects negative sizes, empty or duplicate names
// and layouts of more than MaxShards shards.
func Plan(items []Item, opts Options) (*Layout, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Layout{ShardSize: o.ShardSize, Alignment: o.Alignment, Items: make([]Placement, 0, len(items))}
	seen := make(map[string]bool, len(items))
	cur := -1     // current shard index; -1 = none open
	var off int64 // end of data in the current shard
	open := func() error {
		if cur >= 0 {
			l.Shards[cur].NBytes = off
		}
		if len(l.Shards) >= MaxShards {
			return fmt.Errorf("shard: more than %d shards of %d bytes", MaxShards, o.ShardSize)
		}
		l.Shards = append(l.Shards, Shard{Path: ShardPath(len(l.Shards))})
		cur, off = len(l.Shards)-1, 0
		return nil
	}
	for _, it := range items {
		if it.Name == "" {
			return nil, fmt.Errorf("shard: item %d has an empty name", len(l.Items))
		}
		if seen[it.Name] {
			return nil, fmt.Errorf("shard: item %q appears twice", it.Name)
		}
		seen[it.Name] = true
		if it.NBytes < 0 {
			return nil, fmt.Errorf("shard: item %q has negative size %d", it.Name, it.NBytes)
		}
		p := Placement{Name: it.Name, NBytes: it.NBytes}
		if it.NBytes <= o.ShardSize {
			start := alignUp(off, o.Alignment)
			if cur < 0 || start+it.NBytes > o.ShardSize || (start >= o.ShardSize && off > 0) {
				if err := open(); err != nil {
					return nil, err
				}
				start = 0
			}
			p.Parts = []Part{{Shard: cur, Offset: start, NBytes: it.NBytes}}
			off = start + it.NBytes
		} else {
			if cur < 0 || off > 0 {
				if err := open(); err != nil {
					return nil, err
				}
			}
			for rem := it.NBytes; rem > 0; {
				take := min(rem, o.ShardSize)
				p.Parts = append(p.Parts, Part{Shard: cur, Offset: 0, NBytes: take})
				rem -= take
				off = take
				if rem > 0 {
					if err := open(); err != nil {
						return nil, err
					}
				}
			}
		}
		l.Items = append(l.Items, p)
	}
	if cur >= 0 {
		l.Shards[cur].NBytes = off
	}
	return l, nil
}

func alignUp(x, a int64) int64 { return (x + a - 1) &^ (a - 1) }

// TotalBytes is the sum of the shard sizes (payload plus alignment gaps).
func (l *Layout) TotalBytes() int64 {
	var n int64
	for _, s := range l.Shards {
		n += s.NBytes
	}
	return n
}
