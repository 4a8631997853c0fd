package ir

import "fmt"

// Canonical tensor names. Every stage after convert (executor, quantizer,
// codegen, bundles) uses these names only; architecture files map source
// names onto them (convert/arch). Layer tensors carry the block index:
// LayerTensor(3, FFNDown) is "blk.3.ffn_down.weight". Package convert
// re-exports them (convert/names.go).
const (
	TokenEmbedding = "token_embd.weight"  // [vocab, hidden]
	OutputNorm     = "output_norm.weight" // [hidden]
	Output         = "output.weight"      // [vocab, hidden]; absent when embeddings are tied

	AttnNorm   = "attn_norm.weight"   // [hidden]
	AttnQ      = "attn_q.weight"      // [heads*head_dim, hidden], rotate_half RoPE layout
	AttnK      = "attn_k.weight"      // [kv_heads*head_dim, hidden], rotate_half RoPE layout
	AttnV      = "attn_v.weight"      // [kv_heads*head_dim, hidden]
	AttnQBias  = "attn_q.bias"        // [heads*head_dim] (Qwen2)
	AttnKBias  = "attn_k.bias"        // [kv_heads*head_dim] (Qwen2)
	AttnVBias  = "attn_v.bias"        // [kv_heads*head_dim] (Qwen2)
	AttnOutput = "attn_output.weight" // [hidden, heads*head_dim]
	FFNNorm    = "ffn_norm.weight"    // [hidden]
	FFNGate    = "ffn_gate.weight"    // [intermediate, hidden]
	FFNUp      = "ffn_up.weight"      // [intermediate, hidden]
	FFNDown    = "ffn_down.weight"    // [hidden, intermediate]
)

// LayerTensor returns the canonical name of a per-block tensor:
// LayerTensor(3, FFNDown) is "blk.3.ffn_down.weight".
func LayerTensor(i int, name string) string { return fmt.Sprintf("blk.%d.%s", i, name) }
