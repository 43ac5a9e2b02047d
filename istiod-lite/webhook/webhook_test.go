package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/istiod-lite/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func review(t *testing.T, h http.Handler, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return reviewAt(t, h, "/", req)
}

func reviewAt(t *testing.T, h http.Handler, path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	req.UID = types.UID("uid-1")
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "uid-1" || out.Kind != "AdmissionReview" {
		t.Fatalf("response review = %+v; want the request UID echoed", out)
	}
	return out.Response
}

const badVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: demo}
spec:
  hosts: [greeter]
  http:
  - route:
    - destination: {host: greeter}
      weight: 300
`

func TestValidateSameMessagesAsCLI(t *testing.T) {
	raw, _ := yaml.YAMLToJSON([]byte(badVS))
	v := &Validator{}
	resp := review(t, v, &admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: "demo", Name: "bad",
		Kind:   metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
		Object: runtime.RawExtension{Raw: raw},
	})
	if resp.Allowed {
		t.Fatal("invalid VirtualService allowed")
	}
	// The CLI's message for the same document, minus its file position.
	_, errs := config.ParseFile("vs.yaml", []byte(badVS), config.Options{})
	if len(errs) == 0 {
		t.Fatal("config package accepted the bad VirtualService")
	}
	for _, e := range errs {
		cli := e.Error()
		want := cli[strings.Index(cli, "VirtualService"):]
		if !strings.Contains(resp.Result.Message, want) {
			t.Errorf("webhook message %q lacks the CLI's %q", resp.Result.Message, want)
		}
	}

	good := strings.Replace(badVS, "weight: 300", "weight: 100", 1)
	raw, _ = yaml.YAMLToJSON([]byte(good))
	vsKind := metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}
	if resp := review(t, v, &admissionv1.AdmissionRequest{Operation: admissionv1.Update, Namespace: "demo", Kind: vsKind, Object: runtime.RawExtension{Raw: raw}}); !resp.Allowed {
		t.Errorf("valid VirtualService refused: %v", resp.Result)
	}
	if resp := review(t, v, &admissionv1.AdmissionRequest{Operation: admissionv1.Delete, Namespace: "demo"}); !resp.Allowed {
		t.Error("delete refused")
	}
	// A kind istiod-lite does not serve is stored, with a warning.
	resp = review(t, v, &admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: "demo",
		Kind:   metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1alpha3", Kind: "EnvoyFilter"},
		Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"networking.istio.io/v1alpha3","kind":"EnvoyFilter","metadata":{"name":"x"},"spec":{}}`)},
	})
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "does not implement EnvoyFilter") {
		t.Errorf("EnvoyFilter: allowed %v, warnings %v; want stored with a warning", resp.Allowed, resp.Warnings)
	}
}

func TestValidateRejectsNonReviews(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Validator{}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"kind":"Pod"}`)))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("non-review body: HTTP %d, want 400", rec.Code)
	}
	rec = httptest.NewRecorder()
	(&Validator{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: HTTP %d, want 405", rec.Code)
	}
}

const appPod = `apiVersion: v1
kind: Pod
metadata:
  name: greeter-7d9f-abcde
  namespace: demo
  labels: {app: greeter, version: v1, pod-template-hash: 7d9f}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: greeter-7d9f, uid: u1, controller: true}
  annotations:
    traffic.sidecar.istio.io/excludeInboundPorts: "9000"
    traffic.sidecar.istio.io/excludeOutboundPorts: "5432,6379"
    traffic.sidecar.istio.io/excludeOutboundIPRanges: "169.254.169.254/32"
spec:
  serviceAccountName: greeter
  initContainers:
  - {name: migrate, image: app:1}
  containers:
  - name: app
    image: app:1
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /ready, port: http}
      timeoutSeconds: 2
    livenessProbe:
      tcpSocket: {port: 8080}
`

func TestInjectGolden(t *testing.T) {
	in, err := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test"})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*corev1.Pod){
		"sidecar": func(*corev1.Pod) {},
		"native":  func(p *corev1.Pod) { p.Annotations[AnnotationNativeSidecar] = "true" },
		"grpc-agent": func(p *corev1.Pod) {
			p.Annotations[AnnotationTemplates] = TemplateGRPCAgent
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			pod := mustPod(t, appPod)
			mutate(pod)
			out, err := in.Inject(pod)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := yaml.Marshal(out)
			golden(t, filepath.Join("testdata", "inject-"+name+".golden.yaml"), got)

			// The JSON patch sent to the API server yields the same pod.
			patch, err := in.Patch(pod)
			if err != nil {
				t.Fatal(err)
			}
			p, err := jsonpatchapply.DecodePatch(patch)
			if err != nil {
				t.Fatal(err)
			}
			orig, _ := json.Marshal(pod)
			applied, err := p.Apply(orig)
			if err != nil {
				t.Fatal(err)
			}
			var back corev1.Pod
			_ = json.Unmarshal(applied, &back)
			if b, _ := yaml.Marshal(&back); !bytes.Equal(b, got) {
				t.Errorf("applying the JSON patch gives a different pod:\n%s", b)
			}
		})
	}
}

func TestInjectDetails(t *testing.T) {
	in, _ := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test"})
	out, err := in.Inject(mustPod(t, appPod))
	if err != nil {
		t.Fatal(err)
	}
	init := out.Spec.InitContainers
	if len(init) != 2 || init[0].Name != InitContainer || init[1].Name != "migrate" {
		t.Fatalf("init containers = %v; want istio-init before the app's", names(init))
	}
	args := strings.Join(init[0].Args, " ")
	for _, want := range []string{"istio-iptables", "-d 15090,15021,15020,9000", "-o 5432,6379", "-x 169.254.169.254/32", "-u 1337"} {
		if !strings.Contains(args, want) {
			t.Errorf("istio-init args %q lack %q", args, want)
		}
	}
	proxy := out.Spec.Containers[len(out.Spec.Containers)-1]
	if proxy.Name != ProxyContainer || strings.Join(proxy.Args[:2], " ") != "proxy sidecar" {
		t.Fatalf("last container = %s %v", proxy.Name, proxy.Args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range proxy.Env {
		env[e.Name] = e
	}
	if e := env["POD_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME = %+v, want the downward API", e)
	}
	var probers map[string]prober
	if err := json.Unmarshal([]byte(env["ISTIO_KUBE_APP_PROBERS"].Value), &probers); err != nil {
		t.Fatalf("ISTIO_KUBE_APP_PROBERS: %v", err)
	}
	if p := probers["/app-health/app/readyz"]; p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != 8080 || p.HTTPGet.Path != "/ready" || p.TimeoutSeconds != 2 {
		t.Errorf("readyz prober = %+v; want the original probe with the named port resolved", p)
	}
	if p := probers["/app-health/app/livez"]; p.TCPSocket == nil {
		t.Errorf("livez prober = %+v, want the TCP probe", p)
	}
	app := out.Spec.Containers[0]
	if h := app.ReadinessProbe.HTTPGet; h == nil || h.Path != "/app-health/app/readyz" || h.Port.IntValue() != StatusPort {
		t.Errorf("app readiness probe = %+v; want /app-health/app/readyz on 15020", app.ReadinessProbe)
	}
	if env["SERVICE_ACCOUNT"].ValueFrom == nil || env["ISTIO_META_WORKLOAD_NAME"].Value != "greeter" {
		t.Errorf("SERVICE_ACCOUNT %+v, workload %q", env["SERVICE_ACCOUNT"], env["ISTIO_META_WORKLOAD_NAME"].Value)
	}
	var token *corev1.Volume
	for i := range out.Spec.Volumes {
		if out.Spec.Volumes[i].Name == "istio-token" {
			token = &out.Spec.Volumes[i]
		}
	}
	if token == nil || token.Projected.Sources[0].ServiceAccountToken.Audience != "istio-ca" {
		t.Errorf("istio-token volume = %+v; want a projected token for audience istio-ca", token)
	}
	if out.Labels["security.istio.io/tlsMode"] != "istio" || out.Annotations[AnnotationStatus] == "" {
		t.Errorf("labels %v annotations %v", out.Labels, out.Annotations)
	}
	// Injecting twice is a no-op.
	if again, _ := in.Inject(out); again != nil {
		t.Error("an injected pod was injected again")
	}
}

func TestInjectSkipsAndRefuses(t *testing.T) {
	in, _ := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test"})
	optOut := mustPod(t, appPod)
	optOut.Annotations[AnnotationInject] = "false"
	host := mustPod(t, appPod)
	host.Spec.HostNetwork = true
	for name, p := range map[string]*corev1.Pod{"opt-out": optOut, "hostNetwork": host} {
		if out, err := in.Inject(p); out != nil || err != nil {
			t.Errorf("%s: injected (err %v)", name, err)
		}
	}
	for ann, val := range map[string]string{
		AnnotationExcludeInbound:    "80,http",
		AnnotationExcludeOutboundIP: "10.0.0.0",
		AnnotationTemplates:         "gateway",
		AnnotationNativeSidecar:     "maybe",
	} {
		p := mustPod(t, appPod)
		p.Annotations[ann] = val
		if _, err := in.Inject(p); err == nil || !strings.Contains(err.Error(), ann) {
			t.Errorf("%s=%q: err = %v, want it refused naming the annotation", ann, val, err)
		}
	}
	if _, err := NewInjector(InjectorOptions{}); err == nil {
		t.Error("NewInjector accepted no proxy image")
	}
}

func TestInjectHandler(t *testing.T) {
	in, _ := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test"})
	raw, _ := yaml.YAMLToJSON([]byte(appPod))
	resp := reviewAt(t, Handler(nil, in), PathInject, &admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: "demo",
		Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Object: runtime.RawExtension{Raw: raw},
	})
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0 {
		t.Fatalf("response = %+v; want allowed with a JSON patch", resp)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func mustPod(t *testing.T, y string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := yaml.Unmarshal([]byte(y), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run go test -update to create it", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update and review the diff):\n%s", path, got)
	}
}

// holdApplicationUntilProxyStarts puts the proxy first with a postStart
// `pilot-agent wait`; a native sidecar needs neither (the kubelet orders it).
func TestInjectHoldsApplicationUntilProxyStarts(t *testing.T) {
	in, _ := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test"})
	pod := mustPod(t, appPod)
	pod.Annotations[AnnotationProxyConfig] = "holdApplicationUntilProxyStarts: true"
	out, err := in.Inject(pod)
	if err != nil {
		t.Fatal(err)
	}
	first := out.Spec.Containers[0]
	if first.Name != ProxyContainer {
		t.Fatalf("first container = %s, want %s", first.Name, ProxyContainer)
	}
	if first.Lifecycle == nil || first.Lifecycle.PostStart == nil || first.Lifecycle.PostStart.Exec == nil ||
		strings.Join(first.Lifecycle.PostStart.Exec.Command, " ") != "pilot-agent wait" {
		t.Fatalf("proxy lifecycle = %+v, want postStart exec pilot-agent wait", first.Lifecycle)
	}

	native, _ := NewInjector(InjectorOptions{ProxyImage: "meshlite/proxy:test", NativeSidecars: true, HoldApplicationUntilProxyStarts: true})
	out, err = native.Inject(mustPod(t, appPod))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
		if c.Name == ProxyContainer && c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
			t.Error("a native sidecar got a postStart hook; the kubelet already waits for its startupProbe")
		}
	}

	pod = mustPod(t, appPod)
	pod.Annotations[AnnotationProxyConfig] = "holdApplicationUntilProxyStarts: maybe"
	if _, err := in.Inject(pod); err == nil || !strings.Contains(err.Error(), "holdApplicationUntilProxyStarts") {
		t.Errorf("bad hold value: err = %v, want it named", err)
	}
}
