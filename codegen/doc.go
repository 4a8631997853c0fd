// Package codegen lowers a model graph to WebGPU: one WGSL kernel instance
// per distinct op shape and weight format (package wgsl renders them), a
// dispatch program that a small JS runtime (runtime/smelt.js) executes
// without making decisions, and the bundle's requirements.
//
// # The program (manifest.program, version 2)
//
// Buffers are GPU buffers the runtime creates by kind: "uniform" (the Step
// uniform {rows, pos0, 0, 0} and the sample parameters), "input" (token
// ids, u32 [max_rows]), "activation" (f32 rows, shared by values whose
// lifetimes do not overlap and by prefill and decode), "kv" (one K and one V
// cache per layer, f32 [kv_heads, context_length, head_dim], zeroed),
// "output" (logits f32 [vocab_size] of the last row; token u32 [4]) and
// "const" (data written once at load: RoPE inverse frequencies, base64 in
// JSON). Weights are not buffers: a binding names a tensor and the runtime
// binds the tensor's range of its shard buffer (256-byte aligned).
//
// A pass is a list of steps; each step dispatches one kernel over its
// bindings (group 0, binding i = Bindings[i]) with workgroup counts per row
// bucket. To run T tokens starting at position pos (tokens already in the
// KV cache), the runtime:
//
//  1. writes Step {T, pos, 0, 0} and the ids; picks the prefill pass
//     (T > 1; prompts longer than max_rows run in chunks of max_rows) or the
//     decode pass (T = 1), and in it the smallest bucket >= T;
//  2. records every step of the pass into one compute pass, then the greedy
//     pass (argmax) or, with temperature > 0, writes the sample parameters
//     {temperature f32, top_k u32, top_p f32, r f32} (r: a uniform draw in
//     [0, 1) from the host's seeded generator) and records the sample pass;
//  3. copies token[0] to a mappable buffer, submits one command buffer and
//     reads 4 bytes back: the next token id. Logits stay on the GPU.
//
// Kernels skip rows >= Step.rows, so one bucket serves every T up to it.
//
// # Worked example
//
// stories260K (64 wide, 8 heads of 8, 4 KV heads, 5 layers, vocab 512),
// context 512, decode pass, first steps as `smelt codegen --explain`
// prints them (the full plan is pinned in testdata/stories260K.plan):
//
//	embed          embedding_f32_v512_d64 (step[16], ids[4], @token_embd.weight[131072], act0[256])
//	blk.0.attn_norm rmsnorm_d64_wf32_eps1e-05 (step[16], act0[256], @blk.0.attn_norm.weight[256], act1[256])
//	blk.0.q        matmul_gemv_f32_k64_n64_cf32_tpr4 (step[16], act1[256], @blk.0.attn_q.weight[16384], act2[256])
//	blk.0.q_rope   rope_h8_hd8_s64_o0 (step[16], const0[16], act2[256])
//	blk.0.attn     kvwrite_kv4_hd8_ctx512_s32_o0 (step[16], act3[128], kv.0.k[65536])
//	blk.0.attn     attention_h8_kv4_hd8_ctx512_s64_o0 (step[16], act2[256], kv.0.k[65536], kv.0.v[65536], act1[256])
//	blk.0.attn_residual add_d64 (step[16], act2[256], act0[256])
//
// In JSON, the last step is
//
//	{"kernel":"add_d64","node":"blk.0.attn_residual","workgroups":[[1,1,1]],
//	 "bindings":[{"buffer":"step","offset":0,"size":16},
//	             {"buffer":"act2","offset":0,"size":256},
//	             {"buffer":"act0","offset":0,"size":256}]}
//
// and the residual stream stays in act0: the add accumulates in place into
// the operand that dies at the node.
//
// # Guarantees Plan keeps (checked by DecodeProgram for untrusted bundles)
//
// Every binding lies inside its buffer or tensor and has an offset that is
// a multiple of 256; no step binds one buffer twice when it writes it;
// bindings fit the binding limit (weights over it are split into row ranges,
// each its own dispatch); workgroup counts fit 65535 per dimension.
package codegen
