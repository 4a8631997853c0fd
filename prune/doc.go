// Package prune removes weights: unstructured masks (magnitude, Wanda), N:M
// masks along the input dimension, and structured removal of MLP channels,
// attention heads (whole GQA groups) and whole layers. Every method is a
// pure function over an *ir.Graph that returns a new graph whose tensors,
// shapes and config are consistent, so the rest of the pipeline just sees a
// (smaller or sparser) model. Heavy inputs (calibration activation
// statistics) are passed in as data (Stats); package prune does no I/O.
//
// Only the linear weights of the decoder blocks (attn_q/k/v/output,
// ffn_gate/up/down) are pruned; embeddings, the output head and norms are
// left alone, as in the Wanda and SparseGPT papers.
//
// Scores (higher = more important, kept):
//
//	magnitude:  s(n,k) = |W(n,k)|
//	wanda:      s(n,k) = |W(n,k)| · ‖X_k‖₂     (‖X_k‖ = L2 norm of input channel k over the calibration tokens)
//
// Unstructured sparsity p removes the ⌊p·K⌋ lowest-scored weights of each
// output row (Wanda's per-output comparison group; also used for magnitude
// with Scope PerRow), or the ⌊p·N·K⌋ lowest of each tensor (PerTensor), or
// the lowest across all prunable tensors (Global). N:M keeps the N
// highest-scored weights of every group of M consecutive input columns of
// each row. Ties break toward the lower index, so results are deterministic.
package prune
