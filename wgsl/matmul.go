package wgsl

import (
	"fmt"

	"github.com/smeltml/smelt/internal/ir"
)

// MatMulMode selects the matmul algorithm.
type MatMulMode uint8

// Matmul modes.
const (
	// GEMV: decode. Each workgroup of 256 invocations computes 256/ThreadsPerRow
	// outputs of one token row; the ThreadsPerRow invocations of an output
	// read consecutive u32 words of its weight row (coalesced) and reduce
	// through workgroup memory. Weights are read once per token row. With
	// RowsPerThread (int4), each group of ThreadsPerRow invocations computes
	// RowsPerThread rows, 256/ThreadsPerRow*RowsPerThread per workgroup.
	GEMV MatMulMode = iota + 1
	// GEMM: prefill. 16x16 invocations compute a 32-token x 64-output tile,
	// staging x and dequantized weights through workgroup memory in steps
	// of 16 along K. Weights are read once per 32 token rows.
	GEMM
)

// String returns "gemv" or "gemm".
func (m MatMulMode) String() string {
	switch m {
	case GEMV:
		return "gemv"
	case GEMM:
		return "gemm"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// MatMul is y = x · Wᵀ (+ bias) over the row range [RowStart, RowStart +
// RowCount) of W [N, K] (reference: ref.MatMul):
//
//	y[t, RowStart + r] = sum_k x[t, k] * w(RowStart + r, k) + bias[r],  r < RowCount
//
// Bindings, in order: 0 step (uniform Step); 1 x f32 [T, K]; the weight
// bindings of Weights ("w", or "qweight", "scales" and, asymmetric,
// "zeros"), holding only rows RowStart.. RowStart+RowCount-1 from byte 0;
// then "bias" f32 [RowCount] when Bias; last y f32 [T, N] (read_write; only
// columns of the row range are written). With LastRow, x row step.rows-1
// is the only input row and y is [1, N] (logits of the last token).
//
// A weight over the binding limit is split by codegen into several
// instances with disjoint row ranges writing the same y.
//
// Dispatch(T): GEMV (ceil(RowCount/(256/ThreadsPerRow*max(1,
// RowsPerThread))), T, 1), 1 in y with LastRow; GEMM (ceil(RowCount/64),
// ceil(T/32), 1).
type MatMul struct {
	Mode          MatMulMode
	K, N          int
	RowStart      int
	RowCount      int // 0 means N - RowStart
	Weights       Weights
	Bias          bool
	Compute       ir.DType // F32; F16 (GEMV only) multiplies in f16 per u32 word, accumulates in f32
	ThreadsPerRow int      // GEMV: power of two <= 256; 0 picks a default from K
	LastRow       bool     // GEMV: read only x row step.rows-1, write y row 0
	// RowsPerThread (GEMV, int4 weights with K and GroupSize multiples of
	// 32, f32 compute) selects the multi-row kernel: each invocation reads
	// one 16-byte word (32 weights) of each of RowsPerThread rows per step,
	// sharing the x loads, and converts nibbles to f32 without int-to-float
	// conversions (kernels/matmul_gemv_rows.wgsl.tmpl). 1, 2, 4 or 8; 0 keeps
	// the one-row kernel.
	RowsPerThread int
	// Subgroups (with RowsPerThread) reduces the ThreadsPerRow partial sums
	// with subgroupShuffleXor within a subgroup, through workgroup memory
	// across subgroups; requires the "subgroups" feature. It assumes that
	// subgroup_invocation_id is local_invocation_index modulo subgroup_size
	// (true of Vulkan, Metal and D3D12 drivers for 1-D workgroups).
	Subgroups bool
}

// multiRow reports whether p uses the multi-row int4 GEMV kernel.
func (p MatMul) multiRow() bool { return p.Mode == GEMV && p.RowsPerThread > 0 }

// rowsPerWorkgroup is the output rows one GEMV workgroup computes.
func (p MatMul) rowsPerWorkgroup() int {
	if p.multiRow() {
		return 256 / p.TPR() * p.RowsPerThread
	}
	return 256 / p.TPR()
}

func (p MatMul) rows() int {
	if p.RowCount == 0 {
		return p.N - p.RowStart
	}
	return p.RowCount
}

// qvec reports whether the GEMV reads quantized weights as vec4<u32> (16
// bytes, 32 int4 or 16 int8 values of one scale group per load): rows of a
// multiple of 4 words and groups of a multiple of 4 words.
func (p MatMul) qvec() bool {
	w := p.Weights
	return p.Mode == GEMV && w.Quantized() && (p.K*w.Bits/32)%4 == 0 && w.GroupSize%(128/w.Bits) == 0
}

// elemsPerWord is how many weights one GEMV step of one invocation reads.
func (p MatMul) elemsPerWord() int {
	if p.qvec() {
		return 128 / p.Weights.Bits
	}
	switch p.Weights.Type {
	case ir.F32:
		if p.K%4 == 0 {
			return 4
		}
		return 1
	case ir.F16:
		return 2
	}
	return 32 / p.Weights.Bits
}

// TPR returns the GEMV invocations per output row: ThreadsPerRow, or by
// default nextPow2(loads per row)/2 clamped to [4, 32] (about two loads per
// invocation; 32 was the best or near it for every shape measured on an
// H100, where fewer invocations left the GPU under-occupied). The
// multi-row kernel (RowsPerThread) defaults to nextPow2(2^19 / rows)
// clamped to [32, 128] and to the row's 16-byte words (K/32), so that
// enough invocations (rows * TPR / RowsPerThread, 2^17 at 4 rows per
// invocation) keep the GPU's memory busy: on an H100, 128 for 4096 rows and
// 64 for 14336 were the best or within 10% of it.
func (p MatMul) TPR() int {
	if p.ThreadsPerRow != 0 {
		return p.ThreadsPerRow
	}
	words := p.K / p.elemsPerWord()
	if p.multiRow() {
		return min(nextPow2(words), min(128, max(32, nextPow2(ceilDiv(1<<19, p.rows())))))
	}
	return min(32, max(4, nextPow2(words)/2))
}

// Name implements Kernel.
func (p MatMul) Name() string {
	s := fmt.Sprintf("matmul_%v_%v_k%d_n%d", p.Mode, p.Weights, p.K, p.N)
	if p.RowStart != 0 || p.rows() != p.N {
		s += fmt.Sprintf("_r%d+%d", p.RowStart, p.rows())
	}
	if p.Bias {
		s += "_bias"
	}
	s += "_c" + p.Compute.String()
	if p.Mode == GEMV {
		s += fmt.Sprintf("_tpr%d", p.TPR())
	}
	if p.RowsPerThread != 0 {
		s += fmt.Sprintf("_rpt%d", p.RowsPerThread)
	}
	if p.Subgroups {
		s += "_sg"
	}
	if p.LastRow {
		s += "_last"
	}
	return s
}

// Validate implements Kernel.
func (p MatMul) Validate() error {
	if p.K <= 0 || p.N <= 0 {
		return fmt.Errorf("wgsl: matmul: shape k=%d n=%d, want > 0", p.K, p.N)
	}
	if p.RowStart < 0 || p.RowCount < 0 || p.rows() <= 0 || p.RowStart+p.rows() > p.N {
		return fmt.Errorf("wgsl: matmul: row range %d+%d outside [0, %d)", p.RowStart, p.RowCount, p.N)
	}
	if err := p.Weights.validate("matmul", p.K); err != nil {
		return err
	}
	if err := checkCompute("matmul", p.Compute); err != nil {
		return err
	}
	for _, b := range p.Bindings() {
		if b.Access != Uniform && b.Size.PerRow == 0 && b.Size.Fixed > MaxBindingBytes {
			return fmt.Errorf("wgsl: matmul: binding %q needs %d bytes, over the %d-byte binding limit: split the rows", b.Name, b.Size.Fixed, MaxBindingBytes)
		}
	}
	switch p.Mode {
	case GEMV:
		tpr := p.TPR()
		if !isPow2(tpr) || tpr > 256 {
			return fmt.Errorf("wgsl: matmul: threads per row %d, want a power of two <= 256", tpr)
		}
		if p.RowsPerThread != 0 {
			w := p.Weights
			switch {
			case p.RowsPerThread != 1 && p.RowsPerThread != 2 && p.RowsPerThread != 4 && p.RowsPerThread != 8:
				return fmt.Errorf("wgsl: matmul: rows per thread %d, want 1, 2, 4 or 8", p.RowsPerThread)
			case !w.Quantized() || w.Bits != 4 || p.K%32 != 0 || w.GroupSize%32 != 0:
				return fmt.Errorf("wgsl: matmul: rows per thread needs int4 weights with K and group size multiples of 32, got %v k=%d", w, p.K)
			case p.Compute != ir.F32:
				return fmt.Errorf("wgsl: matmul: rows per thread computes in f32, got %v", p.Compute)
			}
		}
		if p.Subgroups && p.RowsPerThread == 0 {
			return fmt.Errorf("wgsl: matmul: Subgroups is an option of the rows-per-thread kernel")
		}
		if n := ceilDiv(p.rows(), p.rowsPerWorkgroup()); n > MaxWorkgroupsPerDim {
			return fmt.Errorf("wgsl: matmul: %d workgroups in x over %d: use more rows per workgroup or split the rows", n, MaxWorkgroupsPerDim)
		}
	case GEMM:
		if p.Compute != ir.F32 {
			return fmt.Errorf("wgsl: matmul: gemm computes in f32 only, got %v", p.Compute)
		}
		if p.LastRow {
			return fmt.Errorf("wgsl: matmul: LastRow is a GEMV option")
		}
		if p.ThreadsPerRow != 0 || p.RowsPerThread != 0 || p.Subgroups {
			return fmt.Errorf("wgsl: matmul: ThreadsPerRow, RowsPerThread and Subgroups are GEMV options")
		}
	default:
		return fmt.Errorf("wgsl: matmul: mode %v, want gemv or gemm", p.Mode)
	}
	return nil
}

// Bindings implements Kernel.
func (p MatMul) Bindings() []Binding {
	k, n := int64(p.K), int64(p.N)
	bs := []Binding{stepBinding(), {Index: 1, Name: "x", Access: ReadOnly, Size: Size{PerRow: 4 * k}}}
	bs = append(bs, p.Weights.bindings(2, p.rows(), p.K)...)
	if p.Bias {
		bs = append(bs, Binding{Index: len(bs), Name: "bias", Access: ReadOnly, Size: Size{Fixed: 4 * int64(p.rows())}})
	}
	y := Size{PerRow: 4 * n}
	if p.LastRow {
		y = Size{Fixed: 4 * n}
	}
	return append(bs, Binding{Index: len(bs), Name: "y", Access: ReadWrite, Size: y})
}

// Requires implements Kernel.
func (p MatMul) Requires() Requirements {
	r := Requirements{Features: features(p.Compute == ir.F16, p.Subgroups), Invocations: 256}
	switch p.Mode {
	case GEMV:
		if p.TPR() > 1 {
			r.WorkgroupStorage = 256 * 4 * max(1, p.RowsPerThread)
		}
	case GEMM:
		r.WorkgroupStorage = (gemmTM*gemmTK + gemmTK*gemmTN) * 4
	}
	return r
}

const gemmTM, gemmTN, gemmTK = 32, 64, 16

// Workgroup implements Kernel.
func (p MatMul) Workgroup() [3]int {
	if p.Mode == GEMM {
		return [3]int{16, 16, 1}
	}
	return [3]int{256, 1, 1}
}

// Dispatch implements Kernel.
func (p MatMul) Dispatch(rows int) ([3]int, error) {
	if rows < 0 || rows > MaxWorkgroupsPerDim {
		return [3]int{}, fmt.Errorf("wgsl: matmul: %d rows, want 0..%d", rows, MaxWorkgroupsPerDim)
	}
	if p.Mode == GEMM {
		return [3]int{ceilDiv(p.rows(), gemmTN), max(1, ceilDiv(rows, gemmTM)), 1}, nil
	}
	if p.LastRow {
		rows = 1
	}
	return [3]int{ceilDiv(p.rows(), p.rowsPerWorkgroup()), max(rows, 1), 1}, nil
}

// Render implements Kernel.
func (p MatMul) Render() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	bs := p.Bindings()
	d := merge(p.Weights.templateData(2, p.K), map[string]any{
		"Name": p.Name(), "N": p.N, "R0": p.RowStart, "RC": p.rows(),
		"Bias": p.Bias, "BiasBind": len(bs) - 2, "YBind": len(bs) - 1,
		"F16": p.Compute == ir.F16, "LastRow": p.LastRow,
		"TPR": p.TPR(), "E": p.elemsPerWord(), "XVec": p.Mode == GEMV && p.elemsPerWord()%4 == 0,
		"WVec4": p.Mode == GEMV && p.Weights.Type == ir.F32 && p.elemsPerWord() == 4,
		"QVec":  p.qvec(),
		"TM":    gemmTM, "TN": gemmTN, "TK": gemmTK,
		"RPT": p.RowsPerThread, "SG": p.Subgroups,
	})
	if p.Mode == GEMM {
		return render("matmul_gemm", d)
	}
	if p.multiRow() {
		return render("matmul_gemv_rows", d)
	}
	return render("matmul_gemv", d)
}
