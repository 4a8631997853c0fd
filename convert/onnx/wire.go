package onnx

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
)

// Field numbers used while splitting a model into its skeleton and its
// initializer data (onnx-ml.proto).
const (
	modelGraph       = 7
	graphInitializer = 5
	tensorFloatData  = 4
	tensorInt32Data  = 5
	tensorStringData = 6
	tensorInt64Data  = 7
	tensorRawData    = 9
	tensorDoubleData = 10
	tensorUint64Data = 11
)

// Limits on what decoding the skeleton (the model without initializer
// data) may allocate: protobuf lets a few bytes stand for a Go struct of a
// few hundred bytes, so messages and repeated scalars are counted first.
// Graphs of large LLMs hold some 10^5 messages.
const (
	MaxProtoMessages = 1 << 21
	MaxProtoScalars  = 1 << 25
	maxProtoDepth    = 100
)

// dataField is one occurrence of a data field of an initializer: for the
// bytes wire type its payload (raw_data, or a packed repeated field), for
// the others one encoded scalar.
type dataField struct {
	num protowire.Number
	typ protowire.Type
	val []byte
	off int64 // of val in the file
}

// initData is the data of one top-level initializer, cut out of the model.
type initData struct {
	fields []dataField
}

// split copies the model in data into a skeleton — the same message
// without the data fields of graph.initializer — and returns the data
// fields it left out, one initData per initializer in order. Data stays in
// the mapped file: raw_data is a zero-copy slice of it.
func split(data []byte) ([]byte, []initData, error) {
	var skel []byte
	var inits []initData
	graphs := 0
	err := walk(data, 0, func(num protowire.Number, typ protowire.Type, field, val []byte, off int) error {
		if num != modelGraph || typ != protowire.BytesType {
			skel = append(skel, field...)
			return nil
		}
		graphs++
		if graphs > 1 {
			return fmt.Errorf("model has %d graph fields, want 1", graphs)
		}
		var g []byte
		err := walk(val, off, func(num protowire.Number, typ protowire.Type, field, val []byte, off int) error {
			if num != graphInitializer || typ != protowire.BytesType {
				g = append(g, field...)
				return nil
			}
			var t []byte
			var d initData
			err := walk(val, off, func(num protowire.Number, typ protowire.Type, field, val []byte, off int) error {
				switch num {
				case tensorFloatData, tensorInt32Data, tensorStringData, tensorInt64Data, tensorRawData, tensorDoubleData, tensorUint64Data:
					d.fields = append(d.fields, dataField{num: num, typ: typ, val: val, off: int64(off)})
				default:
					t = append(t, field...)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("initializer %d: %w", len(inits), err)
			}
			inits = append(inits, d)
			g = protowire.AppendTag(g, graphInitializer, protowire.BytesType)
			g = protowire.AppendBytes(g, t)
			return nil
		})
		if err != nil {
			return fmt.Errorf("graph: %w", err)
		}
		skel = protowire.AppendTag(skel, modelGraph, protowire.BytesType)
		skel = protowire.AppendBytes(skel, g)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return skel, inits, nil
}

// walk calls f for each field of the message in b: its number, wire type,
// whole encoding (tag included), value (the payload for the bytes type,
// the encoded scalar otherwise) and the value's offset (base + position).
func walk(b []byte, base int, f func(num protowire.Number, typ protowire.Type, field, val []byte, off int) error) error {
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return fmt.Errorf("offset %d: bad field tag: %w", base+pos, protowire.ParseError(n))
		}
		start := pos
		pos += n
		m := protowire.ConsumeFieldValue(num, typ, b[pos:])
		if m < 0 {
			return fmt.Errorf("offset %d: field %d: %w", base+pos, num, protowire.ParseError(m))
		}
		val, voff := b[pos:pos+m], pos
		if typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(val)
			if k < 0 {
				return fmt.Errorf("offset %d: field %d: %w", base+pos, num, protowire.ParseError(k))
			}
			val, voff = v, pos+k-len(v)
		}
		pos += m
		if err := f(num, typ, b[start:pos], val, base+voff); err != nil {
			return err
		}
	}
	return nil
}

// budget counts what decoding a message would allocate.
type budget struct{ messages, scalars int }

// check walks b as a message of type md (recursively, by descriptor) and
// fails when it holds more than MaxProtoMessages messages, more than
// MaxProtoScalars repeated scalars, or nests deeper than maxProtoDepth.
func (c *budget) check(b []byte, md protoreflect.MessageDescriptor, depth int) error {
	if depth > maxProtoDepth {
		return fmt.Errorf("messages nested deeper than %d", maxProtoDepth)
	}
	c.messages++
	if c.messages > MaxProtoMessages {
		return fmt.Errorf("more than %d messages", MaxProtoMessages)
	}
	return walk(b, 0, func(num protowire.Number, typ protowire.Type, _, val []byte, _ int) error {
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			return nil // kept as unknown bytes: costs what it weighs
		}
		switch {
		case fd.Message() != nil:
			if typ == protowire.BytesType {
				return c.check(val, fd.Message(), depth+1)
			}
		case fd.IsList():
			n := 1
			if typ == protowire.BytesType && fd.Kind() != protoreflect.BytesKind && fd.Kind() != protoreflect.StringKind {
				n = len(val) // packed: at most one element per byte
			}
			c.scalars += n
			if c.scalars > MaxProtoScalars {
				return fmt.Errorf("more than %d repeated values", MaxProtoScalars)
			}
		}
		return nil
	})
}

// modelDescriptor is ModelProto's descriptor, for budget.check.
var modelDescriptor = (&onnxpb.ModelProto{}).ProtoReflect().Descriptor()
