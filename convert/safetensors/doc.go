// Package safetensors reads Hugging Face safetensors files, single or
// sharded with model.safetensors.index.json, lazily and zero-copy.
//
// # Format
//
// A safetensors file is:
//
//	bytes 0..8       N, the header length, little-endian uint64
//	bytes 8..8+N     a JSON object: tensor name → {"dtype", "shape", "data_offsets": [begin, end]},
//	                 plus an optional "__metadata__" object of string → string
//	bytes 8+N..      the data buffer; offsets are relative to its start
//
// Worked example: a file holding one F16 tensor "w" of shape [2, 2] is
//
//	38 00 00 00 00 00 00 00                        N = 56
//	{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}   (56 bytes; writers pad with spaces to a multiple of 8)
//	00 3c 00 40 00 42 00 44                        1.0 2.0 3.0 4.0 as f16
//
// (TestWorkedExample checks these bytes.)
//
// # What Open checks (all of it before any tensor byte is read)
//
//   - the header length is at most MaxHeaderBytes and fits in the file;
//   - the header is one JSON object with no duplicate keys;
//   - every dtype is known, every dim non-negative, and shape × dtype size
//     (overflow-checked) equals end − begin;
//   - 0 ≤ begin ≤ end ≤ data size, no two tensors' byte ranges overlap, and
//     together they cover the data buffer with no hole and nothing after it
//     (the format forbids holes, which could hide a second payload).
//
// The file is mmapped read-only; each tensor's Source returns a slice of the
// mapping (zero-copy). Sharded models: the index's weight_map must list
// exactly the tensors the shards hold, each in the file it names, and every
// shard path must stay inside the model folder.
package safetensors
