// Package wgsl renders smelt's WGSL compute kernels. Each op is a template
// (kernels/<op>.wgsl.tmpl, embedded) and a Params type (this package's
// exported structs) implementing Kernel: Name, Validate, Bindings, Requires,
// Workgroup, Dispatch and Render. Templates run with text/template and
// missingkey=error. The reference semantics of every kernel are Go functions
// in package wgsl/ref; the conformance tests run each kernel on Dawn for Node
// over Mesa lavapipe against them, with the tolerances stated on each test.
//
// # Conventions
//
//   - Entry point "main"; every binding is in @group(0), numbered as
//     Bindings() lists them (Binding.Index = position).
//   - Kernels whose work depends on the step's token count have binding 0 =
//     the Step uniform (16 bytes: rows u32, pos0 u32, 2 x u32 padding). rows
//     is T, the tokens of this forward step; pos0 the position of the first
//     of them (tokens already in the KV cache). One Step buffer serves every
//     dispatch of a step. Argmax and Sample have no Step.
//   - Activations are f32 row-major [T, width]; a binding's byte size is
//     Size.Fixed + Size.PerRow*T (Size.Bytes), rounded up to 4. Buffers may
//     be larger. Kernels write nothing outside the declared sizes (tests
//     check guard bands), and row-range instances only their rows.
//   - Dispatch(T) returns workgroup counts; counts past 65535 spill into y,
//     and kernels rebuild the linear workgroup index as wid.y*nwg.x + wid.x.
//   - f16 data (weights, scales) is read as u32 words with unpack2x16float,
//     so it needs no shader-f16; only Compute: F16 variants require the
//     "shader-f16" feature (Requires().Features).
//   - Kernels stay within WebGPU's default limits: 256 invocations, 16 KiB
//     workgroup storage, 128 MiB per binding. Validate rejects a weight whose
//     binding would exceed 128 MiB: split it over row ranges (RowStart,
//     RowCount of MatMul and Embedding), one instance per range.
//
// # Worked example
//
// ref29m's decode q projection, int4 g128 asymmetric with f16 scales:
//
//	k := wgsl.MatMul{Mode: wgsl.GEMV, K: 512, N: 512, Compute: ir.F32,
//		Weights: wgsl.Weights{Type: ir.U32, Bits: 4, GroupSize: 128, Scale: ir.F16}}
//	src, err := k.Render()  // WGSL text, entry "main"
//	k.Bindings()            // 0 step (uniform, 16 B), 1 x (read, 2048 B/row),
//	                        // 2 qweight (read, 131072 B), 3 scales (read, 4096 B),
//	                        // 4 zeros (read, 1024 B), 5 y (read_write, 2048 B/row)
//	k.Workgroup()           // [256 1 1]: 8 invocations per output row, 32 rows each
//	k.Dispatch(1)           // [16 1 1]
//
// The rendered text is pinned in testdata/golden/<Name()>.wgsl.
package wgsl
