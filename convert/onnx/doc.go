// Package onnx reads the initializers (weights) and the graph description
// of ONNX models, with Go types generated from the vendored upstream schema
// (package onnxpb, IR version 11).
//
// # Reading
//
// A .onnx file is one protobuf ModelProto (at most 2 GiB: MaxModelBytes).
// OpenModel maps the file read-only and splits the message with protowire
// into a skeleton — the model minus the data fields of graph.initializer —
// and the data fields it cut out, which stay in the mapped file. Only the
// skeleton goes through proto.Unmarshal, after a budget walk bounds what it
// may allocate (MaxProtoMessages, MaxProtoScalars, nesting depth 100).
//
// Each initializer's bytes come from exactly one of:
//
//	raw_data                 little-endian, row-major; int4/uint4 packed two per
//	                         byte, first element in the low nibble (= ir.I4/U4);
//	                         a zero-copy slice of the file (Entry.Offset)
//	float_data               f32 (fixed32 values; copied as stored)
//	double_data              f64
//	int64_data               i64
//	uint64_data              u32 (range-checked)
//	int32_data               i32, i16, i8, u8, bool (one value per element,
//	                         range-checked), f16 and bf16 (bit patterns),
//	                         int4/uint4 (one packed byte per value)
//	external data            data_location EXTERNAL with external_data keys
//	                         location (required), offset, length (decimal);
//	                         checksum and basepath are ignored
//
// Typed fields are counted when the model is opened and decoded when an
// entry's Source is read. Supported element types: FLOAT, FLOAT16, BFLOAT16,
// DOUBLE, INT64, INT32, INT16, INT8, UINT8, UINT32, BOOL, INT4, UINT4; any
// other (STRING, UINT16, FLOAT8*, FLOAT4E2M1, complex) is an error naming the
// initializer, as are segments and sparse initializers.
//
// # External data
//
// A location is a slash-separated path relative to the model's folder. It
// must be local (filepath.IsLocal: not absolute, no "..", not empty) and,
// with symlinks resolved, still inside the folder; the data must lie inside
// the file and have exactly the tensor's byte size. Each external file is
// mapped once. So
//
//	location "../../etc/passwd"
//
// gives
//
//	convert: model.onnx: initializer "w": external data location "../../etc/passwd" escapes the model folder
//
// # Example
//
// stories260K's export (../shared/models/stories260K-onnx/model.onnx, made
// by torch 1.13's exporter) opens as 48 f32 initializers, 292,800 values:
// "p.model__embed_tokens__weight" [512 64] (raw_data, equal to
// model.safetensors' model.embed_tokens.weight), the norms, and the
// projections as transposed MatMul operands ("onnx::MatMul_1166" [64 64], ...,
// "onnx::MatMul_1326" [64 512], the lm_head). Its Metadata:
//
//	onnx.ir_version  8
//	onnx.opset       ai.onnx=17
//	onnx.producer    pytorch 1.13.0
//	onnx.graph       torch_jit
//	onnx.nodes       950
//	onnx.ops         Add=...,Cast=...,...,Where=...
//	onnx.inputs      input_ids:i64[batch,sequence]
//	onnx.outputs     logits:f32[batch,sequence,512]
//
// # Mapping onto an architecture
//
// MapLlama (llama.go) walks the graph of a torch.onnx.export of a Hugging
// Face-convention Llama and names its anonymous initializers: the export's
// weights are MatMul right operands stored [in, out], so each linear
// tensor becomes its canonical name with a lazy Transpose transform to
// [out, in]. convert.Load uses it (the registered GraphMapper) for a folder
// holding one *.onnx and a config.json, which supplies what the graph does
// not state in one place (heads, kv heads, rope theta, eps); every value
// the graph fixes is checked against it, and anything outside the
// recognized pattern is an error naming the node. For stories260K's export
// plus stories260K/config.json:
//
//	token_embd.weight        ← p.model__embed_tokens__weight   [512 64]
//	blk.0.attn_norm.weight   ← p.model__layers__0__input_layernorm__weight
//	blk.0.attn_q.weight      ← onnx::MatMul_1166  [64 64]   transpose
//	blk.0.attn_k.weight      ← onnx::MatMul_1167  [64 32] → [32 64]
//	blk.0.attn_v.weight      ← onnx::MatMul_1168  [64 32] → [32 64]
//	blk.0.attn_output.weight ← onnx::MatMul_1238  [64 64]   transpose
//	blk.0.ffn_norm.weight    ← p.model__layers__0__post_attention_layernorm__weight
//	blk.0.ffn_gate.weight    ← onnx::MatMul_1239  [64 172] → [172 64]
//	blk.0.ffn_up.weight      ← onnx::MatMul_1240  [64 172] → [172 64]
//	blk.0.ffn_down.weight    ← onnx::MatMul_1241  [172 64] → [64 172]
//	...
//	output_norm.weight       ← p.model__norm__weight
//	output.weight            ← onnx::MatMul_1326  [64 512] → [512 64]
//
// with tie_word_embeddings false (the graph carries its own head matrix,
// equal to the embedding). Every mapped tensor equals model.safetensors'
// bytes, and the executor's logits on the reference prompts equal torch's
// and onnxruntime-node's on model.onnx (llama_test.go).
package onnx
