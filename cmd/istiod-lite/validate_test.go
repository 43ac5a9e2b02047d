package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlite/meshlite/cmd/internal/cli"
)

func runValidate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"validate"}, args...))
	if err := root.Execute(); err != nil {
		return out.String(), cli.ExitCode(err)
	}
	return out.String(), 0
}

func TestValidateExampleMesh(t *testing.T) {
	out, code := runValidate(t, "../../examples/mesh")
	if code != 0 {
		t.Fatalf("exit %d for the example mesh:\n%s", code, out)
	}
	if out != "8 object(s) in 6 file(s) are valid\n" {
		t.Errorf("output %q", out)
	}
}

func TestValidateReportsEveryErrorAndExits1(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "vs.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: 1 minute
    route:
    - destination: {host: reviews}
      weight: 50
`), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{name: http, port: 80}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runValidate(t, good, bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	want := bad + `:7: doc 0 VirtualService default/r: spec.http[0].timeout: invalid duration "1 minute"; use a number with a unit, such as 5s, 250ms or 1m30s
` + bad + `:8: doc 0 VirtualService default/r: spec.http[0].route: route weights sum to 50; they must sum to 100
2 error(s) in 1 of 2 file(s)
`
	if !strings.HasPrefix(out, want) {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestValidateMissingPathAndUsage(t *testing.T) {
	if out, code := runValidate(t, "/nonexistent/meshlite"); code != 1 || !strings.Contains(out, "/nonexistent/meshlite: cannot read") {
		t.Errorf("missing path: exit %d, output %q", code, out)
	}
	if _, code := runValidate(t); code != 1 {
		t.Errorf("no arguments: exit %d, want 1", code)
	}
}
