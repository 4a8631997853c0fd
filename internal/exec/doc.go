// Package exec is smelt's CPU reference executor: a float32 forward pass of
// the Llama family (Llama 1-3, Mistral, Qwen2-style q/k/v biases) over the
// IR's canonical tensors, with a KV cache for incremental decoding. It is
// the oracle of the project: calibration (GPTQ, AWQ, Wanda) runs it block
// by block, eval/validate measure perplexity with it, and every WGSL kernel
// is tested against the op functions in ops.go (RMSNorm, Linear, RoPE,
// Attention, SiLUMul, LogSoftmax), whose doc comments state the semantics.
//
// Weights in any float dtype (f32, f16, bf16) are decoded to float32 once
// at Load; quantized tensors go through Options.Dequantize. Matrix products
// use gonum's blas32 interface (pure Go unless blas32.Use installs another
// implementation), accumulating in float32; norms accumulate in float64 and
// softmax/log-softmax use float64 exp and sums.
//
// Checked against the torch references in ../shared/models/refs: logits of
// every prompt position within 1e-4·max|logit| (f32/f16 weights), greedy
// continuations, and calibration perplexity within 0.05% of the recorded
// numbers (see exec_test.go and the large-tagged tests).
package exec
