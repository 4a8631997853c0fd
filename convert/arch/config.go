package arch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// MaxConfigBytes bounds config.json; real ones are a few kilobytes.
const MaxConfigBytes = 1 << 20

// decodeConfig parses config.json into hfConfig with file/offset errors. The
// document must be one JSON object with no duplicate top-level keys (a
// duplicate would make the value depend on which parser reads it).
func decodeConfig(file string, raw []byte) (*hfConfig, error) {
	if len(raw) > MaxConfigBytes {
		return nil, fmt.Errorf("convert: %s: %d bytes, more than the %d-byte limit for a config file", file, len(raw), MaxConfigBytes)
	}
	if err := checkTopLevelObject(raw); err != nil {
		return nil, fmt.Errorf("convert: %s: %w", file, err)
	}
	var c hfConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&c); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("convert: %s: invalid JSON at byte %d: %v", file, se.Offset, se)
		case errors.As(err, &te):
			return nil, fmt.Errorf("convert: %s: field %q: want %v, found JSON %s", file, te.Field, te.Type, te.Value)
		}
		return nil, fmt.Errorf("convert: %s: %v", file, err)
	}
	return &c, nil
}

// checkTopLevelObject verifies that raw is exactly one JSON object whose
// keys are unique, with nothing but white space after it.
func checkTopLevelObject(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, found %v", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("key %q: invalid JSON: %v", key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
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
