package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/testmodels"
)

// TestInspectONNXWithConfig: an ONNX export beside a config.json is mapped
// onto the Llama family (convert/onnx/llama.go), so inspect reports the
// architecture and the canonical names of its anonymous initializers.
func TestInspectONNXWithConfig(t *testing.T) {
	dir := t.TempDir()
	for src, dst := range map[string]string{
		testmodels.Path(t, "stories260K-onnx", "model.onnx"): "model.onnx",
		testmodels.Path(t, "stories260K", "config.json"):     "config.json",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := smelt(t, "inspect", dir)
	if code != 0 {
		t.Fatalf("inspect %s: exit %d: %s", dir, code, errOut)
	}
	for _, want := range []string{"architecture:", "LlamaForCausalLM", "blk.0.attn_q.weight", "output.weight", "format:", "onnx"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	// Without config.json the heads cannot be known: bad input, one line.
	if err := os.Remove(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = smelt(t, "generate", dir, "--prompt", "x", "-n", "1")
	if code != 2 || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("generate without config.json: exit %d, stdout %q, stderr %q; want exit 2, no stdout, one line", code, out, errOut)
	}
}
