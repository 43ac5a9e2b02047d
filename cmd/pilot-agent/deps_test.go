package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs in every pod: it must not link the control plane (xDS
// generation, the CA, registries) or the Kubernetes client and API types,
// which would multiply its size and memory for nothing it uses.
func TestAgentDoesNotLinkControlPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/meshlite/meshlite/istiod-lite",
		"k8s.io/client-go",
		"k8s.io/api/",
		"k8s.io/apimachinery",
		"istio.io/client-go",
		"google.golang.org/grpc/xds",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("pilot-agent links %s (forbidden prefix %s)", pkg, f)
			}
		}
	}
}
