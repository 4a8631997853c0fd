// Command smelt compiles machine-learning models for the browser: it reads
// Hugging Face and ONNX weights, quantizes and prunes them, generates WGSL
// kernels and a JS runtime, and writes signed, SRI-hashed bundles.
package main

import (
	"os"

	"github.com/smeltml/smelt/cmd/smelt/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
