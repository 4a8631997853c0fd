package wgsl_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/smeltml/smelt/internal/dawn"
	"github.com/smeltml/smelt/wgsl"
	"github.com/smeltml/smelt/wgsl/ref"
)

// sentinel is the u32 pattern (a quiet NaN with payload) that pre-fills
// every output buffer; guard bands past the bytes a kernel may write must
// still hold it after the run.
const sentinel = 0x7fc0dead

// guardBytes is the guard band appended to every read_write buffer.
const guardBytes = 256

// launch is one kernel run: rows and pos0 fill the Step uniform; in maps
// binding names to their initial bytes (read_write bindings without an
// entry start as sentinel). Every read-only binding must have exactly the
// size Bindings() declares (rounded up to 4 bytes).
type launch struct {
	k      wgsl.Kernel
	src    string
	rows   int
	pos0   int
	in     map[string][]byte
	uni    map[string][]byte // uniform bindings other than step
	repeat int
}

// run executes l on Dawn+lavapipe and returns each read_write binding's
// bytes (without the guard band), after checking the guard band.
func run(t testing.TB, l launch) (map[string][]byte, float64) {
	t.Helper()
	job, outs := l.job(t)
	res, err := gpu(t).Run(job)
	if err != nil {
		t.Fatalf("%s: %v", l.k.Name(), err)
	}
	got := map[string][]byte{}
	for i, name := range outs {
		b := res.Outputs[i]
		n := len(b) - guardBytes
		for j := n; j < len(b); j += 4 {
			if v := binary.LittleEndian.Uint32(b[j:]); v != sentinel {
				t.Fatalf("%s: binding %q: guard band word at byte %d overwritten: %#x (kernel writes past its declared size %d)", l.k.Name(), name, j, v, n)
			}
		}
		got[name] = b[:n]
	}
	return got, res.Ms
}

func (l launch) job(t testing.TB) (*dawn.Job, []string) {
	t.Helper()
	if l.src == "" {
		l.src = use(t, l.k)
	}
	job := &dawn.Job{Kernels: []dawn.Kernel{{Code: l.src, Entry: wgsl.Entry}}, Repeat: l.repeat}
	d := dawn.Dispatch{Kernel: 0}
	var outs []string
	for i, b := range l.k.Bindings() {
		if b.Index != i {
			t.Fatalf("%s: binding %d has index %d", l.k.Name(), i, b.Index)
		}
		size := int(b.Size.Bytes(l.rows))
		var buf dawn.Buffer
		switch b.Access {
		case wgsl.Uniform:
			data := l.uni[b.Name]
			if b.Name == "step" {
				data = u32bytes([]uint32{uint32(l.rows), uint32(l.pos0), 0, 0})
			}
			if len(data) != size {
				t.Fatalf("%s: uniform %q: %d bytes, declared %d", l.k.Name(), b.Name, len(data), size)
			}
			buf = dawn.Buffer{Size: size, Data: data, Uniform: true}
		case wgsl.ReadOnly:
			data, ok := l.in[b.Name]
			if !ok {
				t.Fatalf("%s: no data for binding %q", l.k.Name(), b.Name)
			}
			if pad4(len(data)) != size {
				t.Fatalf("%s: binding %q: %d bytes of data, Bindings() declares %d for %d rows", l.k.Name(), b.Name, len(data), size, l.rows)
			}
			buf = dawn.Buffer{Size: size, Data: data}
		case wgsl.ReadWrite:
			data := fill(size+guardBytes, sentinel)
			if in, ok := l.in[b.Name]; ok {
				if pad4(len(in)) != size {
					t.Fatalf("%s: binding %q: %d bytes of data, Bindings() declares %d", l.k.Name(), b.Name, len(in), size)
				}
				copy(data, in)
			}
			buf = dawn.Buffer{Size: len(data), Data: data}
			job.Read = append(job.Read, i)
			outs = append(outs, b.Name)
		}
		job.Buffers = append(job.Buffers, buf)
		d.Bindings = append(d.Bindings, i)
	}
	wg, err := l.k.Dispatch(l.rows)
	if err != nil {
		t.Fatal(err)
	}
	d.Workgroups = wg
	job.Dispatches = []dawn.Dispatch{d}
	return job, outs
}

func pad4(n int) int { return (n + 3) &^ 3 }

func fill(n int, word uint32) []byte {
	b := make([]byte, n)
	for i := 0; i+4 <= n; i += 4 {
		binary.LittleEndian.PutUint32(b[i:], word)
	}
	return b
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

func u32bytes(x []uint32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func f16bytes(x []uint16) []byte {
	b := make([]byte, 2*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// randF32 returns n values uniform in [-a, a).
func randF32(r *rand.Rand, n int, a float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = (2*r.Float32() - 1) * a
	}
	return x
}

// randF16 returns n half values uniform in [-a, a) and their float32 values.
func randF16(r *rand.Rand, n int, a float32) ([]uint16, []float32) {
	h := make([]uint16, n)
	f := make([]float32, n)
	for i := range h {
		h[i] = ref.FloatToHalf((2*r.Float32() - 1) * a)
		f[i] = ref.HalfToFloat(h[i])
	}
	return h, f
}

// tolerance bounds |got[i] - want[i]| by tol[i].
func checkClose(t testing.TB, what string, got, want []float32, tol func(i int) float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	worst, worstI := 0.0, -1
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		lim := tol(i)
		if !(d <= lim) {
			bad++
			if bad <= 5 {
				t.Errorf("%s[%d] = %v, want %v (|diff| %.3g > tolerance %.3g)", what, i, got[i], want[i], d, lim)
			}
		}
		if lim > 0 && d/lim > worst {
			worst, worstI = d/lim, i
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d values out of tolerance", what, bad, len(want))
	}
	if testing.Verbose() && worstI >= 0 {
		t.Logf("%s: worst |diff|/tolerance %.3g at %d", what, worst, worstI)
	}
}

// checkUntouched verifies that words [from, to) of b still hold the sentinel.
func checkUntouched(t testing.TB, what string, b []byte, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if v := binary.LittleEndian.Uint32(b[4*i:]); v != sentinel {
			t.Fatalf("%s: word %d written (%#x) but outside the kernel's range", what, i, v)
		}
	}
}

func name(format string, a ...any) string { return fmt.Sprintf(format, a...) }
