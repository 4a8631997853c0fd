// Package onnxpb holds the Go types generated from the vendored ONNX
// protobuf schema onnx-ml.proto (upstream ONNX's onnx-ml.proto3, IR version
// 11; see the header of onnx-ml.proto for its origin and LICENSE for its
// Apache-2.0 license). Package onnx reads models with these types; nothing
// here is edited by hand.
//
// Regenerating needs protoc (3.21 or later) and protoc-gen-go v1.36.12
// (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12); the
// generated file is committed so that builds and CI need neither.
package onnxpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go_opt=Monnx-ml.proto=github.com/smeltml/smelt/convert/onnx/onnxpb onnx-ml.proto
