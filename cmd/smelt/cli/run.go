package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/codegen"
	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdRun) }

// RunOptions are the flags of `smelt run`.
type RunOptions struct {
	Bundle      string
	Prompt      string
	N           int
	JSON        bool
	Temperature float64
	TopK        int
	TopP        float64
	Seed        int64
	PubKey      string
	Node        string
	NodeModules string
	IgnoreEOS   bool
}

// NewCmdRun runs a bundle through its JS runtime on WebGPU in Node (Dawn).
func NewCmdRun(env *Env) *cobra.Command {
	opts := &RunOptions{}
	cmd := &cobra.Command{
		Use:   "run BUNDLE",
		Short: "Run a bundle's JS runtime on WebGPU in Node (Dawn), as a browser would",
		Long: `run generates text with a bundle exactly as the browser would: it starts
node with Dawn for Node (npm package "webgpu"), loads the bundle's own
runtime/smelt.js, which fetches and checks every file, compiles the kernels
and runs the dispatch program on the GPU (sampling on the GPU too).

Needs node (18+) on PATH, or --node, and the webgpu package:
  npm install webgpu@0.6.2
in this directory or a parent, or in the folder given by --node-modules or
$SMELT_NODE_MODULES (the folder that holds webgpu/). On a machine without a
GPU, Mesa's lavapipe Vulkan driver works (VK_ICD_FILENAMES is set to it when
unset and present).

Sampling runs on the GPU: greedy by default; --temperature > 0 samples
among the --top-k best logits (0: the bundle's maximum, --sample-max-k of
smelt codegen, 64 by default) after --top-p, with a uniform draw per token
from a mulberry32 generator seeded with the low 32 bits of --seed (not the
generator of smelt generate, so sampled tokens differ between the two; greedy
tokens agree).

With --pubkey, the bundle is verified (signature, every file) before node
starts, and the runtime verifies the signature again as a browser would.

The output has the shape of smelt generate's: the prompt followed by the
generated text, then a line of timings on stderr; --json prints one JSON
object instead. Exit status 1 when the runtime refuses the bundle or fails.`,
		Example: `  smelt run out/stories --prompt "Once upon a time" -n 32
  smelt run out/stories --prompt "Lily" --temperature 0.8 --top-k 40 --seed 1 --json
  smelt run signed-bundle --pubkey key.pub --prompt "Hi"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Bundle = args[0]
			return runRun(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Prompt, "prompt", "", "prompt text")
	f.IntVarP(&opts.N, "n", "n", 32, "number of tokens to generate")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON object")
	f.Float64Var(&opts.Temperature, "temperature", 0, "sampling temperature (0: greedy)")
	f.IntVar(&opts.TopK, "top-k", 0, "sample among the k most likely tokens (0: the bundle's maximum)")
	f.Float64Var(&opts.TopP, "top-p", 1, "nucleus sampling mass")
	f.Int64Var(&opts.Seed, "seed", 0, "sampling seed")
	f.StringVar(&opts.PubKey, "pubkey", "", "public key file (PEM or JWK): the runtime verifies manifest.sig with it")
	f.StringVar(&opts.Node, "node", "node", "node executable")
	f.StringVar(&opts.NodeModules, "node-modules", "", "folder holding webgpu/ (default: $SMELT_NODE_MODULES, else node_modules in this or a parent directory)")
	f.BoolVar(&opts.IgnoreEOS, "ignore-eos", false, "keep generating after an end-of-sequence token")
	return cmd
}

// NodeJob is one job of the Node launcher (codegen/runtime/run.mjs).
type NodeJob struct {
	Prompt      *string `json:"prompt,omitempty"`
	IDs         []int   `json:"ids,omitempty"`
	MaxTokens   int     `json:"max_tokens"`
	Temperature float64 `json:"temperature"`
	TopK        int     `json:"top_k"`
	TopP        float64 `json:"top_p"`
	Seed        int64   `json:"seed"`
	IgnoreEOS   bool    `json:"ignore_eos"`
	Logits      bool    `json:"logits,omitempty"`
	Trace       bool    `json:"trace,omitempty"` // a "step" event per token: logits and uniform draw
}

// NodeEvent is one line the launcher prints.
type NodeEvent struct {
	Event     string   `json:"event"`
	Job       int      `json:"job"`
	ID        int      `json:"id"`
	Text      string   `json:"text"`
	PromptIDs []int    `json:"prompt_ids"`
	IDs       []int    `json:"ids"`
	PrefillMs float64  `json:"prefill_ms"`
	DecodeMs  float64  `json:"decode_ms"`
	Ms        float64  `json:"ms"`
	Data      string   `json:"data"`
	Rand      *float64 `json:"rand"`
	Message   string   `json:"message"`
}

// findWebGPU returns the path of webgpu/index.js.
func findWebGPU(dir string) (string, error) {
	var cands []string
	if dir == "" {
		dir = os.Getenv("SMELT_NODE_MODULES")
	}
	if dir != "" {
		cands = append(cands, filepath.Join(dir, "webgpu", "index.js"))
	} else {
		starts := []string{}
		if wd, err := os.Getwd(); err == nil {
			starts = append(starts, wd)
		}
		if exe, err := os.Executable(); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
		for _, s := range starts {
			for d := s; ; d = filepath.Dir(d) {
				cands = append(cands, filepath.Join(d, "node_modules", "webgpu", "index.js"))
				if filepath.Dir(d) == d {
					break
				}
			}
		}
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("run: the webgpu package (Dawn for Node) was not found; install it with `npm install webgpu@0.6.2` here or in a parent directory, or point --node-modules / $SMELT_NODE_MODULES at the folder holding webgpu/")
}

// RunNode runs the launcher on bundle with jobs and calls onEvent for every
// line it prints. It returns the launcher's error event as an error.
func RunNode(node, nodeModules, bundleDir string, pubkeyJWK json.RawMessage, jobs []NodeJob, onEvent func(NodeEvent) error) error {
	mod, err := findWebGPU(nodeModules)
	if err != nil {
		return err
	}
	nodePath, err := exec.LookPath(node)
	if err != nil {
		return fmt.Errorf("run: node executable %q not found (install Node.js 18 or newer): %w", node, err)
	}
	abs, err := filepath.Abs(bundleDir)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if _, err := os.Stat(filepath.Join(abs, manifest.ManifestFile)); err != nil {
		return fmt.Errorf("run: %s is not a bundle: %w", bundleDir, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "runtime", "smelt.js")); err != nil {
		return fmt.Errorf("run: %s has no runtime/smelt.js (run smelt codegen on it first)", bundleDir)
	}
	script, err := codegen.RuntimeFile("run.mjs")
	if err != nil {
		return &InternalError{Err: err}
	}
	tmp, err := os.MkdirTemp("", "smelt-run-")
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer os.RemoveAll(tmp)
	launcher := filepath.Join(tmp, "run.mjs")
	if err := os.WriteFile(launcher, script, 0o600); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	req, err := json.Marshal(map[string]any{"bundle": abs, "pubkey_jwk": pubkeyJWK, "jobs": jobs})
	if err != nil {
		return &InternalError{Err: err}
	}
	cmd := exec.Command(nodePath, launcher, string(req))
	cmd.Env = append(os.Environ(), "SMELT_WEBGPU_MODULE="+mod)
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		xdg := filepath.Join(tmp, "xdg")
		if err := os.Mkdir(xdg, 0o700); err == nil {
			cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+xdg)
		}
	}
	if os.Getenv("VK_ICD_FILENAMES") == "" && os.Getenv("VK_DRIVER_FILES") == "" {
		const lvp = "/usr/share/vulkan/icd.d/lvp_icd.json"
		if _, err := os.Stat(lvp); err == nil {
			cmd.Env = append(cmd.Env, "VK_ICD_FILENAMES="+lvp)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run: start node: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	var evErr, cbErr error
	for sc.Scan() {
		var ev NodeEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a stray line from Dawn or a driver
		}
		if ev.Event == "error" {
			evErr = errors.New("run: " + strings.TrimPrefix(ev.Message, "smelt: "))
			continue
		}
		if cbErr == nil {
			cbErr = onEvent(ev)
		}
	}
	werr := cmd.Wait()
	switch {
	case evErr != nil:
		return evErr
	case cbErr != nil:
		return cbErr
	case werr != nil:
		return fmt.Errorf("run: node failed: %v: %s", werr, tail(stderr.String(), 2000))
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func runRun(env *Env, opts *RunOptions) error {
	var jwk json.RawMessage
	if opts.PubKey != "" {
		b, err := os.ReadFile(opts.PubKey)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		pub, err := manifest.ParsePublicKey(b)
		if err != nil {
			return fmt.Errorf("run: %s: %w", opts.PubKey, err)
		}
		if jwk, err = manifest.MarshalPublicKeyJWK(pub); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		// Node imports the bundle's runtime from disk, with no import map
		// to pin it: check the signature and every file here first (the
		// runtime then checks the signature and its files again).
		if err := manifest.Verify(opts.Bundle, pub); err != nil {
			return checkFailed(fmt.Errorf("run: refusing to run %s: %w", opts.Bundle, err))
		}
	}
	if opts.N < 0 {
		return fmt.Errorf("run: -n %d, want >= 0", opts.N)
	}
	prompt := opts.Prompt
	job := NodeJob{Prompt: &prompt, MaxTokens: opts.N, Temperature: opts.Temperature, TopK: opts.TopK,
		TopP: opts.TopP, Seed: opts.Seed, IgnoreEOS: opts.IgnoreEOS}
	if !opts.JSON {
		fmt.Fprint(env.Stdout, prompt)
	}
	var done *NodeEvent
	var loadMs float64
	err := RunNode(opts.Node, opts.NodeModules, opts.Bundle, jwk, []NodeJob{job}, func(ev NodeEvent) error {
		switch ev.Event {
		case "loaded":
			loadMs = ev.Ms
		case "token":
			if !opts.JSON {
				fmt.Fprint(env.Stdout, ev.Text)
			}
		case "done":
			e := ev
			done = &e
		}
		return nil
	})
	if err != nil {
		if !opts.JSON {
			fmt.Fprintln(env.Stdout)
		}
		var ie *InternalError
		if errors.As(err, &ie) {
			return err
		}
		return checkFailed(err)
	}
	if done == nil {
		return &InternalError{Err: errors.New("run: the runtime finished without a result")}
	}
	tps := func(n int, ms float64) float64 {
		if ms <= 0 {
			return 0
		}
		return float64(n) / (ms / 1000)
	}
	if opts.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"prompt": prompt, "prompt_ids": done.PromptIDs, "ids": done.IDs, "text": done.Text,
			"load_ms": loadMs, "prefill_ms": done.PrefillMs, "decode_ms": done.DecodeMs,
			"prefill_tokens_per_s": tps(len(done.PromptIDs), done.PrefillMs),
			"decode_tokens_per_s":  tps(max(len(done.IDs)-1, 0), done.DecodeMs),
		})
	}
	fmt.Fprintln(env.Stdout)
	fmt.Fprintf(env.Stderr, "smelt run: %d prompt tokens, %d generated; load %.0f ms, prefill %.1f tokens/s, decode %.1f tokens/s (WebGPU)\n",
		len(done.PromptIDs), len(done.IDs), loadMs, tps(len(done.PromptIDs), done.PrefillMs), tps(max(len(done.IDs)-1, 0), done.DecodeMs))
	return nil
}
