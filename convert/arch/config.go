package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// hfConfig holds the config.json fields the Llama-family architectures
// read. Pointer fields distinguish absent from zero. Unknown fields are
// allowed (HF configs carry many training-only fields) but every field
// listed here is type-checked, and critical values are validated.
type hfConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             *string         `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	HiddenAct             *string         `json:"hidden_act"`
	SlidingWindow         json.RawMessage `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	BOSTokenID            *int            `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
	TorchDType            *string         `json:"torch_dtype"`
	DType                 *string         `json:"dtype"`
	QuantizationConfig    json.RawMessage `json:"quantization_config"`
	PretrainingTP         *int            `json:"pretraining_tp"`
}

// decodeConfig parses config.json into hfConfig with file/offset errors.
func decodeConfig(file string, raw []byte) (*hfConfig, error) {
	var c hfConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&c); err != nil {
		switch e := err.(type) {
		case *json.SyntaxError:
			return nil, fmt.Errorf("convert: %s: invalid JSON at byte %d: %v", file, e.Offset, e)
		case *json.UnmarshalTypeError:
			return nil, fmt.Errorf("convert: %s: field %q: want %v, found JSON %s", file, e.Field, e.Type, e.Value)
		}
		return nil, fmt.Errorf("convert: %s: %v", file, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("convert: %s: trailing data after the JSON object", file)
	}
	return &c, nil
}

// ConfigArchitecture returns architectures[0] of a config.json.
func ConfigArchitecture(file string, raw []byte) (string, error) {
	c, err := decodeConfig(file, raw)
	if err != nil {
		return "", err
	}
	if len(c.Architectures) != 1 {
		return "", fmt.Errorf("convert: %s: architectures has %d entries, want exactly 1", file, len(c.Architectures))
	}
	return c.Architectures[0], nil
}
