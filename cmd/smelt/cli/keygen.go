package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/smeltml/smelt/manifest"
)

func init() { register(NewCmdKeygen) }

// KeygenOptions are the flags of `smelt keygen`.
type KeygenOptions struct {
	Out   string // PREFIX: writes PREFIX, PREFIX.pub, PREFIX.pub.jwk
	Alg   string // ed25519 or p256
	Force bool   // overwrite existing files
}

// NewCmdKeygen generates a bundle signing key pair.
func NewCmdKeygen(env *Env) *cobra.Command {
	opts := &KeygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Generate a key pair for signing bundles",
		Long: `keygen writes a new signing key pair:

  PREFIX          the private key, PKCS#8 PEM, mode 0600
  PREFIX.pub      the public key, PKIX PEM (for smelt verify)
  PREFIX.pub.jwk  the public key as a JWK (for the browser runtime)

Ed25519 is the default; --alg p256 makes an ECDSA P-256 key, which older
browsers (before Chrome 137, Firefox 129, Safari 17) can verify too.
Existing files are not overwritten unless --force is given.`,
		Example: `  smelt keygen --out keys/release
  smelt keygen --out keys/release --alg p256`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeygen(env, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Out, "out", "", "path prefix of the key files (required)")
	f.StringVar(&opts.Alg, "alg", manifest.Ed25519, "key algorithm: ed25519 or p256")
	f.BoolVar(&opts.Force, "force", false, "overwrite existing key files")
	return cmd
}

func runKeygen(env *Env, opts *KeygenOptions) error {
	if opts.Out == "" {
		return errors.New("keygen: --out PREFIX is required")
	}
	key, err := manifest.GenerateKey(opts.Alg)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	priv, err := manifest.MarshalPrivateKeyPEM(key)
	if err != nil {
		return &InternalError{Err: err}
	}
	pub, err := manifest.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return &InternalError{Err: err}
	}
	jwk, err := manifest.MarshalPublicKeyJWK(key.Public())
	if err != nil {
		return &InternalError{Err: err}
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{opts.Out, priv, 0o600},
		{opts.Out + ".pub", pub, 0o644},
		{opts.Out + ".pub.jwk", append(jwk, '\n'), 0o644},
	}
	if !opts.Force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("keygen: %s exists (use --force to overwrite)", f.path)
			}
		}
	}
	for _, f := range files {
		if err := writeKeyFile(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	_, err = fmt.Fprintf(env.Stdout, "%s key %s\nwrote %s, %s.pub, %s.pub.jwk\n", opts.Alg, key.Public().KeyID(), opts.Out, opts.Out, opts.Out)
	return err
}

// writeKeyFile writes data with mode, through a temporary file renamed in
// place, so the private key is never readable by others even briefly.
func writeKeyFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
