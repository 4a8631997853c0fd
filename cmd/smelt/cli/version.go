package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is smelt's version, set at build time with
// -ldflags "-X github.com/smeltml/smelt/cmd/smelt/cli.Version=v0.1.0".
var Version = "v0.1.0-dev"

func init() { register(NewCmdVersion) }

// NewCmdVersion prints the smelt version.
func NewCmdVersion(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print smelt's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(env.Stdout, "smelt %s %s %s/%s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
