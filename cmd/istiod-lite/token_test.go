package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestTokenKeygenAndCreateAreAcceptedByTheCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := runRoot(t, "token", "keygen", "--out", dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, jwtissuer.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v mode %v, want 0600", err, st.Mode().Perm())
	}
	out, err := runRoot(t, "token", "create", "--signing-key", filepath.Join(dir, jwtissuer.KeyFile),
		"--namespace", "demo", "--service-account", "client", "--ttl", "10m")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)

	a, err := authn.NewJWT(authn.JWTOptions{JWKSFile: filepath.Join(dir, jwtissuer.JWKSFile), Issuer: jwtissuer.DefaultIssuer,
		Audiences: []string{jwtissuer.DefaultAudience}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok)))
	if err != nil {
		t.Fatalf("CA rejected the minted token: %v", err)
	}
	if id.String() != "spiffe://cluster.local/ns/demo/sa/client" {
		t.Errorf("identity = %s", id)
	}

	tokenFile := filepath.Join(dir, "var/run/secrets/tokens/istio-token")
	if _, err := runRoot(t, "token", "create", "--signing-key", filepath.Join(dir, jwtissuer.KeyFile),
		"--namespace", "demo", "--service-account", "client", "--out", tokenFile); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(tokenFile); err != nil || len(b) == 0 {
		t.Errorf("--out token file: %v", err)
	}
}

func TestTokenUsageErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := runRoot(t, "token", "keygen", "--out", dir); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, jwtissuer.KeyFile)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "keygen"}, "--out is required"},
		{[]string{"token", "keygen", "--out", dir}, "already exists"},
		{[]string{"token", "keygen", "--out", t.TempDir(), "--alg", "HS256"}, `algorithm "HS256" is not supported`},
		{[]string{"token", "create", "--namespace", "a", "--service-account", "b"}, "--signing-key is required"},
		{[]string{"token", "create", "--signing-key", key, "--namespace", "a"}, "--namespace and --service-account are required"},
		{[]string{"token", "create", "--signing-key", key, "--namespace", "a", "--service-account", "b", "--ttl", "-1h"}, "must be positive"},
		{[]string{"token", "create", "--signing-key", filepath.Join(dir, jwtissuer.JWKSFile), "--namespace", "a", "--service-account", "b"}, "no PKCS#8 PRIVATE KEY"},
	} {
		_, err := runRoot(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
			continue
		}
		if code := cli.ExitCode(err); code != 2 {
			t.Errorf("%v: exit code %d, want 2", tc.args, code)
		}
	}
}
