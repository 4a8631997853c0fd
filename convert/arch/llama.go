package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/smeltml/smelt/internal/ir"
)

// The Llama family: LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM share one decoder block — pre-RMSNorm, rotary attention
// with grouped-query heads, SwiGLU MLP — and differ in defaults and in
// Qwen2's q/k/v biases. HF checkpoints store q/k rows in the rotate_half
// RoPE layout, which is what smelt's kernels use, so no permutation is
// applied (a llama2.c-layout checkpoint would need one; it is not guessed).
func init() {
	Register(&Family{
		Name:          "llama",
		Architectures: []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"},
		ParseConfig:   parseLlamaConfig,
		Targets:       llamaTargets,
		Unused:        llamaUnused,
		Build:         buildLlama,
	})
}

// llamaDefaults are the HF config-class defaults for fields a config.json
// may omit (transformers LlamaConfig / MistralConfig / Qwen2Config).
type llamaDefaults struct {
	rmsNormEps    float64
	maxPositions  int
	slidingWindow int
	attnBias      bool // Qwen2: always true (hard-coded in the model)
}

var llamaArchDefaults = map[string]llamaDefaults{
	"LlamaForCausalLM":   {rmsNormEps: 1e-6, maxPositions: 2048},
	"MistralForCausalLM": {rmsNormEps: 1e-6, maxPositions: 4096 * 32, slidingWindow: 4096},
	"Qwen2ForCausalLM":   {rmsNormEps: 1e-6, maxPositions: 32768, attnBias: true},
}

// llamaLimits bound every size field of config.json, far above any real
// model (Llama 3.1 405B: 126 layers, hidden 16384, vocab 128256) but low
// enough that the per-layer target list, the graph and shape products stay
// small and never overflow: a hostile config.json cannot make smelt
// allocate without bound.
var llamaLimits = map[string]int{
	"hidden_size":             1 << 20,
	"intermediate_size":       1 << 22,
	"num_hidden_layers":       1 << 12,
	"num_attention_heads":     1 << 12,
	"num_key_value_heads":     1 << 12,
	"head_dim":                1 << 12,
	"vocab_size":              1 << 24,
	"max_position_embeddings": 1 << 26,
}

func parseLlamaConfig(file string, raw []byte) (ir.Config, error) {
	c, err := decodeConfig(file, raw)
	if err != nil {
		return ir.Config{}, err
	}
	bad := func(format string, args ...any) (ir.Config, error) {
		return ir.Config{}, fmt.Errorf("convert: %s: "+format, append([]any{file}, args...)...)
	}
	if len(c.Architectures) != 1 {
		return bad("architectures has %d entries, want exactly 1", len(c.Architectures))
	}
	arch := c.Architectures[0]
	def, ok := llamaArchDefaults[arch]
	if !ok {
		return bad("architecture %q is not in the llama family", arch)
	}
	if len(c.QuantizationConfig) > 0 && string(c.QuantizationConfig) != "null" {
		return bad("quantization_config is set: pre-quantized checkpoints are not supported; convert from the float weights")
	}
	need := func(name string, p *int) (int, error) {
		if p == nil {
			return 0, fmt.Errorf("convert: %s: required field %q is missing", file, name)
		}
		if *p <= 0 {
			return 0, fmt.Errorf("convert: %s: field %q is %d, want > 0", file, name, *p)
		}
		if limit := llamaLimits[name]; *p > limit {
			return 0, fmt.Errorf("convert: %s: field %q is %d, more than smelt's limit of %d", file, name, *p, limit)
		}
		return *p, nil
	}
	cfg := ir.Config{Arch: arch, Family: "llama", HiddenAct: "silu", RopeTheta: 10000, RMSNormEps: def.rmsNormEps, BOSTokenID: 1, EOSTokenIDs: []int{2}}
	if cfg.HiddenSize, err = need("hidden_size", c.HiddenSize); err != nil {
		return ir.Config{}, err
	}
	if cfg.IntermediateSize, err = need("intermediate_size", c.IntermediateSize); err != nil {
		return ir.Config{}, err
	}
	if cfg.NumLayers, err = need("num_hidden_layers", c.NumHiddenLayers); err != nil {
		return ir.Config{}, err
	}
	if cfg.NumHeads, err = need("num_attention_heads", c.NumAttentionHeads); err != nil {
		return ir.Config{}, err
	}
	if cfg.VocabSize, err = need("vocab_size", c.VocabSize); err != nil {
		return ir.Config{}, err
	}
	cfg.NumKVHeads = cfg.NumHeads
	if c.NumKeyValueHeads != nil {
		if cfg.NumKVHeads, err = need("num_key_value_heads", c.NumKeyValueHeads); err != nil {
			return ir.Config{}, err
		}
	}
	if cfg.NumHeads%cfg.NumKVHeads != 0 {
		return bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.NumHeads, cfg.NumKVHeads)
	}
	if c.HeadDim != nil {
		if cfg.HeadDim, err = need("head_dim", c.HeadDim); err != nil {
			return ir.Config{}, err
		}
	} else {
		if cfg.HiddenSize%cfg.NumHeads != 0 {
			return bad("hidden_size %d is not a multiple of num_attention_heads %d and head_dim is not given", cfg.HiddenSize, cfg.NumHeads)
		}
		cfg.HeadDim = cfg.HiddenSize / cfg.NumHeads
	}
	if cfg.HeadDim%2 != 0 {
		return bad("head_dim %d is odd; rotary embeddings need an even head_dim", cfg.HeadDim)
	}
	cfg.MaxPositionEmbeddings = def.maxPositions
	if c.MaxPositionEmbeddings != nil {
		if cfg.MaxPositionEmbeddings, err = need("max_position_embeddings", c.MaxPositionEmbeddings); err != nil {
			return ir.Config{}, err
		}
	}
	if c.RMSNormEps != nil {
		if !(*c.RMSNormEps > 0 && *c.RMSNormEps < 1) {
			return bad("rms_norm_eps %g, want in (0, 1)", *c.RMSNormEps)
		}
		cfg.RMSNormEps = *c.RMSNormEps
	}
	if c.RopeTheta != nil {
		if !(*c.RopeTheta > 0) {
			return bad("rope_theta %g, want > 0", *c.RopeTheta)
		}
		cfg.RopeTheta = *c.RopeTheta
	}
	if cfg.RopeScaling, err = parseRopeScaling(file, c.RopeScaling); err != nil {
		return ir.Config{}, err
	}
	if c.HiddenAct != nil && *c.HiddenAct != "silu" {
		return bad("hidden_act %q is not supported (want \"silu\")", *c.HiddenAct)
	}
	if c.TieWordEmbeddings != nil {
		cfg.TieWordEmbeddings = *c.TieWordEmbeddings
	}
	cfg.AttentionBias = def.attnBias
	if c.AttentionBias != nil {
		if arch == "Qwen2ForCausalLM" && !*c.AttentionBias {
			return bad("attention_bias false is not valid for Qwen2 (its q/k/v projections always carry biases)")
		}
		cfg.AttentionBias = *c.AttentionBias
	}
	if c.MLPBias != nil && *c.MLPBias {
		return bad("mlp_bias true is not supported")
	}
	cfg.SlidingWindow = def.slidingWindow
	if len(c.SlidingWindow) > 0 {
		if string(c.SlidingWindow) == "null" {
			cfg.SlidingWindow = 0
		} else if err := json.Unmarshal(c.SlidingWindow, &cfg.SlidingWindow); err != nil || cfg.SlidingWindow < 0 {
			return bad("sliding_window %s, want null or a non-negative integer", c.SlidingWindow)
		}
	}
	if arch == "Qwen2ForCausalLM" && (c.UseSlidingWindow == nil || !*c.UseSlidingWindow) {
		cfg.SlidingWindow = 0
	}
	if cfg.SlidingWindow >= cfg.MaxPositionEmbeddings {
		cfg.SlidingWindow = 0 // never reached: plain causal attention
	}
	if c.BOSTokenID != nil {
		cfg.BOSTokenID = *c.BOSTokenID
	}
	if len(c.EOSTokenID) > 0 && string(c.EOSTokenID) != "null" {
		var one int
		var many []int
		if json.Unmarshal(c.EOSTokenID, &one) == nil {
			cfg.EOSTokenIDs = []int{one}
		} else if json.Unmarshal(c.EOSTokenID, &many) == nil && len(many) > 0 {
			cfg.EOSTokenIDs = many
		} else {
			return bad("eos_token_id %s, want an integer or a list of integers", c.EOSTokenID)
		}
	}
	for _, id := range append([]int{cfg.BOSTokenID}, cfg.EOSTokenIDs...) {
		if id < 0 || id >= cfg.VocabSize {
			return bad("special token id %d outside the vocabulary of %d", id, cfg.VocabSize)
		}
	}
	if c.TorchDType != nil {
		cfg.TorchDType = *c.TorchDType
	} else if c.DType != nil {
		cfg.TorchDType = *c.DType
	}
	return cfg, nil
}

func parseRopeScaling(file string, raw json.RawMessage) (*ir.RopeScaling, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rs struct {
		Type                          *string  `json:"type"`
		RopeType                      *string  `json:"rope_type"`
		Factor                        *float64 `json:"factor"`
		LowFreqFactor                 *float64 `json:"low_freq_factor"`
		HighFreqFactor                *float64 `json:"high_freq_factor"`
		OriginalMaxPositionEmbeddings *int     `json:"original_max_position_embeddings"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("convert: %s: rope_scaling: %v", file, err)
	}
	typ := ""
	if rs.RopeType != nil {
		typ = *rs.RopeType
	} else if rs.Type != nil {
		typ = *rs.Type
	}
	switch typ {
	case "default":
		return nil, nil
	case "linear", "llama3":
	default:
		return nil, fmt.Errorf("convert: %s: rope_scaling type %q is not supported (supported: linear, llama3)", file, typ)
	}
	if rs.Factor == nil || !(*rs.Factor >= 1) {
		return nil, fmt.Errorf("convert: %s: rope_scaling %s needs factor >= 1", file, typ)
	}
	out := &ir.RopeScaling{Type: typ, Factor: *rs.Factor}
	if typ == "llama3" {
		if rs.LowFreqFactor == nil || rs.HighFreqFactor == nil || rs.OriginalMaxPositionEmbeddings == nil {
			return nil, fmt.Errorf("convert: %s: rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings", file)
		}
		if !(*rs.HighFreqFactor > *rs.LowFreqFactor && *rs.LowFreqFactor > 0) || *rs.OriginalMaxPositionEmbeddings <= 0 {
			return nil, fmt.Errorf("convert: %s: rope_scaling llama3: want 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0", file)
		}
		out.LowFreqFactor = *rs.LowFreqFactor
		out.HighFreqFactor = *rs.HighFreqFactor
		out.OriginalMaxPositionEmbeddings = *rs.OriginalMaxPositionEmbeddings
	}
	return out, nil
}

func llamaTargets(cfg ir.Config) []Target {
	d, v, in := int64(cfg.HiddenSize), int64(cfg.VocabSize), int64(cfg.IntermediateSize)
	q, kv := int64(cfg.NumHeads*cfg.HeadDim), int64(cfg.NumKVHeads*cfg.HeadDim)
	ts := []Target{
		{Name: ir.TokenEmbedding, Sources: []string{"model.embed_tokens.weight"}, Shape: ir.Shape{v, d}},
		{Name: ir.OutputNorm, Sources: []string{"model.norm.weight"}, Shape: ir.Shape{d}},
	}
	if !cfg.TieWordEmbeddings {
		ts = append(ts, Target{Name: ir.Output, Sources: []string{"lm_head.weight"}, Shape: ir.Shape{v, d}})
	}
	for i := 0; i < cfg.NumLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add := func(canon, src string, shape ir.Shape) {
			ts = append(ts, Target{Name: ir.LayerTensor(i, canon), Sources: []string{p + src}, Shape: shape})
		}
		add(ir.AttnNorm, "input_layernorm.weight", ir.Shape{d})
		add(ir.AttnQ, "self_attn.q_proj.weight", ir.Shape{q, d})
		add(ir.AttnK, "self_attn.k_proj.weight", ir.Shape{kv, d})
		add(ir.AttnV, "self_attn.v_proj.weight", ir.Shape{kv, d})
		if cfg.AttentionBias {
			add(ir.AttnQBias, "self_attn.q_proj.bias", ir.Shape{q})
			add(ir.AttnKBias, "self_attn.k_proj.bias", ir.Shape{kv})
			add(ir.AttnVBias, "self_attn.v_proj.bias", ir.Shape{kv})
		}
		add(ir.AttnOutput, "self_attn.o_proj.weight", ir.Shape{d, q})
		add(ir.FFNNorm, "post_attention_layernorm.weight", ir.Shape{d})
		add(ir.FFNGate, "mlp.gate_proj.weight", ir.Shape{in, d})
		add(ir.FFNUp, "mlp.up_proj.weight", ir.Shape{in, d})
		add(ir.FFNDown, "mlp.down_proj.weight", ir.Shape{d, in})
	}
	return ts
}

var rotaryInvFreq = regexp.MustCompile(`^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$`)

func llamaUnused(cfg ir.Config, name string) (string, bool) {
	switch {
	case name == "lm_head.weight" && cfg.TieWordEmbeddings:
		return "tied to model.embed_tokens.weight (tie_word_embeddings)", true
	case rotaryInvFreq.MatchString(name):
		return "rotary inv_freq buffer; recomputed from rope_theta", true
	}
	return "", false
}

// buildLlama makes the decoder graph: Embedding → NumLayers × block → RMSNorm → Linear.
func buildLlama(cfg ir.Config, tensors []*ir.Tensor) (*ir.Graph, error) {
	g := &ir.Graph{Config: cfg, Tensors: tensors}
	g.SortTensors()
	consts := map[string]*ir.Value{}
	constant := func(name string) (*ir.Value, error) {
		if v, ok := consts[name]; ok {
			return v, nil
		}
		t := g.Tensor(name)
		if t == nil {
			return nil, fmt.Errorf("convert: llama graph: tensor %q missing", name)
		}
		v := &ir.Value{Name: name, DType: t.DType, Shape: t.Shape, Tensor: t}
		consts[name] = v
		return v, nil
	}
	d := int64(cfg.HiddenSize)
	var firstErr error
	node := func(op, name string, width int64, attrs map[string]any, ins ...any) *ir.Value {
		n := &ir.Node{Name: name, Op: op, Attrs: attrs}
		for _, in := range ins {
			switch x := in.(type) {
			case *ir.Value:
				n.Inputs = append(n.Inputs, x)
			case string:
				v, err := constant(x)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				n.Inputs = append(n.Inputs, v)
			}
		}
		out := &ir.Value{Name: name, DType: ir.F32, Shape: ir.Shape{-1, width}, Def: n}
		n.Outputs = []*ir.Value{out}
		g.Nodes = append(g.Nodes, n)
		return out
	}
	ids := &ir.Value{Name: "input_ids", DType: ir.I32, Shape: ir.Shape{-1}}
	g.Inputs = []*ir.Value{ids}
	eps := map[string]any{"eps": cfg.RMSNormEps}
	q, kv := int64(cfg.NumHeads*cfg.HeadDim), int64(cfg.NumKVHeads*cfg.HeadDim)
	h := node("Embedding", "embed", d, nil, ids, ir.TokenEmbedding)
	for i := 0; i < cfg.NumLayers; i++ {
		L := func(s string) string { return ir.LayerTensor(i, s) }
		p := fmt.Sprintf("blk.%d.", i)
		x := node("RMSNorm", p+"attn_norm", d, eps, h, L(ir.AttnNorm))
		lin := func(name string, w, b string, width int64) *ir.Value {
			if cfg.AttentionBias && b != "" {
				return node("Linear", p+name, width, nil, x, L(w), L(b))
			}
			return node("Linear", p+name, width, nil, x, L(w))
		}
		qv := lin("q", ir.AttnQ, ir.AttnQBias, q)
		kvv := lin("k", ir.AttnK, ir.AttnKBias, kv)
		vv := lin("v", ir.AttnV, ir.AttnVBias, kv)
		rope := map[string]any{"head_dim": cfg.HeadDim, "theta": cfg.RopeTheta}
		qr := node("RoPE", p+"q_rope", q, rope, qv)
		kr := node("RoPE", p+"k_rope", kv, rope, kvv)
		att := node("Attention", p+"attn", q, map[string]any{"heads": cfg.NumHeads, "kv_heads": cfg.NumKVHeads, "head_dim": cfg.HeadDim, "layer": i}, qr, kr, vv)
		o := node("Linear", p+"o", d, nil, att, L(ir.AttnOutput))
		h = node("Add", p+"attn_residual", d, nil, h, o)
		x = node("RMSNorm", p+"ffn_norm", d, eps, h, L(ir.FFNNorm))
		gate := node("Linear", p+"gate", int64(cfg.IntermediateSize), nil, x, L(ir.FFNGate))
		up := node("Linear", p+"up", int64(cfg.IntermediateSize), nil, x, L(ir.FFNUp))
		act := node("SiLUMul", p+"silu_mul", int64(cfg.IntermediateSize), nil, gate, up)
		down := node("Linear", p+"down", d, nil, act, L(ir.FFNDown))
		h = node("Add", p+"ffn_residual", d, nil, h, down)
	}
	x := node("RMSNorm", "output_norm", d, eps, h, ir.OutputNorm)
	head := ir.Output
	if cfg.TieWordEmbeddings {
		head = ir.TokenEmbedding
	}
	logits := node("Linear", "logits", int64(cfg.VocabSize), nil, x, head)
	g.Outputs = []*ir.Value{logits}
	if firstErr != nil {
		return nil, firstErr
	}
	return g, g.Check()
}
