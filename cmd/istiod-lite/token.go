package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

func init() { register(newTokenCmd) }

// newTokenCmd is development tooling beyond Istio: where no Kubernetes API
// server mints service account tokens (the demo, tests, VM bootstrap), it
// creates the signing key and JWKS the CA verifies against, and mints tokens.
func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Development tooling: create a token signing key and mint service account tokens for the CA",
		Long: "Development tooling beyond Istio. `keygen` writes a signing key and the jwks.json to give the CA as --jwksFile;\n" +
			"`create` mints a Kubernetes-style service account token that the CA accepts as \"authorization: Bearer <token>\".",
	}
	cmd.AddCommand(newTokenKeygenCmd(), newTokenCreateCmd())
	return cmd
}

func newTokenKeygenCmd() *cobra.Command {
	var out, alg string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write signing-key.pem (0600) and jwks.json into --out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return cli.WithExitCode(2, fmt.Errorf("--out is required: the directory to write %s and %s into", jwtissuer.KeyFile, jwtissuer.JWKSFile))
			}
			if _, err := os.Stat(filepath.Join(out, jwtissuer.KeyFile)); err == nil {
				return cli.WithExitCode(2, fmt.Errorf("%s already exists; refusing to replace a signing key whose tokens may be in use (remove it first)",
					filepath.Join(out, jwtissuer.KeyFile)))
			}
			iss, err := jwtissuer.Generate(alg)
			if err != nil {
				return cli.WithExitCode(2, err)
			}
			keyPath, jwksPath, err := iss.WriteDir(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key: %s\njwks:        %s (pass as --jwksFile)\nkey id:      %s\n", keyPath, jwksPath, iss.KeyID())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the signing key and jwks.json into (created if missing)")
	cmd.Flags().StringVar(&alg, "alg", "ES256", "signing algorithm: ES256 or RS256")
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var (
		keyFile, issuer, ns, sa, out string
		audiences                    []string
		ttl                          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Print a service account token (or write it to --out) signed with --signing-key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return cli.WithExitCode(2, fmt.Errorf("--signing-key is required: the %s written by `istiod-lite token keygen`", jwtissuer.KeyFile))
			}
			if ns == "" || sa == "" {
				return cli.WithExitCode(2, fmt.Errorf("--namespace and --service-account are required: the token's identity is system:serviceaccount:<namespace>:<service-account>"))
			}
			if ttl <= 0 {
				return cli.WithExitCode(2, fmt.Errorf("--ttl %s must be positive, e.g. 1h", ttl))
			}
			iss, err := jwtissuer.Load(keyFile)
			if err != nil {
				return cli.WithExitCode(2, err)
			}
			tok, err := iss.Mint(jwtissuer.Claims{Issuer: issuer, Audiences: audiences, Namespace: ns, ServiceAccount: sa, TTL: ttl})
			if err != nil {
				return cli.WithExitCode(2, err)
			}
			if out == "" {
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				return nil
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return fmt.Errorf("creating the directory of --out: %w", err)
			}
			if err := os.WriteFile(out, []byte(tok), 0o600); err != nil {
				return fmt.Errorf("writing --out: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "signing-key", "", "signing key written by `istiod-lite token keygen`")
	f.StringVar(&issuer, "issuer", jwtissuer.DefaultIssuer, "iss claim; must equal the CA's --jwtIssuer")
	f.StringSliceVar(&audiences, "audience", []string{jwtissuer.DefaultAudience}, "aud claim (repeatable); must include the CA's --jwtAudience")
	f.StringVar(&ns, "namespace", "", "namespace of the service account")
	f.StringVar(&sa, "service-account", "", "service account name")
	f.DurationVar(&ttl, "ttl", time.Hour, "token lifetime")
	f.StringVar(&out, "out", "", "write the token to this file (0600), e.g. ./var/run/secrets/tokens/istio-token, instead of printing it")
	return cmd
}
