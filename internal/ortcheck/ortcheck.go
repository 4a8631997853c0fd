// Package ortcheck runs ONNX models with onnxruntime-node (ONNX Runtime's
// CPU execution provider under Node.js), the independent reference that
// smelt's tests hold its packed-weight layout and its ONNX import against.
//
// It needs node (18 or newer) on PATH and the npm package onnxruntime-node
// in $SMELT_NODE_MODULES or the repository's node_modules (package.json
// pins 1.30.0; CI installs it with ONNXRUNTIME_NODE_INSTALL=skip, which
// skips only the CUDA download: the CPU binaries ship in the package).
// Anything missing is an error naming what to install; tests never skip.
//
// One Run starts one node process for any number of jobs (a job = one
// model, its inputs, the outputs wanted), so the ~0.2 s start-up of Node and
// ONNX Runtime is paid once per batch. Data travels through files in a
// temporary folder as raw little-endian bytes.
package ortcheck

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/smeltml/smelt/internal/testmodels"
)

//go:embed testdata/ort_run.mjs
var driver []byte

// Tensor is a named dense tensor in ONNX Runtime's terms: Type is an
// onnxruntime-node type name ("float32", "float16", "int64", "int32",
// "uint8", "int8", "uint32"), Data its little-endian bytes, row-major.
type Tensor struct {
	Name string
	Type string
	Dims []int64
	Data []byte
}

// Float32 returns the data of a float32 tensor as values.
func (t *Tensor) Float32() ([]float32, error) {
	if t.Type != "float32" {
		return nil, fmt.Errorf("ortcheck: tensor %q is %s, want float32", t.Name, t.Type)
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// F32 makes a float32 input tensor.
func F32(name string, dims []int64, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, Type: "float32", Dims: dims, Data: b}
}

// I64 makes an int64 input tensor.
func I64(name string, dims []int64, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, Type: "int64", Dims: dims, Data: b}
}

// Job is one model run: Model is the .onnx path (or, when ModelBytes is
// set, the file name it is written under in the temporary folder).
type Job struct {
	Model      string
	ModelBytes []byte
	Inputs     []Tensor
	Outputs    []string
}

// Result is what Run returns: the outputs of each job, in order, and the
// onnxruntime-node version that computed them.
type Result struct {
	Version string
	Outputs [][]Tensor
}

// NodeModules returns the folder holding onnxruntime-node:
// $SMELT_NODE_MODULES, else <repo>/node_modules.
func NodeModules() (string, error) {
	d := os.Getenv("SMELT_NODE_MODULES")
	if d == "" {
		d = filepath.Join(testmodels.RepoRoot(), "node_modules")
	}
	if _, err := os.Stat(filepath.Join(d, "onnxruntime-node", "package.json")); err != nil {
		return "", fmt.Errorf("ortcheck: onnxruntime-node not found in %s (run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` in the repository root, or set SMELT_NODE_MODULES): %v", d, err)
	}
	return d, nil
}

// Run runs jobs in one node process, using tmp (an existing, empty
// folder, e.g. t.TempDir()) for the exchanged files.
func Run(tmp string, jobs []Job) (*Result, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("ortcheck: node (Node.js 18+) is needed to run onnxruntime-node: %v", err)
	}
	mods, err := NodeModules()
	if err != nil {
		return nil, err
	}
	type reqInput struct {
		Name string  `json:"name"`
		Type string  `json:"type"`
		Dims []int64 `json:"dims"`
		File string  `json:"file"`
	}
	type reqJob struct {
		Model   string     `json:"model"`
		Inputs  []reqInput `json:"inputs"`
		Outputs []string   `json:"outputs"`
		Prefix  string     `json:"prefix"`
	}
	var req struct {
		Jobs []reqJob `json:"jobs"`
	}
	for i, j := range jobs {
		rj := reqJob{Model: j.Model, Outputs: j.Outputs, Prefix: filepath.Join(tmp, "job"+strconv.Itoa(i)+".out")}
		if j.ModelBytes != nil {
			rj.Model = filepath.Join(tmp, "job"+strconv.Itoa(i)+"."+filepath.Base(j.Model))
			if err := os.WriteFile(rj.Model, j.ModelBytes, 0o644); err != nil {
				return nil, fmt.Errorf("ortcheck: %w", err)
			}
		}
		for k, in := range j.Inputs {
			f := filepath.Join(tmp, fmt.Sprintf("job%d.in%d.bin", i, k))
			if err := os.WriteFile(f, in.Data, 0o644); err != nil {
				return nil, fmt.Errorf("ortcheck: %w", err)
			}
			rj.Inputs = append(rj.Inputs, reqInput{Name: in.Name, Type: in.Type, Dims: in.Dims, File: f})
		}
		req.Jobs = append(req.Jobs, rj)
	}
	reqPath := filepath.Join(tmp, "request.json")
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("ortcheck: %w", err)
	}
	if err := os.WriteFile(reqPath, b, 0o644); err != nil {
		return nil, fmt.Errorf("ortcheck: %w", err)
	}
	script := filepath.Join(tmp, "ort_run.mjs")
	if err := os.WriteFile(script, driver, 0o644); err != nil {
		return nil, fmt.Errorf("ortcheck: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(node, script, mods, reqPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ortcheck: node %s: %v: %s", script, err, tail(stderr.String(), 4000))
	}
	var reply struct {
		Version string `json:"version"`
		Jobs    []struct {
			Outputs []reqInput `json:"outputs"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &reply); err != nil {
		return nil, fmt.Errorf("ortcheck: reply of node: %v: %s", err, tail(stdout.String(), 2000))
	}
	if len(reply.Jobs) != len(jobs) {
		return nil, fmt.Errorf("ortcheck: node answered %d jobs, want %d", len(reply.Jobs), len(jobs))
	}
	res := &Result{Version: reply.Version}
	for _, rj := range reply.Jobs {
		var outs []Tensor
		for _, o := range rj.Outputs {
			data, err := os.ReadFile(o.File)
			if err != nil {
				return nil, fmt.Errorf("ortcheck: %w", err)
			}
			outs = append(outs, Tensor{Name: o.Name, Type: o.Type, Dims: o.Dims, Data: data})
		}
		res.Outputs = append(res.Outputs, outs)
	}
	return res, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
