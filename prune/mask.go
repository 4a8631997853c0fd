package prune

import (
	"fmt"
	"math"
	"sort"
)

// Scope is the comparison group for unstructured sparsity.
type Scope int

// Comparison groups.
const (
	PerRow    Scope = iota // each output row loses the same fraction (Wanda's choice)
	PerTensor              // each tensor loses the same fraction
	Global                 // one threshold across all prunable tensors
)

// ParseScope parses "row", "tensor" or "global".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "row", "":
		return PerRow, nil
	case "tensor":
		return PerTensor, nil
	case "global":
		return Global, nil
	}
	return 0, fmt.Errorf("prune: scope %q: want row, tensor or global", s)
}

// MagnitudeScores returns |w|.
func MagnitudeScores(w []float32) []float32 {
	s := make([]float32, len(w))
	for i, v := range w {
		s[i] = float32(math.Abs(float64(v)))
	}
	return s
}

// WandaScores returns |W(n,k)|·xnorm[k] for a rows×cols weight.
func WandaScores(w []float32, rows, cols int, xnorm []float32) ([]float32, error) {
	if len(xnorm) != cols || len(w) != rows*cols {
		return nil, fmt.Errorf("prune: wanda: weight %d values for %dx%d, activation norms %d, want %d", len(w), rows, cols, len(xnorm), cols)
	}
	s := make([]float32, len(w))
	for n := 0; n < rows; n++ {
		for k := 0; k < cols; k++ {
			s[n*cols+k] = float32(math.Abs(float64(w[n*cols+k]))) * xnorm[k]
		}
	}
	return s, nil
}

// lowest returns the indices of the count lowest scores among idx
// (ties toward the lower index).
func lowest(scores []float32, idx []int, count int) []int {
	sorted := append([]int(nil), idx...)
	sort.SliceStable(sorted, func(a, b int) bool { return scores[sorted[a]] < scores[sorted[b]] })
	return sorted[:count]
}

// MaskRows zeroes, in each row of a rows×cols weight, the ⌊p·cols⌋ entries
// with the lowest scores. It returns the number of zeroed entries.
func MaskRows(w, scores []float32, rows, cols int, p float64) int {
	drop := int(p * float64(cols))
	idx := make([]int, cols)
	total := 0
	for n := 0; n < rows; n++ {
		for k := range idx {
			idx[k] = n*cols + k
		}
		for _, i := range lowest(scores, idx, drop) {
			w[i] = 0
			total++
		}
	}
	return total
}

// MaskTensor zeroes the ⌊p·len(w)⌋ entries with the lowest scores.
func MaskTensor(w, scores []float32, p float64) int {
	idx := make([]int, len(w))
	for i := range idx {
		idx[i] = i
	}
	drop := lowest(scores, idx, int(p*float64(len(w))))
	for _, i := range drop {
		w[i] = 0
	}
	return len(drop)
}

// MaskNM keeps, in every group of m consecutive input columns of every row,
// the n highest-scored entries and zeroes the rest. cols must be a multiple
// of m. After MaskNM every group has at most n non-zeros.
func MaskNM(w, scores []float32, rows, cols, n, m int) (int, error) {
	if n <= 0 || m <= n {
		return 0, fmt.Errorf("prune: n:m %d:%d: want 0 < n < m", n, m)
	}
	if cols%m != 0 {
		return 0, fmt.Errorf("prune: n:m %d:%d: %d input columns are not a multiple of %d", n, m, cols, m)
	}
	idx := make([]int, m)
	total := 0
	for r := 0; r < rows; r++ {
		for g := 0; g < cols; g += m {
			for j := range idx {
				idx[j] = r*cols + g + j
			}
			for _, i := range lowest(scores, idx, m-n) {
				w[i] = 0
				total++
			}
		}
	}
	return total, nil
}

// GlobalThreshold returns the score below which entries are dropped so that
// ⌊p·total⌋ entries across all score slices fall at or under it, and how
// many entries equal to the threshold still need dropping (ties are broken
// by tensor order, then index).
func GlobalThreshold(all [][]float32, p float64) (thr float32, atThr int) {
	var n int
	for _, s := range all {
		n += len(s)
	}
	drop := int(p * float64(n))
	if drop == 0 {
		return float32(math.Inf(-1)), 0
	}
	flat := make([]float32, 0, n)
	for _, s := range all {
		flat = append(flat, s...)
	}
	sort.Slice(flat, func(a, b int) bool { return flat[a] < flat[b] })
	thr = flat[drop-1]
	below := sort.Search(len(flat), func(i int) bool { return flat[i] >= thr })
	return thr, drop - below
}
