package onnxpb

import (
	"fmt"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestScratch(t *testing.T) {
	b, _ := os.ReadFile("/work/shared/models/stories260K-onnx/model.onnx")
	var m ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fmt.Println(m.IrVersion, m.ProducerName, m.ProducerVersion, m.OpsetImport, len(m.Graph.Node), m.Graph.Input, m.Graph.Output)
	for _, in := range m.Graph.Initializer {
		fmt.Println(in.Name, in.DataType, in.Dims, len(in.RawData), len(in.FloatData), in.DataLocation, len(in.ExternalData))
	}
	n := 0
	for _, nd := range m.Graph.Node {
		if nd.OpType == "Constant" {
			n++
		}
	}
	fmt.Println("constants", n, len(m.Graph.ValueInfo), len(m.MetadataProps), m.Graph.Name)
}
