package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/istiod-lite/webhook"
)

// demoAppDir holds the un-injected demo applications; loadManifests leaves
// it out, since only the injected copies are applied.
var demoAppDir = filepath.Join(k8sDir, "demo", "app")

// demoManifest is one shipped manifest made by running the injector over
// the pods of an application manifest.
type demoManifest struct {
	src, dst string // relative to deploy/kubernetes/demo
	native   bool   // InjectorOptions.NativeSidecars
	about    string // what the generated file is, for its header
}

var demoManifests = []demoManifest{
	{src: "app/httpbin.yaml", dst: "demo.yaml", about: `An example workload with a meshlite sidecar (istio-init + istio-proxy), as
# istiod-lite's injection webhook writes it. The native-sidecar variant is
# httpbin-native-sidecar.yaml.
#
# Mounts ConfigMap istio-ca-root-cert (key root-cert.pem), the mesh root that
# verifies istiod; istiod-lite publishes it into every mesh namespace.`},
	{src: "app/httpbin-native.yaml", dst: "httpbin-native-sidecar.yaml", native: true, about: `Native-sidecar variant of demo.yaml (Kubernetes 1.29+): the proxy is an init
# container with restartPolicy: Always. Apply after demo.yaml (it reuses its
# namespace, service account and the istio-ca-root-cert ConfigMap):
#   kubectl apply -f deploy/kubernetes/demo/httpbin-native-sidecar.yaml`},
}

// demoProxyImage is the image the manifests name; kustomize pins its tag.
const demoProxyImage = "meshlite/proxyv2"

func init() {
	// Another test file of the package may own -update; share it.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the generated files (demo manifests) from their sources")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// TestDemoManifestsAreInjected keeps the example manifests identical to what
// the injection webhook makes of the plain applications under demo/app, so
// that the templates and the manifests cannot drift; the other tests of this
// package then check the result against the binaries. -update rewrites them.
func TestDemoManifestsAreInjected(t *testing.T) {
	for _, m := range demoManifests {
		t.Run(m.dst, func(t *testing.T) {
			dir := filepath.Join(k8sDir, "demo")
			got := injectManifest(t, filepath.Join(dir, m.src), m)
			dst := filepath.Join(dir, m.dst)
			if updating() {
				if err := os.WriteFile(dst, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(dst)
			if err != nil {
				t.Fatalf("%v; run go test ./deploy/ -run TestDemoManifestsAreInjected -update", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is not what the injector makes of %s now (-file +injector):\n%s\nRun go test ./deploy/ -run TestDemoManifestsAreInjected -update and review the diff.",
					dst, m.src, cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n")))
			}
		})
	}
}

// injectManifest returns src with each Deployment's pod template injected
// and every other document copied as written.
func injectManifest(t *testing.T, src string, m demoManifest) []byte {
	t.Helper()
	in, err := webhook.NewInjector(webhook.InjectorOptions{ProxyImage: demoProxyImage, NativeSidecars: m.native})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	fmt.Fprintf(&out, "# GENERATED from %s by the injector (istiod-lite/webhook/templates); do not edit.\n", m.src)
	fmt.Fprintf(&out, "# Change %s or the templates, then run\n", m.src)
	fmt.Fprintf(&out, "#   go test ./deploy/ -run TestDemoManifestsAreInjected -update\n#\n# %s\n", m.about)
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", src, i, err)
		}
		if isBlankYAML(raw) {
			continue
		}
		if i > 1 {
			out.WriteString("---\n")
		}
		obj, _, err := strictDecoder.Decode(raw, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d does not decode strictly: %v", src, i, err)
		}
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			out.Write(dropLeadingComments(raw))
			continue
		}
		out.Write(injectDeployment(t, in, d, fmt.Sprintf("%s (document %d)", src, i)))
	}
	return out.Bytes()
}

// injectDeployment injects d's pod template as the webhook would inject one
// of its pods, and returns d as YAML with the injected template.
func injectDeployment(t *testing.T, in *webhook.Injector, d *appsv1.Deployment, where string) []byte {
	t.Helper()
	tmpl := d.Spec.Template
	if _, done := tmpl.Annotations[webhook.AnnotationStatus]; done {
		t.Fatalf("%s: Deployment %s is already injected; the sources under demo/app are plain applications", where, d.Name)
	}
	if len(tmpl.Spec.InitContainers) > 0 || containerNamed(tmpl.Spec.Containers, proxyContainer) != nil {
		t.Fatalf("%s: Deployment %s has init or %s containers; the sources under demo/app are plain applications", where, d.Name, proxyContainer)
	}
	// The pod as the webhook sees it, owned by its Deployment so that the
	// workload name and ISTIO_META_OWNER name the Deployment. (A real pod's
	// owner is a ReplicaSet with a pod-template-hash label, which a template
	// must not carry.)
	pod := &corev1.Pod{
		ObjectMeta: *tmpl.ObjectMeta.DeepCopy(),
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	pod.Namespace = d.Namespace
	controller := true
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, Controller: &controller}}
	injected, err := in.Inject(pod)
	if err != nil {
		t.Fatalf("%s: the injector refuses Deployment %s's pod: %v", where, d.Name, err)
	}
	if injected == nil {
		t.Fatalf("%s: the injector skips Deployment %s's pod (sidecar.istio.io/inject: false or hostNetwork?)", where, d.Name)
	}
	out := d.DeepCopy()
	out.APIVersion, out.Kind = "apps/v1", "Deployment"
	out.Spec.Template.Labels = injected.Labels
	out.Spec.Template.Annotations = injected.Annotations
	out.Spec.Template.Spec = injected.Spec

	// Drop the fields an unset Go struct marshals to, as kubectl would not
	// write them either; everything else is the injector's output.
	js, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "status")
	deleteNull(doc, "metadata", "creationTimestamp")
	deleteNull(doc, "spec", "template", "metadata", "creationTimestamp")
	if s, ok := doc["spec"].(map[string]any); ok {
		if st, ok := s["strategy"].(map[string]any); ok && len(st) == 0 {
			delete(s, "strategy")
		}
	}
	y, err := sigsyaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// deleteNull removes the key at path when its value is null.
func deleteNull(doc map[string]any, path ...string) {
	m := doc
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	last := path[len(path)-1]
	if v, ok := m[last]; ok && v == nil {
		delete(m, last)
	}
}

// dropLeadingComments removes a document's leading comment lines: the
// source's header, which describes the source rather than the output.
func dropLeadingComments(raw []byte) []byte {
	lines := strings.SplitAfter(string(raw), "\n")
	for len(lines) > 0 && (strings.HasPrefix(strings.TrimSpace(lines[0]), "#") || strings.TrimSpace(lines[0]) == "") {
		lines = lines[1:]
	}
	return []byte(strings.Join(lines, ""))
}
