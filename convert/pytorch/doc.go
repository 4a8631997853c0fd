// Package pytorch reads the tensor table of PyTorch checkpoints
// (pytorch_model.bin) without Python and without executing the pickle.
//
// # Format
//
// torch.save (torch >= 1.6) writes a zip archive whose records live under
// one folder, the archive name:
//
//	pytorch_model/data.pkl     the state_dict, pickled (protocol 2)
//	pytorch_model/data/0       storage "0": raw little-endian elements
//	pytorch_model/data/1       ...
//	pytorch_model/version      "3\n"
//	pytorch_model/byteorder    "little" (torch >= 2.1; absent before)
//
// Records are stored uncompressed, so each storage is a byte range of the
// file: Open maps the file read-only and entries are zero-copy slices of it
// (the record's CRC-32 is checked the first time its bytes are read).
// Compressed records, TorchScript archives (constants.pkl) and big-endian
// checkpoints are refused.
//
// The pickle builds a dict of tensors. For one tensor of stories260K it reads
// (pickletools notation, BINPUT memo stores left out):
//
//	X    BINUNICODE 'model.layers.0.self_attn.k_proj.weight'
//	c    GLOBAL     'torch._utils _rebuild_tensor_v2'
//	(    MARK
//	(        MARK
//	h            BINGET     3            'storage'
//	h            BINGET     4            torch.FloatStorage
//	X            BINUNICODE '3'          storage key: record data/3
//	h            BINGET     6            'cpu'
//	M            BININT2    2048         numel (elements of the storage)
//	t            TUPLE
//	Q        BINPERSID                   -> storage 3, 2048 x f32
//	K        BININT1    0                storage offset (elements)
//	K K \x86 TUPLE2     (32, 64)         size
//	K K \x86 TUPLE2     (64, 1)          stride (elements)
//	\x89     NEWFALSE                    requires_grad
//	h ) R    OrderedDict()               backward hooks (must be empty)
//	t        TUPLE
//	R    REDUCE                          -> tensor f32 [32 64] at data/3 + 0
//
// so the tensor's bytes are record data/3, elements [0, 2048). Tensors may
// share a storage (tied weights: lm_head.weight and
// model.embed_tokens.weight in stories260K are the same storage), start at
// a storage offset, or be strided views: a view whose strides are the dense
// row-major ones is a zero-copy slice (Entry.Offset is its file offset);
// any other view (a transpose, a row slice with a step) is gathered into a
// fresh dense buffer when read (Entry.Offset is -1).
//
// The legacy format (torch < 1.6, or _use_new_zipfile_serialization=False)
// is five pickles in a row — the magic number 0x1950a86a20f9469cfc6c,
// protocol version 1001, sys_info, the state_dict (persistent ids carry a
// sixth field, view_metadata, which must be None), the sorted storage keys —
// followed, for each key, by an int64 element count and the raw elements.
//
// # Safety
//
// Unpickling is restricted to data. Before gopickle's unpickler runs,
// scanPickle walks the program without executing it and refuses:
// opcodes a checkpoint never needs (INST, OBJ, PERSID, EXT*, NEWOBJ_EX, sets,
// out-of-band buffers); any global outside the allow-list, whether named by
// GLOBAL or by STACK_GLOBAL (whose names must be literal strings); lengths
// past the end of the data; memo misses and stack underflows; unhashable
// dict keys; more than MaxPickleObjects values, MARKs nested more than 1024
// deep, or a pickle over MaxPickleBytes. The allow-list:
//
//	collections.OrderedDict
//	torch._utils._rebuild_tensor_v2, _rebuild_tensor_v3,
//	    _rebuild_parameter, _rebuild_parameter_with_state
//	torch._tensor._rebuild_from_type_v2 (with torch.Tensor or
//	    torch.nn.parameter.Parameter)
//	torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage,
//	    torch.UntypedStorage
//	torch dtypes (torch.float16, torch.bfloat16, ...) for _rebuild_tensor_v3
//
// Anything else — os.system, builtins.eval, posix.system, subprocess.Popen,
// and gopickle's own built-ins __builtin__.object and
// copy_reg._reconstructor — is an error:
//
//	convert: pytorch_model.bin: pickle references disallowed global "os.system"
//
// Each allow-listed function only checks its arguments and records a
// storage view. Views are then checked against their storage with
// overflow-checked arithmetic: offset + sum((size[i]-1)*stride[i]) must be
// inside the storage, and a view may not be larger than its storage, so
// nothing read from a file allocates more than the file holds.
package pytorch
