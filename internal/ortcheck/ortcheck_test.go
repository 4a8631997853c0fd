package ortcheck

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/smeltml/smelt/convert/onnx/onnxpb"
)

// addModel is Y = A + B over float32 [2, 3] and Z = Cast<int64>(Y).
func addModel(t *testing.T) []byte {
	t.Helper()
	vi := func(name string, elem onnxpb.TensorProto_DataType) *onnxpb.ValueInfoProto {
		var d []*onnxpb.TensorShapeProto_Dimension
		for _, x := range []int64{2, 3} {
			d = append(d, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: x}})
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(elem), Shape: &onnxpb.TensorShapeProto{Dim: d}},
		}}}
	}
	f := onnxpb.TensorProto_FLOAT
	b, err := proto.Marshal(&onnxpb.ModelProto{
		IrVersion: 10, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 21}},
		Graph: &onnxpb.GraphProto{
			Name: "add",
			Node: []*onnxpb.NodeProto{
				{OpType: "Add", Input: []string{"A", "B"}, Output: []string{"Y"}},
				{OpType: "Cast", Input: []string{"Y"}, Output: []string{"Z"}, Attribute: []*onnxpb.AttributeProto{
					{Name: "to", Type: onnxpb.AttributeProto_INT, I: int64(onnxpb.TensorProto_INT64)}}},
			},
			Input:  []*onnxpb.ValueInfoProto{vi("A", f), vi("B", f)},
			Output: []*onnxpb.ValueInfoProto{vi("Y", f), vi("Z", onnxpb.TensorProto_INT64)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRun(t *testing.T) {
	dims := []int64{2, 3}
	a := F32("A", dims, []float32{1, 2, 3, 4, 5, 6})
	b := F32("B", dims, []float32{0.5, -2, 10, 0, 1e-3, -7})
	res, err := Run(t.TempDir(), []Job{
		{Model: "add.onnx", ModelBytes: addModel(t), Inputs: []Tensor{a, b}, Outputs: []string{"Y", "Z"}},
		{Model: "add.onnx", ModelBytes: addModel(t), Inputs: []Tensor{b, a}, Outputs: []string{"Z"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 2 || len(res.Outputs[0]) != 2 || len(res.Outputs[1]) != 1 {
		t.Fatalf("outputs per job: got %d jobs", len(res.Outputs))
	}
	y, err := res.Outputs[0][0].Float32()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{1.5, 0, 13, 4, 5.001, -1}, y); diff != "" {
		t.Errorf("Y (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(dims, res.Outputs[0][0].Dims); diff != "" {
		t.Errorf("Y dims (-want +got):\n%s", diff)
	}
	want := I64("Z", dims, []int64{1, 0, 13, 4, 5, -1})
	for j := 0; j < 2; j++ {
		z := res.Outputs[j][len(res.Outputs[j])-1]
		if diff := cmp.Diff(want, z); diff != "" {
			t.Errorf("job %d: Z (-want +got):\n%s", j, diff)
		}
	}
	if _, err := res.Outputs[0][1].Float32(); err == nil {
		t.Error("Float32 of an int64 tensor: no error")
	}
}

func TestRunErrors(t *testing.T) {
	_, err := Run(t.TempDir(), []Job{{Model: "add.onnx", ModelBytes: addModel(t), Inputs: []Tensor{F32("A", []int64{2, 3}, make([]float32, 6))}, Outputs: []string{"Y"}}})
	if err == nil || !strings.Contains(err.Error(), "B") {
		t.Errorf("missing input B: err = %v, want an error naming it", err)
	}
}
