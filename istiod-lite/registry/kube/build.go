package kube

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1"
	securitylisters "istio.io/client-go/pkg/listers/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/model"
)

// SourceKubernetes is the model.Source file of objects read from the API server.
const SourceKubernetes = "kubernetes"

type listers struct {
	meshCM     corelisters.ConfigMapLister
	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister

	vs networkinglisters.VirtualServiceLister
	dr networkinglisters.DestinationRuleLister
	gw networkinglisters.GatewayLister
	sc networkinglisters.SidecarLister
	se networkinglisters.ServiceEntryLister
	we networkinglisters.WorkloadEntryLister
	pa securitylisters.PeerAuthenticationLister
	ap securitylisters.AuthorizationPolicyLister
}

// parsedObject caches the translation of one API object at one resourceVersion,
// so a rebuild re-validates only what changed.
type parsedObject struct {
	rv   string
	objs []*config.Object
}

// kubeObject is what every listed object offers.
type kubeObject interface {
	metav1.Object
}

// build translates the listed objects of the selected namespaces into a
// snapshot. Objects that fail istiod-lite's validation are skipped and logged
// (the validating webhook normally keeps them out); the rest still serve.
func (r *Registry) build() *model.Snapshot {
	parsed := make(map[string]parsedObject, len(r.parsed))
	mesh := r.effectiveMesh(parsed)
	filter, _ := newNamespaceFilter(mesh) // checked by effectiveMesh and New
	nsLabels := map[string]map[string]string{}
	if nss, err := r.listers.namespaces.List(labels.Everything()); err == nil {
		for _, ns := range nss {
			nsLabels[ns.Name] = ns.Labels
		}
	}
	selected := func(ns string) bool {
		if ns == mesh.GetRootNamespace() {
			return true
		}
		l, known := nsLabels[ns]
		return filter.matches(l, known)
	}

	var objs []*config.Object
	addAll := func(apiVersion, kind string, items []kubeObject) {
		for _, it := range items {
			if !selected(it.GetNamespace()) {
				continue
			}
			key := kind + "/" + it.GetNamespace() + "/" + it.GetName()
			p, hit := r.parsed[key]
			if !hit || p.rv != it.GetResourceVersion() || it.GetResourceVersion() == "" {
				p = parsedObject{rv: it.GetResourceVersion(), objs: r.parse(apiVersion, kind, it)}
			}
			parsed[key] = p
			objs = append(objs, p.objs...)
		}
	}
	addAll("v1", config.KindService, list(r.listers.services.List(labels.Everything())))
	addAll("discovery.k8s.io/v1", config.KindEndpointSlice, list(r.listers.slices.List(labels.Everything())))
	l := r.listers
	if l.vs != nil {
		addAll("networking.istio.io/v1", config.KindVirtualService, list(l.vs.List(labels.Everything())))
	}
	if l.dr != nil {
		addAll("networking.istio.io/v1", config.KindDestinationRule, list(l.dr.List(labels.Everything())))
	}
	if l.gw != nil {
		addAll("networking.istio.io/v1", config.KindGateway, list(l.gw.List(labels.Everything())))
	}
	if l.sc != nil {
		addAll("networking.istio.io/v1", config.KindSidecar, list(l.sc.List(labels.Everything())))
	}
	if l.se != nil {
		addAll("networking.istio.io/v1", config.KindServiceEntry, list(l.se.List(labels.Everything())))
	}
	if l.we != nil {
		addAll("networking.istio.io/v1", config.KindWorkloadEntry, list(l.we.List(labels.Everything())))
	}
	if l.pa != nil {
		addAll("security.istio.io/v1", config.KindPeerAuthentication, list(l.pa.List(labels.Everything())))
	}
	if l.ap != nil {
		addAll("security.istio.io/v1", config.KindAuthorizationPolicy, list(l.ap.List(labels.Everything())))
	}
	r.parsed = parsed
	slices.SortFunc(objs, func(a, b *config.Object) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	snap := config.Build(&config.Set{Objects: objs, Options: r.opts.Config})
	snap.Mesh = config.DefaultMeshConfig()
	proto.Merge(snap.Mesh, mesh)
	r.addPodInfo(snap, selected)
	snap.Version = snapshotVersion(snap)
	return snap
}

// parse runs one object through the same decoding and validation as a file.
func (r *Registry) parse(apiVersion, kind string, obj kubeObject) []*config.Object {
	doc, err := toDocument(apiVersion, kind, obj)
	if err != nil {
		r.log.Warn("cannot encode object; skipped", "kind", kind, "namespace", obj.GetNamespace(), "name", obj.GetName(), "error", err)
		return nil
	}
	out, errs := config.ParseFile(SourceKubernetes, doc, config.Options{
		DefaultNamespace: obj.GetNamespace(),
		DomainSuffix:     r.opts.Config.DomainSuffix,
	})
	if len(errs) > 0 {
		r.log.Warn("invalid config in the API server is not served; fix or delete it", "kind", kind,
			"namespace", obj.GetNamespace(), "name", obj.GetName(), "errors", errs.Error())
	}
	return out
}

// toDocument renders an informer object (which has no TypeMeta) as the JSON
// document `kubectl get -o json` would print, without server-only noise.
func toDocument(apiVersion, kind string, obj any) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = apiVersion, kind
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "ownerReferences")
		delete(md, "finalizers")
	}
	return json.Marshal(m)
}

// addPodInfo gives endpoints the labels and service account of the pod behind
// them, which subsets and SAN checks need and EndpointSlices do not carry.
func (r *Registry) addPodInfo(snap *model.Snapshot, selected func(string) bool) {
	pods, err := r.listers.pods.List(labels.Everything())
	if err != nil || len(pods) == 0 {
		return
	}
	type key struct{ ns, ip string }
	byIP := make(map[key]*corev1.Pod, len(pods))
	for _, p := range pods {
		if !selected(p.Namespace) || p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			byIP[key{p.Namespace, ip.IP}] = p
		}
		if p.Status.PodIP != "" {
			byIP[key{p.Namespace, p.Status.PodIP}] = p
		}
	}
	for i, svc := range snap.Services {
		changed := false
		eps := slices.Clone(svc.Endpoints)
		for j := range eps {
			p := byIP[key{eps[j].Namespace, eps[j].Address}]
			if p == nil {
				continue
			}
			l := maps.Clone(p.Labels)
			maps.Copy(l, eps[j].Labels) // labels already known (WorkloadEntry) win
			eps[j].Labels = l
			eps[j].ServiceAccount = cmp.Or(eps[j].ServiceAccount, p.Spec.ServiceAccountName, "default")
			changed = true
		}
		if changed {
			s := *svc
			s.Endpoints = eps
			snap.Services[i] = &s
		}
	}
}

// snapshotVersion hashes what xDS generation reads. config.Build's version
// covers the config objects; pod labels and service accounts are added here.
func snapshotVersion(snap *model.Snapshot) string {
	h := sha256.New()
	h.Write([]byte(snap.Version))
	b, _ := json.Marshal(snap.Services)
	h.Write(b)
	mb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(snap.Mesh)
	h.Write(mb)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func list[T kubeObject](items []T, err error) []kubeObject {
	if err != nil {
		return nil
	}
	out := make([]kubeObject, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

// benignWatchError reports the errors that are part of normal watching: a
// watch that expired or ended, after which the reflector relists by itself.
func benignWatchError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}
