package webhook

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// Annotations and labels read at injection, with Istio's names.
const (
	AnnotationInject            = "sidecar.istio.io/inject"
	AnnotationStatus            = "sidecar.istio.io/status"
	AnnotationTemplates         = "inject.istio.io/templates"
	AnnotationNativeSidecar     = "sidecar.istio.io/nativeSidecar"
	AnnotationRewriteProbes     = "sidecar.istio.io/rewriteAppHTTPProbers"
	AnnotationProxyImage        = "sidecar.istio.io/proxyImage"
	AnnotationLogLevel          = "sidecar.istio.io/logLevel"
	AnnotationProxyConfig       = "proxy.istio.io/config"
	AnnotationIncludeOutboundIP = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	AnnotationExcludeOutboundIP = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	AnnotationIncludeInbound    = "traffic.sidecar.istio.io/includeInboundPorts"
	AnnotationExcludeInbound    = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnotationIncludeOutbound   = "traffic.sidecar.istio.io/includeOutboundPorts"
	AnnotationExcludeOutbound   = "traffic.sidecar.istio.io/excludeOutboundPorts"
	AnnotationExcludeInterfaces = "traffic.sidecar.istio.io/excludeInterfaces"
	AnnotationDefaultContainer  = "kubectl.kubernetes.io/default-container"
	LabelInjection              = "istio-injection"
)

// Ports of the agent, excluded from inbound capture as in Istio.
const (
	StatusPort       = 15020
	HealthPort       = 15021
	EnvoyPromPort    = 15090
	ProxyContainer   = "istio-proxy"
	InitContainer    = "istio-init"
	DefaultProxyUID  = 1337
	DefaultLogLevel  = "warning"
	DefaultCAAddress = "istiod.istio-system.svc:15012"
)

// InjectorOptions configure the injector; zero values take Istio's defaults.
type InjectorOptions struct {
	ProxyImage     string // required: the meshlite proxy image
	CAAddr         string // CA_ADDR; default DefaultCAAddress
	DomainSuffix   string // default cluster.local
	TrustDomain    string // default cluster.local
	ClusterID      string // default Kubernetes
	NativeSidecars bool   // ENABLE_NATIVE_SIDECARS: the proxy as an init container with restartPolicy Always
	// HoldApplicationUntilProxyStarts is the mesh-wide default of that
	// ProxyConfig field; a pod's proxy.istio.io/config annotation overrides it.
	HoldApplicationUntilProxyStarts bool
	// Templates from LoadTemplates; default the built-in ones.
	Templates *template.Template
	Logger    *slog.Logger
}

// Injector is the /inject handler.
type Injector struct {
	opts InjectorOptions
	log  *slog.Logger
}

// NewInjector checks the options and loads the built-in templates if none were given.
func NewInjector(opts InjectorOptions) (*Injector, error) {
	if opts.ProxyImage == "" {
		return nil, errors.New("webhook: no proxy image; set --proxyImage to the meshlite proxy image (the one with pilot-agent)")
	}
	opts.CAAddr = cmp.Or(opts.CAAddr, DefaultCAAddress)
	opts.DomainSuffix = cmp.Or(opts.DomainSuffix, "cluster.local")
	opts.TrustDomain = cmp.Or(opts.TrustDomain, "cluster.local")
	opts.ClusterID = cmp.Or(opts.ClusterID, "Kubernetes")
	if opts.Templates == nil {
		t, err := LoadTemplates("")
		if err != nil {
			return nil, err
		}
		opts.Templates = t
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Injector{opts: opts, log: opts.Logger.With("scope", "injection")}, nil
}

func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	admit(w, r, in.log, func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
			return allow()
		}
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return deny(400, "cannot decode the pod: "+err.Error())
		}
		if pod.Namespace == "" {
			pod.Namespace = req.Namespace
		}
		patch, err := in.Patch(&pod)
		if err != nil {
			in.log.Warn("injection refused", "namespace", req.Namespace, "pod", cmp.Or(pod.Name, pod.GenerateName), "error", err)
			return deny(400, "sidecar injection failed: "+err.Error())
		}
		resp := allow()
		if len(patch) > 0 {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
			in.log.Debug("injected", "namespace", req.Namespace, "pod", cmp.Or(pod.Name, pod.GenerateName))
		}
		return resp
	})
}

// Patch returns the JSON patch that injects pod, or nil when it must not be
// injected (opted out, already injected, host network).
func (in *Injector) Patch(pod *corev1.Pod) ([]byte, error) {
	out, err := in.Inject(pod)
	if err != nil || out == nil {
		return nil, err
	}
	before, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("computing the JSON patch: %w", err)
	}
	return json.Marshal(ops)
}

// Inject returns the injected copy of pod, or nil when it is not injected.
func (in *Injector) Inject(pod *corev1.Pod) (*corev1.Pod, error) {
	if skip(pod) {
		return nil, nil
	}
	tmpl := cmp.Or(pod.Annotations[AnnotationTemplates], TemplateSidecar)
	if tmpl != TemplateSidecar && tmpl != TemplateGRPCAgent {
		return nil, fmt.Errorf("annotation %s=%q names an unknown template; use %s or %s", AnnotationTemplates, tmpl, TemplateSidecar, TemplateGRPCAgent)
	}
	d, err := in.data(pod, tmpl == TemplateGRPCAgent)
	if err != nil {
		return nil, err
	}
	rewrite := pod.Annotations[AnnotationRewriteProbes] != "false"
	var probers map[string]*prober
	if rewrite {
		probers = appProbers(pod)
		if len(probers) > 0 {
			b, _ := json.Marshal(probers)
			d.AppProbers = string(b)
		}
	}
	rendered, err := render(in.opts.Templates, tmpl, d)
	if err != nil {
		return nil, err
	}
	overlay, err := yaml.YAMLToJSON(rendered)
	if err != nil {
		return nil, fmt.Errorf("injection template %s rendered invalid YAML: %w", tmpl, err)
	}
	orig, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, overlay, corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("merging injection template %s into the pod: %w", tmpl, err)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(merged, out); err != nil {
		return nil, err
	}
	orderContainers(out, d.HoldApplication)
	if len(d.AppContainerNames) > 0 {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		if _, set := out.Annotations[AnnotationDefaultContainer]; !set {
			out.Annotations[AnnotationDefaultContainer] = d.AppContainerNames[0] // kubectl logs/exec pick the app
		}
	}
	if rewrite {
		rewriteProbes(out, probers)
	}
	return out, nil
}

// skip reports pods that are not injected, as Istio decides them.
func skip(pod *corev1.Pod) bool {
	if pod.Spec.HostNetwork {
		return true
	}
	if _, done := pod.Annotations[AnnotationStatus]; done {
		return true
	}
	for _, v := range []string{pod.Labels[AnnotationInject], pod.Annotations[AnnotationInject]} {
		if b, err := strconv.ParseBool(v); err == nil && !b {
			return true
		}
	}
	return false
}

func (in *Injector) data(pod *corev1.Pod, proxyless bool) (*templateData, error) {
	a := pod.Annotations
	native := in.opts.NativeSidecars
	if v, ok := a[AnnotationNativeSidecar]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s=%q is not true or false", AnnotationNativeSidecar, v)
		}
		native = b
	}
	c := capture{
		IncludeOutboundIPRanges: cmp.Or(a[AnnotationIncludeOutboundIP], "*"),
		ExcludeOutboundIPRanges: a[AnnotationExcludeOutboundIP],
		IncludeInboundPorts:     cmp.Or(a[AnnotationIncludeInbound], "*"),
		ExcludeInboundPorts:     portList([]int{EnvoyPromPort, HealthPort, StatusPort}, a[AnnotationExcludeInbound]),
		IncludeOutboundPorts:    a[AnnotationIncludeOutbound],
		ExcludeOutboundPorts:    a[AnnotationExcludeOutbound],
		ExcludeInterfaces:       a[AnnotationExcludeInterfaces],
	}
	if err := checkCapture(a); err != nil {
		return nil, err
	}
	proxyConfig := "{}"
	hold := in.opts.HoldApplicationUntilProxyStarts
	if v := a[AnnotationProxyConfig]; v != "" {
		j, err := yaml.YAMLToJSON([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("annotation %s is not valid YAML: %w", AnnotationProxyConfig, err)
		}
		proxyConfig = string(j)
		var pc struct {
			Hold *bool `json:"holdApplicationUntilProxyStarts"`
		}
		if err := json.Unmarshal(j, &pc); err != nil {
			return nil, fmt.Errorf("annotation %s: holdApplicationUntilProxyStarts is not true or false: %w", AnnotationProxyConfig, err)
		}
		if pc.Hold != nil {
			hold = *pc.Hold
		}
	}
	var apps []string
	var ports []corev1.ContainerPort
	for _, ctr := range pod.Spec.Containers {
		if ctr.Name == ProxyContainer {
			continue
		}
		apps = append(apps, ctr.Name)
		ports = append(ports, ctr.Ports...)
	}
	portsJSON := "[]"
	if len(ports) > 0 {
		b, _ := json.Marshal(ports)
		portsJSON = string(b)
	}
	d := &templateData{
		ProxyImage:        cmp.Or(a[AnnotationProxyImage], in.opts.ProxyImage),
		ProxyUID:          DefaultProxyUID,
		CAAddr:            in.opts.CAAddr,
		DomainSuffix:      in.opts.DomainSuffix,
		TrustDomain:       in.opts.TrustDomain,
		ClusterID:         in.opts.ClusterID,
		LogLevel:          cmp.Or(a[AnnotationLogLevel], DefaultLogLevel),
		ProxyConfig:       proxyConfig,
		PodPorts:          portsJSON,
		AppContainers:     strings.Join(apps, ","),
		AppContainerNames: apps,
		WorkloadName:      workloadName(pod),
		Owner:             owner(pod),
		LabelsJSON:        labelsJSON(pod.Labels),
		Native:            native,
		Proxyless:         proxyless,
		// A native sidecar is started (and ready) before the app by the kubelet itself.
		HoldApplication: hold && !native,
		Capture:         c,
	}
	d.CanonicalName = cmp.Or(pod.Labels["service.istio.io/canonical-name"], pod.Labels["app.kubernetes.io/name"], pod.Labels["app"], d.WorkloadName)
	d.CanonicalRevision = cmp.Or(pod.Labels["service.istio.io/canonical-revision"], pod.Labels["app.kubernetes.io/version"], pod.Labels["version"], "latest")
	st := injectionStatus{Containers: []string{ProxyContainer}, Volumes: volumeNames, Revision: "default"}
	if !proxyless {
		st.InitContainers = []string{InitContainer}
	}
	if native {
		st.InitContainers, st.Containers = append(st.InitContainers, ProxyContainer), nil
	}
	b, _ := json.Marshal(st)
	d.Status = string(b)
	return d, nil
}

// volumeNames are the volumes the templates add, recorded in the status annotation.
var volumeNames = []string{"workload-socket", "credential-socket", "workload-certs", "istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"}

// injectionStatus is the sidecar.istio.io/status annotation, as Istio writes it.
type injectionStatus struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// checkCapture refuses annotations istio-iptables would fail on at pod start,
// where the error is far harder to find.
func checkCapture(a map[string]string) error {
	for _, key := range []string{AnnotationIncludeOutboundIP, AnnotationExcludeOutboundIP} {
		v := a[key]
		if v == "" || v == "*" {
			continue
		}
		for _, s := range strings.Split(v, ",") {
			if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
				return fmt.Errorf("annotation %s=%q: %q is not a CIDR such as 10.0.0.0/8; use a comma-separated list, or * for all", key, v, s)
			}
		}
	}
	for _, key := range []string{AnnotationIncludeInbound, AnnotationExcludeInbound, AnnotationIncludeOutbound, AnnotationExcludeOutbound} {
		v := a[key]
		if v == "" || (v == "*" && key == AnnotationIncludeInbound) {
			continue
		}
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("annotation %s=%q: %q is not a port between 1 and 65535; use a comma-separated list", key, v, s)
			}
		}
	}
	return nil
}

// workloadName is the owning controller's name: a ReplicaSet's Deployment
// (its name minus the pod-template hash), else the pod's own name.
func workloadName(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := pod.Labels["pod-template-hash"]; h != "" {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		}
		return o.Name
	}
	return cmp.Or(pod.Name, strings.TrimSuffix(pod.GenerateName, "-"))
}

// owner names the workload's controller as Istio's ISTIO_META_OWNER does:
// the Deployment behind a ReplicaSet, else the controller itself.
func owner(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		kind, group := strings.ToLower(o.Kind)+"s", o.APIVersion
		name := o.Name
		if o.Kind == "ReplicaSet" && pod.Labels["pod-template-hash"] != "" {
			kind, name = "deployments", workloadName(pod)
		}
		if !strings.Contains(group, "/") {
			group = "api/" + group // core group: /api/v1
		} else {
			group = "apis/" + group
		}
		return fmt.Sprintf("kubernetes://%s/namespaces/%s/%s/%s", group, pod.Namespace, kind, name)
	}
	return ""
}

func labelsJSON(l map[string]string) string {
	if len(l) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(l) // keys sorted
	return string(b)
}

// orderContainers puts istio-init, then a native istio-proxy, before the
// application's init containers, so that those already have the mesh, and
// the istio-proxy container after the application's, as Istio does.
func orderContainers(pod *corev1.Pod, proxyFirst bool) {
	rank := func(c corev1.Container) int {
		switch c.Name {
		case InitContainer:
			return 0
		case ProxyContainer:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(pod.Spec.InitContainers, func(a, b corev1.Container) int { return cmp.Compare(rank(a), rank(b)) })
	// The kubelet starts containers in order and runs a postStart hook to
	// completion before the next: with hold, the proxy goes first.
	dir := -1
	if proxyFirst {
		dir = 1
	}
	slices.SortStableFunc(pod.Spec.Containers, func(a, b corev1.Container) int { return dir * cmp.Compare(rank(a), rank(b)) })
}
