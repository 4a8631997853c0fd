// Package dawn runs WebGPU compute jobs on Dawn for Node (npm "webgpu")
// from Go: one long-lived node process serves JSON-lines jobs (WGSL source,
// entry point, buffers, dispatches) and returns the buffers read back.
//
// It backs the conformance tests of package wgsl (kernels on Dawn over Mesa
// lavapipe) and their Tint validation (Dawn's null backend compiles every
// shader module and creates its compute pipeline).
//
// The node script (runner.mjs, embedded) is written to a temporary file and
// imports the webgpu module by absolute path, from <Root>/node_modules/webgpu.
// Start sets XDG_RUNTIME_DIR (a private folder under the temp dir) and
// VK_ICD_FILENAMES (Mesa's lavapipe ICD, when present) for the child when
// they are unset.
package dawn

import (
	"bufio"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed runner.mjs
var runnerScript []byte

// LavapipeICD is the Vulkan ICD file of Mesa 25's lavapipe on Debian.
const LavapipeICD = "/usr/share/vulkan/icd.d/lvp_icd.json"

// Options configure Start.
type Options struct {
	// Root is a folder holding node_modules/webgpu (the smelt repository root).
	Root string
	// Node is the node executable; empty means "node" on PATH.
	Node string
}

// Runner is a running node process serving jobs. Its methods are safe for
// concurrent use; jobs run one at a time.
type Runner struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
	dir    string
	nextID int
	dead   error
}

// Start launches the node process. It fails (never skips) when node or the
// webgpu module is missing.
func Start(opts Options) (*Runner, error) {
	node := opts.Node
	if node == "" {
		node = "node"
	}
	nodePath, err := exec.LookPath(node)
	if err != nil {
		return nil, fmt.Errorf("dawn: node executable %q not found: %w", node, err)
	}
	mod := filepath.Join(opts.Root, "node_modules", "webgpu", "index.js")
	if _, err := os.Stat(mod); err != nil {
		return nil, fmt.Errorf("dawn: webgpu module not found at %s (run npm ci in the repository root): %w", mod, err)
	}
	dir, err := os.MkdirTemp("", "smelt-dawn-")
	if err != nil {
		return nil, fmt.Errorf("dawn: %w", err)
	}
	script := filepath.Join(dir, "runner.mjs")
	if err := os.WriteFile(script, runnerScript, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dawn: %w", err)
	}
	env := append(os.Environ(), "SMELT_WEBGPU_MODULE="+mod)
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		xdg := filepath.Join(dir, "xdg")
		if err := os.Mkdir(xdg, 0o700); err == nil {
			env = append(env, "XDG_RUNTIME_DIR="+xdg)
		}
	}
	if os.Getenv("VK_ICD_FILENAMES") == "" && os.Getenv("VK_DRIVER_FILES") == "" {
		if _, err := os.Stat(LavapipeICD); err == nil {
			env = append(env, "VK_ICD_FILENAMES="+LavapipeICD)
		}
	}
	cmd := exec.Command(nodePath, script)
	cmd.Env = env
	cmd.Dir = opts.Root
	stdin, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dawn: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dawn: %w", err)
	}
	tail := &tailBuffer{max: 8192}
	cmd.Stderr = tail
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dawn: start node: %w", err)
	}
	return &Runner{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(stdout, 1<<20), stderr: tail, dir: dir}, nil
}

// Close ends the node process and removes its temporary files.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stdin.Close()
	err := r.cmd.Wait()
	os.RemoveAll(r.dir)
	if r.dead == nil {
		r.dead = errors.New("dawn: runner closed")
	}
	return err
}

// call sends one job and decodes the reply into out.
func (r *Runner) call(job map[string]any, out any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead != nil {
		return r.dead
	}
	r.nextID++
	job["id"] = r.nextID
	line, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("dawn: encode job: %w", err)
	}
	line = append(line, '\n')
	if _, err := r.stdin.Write(line); err != nil {
		r.dead = fmt.Errorf("dawn: node process gone: %w (stderr: %s)", err, r.stderr.String())
		return r.dead
	}
	reply, err := r.out.ReadBytes('\n')
	if err != nil {
		r.dead = fmt.Errorf("dawn: node process gone: %w (stderr: %s)", err, r.stderr.String())
		return r.dead
	}
	var head struct {
		ID    int    `json:"id"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(reply, &head); err != nil {
		return fmt.Errorf("dawn: bad reply %.200q: %w", reply, err)
	}
	if head.ID != r.nextID {
		r.dead = fmt.Errorf("dawn: reply id %d, want %d", head.ID, r.nextID)
		return r.dead
	}
	if !head.OK {
		return fmt.Errorf("dawn: %s: %s", job["op"], head.Error)
	}
	if out != nil {
		if err := json.Unmarshal(reply, out); err != nil {
			return fmt.Errorf("dawn: decode reply: %w", err)
		}
	}
	return nil
}

// Info describes the device a "run" job uses.
type Info struct {
	Adapter       map[string]string `json:"adapter"`
	Features      []string          `json:"features"`
	Limits        map[string]int64  `json:"limits"`
	AdapterLimits map[string]int64  `json:"adapterLimits"`
}

// Info returns the adapter, features and limits of the default-limits
// Vulkan device.
func (r *Runner) Info() (*Info, error) {
	var in Info
	if err := r.call(map[string]any{"op": "info"}, &in); err != nil {
		return nil, err
	}
	return &in, nil
}

// Kernel is one WGSL compute shader module and its entry point.
type Kernel struct {
	Code  string `json:"code"`
	Entry string `json:"entry"`
}

// Validate compiles each kernel with Tint on Dawn's null backend and creates
// its compute pipeline (default WebGPU limits, shader-f16 and subgroups
// enabled), returning the error messages of each kernel (empty when valid).
func (r *Runner) Validate(ks []Kernel) ([][]string, error) {
	var out struct {
		Results []struct {
			Errors []string `json:"errors"`
		} `json:"results"`
	}
	if err := r.call(map[string]any{"op": "validate", "kernels": ks}, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(ks) {
		return nil, fmt.Errorf("dawn: validate: %d results for %d kernels", len(out.Results), len(ks))
	}
	res := make([][]string, len(ks))
	for i, x := range out.Results {
		res[i] = x.Errors
	}
	return res, nil
}

// Buffer is a GPU buffer of a job: Size bytes (rounded up to 4), initialized
// from Data (zeros beyond), bound as storage or, when Uniform, as uniform.
type Buffer struct {
	Size    int
	Data    []byte
	Uniform bool
}

// Dispatch runs kernel Kernel with binding i of group 0 bound to the whole
// of buffer Bindings[i].
type Dispatch struct {
	Kernel     int
	Bindings   []int
	Workgroups [3]int
}

// Job is a list of dispatches over shared buffers, run in order in one
// command buffer. Read lists the buffers to read back afterwards. With
// Repeat > 0 the dispatches run Repeat more times and Result.Ms is the mean
// wall time of one repetition. Limits "adapter" runs on a device created with
// the adapter's limits instead of WebGPU's defaults.
type Job struct {
	Kernels    []Kernel
	Buffers    []Buffer
	Dispatches []Dispatch
	Read       []int
	Repeat     int
	Limits     string
}

// Result holds the buffers read back, in Job.Read order.
type Result struct {
	Outputs [][]byte
	Ms      float64
}

// Run executes a job on the Vulkan device (lavapipe in CI).
func (r *Runner) Run(j *Job) (*Result, error) {
	bufs := make([]map[string]any, len(j.Buffers))
	for i, b := range j.Buffers {
		if len(b.Data) > b.Size {
			return nil, fmt.Errorf("dawn: buffer %d: %d data bytes exceed size %d", i, len(b.Data), b.Size)
		}
		m := map[string]any{"size": b.Size, "uniform": b.Uniform}
		if len(b.Data) > 0 {
			m["data"] = base64.StdEncoding.EncodeToString(b.Data)
		}
		bufs[i] = m
	}
	ds := make([]map[string]any, len(j.Dispatches))
	for i, d := range j.Dispatches {
		if d.Kernel < 0 || d.Kernel >= len(j.Kernels) {
			return nil, fmt.Errorf("dawn: dispatch %d: kernel %d out of range", i, d.Kernel)
		}
		for _, b := range d.Bindings {
			if b < 0 || b >= len(j.Buffers) {
				return nil, fmt.Errorf("dawn: dispatch %d: buffer %d out of range", i, b)
			}
		}
		ds[i] = map[string]any{"kernel": d.Kernel, "bindings": d.Bindings, "workgroups": d.Workgroups}
	}
	limits := j.Limits
	if limits == "" {
		limits = "default"
	}
	job := map[string]any{"op": "run", "kernels": j.Kernels, "buffers": bufs, "dispatches": ds,
		"read": j.Read, "repeat": j.Repeat, "limits": limits}
	var out struct {
		Outputs []string `json:"outputs"`
		Ms      float64  `json:"ms"`
	}
	if err := r.call(job, &out); err != nil {
		return nil, err
	}
	res := &Result{Ms: out.Ms}
	for i, s := range out.Outputs {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("dawn: output %d: %w", i, err)
		}
		if want := j.Buffers[j.Read[i]].Size; len(b) < want {
			return nil, fmt.Errorf("dawn: output %d: %d bytes, want %d", i, len(b), want)
		}
		res.Outputs = append(res.Outputs, b[:j.Buffers[j.Read[i]].Size])
	}
	return res, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
