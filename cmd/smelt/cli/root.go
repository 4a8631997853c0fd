// Package cli holds smelt's cobra commands: one file per subcommand, each
// with an Options struct, a NewCmdX constructor and a runX function.
//
// Exit codes (stable, documented in README.md):
//
//	0  success
//	1  the job ran and a check failed (validation gate, verify mismatch)
//	2  bad usage or bad input (unreadable or hostile files, unknown names)
//	3  internal error (a bug in smelt; please report it)
package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"
)

// Exit codes returned by Main.
const (
	ExitOK       = 0
	ExitCheck    = 1
	ExitBadInput = 2
	ExitInternal = 3
)

// Env is what every command gets: where to write, and nothing global.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
}

// commandConstructors is filled by init functions of the per-command files,
// so adding a subcommand never edits this file.
var commandConstructors []func(env *Env) *cobra.Command

// register adds a subcommand constructor; called from init in each command file.
func register(f func(env *Env) *cobra.Command) {
	commandConstructors = append(commandConstructors, f)
}

// CheckFailedError marks an error where the job ran and a check failed
// (exit code 1), as opposed to bad input (exit code 2).
type CheckFailedError struct{ Err error }

func (e *CheckFailedError) Error() string { return e.Err.Error() }
func (e *CheckFailedError) Unwrap() error { return e.Err }

// checkFailed wraps err so that Main exits with ExitCheck.
func checkFailed(err error) error { return &CheckFailedError{Err: err} }

// InternalError marks a bug in smelt rather than a problem with the input.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return "internal error: " + e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }

// silentExit carries an exit code for a command that already reported its
// outcome on stdout (for example a --json report of a failed gate).
type silentExit struct{ code int }

func (e *silentExit) Error() string { return fmt.Sprintf("exit %d", e.code) }

// NewRootCmd builds the smelt command tree.
func NewRootCmd(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "smelt",
		Short: "Compile ML models into signed, verified WebGPU bundles for the browser",
		Long: `smelt reads Hugging Face (safetensors, pytorch_model.bin) and ONNX models,
quantizes (RTN/GPTQ/AWQ, INT4/INT8) and prunes them, generates a WGSL compute
shader for every op plus a small JS runtime, and writes signed, sharded,
SRI-hashed bundles that a browser can fetch, verify and run offline.

Exit codes: 0 success, 1 a check failed (validation gate, verify), 2 bad usage
or bad input, 3 internal error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmds := make([]*cobra.Command, 0, len(commandConstructors))
	for _, f := range commandConstructors {
		cmds = append(cmds, f(env))
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	return root
}

// Main runs smelt with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) (code int) {
	env := &Env{Stdout: stdout, Stderr: stderr}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "smelt: internal error: %v\n", r)
			code = ExitInternal
		}
	}()
	root := NewRootCmd(env)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var silent *silentExit
	if errors.As(err, &silent) {
		return silent.code
	}
	fmt.Fprintf(stderr, "smelt: %v\n", err)
	var cf *CheckFailedError
	if errors.As(err, &cf) {
		return ExitCheck
	}
	var ie *InternalError
	if errors.As(err, &ie) {
		return ExitInternal
	}
	return ExitBadInput
}
