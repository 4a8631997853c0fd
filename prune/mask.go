package prune

import (
	"fmt"
	"math"
	"slices"
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

// dropLowest zeroes the count lowest-scored entries of w (ties toward the
// lower index) and returns count. buf is scratch of len(scores).
func dropLowest(w, scores, buf []float32, count int) int {
	if count <= 0 {
		return 0
	}
	copy(buf, scores)
	slices.Sort(buf)
	thr := buf[count-1]
	atThr := count - sort.Search(count, func(i int) bool { return buf[i] >= thr })
	for i, s := range scores {
		if s < thr {
			w[i] = 0
		} else if s == thr && atThr > 0 {
			w[i] = 0
			atThr--
		}
	}
	return count
}

// MaskRows zeroes, in each row of a rows×cols weight, the ⌊p·cols⌋ entries
// with the lowest scores (ties toward the lower column). It returns the
// number of zeroed entries.
func MaskRows(w, scores []float32, rows, cols int, p float64) int {
	drop := int(p * float64(cols))
	buf := make([]float32, cols)
	total := 0
	for n := 0; n < rows; n++ {
		total += dropLowest(w[n*cols:(n+1)*cols], scores[n*cols:(n+1)*cols], buf, drop)
	}
	return total
}

// MaskTensor zeroes the ⌊p·len(w)⌋ entries with the lowest scores (ties
// toward the lower index).
func MaskTensor(w, scores []float32, p float64) int {
	return dropLowest(w, scores, make([]float32, len(w)), int(p*float64(len(w))))
}

// MaskNM keeps, in every group of m consecutive input columns of every row,
// the n highest-scored entries and zeroes the rest (the m−n lowest, ties
// toward the lower column). cols must be a multiple of m. After MaskNM
// every group has at most n non-zeros.
func MaskNM(w, scores []float32, rows, cols, n, m int) (int, error) {
	if n <= 0 || m <= n {
		return 0, fmt.Errorf("prune: n:m %d:%d: want 0 < n < m", n, m)
	}
	if cols%m != 0 {
		return 0, fmt.Errorf("prune: n:m %d:%d: %d input columns are not a multiple of %d", n, m, cols, m)
	}
	idx := make([]int, m)
	total := 0
	for g := 0; g < rows*cols; g += m {
		s := scores[g : g+m]
		// insertion sort of the group's indices by score, stable
		for j := range idx {
			idx[j] = j
			for k := j; k > 0 && s[idx[k]] < s[idx[k-1]]; k-- {
				idx[k], idx[k-1] = idx[k-1], idx[k]
			}
		}
		for _, j := range idx[:m-n] {
			w[g+j] = 0
		}
		total += m - n
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
	slices.Sort(flat)
	thr = flat[drop-1]
	below := sort.Search(len(flat), func(i int) bool { return flat[i] >= thr })
	return thr, drop - below
}
