package shard

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
)

// WriteOptions configure Write.
type WriteOptions struct {
	// Parallelism bounds the number of shard files written at once
	// (default runtime.GOMAXPROCS(0)). The output does not depend on it.
	Parallelism int
	// NoSync skips fsync of the shard files (benchmarks of the CPU side
	// only; a bundle writer must sync before publishing).
	NoSync bool
}

// Written is one shard file as written.
type Written struct {
	Path   string   // bundle-relative path (Layout.Shards[i].Path)
	NBytes int64    // file size
	SHA384 [48]byte // digest of the file's bytes, for SRI "sha384-<base64>"
}

// DataFunc returns item i's bytes (exactly Layout.Items[i].NBytes of them).
// Write calls it once per item, possibly from several goroutines at once
// for different i, and does not retain or modify the slice after writing it.
type DataFunc func(i int) ([]byte, error)

// hashChunk is the unit of hash-then-write, small enough to stay in cache
// between the two.
const hashChunk = 1 << 20

// Write creates the layout's shard files under dir (which must exist; the
// files must not), writing every item's bytes from data at its offsets,
// zero-filling alignment gaps, hashing each file with SHA-384 while writing
// and fsyncing it (unless NoSync). Shards are written concurrently; a run of
// shards joined by a split item is written by one goroutine so that data is
// called exactly once per item. It returns one Written per shard, in order.
// On error some files may exist; the caller removes its temporary dir.
func Write(dir string, l *Layout, data DataFunc, opts WriteOptions) ([]Written, error) {
	if len(l.Shards) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "shards"), 0o755); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	// Items per shard in layout order, and runs of shards joined by a split item.
	type job struct{ first, last int }    // shard range, inclusive
	joined := make([]bool, len(l.Shards)) // joined[s]: shards s-1 and s share a split item
	for i := range l.Items {
		ps := l.Items[i].Parts
		for k := 1; k < len(ps); k++ {
			if ps[k].Shard < 0 || ps[k].Shard >= len(l.Shards) {
				return nil, fmt.Errorf("shard: item %q: part in shard %d of %d", l.Items[i].Name, ps[k].Shard, len(l.Shards))
			}
			joined[ps[k].Shard] = true
		}
	}
	var jobs []job
	for s := range l.Shards {
		if len(jobs) > 0 && joined[s] {
			jobs[len(jobs)-1].last = s
			continue
		}
		jobs = append(jobs, job{s, s})
	}
	firstItem := make([]int, len(l.Shards)+1) // first item index with a part in shard s
	for i := range firstItem {
		firstItem[i] = len(l.Items)
	}
	for i := len(l.Items) - 1; i >= 0; i-- {
		for _, p := range l.Items[i].Parts {
			if p.Shard < 0 || p.Shard >= len(l.Shards) {
				return nil, fmt.Errorf("shard: item %q: part in shard %d of %d", l.Items[i].Name, p.Shard, len(l.Shards))
			}
			firstItem[p.Shard] = min(firstItem[p.Shard], i)
		}
	}
	for s := len(l.Shards) - 1; s >= 0; s-- {
		firstItem[s] = min(firstItem[s], firstItem[s+1])
	}

	out := make([]Written, len(l.Shards))
	errs := make([]error, len(jobs))
	var failed atomic.Bool
	par := opts.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	par = min(par, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for j := range next {
				if failed.Load() {
					continue
				}
				jb := jobs[j]
				w := &runWriter{dir: dir, l: l, out: out, sync: !opts.NoSync}
				if err := w.run(jb.first, jb.last, firstItem[jb.first], firstItem[jb.last+1], data); err != nil {
					errs[j] = err
					failed.Store(true)
				}
			}
		})
	}
	for j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// runWriter writes a run of consecutive shards.
type runWriter struct {
	dir  string
	l    *Layout
	out  []Written
	sync bool

	f     *os.File
	shard int
	off   int64
	h     interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func (w *runWriter) run(first, last, itemLo, itemHi int, data DataFunc) (err error) {
	w.shard = -1
	defer func() {
		if w.f != nil {
			w.f.Close()
		}
	}()
	for i := itemLo; i < itemHi; i++ {
		it := &w.l.Items[i]
		if len(it.Parts) == 0 || it.Parts[0].Shard < first || it.Parts[0].Shard > last {
			continue
		}
		b, err := data(i)
		if err != nil {
			return fmt.Errorf("shard: item %q: %w", it.Name, err)
		}
		if int64(len(b)) != it.NBytes {
			return fmt.Errorf("shard: item %q: data is %d bytes, layout says %d", it.Name, len(b), it.NBytes)
		}
		for _, p := range it.Parts {
			if err := w.seek(p.Shard, p.Offset); err != nil {
				return err
			}
			if err := w.write(b[:p.NBytes]); err != nil {
				return err
			}
			b = b[p.NBytes:]
		}
	}
	for s := max(w.shard, first); s <= last; s++ { // finish the open shard and any empty ones
		if err := w.seek(s, w.l.Shards[s].NBytes); err != nil {
			return err
		}
	}
	return w.finish()
}

// seek moves to offset off of shard s, finishing earlier shards and
// zero-filling the gap.
func (w *runWriter) seek(s int, off int64) error {
	if s != w.shard {
		if err := w.finish(); err != nil {
			return err
		}
		path := filepath.Join(w.dir, filepath.FromSlash(w.l.Shards[s].Path))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		w.f, w.shard, w.off, w.h = f, s, 0, sha512.New384()
	}
	if off < w.off {
		return fmt.Errorf("shard: %s: offset %d is before the write position %d (layout not in order)", w.l.Shards[s].Path, off, w.off)
	}
	var zeros [4096]byte
	for gap := off - w.off; gap > 0; {
		n := min(gap, int64(len(zeros)))
		if err := w.write(zeros[:n]); err != nil {
			return err
		}
		gap -= n
	}
	return nil
}

func (w *runWriter) write(b []byte) error {
	for len(b) > 0 {
		c := b[:min(len(b), hashChunk)]
		w.h.Write(c)
		if _, err := w.f.Write(c); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		w.off += int64(len(c))
		b = b[len(c):]
	}
	return nil
}

// finish checks, syncs and closes the open shard and records its digest.
func (w *runWriter) finish() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	sh := w.l.Shards[w.shard]
	if w.off != sh.NBytes {
		f.Close()
		return fmt.Errorf("shard: %s: wrote %d bytes, layout says %d", sh.Path, w.off, sh.NBytes)
	}
	if w.sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("shard: %s: %w", sh.Path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("shard: %s: %w", sh.Path, err)
	}
	wr := Written{Path: sh.Path, NBytes: sh.NBytes}
	copy(wr.SHA384[:], w.h.Sum(nil))
	w.out[w.shard] = wr
	return nil
}
