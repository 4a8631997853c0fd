package onnx

import (
	"encoding/binary"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert/arch"
	"github.com/smeltml/smelt/convert/onnx/onnxpb"
	"github.com/smeltml/smelt/internal/testmodels"
)

// FuzzMapLlama mutates the graph of the stories260K export (the
// initializers' data stays) and maps it: MapLlama must never panic, loop
// or allocate without bound, whatever the graph. Each 6 bytes of input are
// one edit: kind, node (2 bytes), slot, value (2 bytes) — rewire an input
// to another node's output, change an op type, an int attribute, a
// constant's raw bytes, drop a node's input or output, or drop a node.
func FuzzMapLlama(f *testing.F) {
	model, err := OpenModel(testmodels.Path(f, "stories260K-onnx", "model.onnx"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { model.Close() })
	raw, err := os.ReadFile(testmodels.Path(f, "stories260K", "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	fam, err := arch.Lookup("LlamaForCausalLM")
	if err != nil {
		f.Fatal(err)
	}
	cfg, err := fam.ParseConfig("config.json", raw)
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := MapLlama(model, cfg); err != nil {
		f.Fatalf("unmutated model: %v", err)
	}
	ops := []string{"Add", "Mul", "MatMul", "Cast", "Slice", "Concat", "Shape", "Gather", "Unsqueeze", "Reshape", "Transpose", "Softmax", "Trilu", "Range", "Einsum", "Constant", "Sqrt", "Pow", "Neg", "Sigmoid"}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 39, 0, 0, 40}) // rewire MatMul /MatMul
	f.Add([]byte{1, 0, 174, 0, 0, 5}) // Concat_17 → Concat (same op, no-op)
	f.Add([]byte{3, 0, 163, 0, 0, 1}) // constant bytes
	f.Add([]byte{2, 0, 78, 0, 1, 7, 6, 0, 7, 0, 0, 0})
	f.Fuzz(func(t *testing.T, edits []byte) {
		if len(edits) > 8*6 {
			return // at most 8 edits: keeps minimization quick (an exec clones the graph)
		}
		g := proto.Clone(model.Proto.Graph).(*onnxpb.GraphProto)
		for len(edits) >= 6 && len(g.Node) > 0 {
			kind, slot := edits[0], int(edits[3])
			n := g.Node[int(binary.BigEndian.Uint16(edits[1:]))%len(g.Node)]
			val := int(binary.BigEndian.Uint16(edits[4:]))
			edits = edits[6:]
			switch kind % 7 {
			case 0:
				if len(n.Input) > 0 {
					src := g.Node[val%len(g.Node)]
					if len(src.Output) > 0 {
						n.Input[slot%len(n.Input)] = src.Output[0]
					}
				}
			case 1:
				n.OpType = ops[val%len(ops)]
			case 2:
				if len(n.Attribute) > 0 {
					a := n.Attribute[slot%len(n.Attribute)]
					a.I = int64(int16(val))
					if len(a.Ints) > 0 {
						a.Ints[val%len(a.Ints)] = int64(slot) - 4
					}
				}
			case 3:
				if len(n.Attribute) > 0 && n.Attribute[0].T != nil && len(n.Attribute[0].T.RawData) > 0 {
					b := n.Attribute[0].T.RawData
					b[slot%len(b)] = byte(val)
				}
			case 4:
				if len(n.Input) > 0 {
					n.Input = n.Input[:slot%len(n.Input)]
				}
			case 5:
				n.Output = nil
			case 6:
				i := val % len(g.Node)
				g.Node = append(g.Node[:i:i], g.Node[i+1:]...)
			}
		}
		m := &Model{Proto: &onnxpb.ModelProto{Graph: g}, Inventory: model.Inventory}
		MapLlama(m, cfg)
	})
}
