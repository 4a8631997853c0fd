package quantrun

import (
	"fmt"

	"github.com/smeltml/smelt/internal/compare"
	"github.com/smeltml/smelt/internal/exec"
	"github.com/smeltml/smelt/internal/textdata"
)

// Compare runs ref and cand over the perplexity windows of ids (context
// ctx, stride; textdata.Windows) and accumulates every scored target: the
// logits at position j-1 of a window against target IDs[j], j >= First.
// progress, if set, is called after each window. The models must share a
// vocabulary.
func Compare(ref, cand *exec.Model, ids []int, ctx, stride int, progress func(done, total int)) (compare.Report, error) {
	if rv, cv := ref.Config.VocabSize, cand.Config.VocabSize; rv != cv {
		return compare.Report{}, fmt.Errorf("validate: the reference has a vocabulary of %d, the candidate %d", rv, cv)
	}
	V := ref.Config.VocabSize
	for i, id := range ids {
		if id < 0 || id >= V {
			return compare.Report{}, fmt.Errorf("validate: token id %d at position %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	ws, err := textdata.Windows(ids, ctx, stride)
	if err != nil {
		return compare.Report{}, fmt.Errorf("validate: %w", err)
	}
	var acc compare.Accumulator
	for wi, w := range ws {
		a, err := ref.Forward(w.IDs)
		if err != nil {
			return compare.Report{}, fmt.Errorf("validate: reference: window %d: %w", wi, err)
		}
		b, err := cand.Forward(w.IDs)
		if err != nil {
			return compare.Report{}, fmt.Errorf("validate: candidate: window %d: %w", wi, err)
		}
		for j := w.First; j < len(w.IDs); j++ {
			if err := acc.Add(a[(j-1)*V:j*V], b[(j-1)*V:j*V], w.IDs[j]); err != nil {
				return compare.Report{}, fmt.Errorf("validate: %w", err)
			}
		}
		if progress != nil {
			progress(wi+1, len(ws))
		}
	}
	return acc.Report(), nil
}
