package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

// TestPluggedInCARecipe runs the openssl recipe of docs/deployment.md (its
// kubectl lines left out) and loads the result as istiod-lite's plugged-in
// CA, so that the documented Secret is one istiod-lite accepts.
func TestPluggedInCARecipe(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (make deps installs it)")
	}
	doc := filepath.Join(repoRoot, "docs", "deployment.md")
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	for _, block := range strings.Split(string(data), "```")[1:] {
		if strings.Contains(block, "openssl req -x509") {
			for _, line := range strings.Split(strings.TrimPrefix(block, "sh\n"), "\n") {
				if !strings.HasPrefix(strings.TrimSpace(line), "kubectl") && !strings.HasPrefix(line, "  --from-file") {
					script = append(script, line)
				}
			}
			break
		}
	}
	if len(script) == 0 {
		t.Fatalf("%s has no openssl recipe for the cacerts Secret", doc)
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(openssl)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the recipe fails: %v\n%s\n--- script ---\n%s", err, out, strings.Join(script, "\n"))
	}
	// The Secret holds exactly the four files of Istio's layout.
	caDir := t.TempDir()
	for _, f := range []string{ca.CACertFile, ca.CAKeyFile, ca.RootCertFile, ca.CertChainFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("the recipe does not produce %s: %v", f, err)
		}
		if err := os.WriteFile(filepath.Join(caDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := ca.New(ca.Options{Dir: caDir})
	if err != nil {
		t.Fatalf("istiod-lite refuses the documented plugged-in CA: %v", err)
	}
	if len(a.TrustBundle()) == 0 {
		t.Error("the plugged-in CA has an empty trust bundle")
	}
}
