package cli

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smeltml/smelt/internal/testmodels"
	"github.com/smeltml/smelt/internal/textdata"
)

// TestValidateGates validates a real int4-g32 RTN bundle of stories260K
// against the float model: loose gates pass (exit 0), a strict one fails
// (exit 1) with the report still printed; --json agrees with the table and
// with smelt eval's perplexities.
func TestValidateGates(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	q := filepath.Join(t.TempDir(), "q4")
	if code, _, stderr := smelt(t, "quantize", model, q, "--scheme", "int4-g32-asym", "--algo", "rtn", "--no-progress"); code != 0 {
		t.Fatalf("quantize: exit %d: %s", code, stderr)
	}
	base := []string{"validate", "--reference", model, "--candidate", q, "--text", text, "--max-tokens", "1537", "--no-progress"}

	code, stdout, stderr := smelt(t, append(base, "--json", "--max-ppl-increase", "50%", "--max-kl", "1", "--min-top1", "0.5")...)
	if code != ExitOK {
		t.Fatalf("loose gates: exit %d: %s", code, stderr)
	}
	var rep ValidateReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json does not parse: %v\n%s", err, stdout)
	}
	ws, err := textdata.Windows(make([]int, 1537), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pass || len(rep.Failures) != 0 || rep.Tokens != 1533 || rep.Windows != len(ws) || rep.Context != 512 || *rep.Gates.MaxPPLIncrease != 0.5 {
		t.Errorf("report %+v", rep)
	}
	if !(rep.PPLIncrease > 0.005 && rep.PPLIncrease < 0.5 && rep.MeanKL > 0 && rep.P99KL >= rep.MeanKL && rep.Top1Agreement > 0.5 && rep.Top1Agreement < 1 && rep.MaxAbsDeltaLogit > 0) {
		t.Errorf("implausible comparison of int4 with float: %+v", rep.Report)
	}
	// Perplexities are smelt eval's.
	ea := evalJSON(t, model, "--text", text, "--max-tokens", "1537")
	eb := evalJSON(t, q, "--text", text, "--max-tokens", "1537")
	if math.Abs(ea.PPL/rep.PPLReference-1) > 1e-9 || math.Abs(eb.PPL/rep.PPLCandidate-1) > 1e-9 || ea.Scored != rep.Tokens {
		t.Errorf("validate ppl %.6f / %.6f over %d, eval %.6f / %.6f over %d", rep.PPLReference, rep.PPLCandidate, rep.Tokens, ea.PPL, eb.PPL, ea.Scored)
	}

	code, stdout, stderr = smelt(t, append(base, "--max-ppl-increase", "0.1%", "--max-kl", "off", "--min-top1", "off")...)
	if code != ExitCheck {
		t.Fatalf("strict gate: exit %d, want 1: %s", code, stderr)
	}
	for _, want := range []string{"perplexity increase", "<= 0.1%  FAIL", "top-1 agreement", "result", "FAIL (1 of the gates)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "exceeds the 0.100% gate") {
		t.Errorf("stderr: %s", stderr)
	}

	// The model against itself passes the strictest gates.
	code, stdout, stderr = smelt(t, "validate", "--reference", model, "--candidate", model, "--text", text, "--max-tokens", "600",
		"--max-ppl-increase", "0%", "--max-kl", "0", "--min-top1", "1", "--no-progress")
	if code != ExitOK || !strings.Contains(stdout, "+0.000%") {
		t.Errorf("self: exit %d: %s%s", code, stdout, stderr)
	}
}

func TestValidateHoldout(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	code, stdout, stderr := smelt(t, "validate", "--reference", model, "--candidate", model, "--text", text, "--holdout", "0.004", "--json", "--no-progress")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep ValidateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	// floor(193800 * 0.004) = 775 ids in windows [0, 512) and [512, 775):
	// 511 + 262 targets (the first id of the second window is context only).
	if rep.Tokens != 773 || rep.Windows != 2 || rep.Holdout != 0.004 {
		t.Errorf("held-out tail: %d tokens in %d windows, holdout %v", rep.Tokens, rep.Windows, rep.Holdout)
	}
}

func TestValidateErrors(t *testing.T) {
	model := testmodels.Path(t, "stories260K")
	text := testmodels.Path(t, "data", "tinystories_calib.txt")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reference", model, "--candidate", model}, "--text are required"},
		{[]string{"--reference", model, "--candidate", model, "--text", text, "--max-ppl-increase", "two"}, "--max-ppl-increase"},
		{[]string{"--reference", model, "--candidate", model, "--text", text, "--max-kl", "-1"}, "--max-kl"},
		{[]string{"--reference", model, "--candidate", filepath.Join(t.TempDir(), "none"), "--text", text}, "no such file"},
		{[]string{"--reference", model, "--candidate", model, "--text", filepath.Join(t.TempDir(), "none.txt")}, "no such file"},
		{[]string{"--reference", model, "--candidate", testmodels.Path(t, "ref29m"), "--text", text, "--max-tokens", "10"}, "vocabulary of 512, the candidate 4096"},
		{[]string{"--reference", model, "--candidate", model, "--text", text, "--ctx", "1"}, "ctx >= 2"},
	} {
		code, _, stderr := smelt(t, append([]string{"validate", "--no-progress"}, tc.args...)...)
		if code != ExitBadInput || !strings.Contains(stderr, tc.want) {
			t.Errorf("validate %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
