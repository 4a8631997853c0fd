package pytorch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"

	"github.com/smeltml/smelt/internal/ir"
)

// Limits on the pickle program (data.pkl). A state_dict pickle costs about
// 100 bytes and 12 objects per tensor, so these admit checkpoints of more
// than 150,000 tensors while bounding what a hostile pickle can make the
// unpickler allocate: at most MaxPickleObjects values of a few hundred
// bytes each (well under 1 GiB), however the opcodes are arranged.
const (
	MaxPickleBytes   = 64 << 20 // size of data.pkl
	MaxPickleObjects = 1 << 21  // values pushed on the unpickler's stack
	maxMarkDepth     = 1024     // nested MARKs (torch uses 3)
)

// storageClass is an allow-listed torch.*Storage global: the element type of
// a storage record. torch.UntypedStorage is bytes (U8).
type storageClass struct {
	name  string
	dtype ir.DType
}

// dtypeGlobal is an allow-listed torch dtype global (torch.float16), used
// by _rebuild_tensor_v3.
type dtypeGlobal struct{ dtype ir.DType }

// typeGlobal is an allow-listed class used only as a marker
// (torch.Tensor, torch.nn.parameter.Parameter in _rebuild_from_type_v2).
type typeGlobal struct{ name string }

// rebuildFunc is an allow-listed torch._utils function: calling it builds a
// *tensorRef from its arguments and touches nothing else.
type rebuildFunc struct {
	name string
	call func(args []interface{}) (interface{}, error)
}

// Call implements types.Callable.
func (f *rebuildFunc) Call(args ...interface{}) (interface{}, error) {
	v, err := f.call(args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.name, err)
	}
	return v, nil
}

// storageRef is what a persistent id ("storage", cls, key, location, numel)
// resolves to: a record data/<key> of numel elements of dtype.
type storageRef struct {
	dtype ir.DType
	key   string
	numel int64
}

// tensorRef is a rebuilt tensor: a strided view of a storage. offset and
// stride count elements of dtype (which differs from the storage's only for
// _rebuild_tensor_v3 over an untyped storage).
type tensorRef struct {
	storage *storageRef
	dtype   ir.DType
	offset  int64
	size    []int64
	stride  []int64
}

var storageDTypes = map[string]ir.DType{
	"FloatStorage": ir.F32, "HalfStorage": ir.F16, "BFloat16Storage": ir.BF16,
	"DoubleStorage": ir.F64, "LongStorage": ir.I64, "IntStorage": ir.I32,
	"ShortStorage": ir.I16, "CharStorage": ir.I8, "ByteStorage": ir.U8,
	"BoolStorage": ir.Bool, "UntypedStorage": ir.U8,
}

var torchDTypes = map[string]ir.DType{
	"float32": ir.F32, "float": ir.F32, "float16": ir.F16, "half": ir.F16,
	"bfloat16": ir.BF16, "float64": ir.F64, "double": ir.F64,
	"int64": ir.I64, "long": ir.I64, "int32": ir.I32, "int": ir.I32,
	"int16": ir.I16, "short": ir.I16, "int8": ir.I8, "uint8": ir.U8, "bool": ir.Bool,
}

// allowedGlobal resolves a GLOBAL (module, name) against the allow-list. It
// is the only way a pickle can name anything; every other global is an
// error, so loading never imports or executes code.
func allowedGlobal(module, name string) (interface{}, bool) {
	switch module {
	case "collections":
		if name == "OrderedDict" {
			return &types.OrderedDictClass{}, true
		}
	case "torch._utils":
		switch name {
		case "_rebuild_tensor_v2":
			return &rebuildFunc{name: name, call: rebuildTensorV2}, true
		case "_rebuild_tensor_v3":
			return &rebuildFunc{name: name, call: rebuildTensorV3}, true
		case "_rebuild_parameter":
			return &rebuildFunc{name: name, call: rebuildParameter}, true
		case "_rebuild_parameter_with_state":
			return &rebuildFunc{name: name, call: rebuildParameterWithState}, true
		}
	case "torch._tensor":
		if name == "_rebuild_from_type_v2" {
			return &rebuildFunc{name: name, call: rebuildFromTypeV2}, true
		}
	case "torch.nn.parameter":
		if name == "Parameter" {
			return &typeGlobal{name: "torch.nn.parameter.Parameter"}, true
		}
	case "torch":
		if d, ok := storageDTypes[name]; ok {
			return &storageClass{name: name, dtype: d}, true
		}
		if d, ok := torchDTypes[name]; ok {
			return &dtypeGlobal{dtype: d}, true
		}
		if name == "Tensor" {
			return &typeGlobal{name: "torch.Tensor"}, true
		}
	}
	return nil, false
}

// DisallowedGlobalError reports a pickle that names a global outside the
// allow-list (os.system, builtins.eval, ...).
type DisallowedGlobalError struct {
	Module, Name string
}

func (e *DisallowedGlobalError) Error() string {
	return fmt.Sprintf("pickle references disallowed global %q", e.Module+"."+e.Name)
}

// unpickle runs data (one pickle program, up to and including STOP) through
// the static check and then gopickle's unpickler with the allow-list and
// persistent loader. It returns the loaded value and the byte length of
// the program.
func unpickle(data []byte, persistentLoad func(interface{}) (interface{}, error)) (v interface{}, n int, err error) {
	n, err = scanPickle(data)
	if err != nil {
		return nil, 0, err
	}
	u := pickle.NewUnpickler(bytes.NewReader(data[:n]))
	u.FindClass = func(module, name string) (interface{}, error) {
		if c, ok := allowedGlobal(module, name); ok {
			return c, nil
		}
		return nil, &DisallowedGlobalError{module, name}
	}
	u.PersistentLoad = persistentLoad
	u.GetExtension = func(code int) (interface{}, error) {
		return nil, fmt.Errorf("pickle uses extension code %d", code)
	}
	// Defense in depth: scanPickle rules out every input known to make
	// gopickle v0.2.0 panic (odd DICT items, empty LONG1, unhashable set
	// members and keys); any other panic becomes an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			v, n, err = nil, 0, fmt.Errorf("pickle: unpickler failed: %v", r)
		}
	}()
	v, err = u.Load()
	if err != nil {
		return nil, 0, fmt.Errorf("pickle: %w", err)
	}
	return v, n, nil
}

// Symbolic values of the static check: only what the check needs to know.
type symKind uint8

const (
	symOther symKind = iota
	symStr           // a str whose value is known
	symBytes         // bytes: unhashable in gopickle, never a dict key
)

type sym struct {
	kind symKind
	s    string
}

// opcodes lists the pickle opcodes a checkpoint may use, by name. INST, OBJ,
// PERSID, EXT1/2/4, NEWOBJ_EX, the set opcodes and the out-of-band buffer
// opcodes never appear in torch checkpoints and are refused.
var opcodes = [256]string{
	0x80: "PROTO", 0x95: "FRAME", '.': "STOP", '(': "MARK", '0': "POP", '1': "POP_MARK", '2': "DUP",
	'N': "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 'I': "INT", 'J': "BININT", 'K': "BININT1",
	'M': "BININT2", 'L': "LONG", 0x8a: "LONG1", 0x8b: "LONG4", 'F': "FLOAT", 'G': "BINFLOAT",
	'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING", 'V': "UNICODE", 'X': "BINUNICODE",
	0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 'B': "BINBYTES", 'C': "SHORT_BINBYTES",
	0x8e: "BINBYTES8", 0x96: "BYTEARRAY8",
	')': "EMPTY_TUPLE", 't': "TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3",
	']': "EMPTY_LIST", 'l': "LIST", 'a': "APPEND", 'e': "APPENDS",
	'}': "EMPTY_DICT", 'd': "DICT", 's': "SETITEM", 'u': "SETITEMS",
	'c': "GLOBAL", 0x93: "STACK_GLOBAL", 'R': "REDUCE", 'b': "BUILD", 0x81: "NEWOBJ", 'Q': "BINPERSID",
	'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT", 0x94: "MEMOIZE", 'g': "GET", 'h': "BINGET", 'j': "LONG_BINGET",
}

// scanPickle checks a pickle program without running it, mirroring
// gopickle's stack discipline (a MARK starts a fresh stack): every opcode
// is known and allowed, every argument and length fits in the data (so the
// unpickler never allocates more than the data holds), every global (GLOBAL,
// and STACK_GLOBAL whose names must be literal strings) is allow-listed,
// stack and memo accesses are in range, dict keys are hashable, and the
// object count and MARK depth stay under their caps, and STOP comes within
// MaxPickleBytes. It returns the length of the program up to and including
// STOP.
func scanPickle(data []byte) (int, error) {
	if len(data) > MaxPickleBytes {
		// A legacy checkpoint passes the rest of the file; the program must
		// end (STOP) within the limit.
		data = data[:MaxPickleBytes]
	}
	var (
		stack   []sym
		marks   []int // stack length at each MARK
		memo    = map[int]sym{}
		objects int
		pos     int
	)
	base := func() int {
		if len(marks) == 0 {
			return 0
		}
		return marks[len(marks)-1]
	}
	need := func(n int) error {
		if len(stack)-base() < n {
			return fmt.Errorf("stack underflow")
		}
		return nil
	}
	push := func(s sym) error {
		objects++
		if objects > MaxPickleObjects {
			return fmt.Errorf("more than %d objects", MaxPickleObjects)
		}
		stack = append(stack, s)
		return nil
	}
	popMark := func() ([]sym, error) {
		if len(marks) == 0 {
			return nil, fmt.Errorf("no MARK on the stack")
		}
		b := marks[len(marks)-1]
		marks = marks[:len(marks)-1]
		items := stack[b:]
		stack = stack[:b]
		return items, nil
	}
	arg := func(n int) ([]byte, error) {
		if n < 0 || n > len(data)-pos {
			return nil, fmt.Errorf("argument of %d bytes runs past the end (%d left)", n, len(data)-pos)
		}
		b := data[pos : pos+n]
		pos += n
		return b, nil
	}
	line := func() ([]byte, error) {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			return nil, fmt.Errorf("unterminated line argument")
		}
		b := data[pos : pos+i]
		pos += i + 1
		return b, nil
	}
	length := func(width int) (int, error) {
		b, err := arg(width)
		if err != nil {
			return 0, err
		}
		var n uint64
		switch width {
		case 1:
			n = uint64(b[0])
		case 4:
			n = uint64(binary.LittleEndian.Uint32(b))
		case 8:
			n = binary.LittleEndian.Uint64(b)
		}
		if n > uint64(len(data)-pos) {
			return 0, fmt.Errorf("length %d runs past the end (%d bytes left)", n, len(data)-pos)
		}
		return int(n), nil
	}
	checkGlobal := func(module, name string) error {
		if _, ok := allowedGlobal(module, name); !ok {
			return &DisallowedGlobalError{module, name}
		}
		return nil
	}
	hashable := func(items []sym, what string) error {
		for _, s := range items {
			if s.kind == symBytes {
				return fmt.Errorf("bytes used as a %s", what)
			}
		}
		return nil
	}

	for {
		if pos >= len(data) {
			return 0, fmt.Errorf("pickle: truncated: no STOP opcode in %d bytes", len(data))
		}
		at := pos
		op := data[pos]
		pos++
		name := opcodes[op]
		if name == "" {
			return 0, fmt.Errorf("pickle: offset %d: opcode 0x%02x is not allowed in a checkpoint", at, op)
		}
		err := func() error {
			switch op {
			case 0x80: // PROTO
				b, err := arg(1)
				if err != nil {
					return err
				}
				if b[0] > pickle.HighestProtocol {
					return fmt.Errorf("protocol %d", b[0])
				}
			case 0x95: // FRAME: the frame's bytes are scanned as the opcodes they hold
				if _, err := length(8); err != nil {
					return err
				}
			case '.':
				return need(1)
			case '(':
				if len(marks) >= maxMarkDepth {
					return fmt.Errorf("MARKs nested deeper than %d", maxMarkDepth)
				}
				marks = append(marks, len(stack))
				objects++ // gopickle allocates a new stack per MARK
			case '0':
				if len(stack) > base() {
					stack = stack[:len(stack)-1]
				} else if _, err := popMark(); err != nil {
					return err
				}
			case '1':
				_, err := popMark()
				return err
			case '2':
				if err := need(1); err != nil {
					return err
				}
				return push(stack[len(stack)-1])
			case 'N', 0x88, 0x89, ')', ']', '}':
				return push(sym{})
			case 'I', 'L', 'F':
				if _, err := line(); err != nil {
					return err
				}
				return push(sym{})
			case 'J':
				if _, err := arg(4); err != nil {
					return err
				}
				return push(sym{})
			case 'K':
				if _, err := arg(1); err != nil {
					return err
				}
				return push(sym{})
			case 'M':
				if _, err := arg(2); err != nil {
					return err
				}
				return push(sym{})
			case 'G':
				if _, err := arg(8); err != nil {
					return err
				}
				return push(sym{})
			case 0x8a, 0x8b: // LONG1, LONG4
				w := 1
				if op == 0x8b {
					w = 4
				}
				n, err := length(w)
				if err != nil {
					return err
				}
				if n == 0 || n > 1<<20 {
					return fmt.Errorf("integer of %d bytes", n)
				}
				_, err = arg(n)
				if err != nil {
					return err
				}
				return push(sym{})
			case 'S':
				b, err := line()
				if err != nil {
					return err
				}
				if len(b) < 2 || b[0] != b[len(b)-1] || (b[0] != '\'' && b[0] != '"') {
					return fmt.Errorf("unquoted STRING")
				}
				return push(sym{symStr, string(b[1 : len(b)-1])})
			case 'V':
				b, err := line()
				if err != nil {
					return err
				}
				return push(sym{symStr, string(b)})
			case 'T', 'U', 'X', 0x8c, 0x8d:
				w := map[byte]int{'T': 4, 'U': 1, 'X': 4, 0x8c: 1, 0x8d: 8}[op]
				if op == 'T' && pos+4 <= len(data) && data[pos+3]&0x80 != 0 {
					return fmt.Errorf("negative length")
				}
				n, err := length(w)
				if err != nil {
					return err
				}
				b, err := arg(n)
				if err != nil {
					return err
				}
				return push(sym{symStr, string(b)})
			case 'B', 'C', 0x8e:
				w := map[byte]int{'B': 4, 'C': 1, 0x8e: 8}[op]
				n, err := length(w)
				if err != nil {
					return err
				}
				if _, err := arg(n); err != nil {
					return err
				}
				return push(sym{kind: symBytes})
			case 0x96: // BYTEARRAY8: a pointer type in gopickle, hashable
				n, err := length(8)
				if err != nil {
					return err
				}
				if _, err := arg(n); err != nil {
					return err
				}
				return push(sym{})
			case 't', 'l':
				if _, err := popMark(); err != nil {
					return err
				}
				return push(sym{})
			case 0x85, 0x86, 0x87:
				n := int(op-0x85) + 1
				if err := need(n); err != nil {
					return err
				}
				stack = stack[:len(stack)-n]
				return push(sym{})
			case 'a':
				if err := need(2); err != nil {
					return err
				}
				stack = stack[:len(stack)-1]
			case 'e':
				if _, err := popMark(); err != nil {
					return err
				}
				return need(1)
			case 'd':
				items, err := popMark()
				if err != nil {
					return err
				}
				if len(items)%2 != 0 {
					return fmt.Errorf("DICT with an odd number (%d) of items", len(items))
				}
				return push(sym{})
			case 's':
				if err := need(3); err != nil {
					return err
				}
				if err := hashable(stack[len(stack)-2:len(stack)-1], "dict key"); err != nil {
					return err
				}
				stack = stack[:len(stack)-2]
			case 'u':
				items, err := popMark()
				if err != nil {
					return err
				}
				if len(items)%2 != 0 {
					return fmt.Errorf("SETITEMS with an odd number (%d) of items", len(items))
				}
				for i := 0; i < len(items); i += 2 {
					if err := hashable(items[i:i+1], "dict key"); err != nil {
						return err
					}
				}
				return need(1)
			case 'c':
				m, err := line()
				if err != nil {
					return err
				}
				n, err := line()
				if err != nil {
					return err
				}
				if err := checkGlobal(string(m), string(n)); err != nil {
					return err
				}
				return push(sym{})
			case 0x93: // STACK_GLOBAL
				if err := need(2); err != nil {
					return err
				}
				m, n := stack[len(stack)-2], stack[len(stack)-1]
				if m.kind != symStr || n.kind != symStr {
					return fmt.Errorf("STACK_GLOBAL with a non-string module or name")
				}
				if err := checkGlobal(m.s, n.s); err != nil {
					return err
				}
				stack = stack[:len(stack)-2]
				return push(sym{})
			case 'R', 0x81: // REDUCE, NEWOBJ
				if err := need(2); err != nil {
					return err
				}
				stack = stack[:len(stack)-2]
				return push(sym{})
			case 'b': // BUILD
				if err := need(2); err != nil {
					return err
				}
				stack = stack[:len(stack)-1]
			case 'Q': // BINPERSID
				if err := need(1); err != nil {
					return err
				}
				stack = stack[:len(stack)-1]
				return push(sym{})
			case 'p', 'q', 'r', 0x94: // PUT, BINPUT, LONG_BINPUT, MEMOIZE
				var i int
				switch op {
				case 'p':
					b, err := line()
					if err != nil {
						return err
					}
					i, err = strconv.Atoi(string(b))
					if err != nil || i < 0 {
						return fmt.Errorf("bad PUT index %q", b)
					}
				case 'q':
					b, err := arg(1)
					if err != nil {
						return err
					}
					i = int(b[0])
				case 'r':
					b, err := arg(4)
					if err != nil {
						return err
					}
					i = int(binary.LittleEndian.Uint32(b))
				case 0x94:
					i = len(memo)
				}
				if err := need(1); err != nil {
					return err
				}
				memo[i] = stack[len(stack)-1]
				objects++
			case 'g', 'h', 'j': // GET, BINGET, LONG_BINGET
				var i int
				switch op {
				case 'g':
					b, err := line()
					if err != nil {
						return err
					}
					i, err = strconv.Atoi(string(b))
					if err != nil {
						return fmt.Errorf("bad GET index %q", b)
					}
				case 'h':
					b, err := arg(1)
					if err != nil {
						return err
					}
					i = int(b[0])
				case 'j':
					b, err := arg(4)
					if err != nil {
						return err
					}
					i = int(binary.LittleEndian.Uint32(b))
				}
				s, ok := memo[i]
				if !ok {
					return fmt.Errorf("memo key %d is not set", i)
				}
				return push(s)
			}
			return nil
		}()
		if _, ok := err.(*DisallowedGlobalError); ok {
			return 0, err
		}
		if err != nil {
			return 0, fmt.Errorf("pickle: offset %d (%s): %w", at, name, err)
		}
		if op == '.' {
			return pos, nil
		}
	}
}

// Rebuild functions. Each checks its arguments' types and builds a
// tensorRef; bounds are checked later against the storage record.

func rebuildTensorV2(args []interface{}) (interface{}, error) {
	// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
	if len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("%d arguments, want 6 or 7", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("argument 1 is %T, want a storage", args[0])
	}
	return buildTensor(st, st.dtype, args[1:])
}

func rebuildTensorV3(args []interface{}) (interface{}, error) {
	// (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
	if len(args) != 7 && len(args) != 8 {
		return nil, fmt.Errorf("%d arguments, want 7 or 8", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("argument 1 is %T, want a storage", args[0])
	}
	dt, ok := args[6].(*dtypeGlobal)
	if !ok {
		return nil, fmt.Errorf("argument 7 is %T, want a torch dtype", args[6])
	}
	return buildTensor(st, dt.dtype, args[1:6])
}

func buildTensor(st *storageRef, dtype ir.DType, args []interface{}) (*tensorRef, error) {
	off, ok := args[0].(int)
	if !ok || off < 0 {
		return nil, fmt.Errorf("storage offset %v is not a non-negative int", args[0])
	}
	size, err := intTuple(args[1], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[2], "stride")
	if err != nil {
		return nil, err
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("size %v and stride %v differ in rank", size, stride)
	}
	if _, ok := args[3].(bool); !ok {
		return nil, fmt.Errorf("requires_grad is %T, want bool", args[3])
	}
	if err := emptyHooks(args[4]); err != nil {
		return nil, err
	}
	return &tensorRef{storage: st, dtype: dtype, offset: int64(off), size: size, stride: stride}, nil
}

func rebuildParameter(args []interface{}) (interface{}, error) {
	// (data, requires_grad, backward_hooks)
	if len(args) != 3 {
		return nil, fmt.Errorf("%d arguments, want 3", len(args))
	}
	return parameterData(args)
}

func rebuildParameterWithState(args []interface{}) (interface{}, error) {
	// (data, requires_grad, backward_hooks, state): state is the Python
	// attributes of the Parameter, which carry no tensor data.
	if len(args) != 4 {
		return nil, fmt.Errorf("%d arguments, want 4", len(args))
	}
	return parameterData(args[:3])
}

func parameterData(args []interface{}) (interface{}, error) {
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, fmt.Errorf("data is %T, want a tensor", args[0])
	}
	if _, ok := args[1].(bool); !ok {
		return nil, fmt.Errorf("requires_grad is %T, want bool", args[1])
	}
	if err := emptyHooks(args[2]); err != nil {
		return nil, err
	}
	return t, nil
}

func rebuildFromTypeV2(args []interface{}) (interface{}, error) {
	// (func, new_type, args, state): func(*args), then a type change that
	// does not affect the data.
	if len(args) != 4 {
		return nil, fmt.Errorf("%d arguments, want 4", len(args))
	}
	f, ok := args[0].(*rebuildFunc)
	if !ok {
		return nil, fmt.Errorf("func is %T, want a tensor rebuild function", args[0])
	}
	if _, ok := args[1].(*typeGlobal); !ok {
		return nil, fmt.Errorf("new_type is %T, want torch.Tensor or Parameter", args[1])
	}
	inner, ok := args[2].(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("args is %T, want a tuple", args[2])
	}
	return f.Call(*inner...)
}

func emptyHooks(v interface{}) error {
	switch h := v.(type) {
	case nil:
		return nil
	case *types.OrderedDict:
		if h.Len() == 0 {
			return nil
		}
	case *types.Dict:
		if h.Len() == 0 {
			return nil
		}
	}
	return fmt.Errorf("backward_hooks must be empty, found %T", v)
}

func intTuple(v interface{}, what string) ([]int64, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("%s is %T, want a tuple", what, v)
	}
	out := make([]int64, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%s[%d] = %v is not a non-negative int", what, i, t.Get(i))
		}
		out[i] = int64(n)
	}
	return out, nil
}

// persistentStorage builds the PersistentLoad function for torch's storage
// records. get receives ("storage", cls, key, location, numel) and, in the
// legacy format, a sixth view_metadata that must be None. Repeated keys
// return the same *storageRef and must agree on dtype and size.
func persistentStorage(seen map[string]*storageRef, legacy bool) func(interface{}) (interface{}, error) {
	return func(pid interface{}) (interface{}, error) {
		t, ok := pid.(*types.Tuple)
		want := 5
		if legacy {
			want = 6
		}
		if !ok || t.Len() != want {
			return nil, fmt.Errorf("persistent id %v is not a %d-tuple", pid, want)
		}
		if s, _ := t.Get(0).(string); s != "storage" {
			return nil, fmt.Errorf("persistent id of kind %v, want \"storage\"", t.Get(0))
		}
		cls, ok := t.Get(1).(*storageClass)
		if !ok {
			return nil, fmt.Errorf("persistent id storage type is %T, want a torch storage class", t.Get(1))
		}
		key, ok := t.Get(2).(string)
		if !ok || !validKey(key) {
			return nil, fmt.Errorf("storage key %v is not a plain name", t.Get(2))
		}
		if _, ok := t.Get(3).(string); !ok {
			return nil, fmt.Errorf("storage %q: location is %T, want a string", key, t.Get(3))
		}
		numel, ok := t.Get(4).(int)
		if !ok || numel < 0 || int64(numel) > math.MaxInt64/8 {
			return nil, fmt.Errorf("storage %q: numel %v is not a valid size", key, t.Get(4))
		}
		if legacy && t.Get(5) != nil {
			return nil, fmt.Errorf("storage %q: legacy storage views are not supported", key)
		}
		if s, ok := seen[key]; ok {
			if s.dtype != cls.dtype || s.numel != int64(numel) {
				return nil, fmt.Errorf("storage %q is declared as %d x %v and as %d x %v", key, s.numel, s.dtype, numel, cls.dtype)
			}
			return s, nil
		}
		s := &storageRef{dtype: cls.dtype, key: key, numel: int64(numel)}
		seen[key] = s
		return s, nil
	}
}

// validKey accepts the record names torch writes (decimal counters, and
// letters/digits/_/- in general); nothing that could leave data/.
func validKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
