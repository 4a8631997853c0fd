package ir

// Config is the architecture-level description of a decoder-only
// transformer, filled by the architecture's config parser (convert/arch)
// from config.json and recorded in bundles. Every consumer (executor,
// quantizer, codegen) reads model hyper-parameters from here only.
type Config struct {
	Arch                  string       `json:"arch"`        // HF architectures[0], e.g. "LlamaForCausalLM"
	Family                string       `json:"family"`      // registry family, e.g. "llama"
	HiddenSize            int          `json:"hidden_size"` // d_model
	IntermediateSize      int          `json:"intermediate_size"`
	NumLayers             int          `json:"num_layers"`
	NumHeads              int          `json:"num_heads"`
	NumKVHeads            int          `json:"num_kv_heads"`
	HeadDim               int          `json:"head_dim"`
	VocabSize             int          `json:"vocab_size"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	AttentionBias         bool         `json:"attention_bias"` // q/k/v carry biases (Qwen2)
	MLPBias               bool         `json:"mlp_bias,omitempty"`
	HiddenAct             string       `json:"hidden_act"` // "silu"
	SlidingWindow         int          `json:"sliding_window,omitempty"`
	BOSTokenID            int          `json:"bos_token_id"`
	EOSTokenIDs           []int        `json:"eos_token_ids"`
	TorchDType            string       `json:"torch_dtype,omitempty"`
}

// RopeScaling is a supported rope_scaling entry. Type is "linear" or
// "llama3"; anything else is rejected by the config parser.
type RopeScaling struct {
	Type                          string  `json:"type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}
