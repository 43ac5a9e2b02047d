package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	agentconfig "github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/agent/status"
	"github.com/meshlite/meshlite/bootstrap"
	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
	istiodconfig "github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/debug"
	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/istiod-lite/xds"
)

const k8sDir = "kubernetes"

// Names the manifests share with each other and with the docs.
const (
	istiodNamespace  = "istio-system"
	istiodDeployment = "istiod-lite"
	istiodService    = "istiod"
	meshConfigMap    = "istio"              // Istio's mesh ConfigMap, key "mesh"
	rootCertMap      = "istio-ca-root-cert" // Istio's per-namespace root ConfigMap
	cacertsSecret    = "cacerts"
	proxyContainer   = "istio-proxy"
	initContainer    = "istio-init"
)

// manifest is one decoded document.
type manifest struct {
	file string
	doc  int
	obj  runtime.Object
}

func (m manifest) where() string { return fmt.Sprintf("%s (document %d)", m.file, m.doc) }

// strictDecoder refuses unknown and duplicate fields, as `kubectl apply
// --validate=strict` does, with the client-go scheme's types.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// loadManifests decodes every document of every YAML file under
// deploy/kubernetes strictly; kustomization files are checked on their own.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	err := filepath.WalkDir(k8sDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p == demoAppDir {
			return filepath.SkipDir // the un-injected sources of the demo manifests
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || d.Name() == "kustomization.yaml" {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		r := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for i := 1; ; i++ {
			raw, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: document %d: %w", p, i, err)
			}
			if isBlankYAML(raw) {
				continue
			}
			if crd, ok := customResourceDefinition(raw); ok {
				// CRDs are not in the client-go scheme, and their typed
				// package (k8s.io/apiextensions-apiserver) is not a module
				// dependency; check their identity only.
				if crd.Metadata.Name == "" || crd.Spec.Group == "" || crd.Spec.Names.Kind == "" || len(crd.Spec.Versions) == 0 {
					t.Errorf("%s: document %d: CustomResourceDefinition without name, group, kind or versions", p, i)
				}
				continue
			}
			obj, gvk, err := strictDecoder.Decode(raw, nil, nil)
			if err != nil {
				t.Errorf("%s: document %d does not decode strictly with the client-go scheme: %v", p, i, err)
				continue
			}
			if gvk.Kind == "" || gvk.Version == "" {
				t.Errorf("%s: document %d has no apiVersion/kind", p, i)
			}
			out = append(out, manifest{file: p, doc: i, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no manifests found under %s", k8sDir)
	}
	return out
}

type crdHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []json.RawMessage `json:"versions"`
	} `json:"spec"`
}

func customResourceDefinition(raw []byte) (crdHead, bool) {
	var h crdHead
	if err := sigsyaml.Unmarshal(raw, &h); err != nil {
		return h, false
	}
	return h, h.Kind == "CustomResourceDefinition" && strings.HasPrefix(h.APIVersion, "apiextensions.k8s.io/")
}

func isBlankYAML(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// cluster indexes the decoded objects as the API server would hold them.
type cluster struct {
	manifests []manifest
}

func find[T runtime.Object](c cluster, namespace, name string) (T, manifest, bool) {
	for _, m := range c.manifests {
		if o, ok := m.obj.(T); ok {
			meta := any(o).(interface {
				GetName() string
				GetNamespace() string
			})
			if meta.GetName() == name && meta.GetNamespace() == namespace {
				return o, m, true
			}
		}
	}
	var zero T
	return zero, manifest{}, false
}

func all[T runtime.Object](c cluster) []T {
	var out []T
	for _, m := range c.manifests {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// clusterScoped kinds have no namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true,
}

func TestManifestsDecodeStrictly(t *testing.T) {
	c := cluster{loadManifests(t)}
	seen := map[string]string{}
	for _, m := range c.manifests {
		meta := m.obj.(interface {
			GetName() string
			GetNamespace() string
		})
		kind := m.obj.GetObjectKind().GroupVersionKind().Kind
		if !clusterScoped[kind] && meta.GetNamespace() == "" {
			t.Errorf("%s: %s %s sets no metadata.namespace; `kubectl apply` would put it in the current namespace", m.where(), kind, meta.GetName())
		}
		key := kind + "/" + meta.GetNamespace() + "/" + meta.GetName()
		if prev, dup := seen[key]; dup {
			t.Errorf("%s: %s is also defined in %s", m.where(), key, prev)
		}
		seen[key] = m.where()
	}
	// Every pod's references resolve within the manifests, except the
	// ConfigMaps and Secrets that only a user's cluster can provide, which
	// docs/deployment.md tells how to create.
	userProvided := map[string]bool{"istiod-lite-jwks": true, rootCertMap: true, cacertsSecret: true}
	for _, d := range all[*appsv1.Deployment](c) {
		pod := d.Spec.Template.Spec
		where := d.Namespace + "/" + d.Name
		if _, _, ok := find[*corev1.ServiceAccount](c, d.Namespace, pod.ServiceAccountName); !ok {
			t.Errorf("%s: serviceAccountName %q is not defined in the manifests", where, pod.ServiceAccountName)
		}
		if _, _, ok := find[*corev1.Namespace](c, "", d.Namespace); !ok {
			t.Errorf("%s: namespace %q is not defined in the manifests", where, d.Namespace)
		}
		for _, v := range pod.Volumes {
			switch {
			case v.ConfigMap != nil && !userProvided[v.ConfigMap.Name]:
				if _, _, ok := find[*corev1.ConfigMap](c, d.Namespace, v.ConfigMap.Name); !ok {
					t.Errorf("%s: volume %s: ConfigMap %q is not defined in the manifests", where, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil && !userProvided[v.Secret.SecretName]:
				t.Errorf("%s: volume %s: Secret %q is neither in the manifests nor documented as user-provided", where, v.Name, v.Secret.SecretName)
			}
		}
		if !selectorMatches(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not match the pod labels %v", where, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
	}
	for _, s := range all[*corev1.Service](c) {
		ok := false
		for _, d := range all[*appsv1.Deployment](c) {
			ok = ok || (d.Namespace == s.Namespace && selectorMatches(s.Spec.Selector, d.Spec.Template.Labels))
		}
		if !ok {
			t.Errorf("Service %s/%s selects no pod of the manifests (selector %v)", s.Namespace, s.Name, s.Spec.Selector)
		}
	}
}

func selectorMatches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKustomizations(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*", "kustomization.yaml"))
	if len(files) == 0 {
		t.Fatal("no kustomization.yaml under deploy/kubernetes")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Resources  []string `json:"resources"`
		}
		if err := sigsyaml.UnmarshalStrict(raw, &k); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
			t.Errorf("%s: apiVersion/kind = %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", f, k.APIVersion, k.Kind)
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), r)); err != nil {
				t.Errorf("%s: resource %s: %v", f, r, err)
			}
		}
		// kubectl builds kustomizations offline; use it when it is installed.
		if kubectl, err := exec.LookPath("kubectl"); err == nil {
			if out, err := exec.Command(kubectl, "kustomize", filepath.Dir(f)).CombinedOutput(); err != nil {
				t.Errorf("kubectl kustomize %s: %v\n%s", filepath.Dir(f), err, firstLines(string(out), 10))
			}
		}
	}
}

// istiodPending are the flags the istiod-lite Deployment passes that
// `istiod-lite discovery` does not accept yet: none, now that the CA, mesh
// config, Kubernetes and webhook flags are all registered. A new entry names
// a flag and why; the test logs each one it still needed.
func istiodPending() map[string]pendingFlag {
	return map[string]pendingFlag{}
}

func TestIstiodLiteDeployment(t *testing.T) {
	c := cluster{loadManifests(t)}
	d, m, ok := find[*appsv1.Deployment](c, istiodNamespace, istiodDeployment)
	if !ok {
		t.Fatalf("no Deployment %s/%s", istiodNamespace, istiodDeployment)
	}
	pod := d.Spec.Template.Spec
	disc := containerNamed(pod.Containers, "discovery")
	if disc == nil {
		t.Fatalf("%s: no container named discovery", m.where())
	}
	if !strings.HasPrefix(disc.Image, "meshlite/istiod-lite") {
		t.Errorf("discovery image = %q, want meshlite/istiod-lite[:tag]", disc.Image)
	}
	if len(disc.Command) != 0 {
		t.Errorf("discovery sets command %v; the image's entrypoint is istiod-lite", disc.Command)
	}
	if len(disc.Args) == 0 || disc.Args[0] != "discovery" {
		t.Fatalf("discovery args = %v, want discovery first", disc.Args)
	}
	bin := binary(t, "istiod-lite")
	spec := helpSpec(t, bin, "discovery")
	cl := checkCommand(t, m.where()+" container discovery", bin, []string{"discovery"}, disc.Args[1:], envNames(disc), istiodPending())

	// Ports: the flags, the container ports and the Service agree, and are
	// the binary's (and Istio's) defaults.
	ports := map[string]int32{}
	for name, flag := range map[string]string{"grpc-xds": "grpcAddr", "https-dns": "secureGRPCAddr", "http-debug": "httpAddr"} {
		got := portOf(t, cl.value(spec, flag))
		if def := portOf(t, spec.byLong[flag].def); got != def {
			t.Errorf("--%s listens on %d; the binary's default is %d, which clients expect", flag, got, def)
		}
		cp := containerPort(disc, name)
		if cp == nil || cp.ContainerPort != got {
			t.Errorf("discovery containerPort %s = %v, want %d (from --%s)", name, cp, got, flag)
		}
		ports[name] = got
	}
	for name, want := range map[string]int32{"grpc-xds": 15010, "https-dns": 15012, "http-debug": 8080} {
		if ports[name] != want {
			t.Errorf("port %s = %d, want Istio's %d", name, ports[name], want)
		}
	}
	svc, _, ok := find[*corev1.Service](c, istiodNamespace, istiodService)
	if !ok {
		t.Fatalf("no Service %s/%s", istiodNamespace, istiodService)
	}
	for name, want := range ports {
		sp := servicePort(svc, name)
		if sp == nil || sp.Port != want || sp.TargetPort.IntValue() != int(want) {
			t.Errorf("Service %s port %s = %+v, want port and targetPort %d", istiodService, name, sp, want)
		}
	}
	// The admission webhooks call the Service on 443, as Istio's do.
	webhookPort := portOf(t, cl.value(spec, "webhookAddr"))
	if cp := containerPort(disc, "https-webhook"); cp == nil || cp.ContainerPort != webhookPort {
		t.Errorf("discovery containerPort https-webhook = %v, want %d (from --webhookAddr)", cp, webhookPort)
	}
	if sp := servicePort(svc, "https-webhook"); sp == nil || sp.Port != 443 || sp.TargetPort.IntValue() != int(webhookPort) {
		t.Errorf("Service %s port https-webhook = %+v, want 443 -> %d", istiodService, sp, webhookPort)
	}
	if len(svc.Spec.Ports) != len(ports)+1 {
		t.Errorf("Service %s has %d ports, want exactly %v and https-webhook", istiodService, len(svc.Spec.Ports), ports)
	}

	// Probes hit the readiness endpoint of the debug server.
	for kind, p := range map[string]*corev1.Probe{"readiness": disc.ReadinessProbe, "liveness": disc.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("discovery has no %s httpGet probe", kind)
			continue
		}
		if p.HTTPGet.Port.IntValue() != int(ports["http-debug"]) {
			t.Errorf("%s probe port = %s, want the --httpAddr port %d", kind, p.HTTPGet.Port.String(), ports["http-debug"])
		}
		for ready, want := range map[bool]int{true: http.StatusOK, false: http.StatusServiceUnavailable} {
			h := debug.Handler(fakeSource{ready: ready}, debug.Options{})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.HTTPGet.Path, nil))
			if rec.Code != want {
				t.Errorf("%s probe GET %s with the registry ready=%v: status %d, want %d", kind, p.HTTPGet.Path, ready, rec.Code, want)
			}
		}
	}

	mounts := mountsOf(pod, disc)
	// In a cluster the mesh comes from the API server; a --configDir, when
	// the File registry is also used, is a ConfigMap of Istio YAML.
	registries := cl.value(spec, "registries")
	if !strings.Contains(registries, "Kubernetes") {
		t.Errorf("--registries = %q, want Kubernetes in a cluster", registries)
	}
	cfgMap := &corev1.ConfigMap{}
	if strings.Contains(registries, "File") {
		configDir := cl.value(spec, "configDir")
		cfgVol := mounts[configDir]
		if cfgVol == nil || cfgVol.ConfigMap == nil {
			t.Fatalf("--configDir %s is not a mounted ConfigMap", configDir)
		}
		var ok bool
		if cfgMap, _, ok = find[*corev1.ConfigMap](c, istiodNamespace, cfgVol.ConfigMap.Name); !ok {
			t.Fatalf("ConfigMap %s (the config directory) is not in the manifests", cfgVol.ConfigMap.Name)
		}
	}
	// --meshConfig is the "mesh" key of Istio's ConfigMap istio.
	meshFile := cl.flags["meshConfig"].value
	meshVol := mounts[path.Dir(meshFile)]
	if meshVol == nil || meshVol.ConfigMap == nil || meshVol.ConfigMap.Name != meshConfigMap {
		t.Errorf("--meshConfig %s: its directory is not ConfigMap %s mounted", meshFile, meshConfigMap)
	}
	mesh, _, ok := find[*corev1.ConfigMap](c, istiodNamespace, meshConfigMap)
	if !ok {
		t.Fatalf("no ConfigMap %s/%s", istiodNamespace, meshConfigMap)
	}
	if _, ok := mesh.Data[path.Base(meshFile)]; !ok || path.Base(meshFile) != "mesh" {
		t.Errorf("ConfigMap %s has no key %q (Istio's key is mesh)", meshConfigMap, path.Base(meshFile))
	}
	set := loadIstiodConfig(t, cfgMap, mesh)
	if td := set.Mesh().GetTrustDomain(); td != "cluster.local" {
		t.Errorf("mesh trustDomain = %q, want cluster.local (the sidecars' TRUST_DOMAIN)", td)
	}
	if _, err := agentconfig.ParseMeshConfig([]byte(mesh.Data["mesh"])); err != nil {
		t.Errorf("ConfigMap %s key mesh is not a MeshConfig the agent reads: %v", meshConfigMap, err)
	}

	// --caDir is writable (a self-signed root is generated there), and the
	// init container copies the optional cacerts Secret into it.
	caDir := cl.flags["caDir"].value
	caVol := mounts[caDir]
	if caVol == nil || caVol.EmptyDir == nil || mountReadOnly(disc, caDir) {
		t.Errorf("--caDir %s must be a writable emptyDir mount", caDir)
	}
	copier := containerNamed(pod.InitContainers, "cacerts")
	if copier == nil {
		t.Fatal("no init container cacerts copying the plugged-in CA")
	}
	var secretMount string
	for _, vm := range copier.VolumeMounts {
		v := volumeNamed(pod, vm.Name)
		if v != nil && v.Secret != nil {
			if v.Secret.SecretName != cacertsSecret || v.Secret.Optional == nil || !*v.Secret.Optional {
				t.Errorf("volume %s: want Secret %s with optional: true (absent means self-signed)", v.Name, cacertsSecret)
			}
			secretMount = vm.MountPath
		}
		if v != nil && v == caVol && vm.MountPath != caDir {
			t.Errorf("init container cacerts mounts the CA dir at %s, discovery reads --caDir %s", vm.MountPath, caDir)
		}
	}
	script := strings.Join(copier.Command, " ")
	for _, f := range []string{ca.CACertFile, ca.CAKeyFile, ca.RootCertFile, ca.CertChainFile, secretMount, caDir} {
		if f == "" || !strings.Contains(script, f) {
			t.Errorf("init container cacerts does not handle %q: %s", f, script)
		}
	}

	// Tokens: checked with TokenReview, which needs the API token mounted;
	// the audience is the one the sidecars' projected tokens carry.
	if ta := cl.value(spec, "tokenAuth"); ta != "tokenreview" {
		t.Errorf("--tokenAuth = %q, want tokenreview (a deleted pod's token is refused)", ta)
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("the istiod-lite pod must mount its service account token: it watches the API server and creates TokenReviews")
	}
	if aud := strings.Trim(cl.value(spec, "jwtAudience"), "[]"); aud != jwtissuer.DefaultAudience {
		t.Errorf("--jwtAudience = %q, want %q (the sidecars' token audience)", aud, jwtissuer.DefaultAudience)
	}

	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("istiod-lite pod must set runAsNonRoot: true (the image is distroless nonroot)")
	}
}

type fakeSource struct{ ready bool }

func (f fakeSource) Proxies() []server.ProxyStatus                { return nil }
func (f fakeSource) ProxyResources(string) (*xds.Resources, bool) { return nil, false }
func (f fakeSource) Snapshot() *model.Snapshot                    { return nil }
func (f fakeSource) Ready() bool                                  { return f.ready }

// loadIstiodConfig writes the config directory ConfigMap's files and the mesh
// ConfigMap (as an Istio YAML document) into a directory and loads it as
// istiod-lite does, validation included.
func loadIstiodConfig(t *testing.T, cfg, mesh *corev1.ConfigMap) *istiodconfig.Set {
	t.Helper()
	dir := t.TempDir()
	for name, data := range cfg.Data {
		if !istiodconfig.IsConfigFile(name) {
			t.Errorf("ConfigMap %s key %s: istiod-lite ignores files not named *.yaml, *.yml or *.json", cfg.Name, name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meshDoc, err := sigsyaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": mesh.Name, "namespace": mesh.Namespace},
		"data":     mesh.Data,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zz-mesh.yaml"), meshDoc, 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := istiodconfig.Load([]string{dir}, istiodconfig.Options{})
	if err != nil {
		t.Fatalf("istiod-lite rejects the shipped config (ConfigMaps %s and %s):\n%v", cfg.Name, mesh.Name, err)
	}
	return set
}

// workload is one example Deployment with a meshlite sidecar.
type workload struct {
	name   string
	native bool // the proxy is a restartable init container
}

var workloads = []workload{{"httpbin", false}, {"httpbin-native", true}}

func TestWorkloadSidecar(t *testing.T) {
	c := cluster{loadManifests(t)}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			d, m, ok := find[*appsv1.Deployment](c, "demo", w.name)
			if !ok {
				t.Fatalf("no Deployment demo/%s", w.name)
			}
			checkWorkload(t, c, d, m, w)
		})
	}
}

func checkWorkload(t *testing.T, c cluster, d *appsv1.Deployment, m manifest, w workload) {
	pod := d.Spec.Template.Spec
	where := m.where()
	pilot := binary(t, "pilot-agent")

	// Container order: istio-init first; the proxy is the first container
	// (postStart blocks the next one) or, natively, the next init container.
	if len(pod.InitContainers) == 0 || pod.InitContainers[0].Name != initContainer {
		t.Fatalf("%s: the first init container must be %s", where, initContainer)
	}
	var proxy *corev1.Container
	var apps []corev1.Container
	holds := false // a postStart hook holds the app until the proxy is ready
	if w.native {
		if len(pod.InitContainers) < 2 || pod.InitContainers[1].Name != proxyContainer {
			t.Fatalf("%s: native sidecar: init containers must be %s then %s", where, initContainer, proxyContainer)
		}
		proxy = &pod.InitContainers[1]
		if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("%s: native sidecar %s needs restartPolicy: Always", where, proxyContainer)
		}
		if proxy.Lifecycle != nil && proxy.Lifecycle.PostStart != nil {
			t.Errorf("%s: a native sidecar is held by its startupProbe; drop the postStart hook", where)
		}
		if proxy.StartupProbe == nil {
			t.Errorf("%s: a native sidecar needs a startupProbe, or the app starts before the proxy is ready", where)
		}
		apps = pod.Containers
	} else {
		// Istio's injector appends the proxy after the app containers; with
		// holdApplicationUntilProxyStarts it puts it first instead, with a
		// postStart hook that blocks the next container until Envoy is
		// ready. The agent check below ties the hook to the proxy config.
		i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == proxyContainer })
		if i < 0 {
			t.Fatalf("%s: no %s container", where, proxyContainer)
		}
		proxy = &pod.Containers[i]
		apps = slices.Delete(slices.Clone(pod.Containers), i, i+1)
		if ls := proxy.Lifecycle; ls != nil && ls.PostStart != nil {
			holds = true
			if i != 0 {
				t.Errorf("%s: %s has a postStart hook but is container %d; it holds the app only as the first container", where, proxyContainer, i)
			}
			if ls.PostStart.Exec == nil || len(ls.PostStart.Exec.Command) < 2 ||
				ls.PostStart.Exec.Command[0] != "pilot-agent" || ls.PostStart.Exec.Command[1] != "wait" {
				t.Errorf("%s: %s postStart must be exec [pilot-agent wait] (holdApplicationUntilProxyStarts)", where, proxyContainer)
			} else {
				checkCommand(t, where+" postStart", pilot, []string{"wait"}, ls.PostStart.Exec.Command[2:], nil, nil)
			}
		}
	}
	if len(apps) == 0 {
		t.Fatalf("%s: no application container", where)
	}
	env := envNames(proxy)

	// The init container: Istio's istio-iptables, as root with the two capabilities.
	ini := &pod.InitContainers[0]
	checkProxyImage(t, where, ini)
	if len(ini.Args) == 0 || ini.Args[0] != "istio-iptables" {
		t.Fatalf("%s: %s args = %v, want istio-iptables first", where, initContainer, ini.Args)
	}
	ipt := checkCommand(t, where+" "+initContainer, pilot, []string{"istio-iptables"}, ini.Args[1:], envNames(ini), nil)
	iptSpec := helpSpec(t, pilot, "istio-iptables")
	isc := ini.SecurityContext
	if isc == nil || isc.RunAsUser == nil || *isc.RunAsUser != 0 || isc.Capabilities == nil ||
		!slices.Contains(isc.Capabilities.Add, "NET_ADMIN") || !slices.Contains(isc.Capabilities.Add, "NET_RAW") {
		t.Errorf("%s: %s must run as root with NET_ADMIN and NET_RAW", where, initContainer)
	}
	ipEnv := iptablesEnvNames(t)
	for _, e := range ini.Env {
		if !ipEnv[e.Name] {
			t.Errorf("%s: %s sets env %s, which istio-iptables does not read", where, initContainer, e.Name)
		}
	}
	psc := proxy.SecurityContext
	if psc == nil || psc.RunAsUser == nil {
		t.Fatalf("%s: %s must set runAsUser (capture exempts that UID)", where, proxyContainer)
	}
	if got := ipt.value(iptSpec, "proxy-uid"); got != strconv.FormatInt(*psc.RunAsUser, 10) {
		t.Errorf("%s: istio-iptables -u %s, but the proxy runs as %d: Envoy's own traffic would be captured", where, got, *psc.RunAsUser)
	}
	for _, p := range []int{bootstrap.DefaultStatusPort, bootstrap.DefaultReadinessPort, bootstrap.DefaultPrometheusPort} {
		if !slices.Contains(strings.Split(ipt.value(iptSpec, "istio-local-exclude-ports"), ","), strconv.Itoa(p)) {
			t.Errorf("%s: istio-iptables -d should list %d (Istio's standard args)", where, p)
		}
	}

	// The proxy: `pilot-agent proxy sidecar` with env the agent reads.
	checkProxyImage(t, where, proxy)
	if len(proxy.Args) < 2 || proxy.Args[0] != "proxy" || proxy.Args[1] != "sidecar" {
		t.Fatalf("%s: %s args = %v, want proxy sidecar ...", where, proxyContainer, proxy.Args)
	}
	pcl := checkCommand(t, where+" "+proxyContainer, pilot, []string{"proxy"}, proxy.Args[1:], env, nil)
	allowed := agentEnvNames()
	for _, e := range proxy.Env {
		if !allowed[e.Name] && !strings.HasPrefix(e.Name, agentconfig.MetaPrefix) && !strings.HasPrefix(e.Name, agentconfig.MetaJSONPrefix) {
			t.Errorf("%s: %s sets env %s, which the agent does not read (agent/config.EnvVars, PROXY_CONFIG, ISTIO_META_*, ISTIO_METAJSON_*)", where, proxyContainer, e.Name)
		}
	}
	// ISTIO_METAJSON_LABELS holds the pod's labels as written, before the
	// injector added its own (security.istio.io/*, service.istio.io/*); the
	// agent merges the downward-API labels file over it, so those still
	// reach the node metadata.
	var labels map[string]string
	if err := json.Unmarshal([]byte(envValue(proxy, "ISTIO_METAJSON_LABELS")), &labels); err != nil || !equalMaps(labels, withoutInjectedLabels(d.Spec.Template.Labels)) {
		t.Errorf("%s: ISTIO_METAJSON_LABELS = %s, want the pod labels %v less the injector's", where, envValue(proxy, "ISTIO_METAJSON_LABELS"), d.Spec.Template.Labels)
	}
	if v := volumeNamed(pod, "istio-podinfo"); v == nil || v.DownwardAPI == nil || !slices.ContainsFunc(v.DownwardAPI.Items, func(i corev1.DownwardAPIVolumeFile) bool {
		return i.Path == "labels" && i.FieldRef != nil && i.FieldRef.FieldPath == "metadata.labels"
	}) {
		t.Errorf("%s: volume istio-podinfo must hold the pod labels (labels from metadata.labels) for the agent", where)
	}
	var appNames []string
	var appPorts []map[string]any
	for _, a := range apps {
		appNames = append(appNames, a.Name)
		for _, p := range a.Ports {
			appPorts = append(appPorts, map[string]any{"name": p.Name, "containerPort": float64(p.ContainerPort), "protocol": string(p.Protocol)})
		}
	}
	if got := envValue(proxy, "ISTIO_META_APP_CONTAINERS"); got != strings.Join(appNames, ",") {
		t.Errorf("%s: ISTIO_META_APP_CONTAINERS = %q, want %q", where, got, strings.Join(appNames, ","))
	}
	var podPorts []map[string]any
	if err := json.Unmarshal([]byte(envValue(proxy, "ISTIO_META_POD_PORTS")), &podPorts); err != nil || fmt.Sprint(podPorts) != fmt.Sprint(appPorts) {
		t.Errorf("%s: ISTIO_META_POD_PORTS = %s, want the app ports %v", where, envValue(proxy, "ISTIO_META_POD_PORTS"), appPorts)
	}

	// Ports and probes: Envoy's readiness and Prometheus listeners as the
	// agent's bootstrap renders them, the status port for the pod annotations.
	listeners := bootstrapListeners(t)
	for kind, p := range map[string]*corev1.Probe{"readiness": proxy.ReadinessProbe, "startup": proxy.StartupProbe} {
		if p == nil {
			if kind == "readiness" {
				t.Errorf("%s: %s has no readiness probe", where, proxyContainer)
			}
			continue
		}
		if p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != bootstrap.DefaultReadinessPort || p.HTTPGet.Path != listeners[bootstrap.DefaultReadinessPort] {
			t.Errorf("%s: %s %s probe = %+v, want GET %s on %d (Envoy's readiness listener)", where, proxyContainer, kind, p.ProbeHandler, listeners[bootstrap.DefaultReadinessPort], bootstrap.DefaultReadinessPort)
		}
	}
	for _, p := range proxy.Ports {
		if _, ok := listeners[int(p.ContainerPort)]; !ok || p.ContainerPort != bootstrap.DefaultPrometheusPort {
			t.Errorf("%s: %s declares port %d; only Envoy's Prometheus port %d is declared, as Istio does", where, proxyContainer, p.ContainerPort, bootstrap.DefaultPrometheusPort)
		}
	}
	if cp := containerPort(proxy, "http-envoy-prom"); cp == nil || cp.ContainerPort != bootstrap.DefaultPrometheusPort {
		t.Errorf("%s: %s must declare http-envoy-prom %d", where, proxyContainer, bootstrap.DefaultPrometheusPort)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/port"] != strconv.Itoa(bootstrap.DefaultStatusPort) {
		t.Errorf("%s: annotation prometheus.io/port = %q, want the status port %d", where, ann["prometheus.io/port"], bootstrap.DefaultStatusPort)
	}

	// The status server answers the scrape path and every rewritten app probe.
	probers := envValue(proxy, "ISTIO_KUBE_APP_PROBERS")
	st, err := status.New(status.Options{AppProbers: probers})
	if err != nil {
		t.Fatalf("%s: ISTIO_KUBE_APP_PROBERS is refused by the status server: %v", where, err)
	}
	if code := serve(st, ann["prometheus.io/path"]); code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		t.Errorf("%s: annotation prometheus.io/path %q is not served on the status port (status %d)", where, ann["prometheus.io/path"], code)
	}
	var proberMap map[string]agentconfig.AppProber
	if err := json.Unmarshal([]byte(probers), &proberMap); err != nil {
		t.Fatalf("%s: ISTIO_KUBE_APP_PROBERS: %v", where, err)
	}
	rewritten := map[string]bool{}
	for _, a := range apps {
		for kind, p := range map[string]*corev1.Probe{"livez": a.LivenessProbe, "readyz": a.ReadinessProbe, "startupz": a.StartupProbe} {
			if p == nil {
				continue
			}
			want := agentconfig.AppProbePathPrefix + a.Name + "/" + kind
			if p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != bootstrap.DefaultStatusPort || p.HTTPGet.Path != want {
				t.Errorf("%s: container %s %s probe must be rewritten to GET %s on %d", where, a.Name, kind, want, bootstrap.DefaultStatusPort)
				continue
			}
			rewritten[want] = true
			orig, ok := proberMap[want]
			if !ok {
				t.Errorf("%s: ISTIO_KUBE_APP_PROBERS has no %s, the path %s's probe was rewritten to", where, want, a.Name)
				continue
			}
			if orig.HTTPGet != nil && containerPortNumber(a, int(orig.HTTPGet.Port)) == nil {
				t.Errorf("%s: %s probes port %s, which container %s does not declare", where, want, strconv.Itoa(int(orig.HTTPGet.Port)), a.Name)
			}
			// The app is not running: the probe fails, but it must be a
			// probe the agent knows (not 404).
			if code := serve(st, want); code == http.StatusNotFound {
				t.Errorf("%s: the status server does not know %s", where, want)
			}
		}
	}
	for k := range proberMap {
		if !rewritten[k] {
			t.Errorf("%s: ISTIO_KUBE_APP_PROBERS has %s, but no probe is rewritten to it", where, k)
		}
	}

	// Volumes at the agent's paths (relative to the image's WORKDIR /).
	mounts := mountsOf(pod, proxy)
	at := func(rel string) *corev1.Volume {
		p := "/" + strings.TrimPrefix(path.Clean(rel), "./")
		v := mounts[p]
		if v == nil {
			t.Errorf("%s: %s has no volume at %s (the agent's %s)", where, proxyContainer, p, rel)
		}
		return v
	}
	for _, dir := range []string{path.Dir(agentconfig.DefaultXDSSocket), path.Dir(agentconfig.DefaultSDSSocket), agentconfig.DefaultCredentialsDir} {
		if v := at(dir); v != nil && v.EmptyDir == nil {
			t.Errorf("%s: %s must be an emptyDir", where, dir)
		}
		if mountReadOnly(proxy, "/"+strings.TrimPrefix(path.Clean(dir), "./")) {
			t.Errorf("%s: %s must be writable", where, dir)
		}
	}
	if v := at(path.Dir(agentconfig.DefaultTokenPath)); v != nil {
		tok := projectedToken(v)
		if tok == nil || tok.Path != path.Base(agentconfig.DefaultTokenPath) || tok.Audience != jwtissuer.DefaultAudience {
			t.Errorf("%s: volume %s must project the service account token to %s with audience %s", where, v.Name, path.Base(agentconfig.DefaultTokenPath), jwtissuer.DefaultAudience)
		}
	}
	if v := at(path.Dir(agentconfig.DefaultRootCAFile)); v != nil {
		if v.ConfigMap == nil || v.ConfigMap.Name != rootCertMap || len(v.ConfigMap.Items) != 0 {
			t.Errorf("%s: volume %s must be ConfigMap %s (key %s)", where, v.Name, rootCertMap, path.Base(agentconfig.DefaultRootCAFile))
		}
	}
	if v := at(path.Dir(agentconfig.DefaultPodAnnotationsPath)); v != nil {
		ok := v.DownwardAPI != nil && slices.ContainsFunc(v.DownwardAPI.Items, func(i corev1.DownwardAPIVolumeFile) bool {
			return i.Path == path.Base(agentconfig.DefaultPodAnnotationsPath) && i.FieldRef != nil && i.FieldRef.FieldPath == "metadata.annotations"
		})
		if !ok {
			t.Errorf("%s: volume %s must be a downward API volume with %s from metadata.annotations", where, v.Name, path.Base(agentconfig.DefaultPodAnnotationsPath))
		}
	}

	// The agent loads this exact environment and pod annotations: in
	// process for the details, and with the real binary's `check`, which
	// also renders and validates the Envoy bootstrap.
	values := podEnv(t, d, proxy)
	values["KUBERNETES_SERVICE_HOST"] = "10.96.0.1" // set by the kubelet
	work := t.TempDir()
	annFile := filepath.Join(work, filepath.FromSlash(agentconfig.DefaultPodAnnotationsPath))
	if err := os.MkdirAll(filepath.Dir(annFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(annFile, downwardAnnotations(ann), 0o644); err != nil {
		t.Fatal(err)
	}
	domain := expandVars(pcl.flags["domain"].raw, values)
	cfg, err := agentconfig.Load(agentconfig.Options{
		WorkDir: work, LookupEnv: agentconfig.MapEnv(values).Lookup, Environ: agentconfig.MapEnv(values).Environ,
		Flags: agentconfig.Flags{Domain: &domain},
	})
	if err != nil {
		t.Fatalf("%s: the agent rejects the %s environment:\n%v", where, proxyContainer, err)
	}
	if cfg.Platform != agentconfig.PlatformKubernetes || cfg.Envoy.RestartInPlace {
		t.Errorf("%s: in a pod the agent must leave restarts to the kubelet (platform %s, restart in place %v)", where, cfg.Platform, cfg.Envoy.RestartInPlace)
	}
	if want := values["POD_NAMESPACE"] + ".svc.cluster.local"; cfg.Domain != want {
		t.Errorf("%s: domain = %q, want %q", where, cfg.Domain, want)
	}
	if hold := cfg.Proxy.GetHoldApplicationUntilProxyStarts().GetValue(); !w.native && hold != holds {
		t.Errorf("%s: proxy config holdApplicationUntilProxyStarts is %v, but the postStart wait hook is present=%v; they go together", where, hold, holds)
	}
	for _, a := range []struct{ what, addr string }{{"discovery address", cfg.DiscoveryAddress()}, {"CA_ADDR", cfg.ControlPlane.CAAddress}} {
		checkIstiodAddress(t, c, where+" "+a.what, a.addr, "https-dns")
	}
	if cfg.ControlPlane.IstiodSAN != istiodService+"."+istiodNamespace+".svc" {
		t.Errorf("%s: istiod SAN = %q, want %s.%s.svc (istiod-lite's serving certificate)", where, cfg.ControlPlane.IstiodSAN, istiodService, istiodNamespace)
	}
	if len(cfg.App.KubeAppProbers) != len(rewritten) {
		t.Errorf("%s: the agent read %d app probers, want %d", where, len(cfg.App.KubeAppProbers), len(rewritten))
	}

	args := []string{"check"}
	for _, a := range proxy.Args[1:] {
		args = append(args, expandVars(a, values))
	}
	if out, err := runBinary(pilot, work, values, args...); err != nil {
		t.Errorf("%s: `pilot-agent %s` with the %s environment failed: %v\n%s", where, strings.Join(args, " "), proxyContainer, err, firstLines(out, 20))
	}
}

// withoutInjectedLabels drops the labels the injector adds to a pod.
func withoutInjectedLabels(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if !strings.HasPrefix(k, "security.istio.io/") && !strings.HasPrefix(k, "service.istio.io/") {
			out[k] = v
		}
	}
	return out
}

// expandVars replaces $(VAR) as the kubelet does in args.
func expandVars(s string, values map[string]string) string {
	return varRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		return values[ref[2:len(ref)-1]]
	})
}

// checkIstiodAddress checks that host:port names the istiod Service's port.
func checkIstiodAddress(t *testing.T, c cluster, what, addr, portName string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return
	}
	parts := strings.Split(host, ".")
	if len(parts) < 2 {
		t.Errorf("%s %q: want <service>.<namespace>.svc", what, addr)
		return
	}
	svc, _, ok := find[*corev1.Service](c, parts[1], parts[0])
	if !ok {
		t.Errorf("%s %q: no Service %s/%s in the manifests", what, addr, parts[1], parts[0])
		return
	}
	sp := servicePort(svc, portName)
	if sp == nil || strconv.Itoa(int(sp.Port)) != port {
		t.Errorf("%s %q: port %s is not Service %s's %s port", what, addr, port, svc.Name, portName)
	}
}

func checkProxyImage(t *testing.T, where string, c *corev1.Container) {
	t.Helper()
	if !strings.HasPrefix(c.Image, "meshlite/proxyv2") {
		t.Errorf("%s: %s image = %q, want meshlite/proxyv2[:tag]", where, c.Name, c.Image)
	}
	if len(c.Command) != 0 {
		t.Errorf("%s: %s sets command %v; the image's entrypoint is pilot-agent", where, c.Name, c.Command)
	}
}

// bootstrapListeners renders the agent's Envoy bootstrap and maps each
// static listener's port to the path prefix it serves.
func bootstrapListeners(t *testing.T) map[int]string {
	t.Helper()
	b, err := bootstrap.EnvoyProto(bootstrap.Options{
		InstanceIPs: []string{"10.244.0.7"}, PodName: "p", Namespace: "demo",
		XDSSocket: "/etc/istio/proxy/XDS", SDSSocket: "/var/run/secrets/workload-spiffe-uds/socket",
	})
	if err != nil {
		t.Fatalf("rendering the Envoy bootstrap: %v", err)
	}
	js, err := bootstrap.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		StaticResources struct {
			Listeners []json.RawMessage `json:"listeners"`
		} `json:"static_resources"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, l := range doc.StaticResources.Listeners {
		var addr struct {
			Address struct {
				SocketAddress struct {
					PortValue int `json:"port_value"`
				} `json:"socket_address"`
			} `json:"address"`
		}
		_ = json.Unmarshal(l, &addr)
		out[addr.Address.SocketAddress.PortValue] = findKey(l, "prefix")
	}
	if len(out) == 0 {
		t.Fatalf("no static listeners in the bootstrap:\n%s", js)
	}
	return out
}

// findKey returns the first string value of key anywhere in a JSON document.
func findKey(raw json.RawMessage, key string) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x[key].(string); ok {
				return s
			}
			for _, k := range sortedKeys(x) {
				if s := walk(x[k]); s != "" {
					return s
				}
			}
		case []any:
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// serve sends a kubelet-like GET to the status server and returns the status.
func serve(h http.Handler, target string) int {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing is listening behind it; only the routing matters
	req := httptest.NewRequest(http.MethodGet, target, nil).WithContext(ctx)
	req.Header.Set("User-Agent", "kube-probe/1.31")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// agentEnvNames is every variable agent/config reads by name.
func agentEnvNames() map[string]bool {
	names := map[string]bool{"PROXY_CONFIG": true}
	for _, e := range agentconfig.EnvVars {
		names[e.Name] = true
	}
	return names
}

// podEnv resolves the container's env as the kubelet would for a pod of d.
func podEnv(t *testing.T, d *appsv1.Deployment, c *corev1.Container) map[string]string {
	t.Helper()
	fields := map[string]string{
		"metadata.name":           d.Name + "-5d9c7b8f4-x2x7q",
		"metadata.namespace":      d.Namespace,
		"status.podIP":            "10.244.0.7",
		"status.podIPs":           "10.244.0.7,fd00:10:244::7",
		"status.hostIP":           "172.18.0.2",
		"spec.nodeName":           "node-1",
		"spec.serviceAccountName": d.Spec.Template.Spec.ServiceAccountName,
	}
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("env %s: fieldRef %s is not one the test knows; add it", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			out[e.Name] = v
		default:
			t.Errorf("env %s: only fieldRef valueFrom is used by the sidecar", e.Name)
		}
	}
	return out
}

// downwardAnnotations writes annotations as the kubelet's downward API does.
func downwardAnnotations(ann map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range sortedKeys(ann) {
		fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(ann[k]))
	}
	return b.Bytes()
}

func envNames(c *corev1.Container) map[string]bool {
	out := map[string]bool{}
	for _, e := range c.Env {
		out[e.Name] = true
	}
	return out
}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func containerNamed(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

func containerPortNumber(c corev1.Container, n int) *corev1.ContainerPort {
	for i := range c.Ports {
		if int(c.Ports[i].ContainerPort) == n {
			return &c.Ports[i]
		}
	}
	return nil
}

func servicePort(s *corev1.Service, name string) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Name == name {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

func volumeNamed(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// mountsOf maps each of c's mount paths to its volume.
func mountsOf(pod corev1.PodSpec, c *corev1.Container) map[string]*corev1.Volume {
	out := map[string]*corev1.Volume{}
	for _, m := range c.VolumeMounts {
		out[path.Clean(m.MountPath)] = volumeNamed(pod, m.Name)
	}
	return out
}

func mountReadOnly(c *corev1.Container, p string) bool {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == path.Clean(p) {
			return m.ReadOnly
		}
	}
	return false
}

func projectedToken(v *corev1.Volume) *corev1.ServiceAccountTokenProjection {
	if v.Projected == nil {
		return nil
	}
	for _, s := range v.Projected.Sources {
		if s.ServiceAccountToken != nil {
			return s.ServiceAccountToken
		}
	}
	return nil
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("listen address %q: %v", addr, err)
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
