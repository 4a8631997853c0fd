// Package manifest defines smelt's bundle format: manifest.json (the
// serialized IR, the tensor table and every file with its Subresource
// Integrity value), manifest.sig (a DSSE envelope over the exact manifest
// bytes, verifiable with WebCrypto alone), and the checks that a bundle
// directory matches them.
//
// # Bundle layout
//
//	manifest.json      canonical JSON, described below
//	manifest.sig       DSSE envelope (optional: an unsigned bundle is a valid intermediate)
//	shards/00000.bin   weights, laid out by package shard (256-byte aligned, 32 MiB cap)
//	kernels/*.wgsl     compute shaders (codegen)
//	runtime/*.js       the JS runtime, including integrity.js
//	tokenizer.json     the tokenizer (any path; named by "tokenizer")
//	index.html         optional demo page
//
// Every file but manifest.json and manifest.sig is listed in "files"; a
// verifier rejects missing files, extra files (anything else in the
// directory, symlinks included) and any size or digest mismatch.
//
// # manifest.json
//
// Canonical JSON (Canonicalize): keys sorted by byte order, no whitespace,
// no trailing newline, strings escaped minimally (no HTML escaping),
// integers in plain decimal and other numbers as Go's encoding/json prints
// a float64. Decode accepts only these exact bytes (it re-encodes the
// decoded manifest and compares), rejects unknown fields and manifests over
// MaxManifestBytes (64 MiB), and validates references (Manifest.Validate).
// Signatures are over the bytes, so verifiers never re-canonicalize.
//
// Members:
//
//   - format: 1 (Format).
//   - id: the bundle id, "sha256:" + hex SHA-256 over one line per file,
//     sorted by path: "<integrity> <nbytes> <path>\n" (BundleID). Equal ids
//     mean the same files byte for byte.
//   - model: {arch, config}: the architecture family and the ir.Config.
//   - tokenizer: the tokenizer file's path (omitted when there is none).
//   - graph: the serialized IR. inputs and constants are values
//     {name, dtype, shape[, tensor]} (dims of -1 are dynamic; a constant names
//     its tensor); nodes {name, op, inputs (value names), outputs (values),
//     attrs} in topological order; outputs are value names. Attributes are
//     typed one-key objects: {"int":8}, {"float":1e-05}, {"string":"silu"},
//     {"bool":true}, {"ints":[…]}, {"floats":[…]}, {"strings":[…]}.
//   - tensors: sorted by name; {name, dtype, shape, quant?, shard, offset,
//     nbytes, parts?}. dtype and shape are as stored: a packed quantized
//     weight is u32 [N, K·b/32] with quant (ir.QuantInfo: scheme, bits,
//     group_size, symmetric, scale_dtype, rows, cols, scales, zeros,
//     algorithm) naming its companion "<name>.scales" and "<name>.zeros"
//     tensors, in the MatMulNBits-compatible layout of package quantize.
//     shard indexes "shards"; offset is a byte offset in that shard
//     (256-aligned by the writer); nbytes = shape.ByteSize(dtype). A tensor
//     larger than the shard cap is split: parts lists its pieces
//     [{shard, offset, nbytes}, …] in order (at least two; parts[0] is at
//     shard/offset; concatenated they are the tensor); otherwise parts is
//     omitted.
//   - shards: shard file paths, in order.
//   - files: [{path, nbytes, integrity}] sorted by path, every file of the
//     bundle except manifest.json and manifest.sig; integrity is
//     "sha384-" + base64 of the file's SHA-384, usable as-is in
//     fetch(url, {integrity}). Paths are clean, relative, slash-separated
//     printable ASCII (CheckPath).
//   - kernels: [{name, path, entry, workgroup [x,y,z], bindings [{group,
//     binding, name, type}], requires [features]}] (filled by codegen).
//   - program: the dispatch program, codegen's format (any JSON value).
//   - requirements: {features, limits {name: value}, vram_bytes,
//     context_length}.
//   - provenance: {smelt (version), recipe (the full recipe as JSON),
//     sources [{path, nbytes, sha256}], calibration {path, nbytes, sha256}}.
//     No timestamps: the same inputs give the same bytes.
//
// # manifest.sig
//
// A DSSE envelope (https://github.com/secure-systems-lab/dsse), canonical
// JSON like the manifest:
//
//	{"payload":"<base64 of manifest.json>","payloadType":"application/vnd.smelt.manifest+json",
//	 "signatures":[{"keyid":"sha256:<hex>","sig":"<base64>"}]}
//
// Each signature is over PAE(payloadType, payload) =
// "DSSEv1 <len(type)> <type> <len(payload)> <payload>" (lengths in ASCII
// decimal). Algorithms: Ed25519 (64-byte signature; WebCrypto "Ed25519") and
// ECDSA P-256 with SHA-256, the signature as raw r||s (64 bytes, IEEE P1363,
// what WebCrypto's verify takes; not ASN.1 DER). Both are deterministic
// (RFC 6979 for ECDSA). keyid is "sha256:" + hex SHA-256 of the key's PKIX
// DER; a verifier only considers signatures whose keyid is its key's. The
// payload must equal manifest.json byte for byte. Keys are stored as PKCS#8
// PEM (private), PKIX PEM (public) and JWK (public, for browsers: OKP/Ed25519
// or EC/P-256, with kid = keyid).
//
// # Worked example
//
// One int4 linear layer (scheme int4-g8-asym: a u32 [4, 1] weight, its f16
// [4, 1] scales at offset 256 and u8 [4, 1] zero points at offset 512 of
// one 516-byte shard), a kernel, the runtime and a tokenizer.
// testdata/example.* hold the exact bytes, the signatures by the RFC 8032
// test-1 Ed25519 key and a fixed P-256 key, and their JWKs; TestExample
// keeps this text in step with them.
//
// manifest.json (shown indented; the file is one line):
//
//	{
//	  "files": [
//	    {
//	      "integrity": "sha384-jBTcVpRHP4gTbByoZigzsO0NJ3Tff8cWSvmCpwcs5b5tRLI4/lJ53xpr3fNiz0bH",
//	      "nbytes": 42,
//	      "path": "kernels/linear.wgsl"
//	    },
//	    {
//	      "integrity": "sha384-z0dQZuTpVhlJhRpzBVjQTCgdq+BUSh89DMD4c8ea5gn4XTF+416jeLVKPWSl2O8q",
//	      "nbytes": 11,
//	      "path": "runtime/smelt.js"
//	    },
//	    {
//	      "integrity": "sha384-WHIuMaVji1r+eNr9eagZ9c6RxLWk0aNnL4sYbvk1wbjNVivVh8teCoixury6q97F",
//	      "nbytes": 516,
//	      "path": "shards/00000.bin"
//	    },
//	    {
//	      "integrity": "sha384-aa2pOjyGkOWdUDx78GrRC8Bk/k2+/qhHRXOGWfm1YaqwUgpoOJCIr2yCuLRVoEm7",
//	      "nbytes": 3,
//	      "path": "tokenizer.json"
//	    }
//	  ],
//	  "format": 1,
//	  "graph": {
//	    "constants": [{"dtype": "u32", "name": "lin.weight", "shape": [4, 1], "tensor": "lin.weight"}],
//	    "inputs": [{"dtype": "f32", "name": "x", "shape": [-1, 8]}],
//	    "nodes": [
//	      {
//	        "attrs": {"kernel": {"string": "linear"}},
//	        "inputs": ["x", "lin.weight"],
//	        "name": "lin",
//	        "op": "Linear",
//	        "outputs": [{"dtype": "f32", "name": "y", "shape": [-1, 4]}]
//	      }
//	    ],
//	    "outputs": ["y"]
//	  },
//	  "id": "sha256:427a4eced324dcb5639b52f57886cdfcd689178d0303bc9af57f725a5894a5d6",
//	  "kernels": [
//	    {
//	      "bindings": [{"binding": 0, "group": 0, "name": "w", "type": "read-only-storage"}],
//	      "entry": "main",
//	      "name": "linear",
//	      "path": "kernels/linear.wgsl",
//	      "workgroup": [64, 1, 1]
//	    }
//	  ],
//	  "model": {
//	    "arch": "llama",
//	    "config": {
//	      "arch": "LlamaForCausalLM",
//	      "attention_bias": false,
//	      "bos_token_id": 0,
//	      "eos_token_ids": [2],
//	      "family": "llama",
//	      "head_dim": 8,
//	      "hidden_act": "silu",
//	      "hidden_size": 8,
//	      "intermediate_size": 0,
//	      "max_position_embeddings": 0,
//	      "num_heads": 1,
//	      "num_kv_heads": 1,
//	      "num_layers": 1,
//	      "rms_norm_eps": 0.00001,
//	      "rope_theta": 10000,
//	      "tie_word_embeddings": false,
//	      "vocab_size": 4
//	    }
//	  },
//	  "program": {"decode": [{"kernel": "linear"}]},
//	  "provenance": {
//	    "recipe": {"quant": {"scheme": "int4-g8-asym"}},
//	    "smelt": "v0.1.0",
//	    "sources": [
//	      {
//	        "nbytes": 128,
//	        "path": "model.safetensors",
//	        "sha256": "0000000000000000000000000000000000000000000000000000000000000000"
//	      }
//	    ]
//	  },
//	  "requirements": {"context_length": 16, "vram_bytes": 4096},
//	  "shards": ["shards/00000.bin"],
//	  "tensors": [
//	    {
//	      "dtype": "u32",
//	      "name": "lin.weight",
//	      "nbytes": 16,
//	      "offset": 0,
//	      "quant": {
//	        "algorithm": "rtn",
//	        "bits": 4,
//	        "cols": 8,
//	        "group_size": 8,
//	        "rows": 4,
//	        "scale_dtype": "f16",
//	        "scales": "lin.weight.scales",
//	        "scheme": "int4-g8-asym",
//	        "symmetric": false,
//	        "zeros": "lin.weight.zeros"
//	      },
//	      "shape": [4, 1],
//	      "shard": 0
//	    },
//	    {
//	      "dtype": "f16",
//	      "name": "lin.weight.scales",
//	      "nbytes": 8,
//	      "offset": 256,
//	      "shape": [4, 1],
//	      "shard": 0
//	    },
//	    {
//	      "dtype": "u8",
//	      "name": "lin.weight.zeros",
//	      "nbytes": 4,
//	      "offset": 512,
//	      "shape": [4, 1],
//	      "shard": 0
//	    }
//	  ],
//	  "tokenizer": "tokenizer.json"
//	}
//
// manifest.sig (Ed25519), with the payload elided:
//
//	{
//	  "payload": "eyJmaWxlcyI6W3siaW50ZWdy…c29uIn0=",
//	  "payloadType": "application/vnd.smelt.manifest+json",
//	  "signatures": [
//	    {
//	      "keyid": "sha256:06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9",
//	      "sig": "MsejP0umtygQi+b6XBxh4aIBgNIW2+vThlUMSgjhAzCWXHf3AI1uiN3FcyOuMExmM1m+FY4AeZ24TxTVhrvYBw=="
//	    }
//	  ]
//	}
//
// signed with the key whose public JWK is
//
//	{"crv":"Ed25519","kid":"sha256:06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
//
// The bundle id of the example is
// sha256:427a4eced324dcb5639b52f57886cdfcd689178d0303bc9af57f725a5894a5d6.
package manifest
