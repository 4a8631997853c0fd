package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/internal/testmodels"
)

// refGreedyRun is one greedy continuation in refs/<model>/prompts.json.
type refGreedyRun struct {
	PromptIndex int    `json:"prompt_index"`
	NewTokens   []int  `json:"new_tokens"`
	FullText    string `json:"full_text"`
}

func readRefPrompts(t *testing.T, model string) (texts []string, greedy []refGreedyRun) {
	t.Helper()
	b, err := os.ReadFile(testmodels.Path(t, "refs", model, "prompts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rp struct {
		Prompts []struct {
			Text string `json:"text"`
		} `json:"prompts"`
		Greedy    refGreedyRun   `json:"greedy"`
		GreedyAll []refGreedyRun `json:"greedy_all_prompts"`
	}
	if err := json.Unmarshal(b, &rp); err != nil {
		t.Fatal(err)
	}
	for _, p := range rp.Prompts {
		texts = append(texts, p.Text)
	}
	greedy = rp.GreedyAll
	if len(greedy) == 0 {
		greedy = []refGreedyRun{rp.Greedy}
	}
	return texts, greedy
}

// TestGenerateGreedyRefs checks smelt generate's greedy ids and text
// against the torch references, in both output shapes.
func TestGenerateGreedyRefs(t *testing.T) {
	for _, model := range []string{"stories260K", "ref29m"} {
		t.Run(model, func(t *testing.T) {
			texts, runs := readRefPrompts(t, model)
			g := runs[0]
			prompt := texts[g.PromptIndex]
			dir := testmodels.Path(t, model)
			code, out, errOut := smelt(t, "generate", dir, "--prompt", prompt, "-n", "32", "--ignore-eos", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var rep GenerateReport
			dec := json.NewDecoder(strings.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rep); err != nil {
				t.Fatalf("--json output does not parse: %v\n%s", err, out)
			}
			if diff := cmp.Diff(g.NewTokens, rep.IDs); diff != "" {
				t.Errorf("greedy ids (-torch +smelt):\n%s", diff)
			}
			if got := rep.Prompt + rep.Text; got != g.FullText {
				t.Errorf("prompt + text = %q, torch full text %q", got, g.FullText)
			}
			code, out, errOut = smelt(t, "generate", dir, "--prompt", prompt, "-n", "32", "--ignore-eos")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if out != g.FullText+"\n" {
				t.Errorf("stdout = %q, want the torch full text %q and a newline", out, g.FullText)
			}
			if !strings.HasPrefix(errOut, "smelt generate: ") || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr = %q, want one timing line", errOut)
			}
		})
	}
}

// TestGenerateSampling checks that sampling is reproducible by seed and
// that top-k 1 is greedy.
func TestGenerateSampling(t *testing.T) {
	dir := testmodels.Path(t, "stories260K")
	ids := func(args ...string) []int {
		t.Helper()
		code, out, errOut := smelt(t, append([]string{"generate", dir, "--prompt", "Tom wanted to play", "-n", "24", "--ignore-eos", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("generate %v: exit %d: %s", args, code, errOut)
		}
		var rep GenerateReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.IDs
	}
	a := ids("--temperature", "1.2", "--top-p", "0.95", "--seed", "7")
	b := ids("--temperature", "1.2", "--top-p", "0.95", "--seed", "7")
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different tokens (-first +second):\n%s", diff)
	}
	greedy := ids()
	if diff := cmp.Diff(greedy, ids("--temperature", "2", "--top-k", "1", "--seed", "3")); diff != "" {
		t.Errorf("top-k 1 differs from greedy (-greedy +top-k 1):\n%s", diff)
	}
	// Over 8 seeds, a temperature of 1.2 must leave the greedy path at least once.
	differs := false
	for seed := range 8 {
		if fmt.Sprint(ids("--temperature", "1.2", "--seed", fmt.Sprint(seed))) != fmt.Sprint(greedy) {
			differs = true
			break
		}
	}
	if !differs {
		t.Errorf("temperature 1.2 reproduced the greedy tokens for 8 seeds")
	}
}

func TestGenerateErrors(t *testing.T) {
	dir := testmodels.Path(t, "stories260K")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"generate", dir, "--prompt", "a", "-n", "-1"}, "-n -1"},
		{[]string{"generate", dir, "--prompt", "a", "--top-p", "2"}, "top-p"},
		{[]string{"generate", dir, "--prompt", "a", "--temperature", "-1"}, "temperature"},
		{[]string{"generate", dir, "--prompt", "a", "-n", "1000"}, "exceed the model's context of 512"},
		{[]string{"generate", dir + "-missing", "--prompt", "a"}, "no such file"},
	} {
		code, out, errOut := smelt(t, tc.args...)
		if code != ExitBadInput || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("smelt %v: exit %d, stdout %q, stderr %q; want exit 2, no stdout, an error containing %q", tc.args[2:], code, out, errOut, tc.want)
		}
	}
}
