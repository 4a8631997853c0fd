// Package prune removes weights: unstructured masks (magnitude, Wanda), N:M
// masks along the input dimension, and structured removal of MLP channels,
// attention heads (whole GQA groups) and whole layers. Every method is a
// pure function over an *ir.Graph that returns a new graph whose tensors,
// shapes and config are consistent (rebuilt through the architecture
// family and checked), so the rest of the pipeline just sees a (smaller or
// sparser) model. Heavy inputs (calibration activation statistics) are
// passed in as data (Stats, gathered by internal/prunerun); package prune
// does no I/O. Plan computes Run's shapes, bytes and config from the shapes
// alone, for --explain and for models too large to load.
//
// Only the linear weights of the decoder blocks (attn_q/k/v/output,
// ffn_gate/up/down) are pruned; embeddings, the output head and norms are
// left alone, as in the Wanda and SparseGPT papers. Quantized models are
// refused: prune, then quantize.
//
// Scores of single weights (higher = more important, kept):
//
//	magnitude:  s(n,k) = |W(n,k)|
//	wanda:      s(n,k) = |W(n,k)| · ‖X_k‖₂     (‖X_k‖ = L2 norm of input channel k over the calibration tokens)
//
// Unstructured sparsity p removes the ⌊p·K⌋ lowest-scored weights of each
// output row (Wanda's per-output comparison group; also used for magnitude
// with Scope PerRow), or the ⌊p·N·K⌋ lowest of each tensor (PerTensor), or
// the ⌊p·total⌋ lowest across all prunable tensors (Global). N:M keeps the
// N highest-scored weights of every group of M consecutive input columns
// of each row (magnitude scores, or Wanda's with activation importance).
// Ties break toward the lower index, so results are deterministic.
//
// Importance of structures (the lowest are removed, the rest keep their
// order):
//
//	MLP channel j      magnitude:   ‖gate[j,:]‖·‖up[j,:]‖·‖down[:,j]‖
//	                   activations: ‖X_j‖·‖down[:,j]‖   (X = silu(gate)·up, down's input)
//	GQA group g        magnitude:   (‖q_g‖+‖k_g‖+‖v_g‖)·‖o[:,g]‖   (Frobenius norms of the group's slices)
//	                   activations: Σ_{c in g} ‖X_c‖·‖o[:,c]‖      (X = attention output, o's input)
//	block i            magnitude:   ‖attn_output_i‖·‖ffn_down_i‖
//	                   activations: BlockInfluence[i] = mean_t 1 − cos(h_in, h_out)   (ShortGPT)
//
// Sizes after structured pruning: the MLP keeps ⌊I·(1−p)⌋ rounded down to a
// multiple of Align (default 32, at least Align); heads keep kv_heads −
// ⌊p·kv_heads⌋ groups (at least 1); layers drop ⌊p·L⌋ blocks (at most L−1).
// Worked example, ref29m (hidden 512, intermediate 1536, 8 layers, f16):
// structured-mlp at p = 0.25 keeps 1152 channels, so each layer's gate, up
// and down lose 384 × 512 values, 3 × 384 × 512 × 2 = 1,179,648 bytes per
// layer and 9,437,184 bytes in all.
package prune
