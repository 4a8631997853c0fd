package onnx

import "github.com/smeltml/smelt/convert"

// Registering makes convert.OpenWeights read .onnx files, and convert.Load
// map their graphs (MapLlama), in any program that links this package.
func init() {
	convert.RegisterOpener("onnx", Open)
	convert.RegisterGraphMapper("onnx", mapFile)
}
