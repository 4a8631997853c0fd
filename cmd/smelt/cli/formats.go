package cli

// Weight-file readers register themselves with convert.RegisterOpener; they
// import package convert, so convert cannot import them (a cycle): every
// binary that opens .bin or .onnx files links them here.
import (
	_ "github.com/smeltml/smelt/convert/onnx"
	_ "github.com/smeltml/smelt/convert/pytorch"
)
