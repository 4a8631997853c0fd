package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdVerify) }

// VerifyOptions are the flags of `smelt verify`.
type VerifyOptions struct {
	Bundle string
	PubKey string // PKIX PEM or JWK file
}

// NewCmdVerify checks a signed bundle.
func NewCmdVerify(env *Env) *cobra.Command {
	opts := &VerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify BUNDLE --pubkey FILE",
		Short: "Check a bundle's signature, every file's hash, and that no file is missing or extra",
		Long: `verify checks that BUNDLE/manifest.sig holds a valid signature by the public
key (PEM or JWK, as written by smelt keygen) over the exact bytes of
BUNDLE/manifest.json, that the manifest is well formed, that every listed file
has its listed size and SHA-384, and that the directory holds nothing else
(except manifest.json and manifest.sig).

Exit codes: 0 the bundle verifies; 1 it does not (each failing file is named
on stderr); 2 bad input (no such bundle directory, unreadable key).`,
		Example: `  smelt verify out/ --pubkey keys/release.pub
  smelt verify out/ --pubkey keys/release.pub.jwk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Bundle = args[0]
			return runVerify(env, opts)
		},
	}
	cmd.Flags().StringVar(&opts.PubKey, "pubkey", "", "public key file, PEM or JWK (required)")
	return cmd
}

func runVerify(env *Env, opts *VerifyOptions) error {
	if opts.PubKey == "" {
		return errors.New("verify: --pubkey FILE is required")
	}
	b, err := os.ReadFile(opts.PubKey)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	pub, err := manifest.ParsePublicKey(b)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if st, err := os.Stat(opts.Bundle); err != nil || !st.IsDir() {
		return fmt.Errorf("verify: %s is not a bundle directory", opts.Bundle)
	}
	if err := manifest.Verify(opts.Bundle, pub); err != nil {
		return checkFailed(err)
	}
	m, _, err := manifest.ReadManifest(opts.Bundle)
	if err != nil {
		return checkFailed(err)
	}
	_, err = fmt.Fprintf(env.Stdout, "ok %s: %d files, signed by %s key %s\n", m.ID, len(m.Files), pub.Alg(), pub.KeyID())
	return err
}
