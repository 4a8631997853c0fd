// Package convert reads model folders and files (Hugging Face safetensors
// and PyTorch checkpoints, ONNX) into smelt's IR.
package convert

import "github.com/smeltml/smelt/internal/ir"

// Canonical tensor names, defined in package ir (internal/ir/names.go) so
// that architecture files can use them; re-exported here for convenience.
const (
	TokenEmbedding = ir.TokenEmbedding
	OutputNorm     = ir.OutputNorm
	Output         = ir.Output
	AttnNorm       = ir.AttnNorm
	AttnQ          = ir.AttnQ
	AttnK          = ir.AttnK
	AttnV          = ir.AttnV
	AttnQBias      = ir.AttnQBias
	AttnKBias      = ir.AttnKBias
	AttnVBias      = ir.AttnVBias
	AttnOutput     = ir.AttnOutput
	FFNNorm        = ir.FFNNorm
	FFNGate        = ir.FFNGate
	FFNUp          = ir.FFNUp
	FFNDown        = ir.FFNDown
)

// Layer returns the canonical name of a per-block tensor: Layer(3, FFNDown)
// is "blk.3.ffn_down.weight".
func Layer(i int, name string) string { return ir.LayerTensor(i, name) }
