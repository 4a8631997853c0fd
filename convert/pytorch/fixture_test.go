package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// pkl assembles pickle programs opcode by opcode, for fixtures.
type pkl struct{ bytes.Buffer }

func (p *pkl) op(b ...byte) *pkl { p.Write(b); return p }
func (p *pkl) proto(v byte) *pkl { return p.op(0x80, v) }
func (p *pkl) mark() *pkl        { return p.op('(') }
func (p *pkl) tuple() *pkl       { return p.op('t') }
func (p *pkl) reduce() *pkl      { return p.op('R') }
func (p *pkl) stop() *pkl        { return p.op('.') }

func (p *pkl) global(module, name string) *pkl {
	p.WriteByte('c')
	p.WriteString(module + "\n" + name + "\n")
	return p
}

func (p *pkl) str(s string) *pkl {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

func (p *pkl) int(n int64) *pkl {
	if n >= -1<<31 && n < 1<<31 {
		p.WriteByte('J')
		binary.Write(&p.Buffer, binary.LittleEndian, int32(n))
		return p
	}
	p.op(0x8a, 8) // LONG1, 8 bytes two's complement
	binary.Write(&p.Buffer, binary.LittleEndian, n)
	return p
}

func (p *pkl) ints(v []int64) *pkl {
	p.mark()
	for _, n := range v {
		p.int(n)
	}
	return p.tuple()
}

// fxTensor is a tensor of a fixture: a view of storage key.
type fxTensor struct {
	name    string
	key     string
	offset  int64
	size    []int64
	stride  []int64
	rebuild string // "" (v2), "param", "param_state", "v3", "from_type"
	v3DType string // torch dtype name for "v3"
}

// fxStorage is a storage record of a fixture.
type fxStorage struct {
	key   string
	class string // "FloatStorage", ...
	numel int64
	data  []byte
}

// statePickle builds the data.pkl of torch.save(state_dict) for tensors
// over storages (an OrderedDict, as torch writes it). legacy adds the
// sixth persistent-id field (view_metadata None) of the legacy format.
func statePickle(tensors []fxTensor, storages []fxStorage, legacy bool) []byte {
	byKey := map[string]fxStorage{}
	for _, s := range storages {
		byKey[s.key] = s
	}
	var p pkl
	p.proto(2).global("collections", "OrderedDict").op(')').reduce().mark()
	for _, t := range tensors {
		s := byKey[t.key]
		p.str(t.name)
		switch t.rebuild {
		case "param", "param_state":
			name := "_rebuild_parameter"
			if t.rebuild == "param_state" {
				name = "_rebuild_parameter_with_state"
			}
			p.global("torch._utils", name).mark()
			tensorV2(&p, t, s, legacy)
			p.op(0x88).global("collections", "OrderedDict").op(')').reduce()
			if t.rebuild == "param_state" {
				p.op('}')
			}
			p.tuple().reduce()
		case "from_type":
			p.global("torch._tensor", "_rebuild_from_type_v2").mark()
			p.global("torch._utils", "_rebuild_tensor_v2")
			p.global("torch", "Tensor")
			p.mark()
			tensorArgs(&p, t, s, legacy)
			p.tuple().op('}').tuple().reduce()
		case "v3":
			p.global("torch._utils", "_rebuild_tensor_v3").mark()
			tensorArgs(&p, t, s, legacy)
			p.global("torch", t.v3DType).tuple().reduce()
		default:
			tensorV2(&p, t, s, legacy)
		}
	}
	p.op('u').stop()
	return p.Bytes()
}

func tensorV2(p *pkl, t fxTensor, s fxStorage, legacy bool) {
	p.global("torch._utils", "_rebuild_tensor_v2").mark()
	tensorArgs(p, t, s, legacy)
	p.tuple().reduce()
}

// tensorArgs writes storage, offset, size, stride, requires_grad, hooks.
func tensorArgs(p *pkl, t fxTensor, s fxStorage, legacy bool) {
	p.mark().str("storage").global("torch", s.class).str(s.key).str("cpu").int(s.numel)
	if legacy {
		p.op('N')
	}
	p.tuple().op('Q')
	p.int(t.offset).ints(t.size).ints(t.stride).op(0x89)
	p.global("collections", "OrderedDict").op(')').reduce()
}

// zipRecord is one file of a fixture zip.
type zipRecord struct {
	name   string
	data   []byte
	method uint16
}

func writeZip(t testing.TB, records []zipRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, r := range records {
		f, err := w.CreateHeader(&zip.FileHeader{Name: r.name, Method: r.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// torchZip is the zip format of torch.save with archive name "archive".
func torchZip(t testing.TB, pickle []byte, storages []fxStorage) []byte {
	t.Helper()
	recs := []zipRecord{{name: "archive/data.pkl", data: pickle}, {name: "archive/byteorder", data: []byte("little")}}
	for _, s := range storages {
		recs = append(recs, zipRecord{name: "archive/data/" + s.key, data: s.data})
	}
	recs = append(recs, zipRecord{name: "archive/version", data: []byte("3\n")})
	return writeZip(t, recs)
}

// torchLegacy is torch's legacy (non-zip) format.
func torchLegacy(tensors []fxTensor, storages []fxStorage) []byte {
	var b bytes.Buffer
	b.Write(legacyMagic)
	b.Write([]byte("\x80\x02M\xe9\x03."))
	var si pkl
	si.proto(2).op('}').mark().str("protocol_version").int(1001).str("little_endian").op(0x88).op('u').stop()
	b.Write(si.Bytes())
	b.Write(statePickle(tensors, storages, true))
	var keys pkl
	keys.proto(2).op(']').mark()
	for _, s := range storages {
		keys.str(s.key)
	}
	keys.op('e').stop()
	b.Write(keys.Bytes())
	for _, s := range storages {
		binary.Write(&b, binary.LittleEndian, s.numel)
		b.Write(s.data)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
