package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/internal/bundle"
	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdSign) }

// SigningKeyEnv names the environment variable that may hold the PEM
// contents of the signing key (for CI secrets).
const SigningKeyEnv = "SMELT_SIGNING_KEY"

// SignOptions are the flags of `smelt sign`.
type SignOptions struct {
	Bundle string
	Key    string // private key file; empty: $SMELT_SIGNING_KEY
}

// NewCmdSign signs a bundle's manifest.
func NewCmdSign(env *Env) *cobra.Command {
	opts := &SignOptions{}
	cmd := &cobra.Command{
		Use:   "sign BUNDLE [--key FILE]",
		Short: "Sign a bundle (writes BUNDLE/manifest.sig)",
		Long: `sign signs the exact bytes of BUNDLE/manifest.json with a private key made by
smelt keygen (PKCS#8 PEM, Ed25519 or ECDSA P-256) and writes the DSSE
envelope to BUNDLE/manifest.sig atomically. The key comes from --key FILE, or
from the environment variable SMELT_SIGNING_KEY holding the PEM text (for CI
secrets). Signing is deterministic: the same manifest and key give the same
manifest.sig. sign checks the manifest is well formed but not the files;
run smelt verify afterwards.`,
		Example: `  smelt sign out/ --key keys/release
  SMELT_SIGNING_KEY="$(cat keys/release)" smelt sign out/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Bundle = args[0]
			return runSign(env, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Key, "key", "", "private key file (default: $"+SigningKeyEnv+")")
	return cmd
}

// loadSigningKey reads the private key from file, or from $SMELT_SIGNING_KEY.
func loadSigningKey(file string) (*manifest.PrivateKey, error) {
	var pem []byte
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		pem = b
	case os.Getenv(SigningKeyEnv) != "":
		pem = []byte(os.Getenv(SigningKeyEnv))
	default:
		return nil, errors.New("no signing key: give --key FILE or set " + SigningKeyEnv)
	}
	return manifest.ParsePrivateKeyPEM(pem)
}

func runSign(env *Env, opts *SignOptions) error {
	key, err := loadSigningKey(opts.Key)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := bundle.Sign(opts.Bundle, key); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "signed %s with %s key %s\n", opts.Bundle, key.Alg(), key.Public().KeyID())
	return err
}
