package main

import (
	"os/exec"
	"strings"
	"testing"
)

// istiod-lite talks to Kubernetes through istiod-lite/kubeclient, which
// registers only the API groups it uses. client-go's all-groups clientset,
// scheme and informer factory, and Istio's generated clientset, doubled the
// binary and cost about 11 MiB of resident memory in file-registry mode,
// where none of it runs (docs/performance.md). Tests may still use them.
func TestIstiodDoesNotLinkAllGroupClients(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
		"k8s.io/client-go/discovery",
		"k8s.io/api/apps/",
		"istio.io/client-go/pkg/clientset",
		"istio.io/client-go/pkg/informers",
		"google.golang.org/grpc/xds",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("istiod-lite links %s (forbidden prefix %s); use istiod-lite/kubeclient", pkg, f)
			}
		}
	}
}
