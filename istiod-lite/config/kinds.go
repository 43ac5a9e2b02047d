package config

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API groups and the versions of each that istiod-lite accepts. Istio serves
// the same schema under every listed version, so they decode identically and
// are normalised to the first (storage) version.
const (
	groupNetworking = "networking.istio.io"
	groupSecurity   = "security.istio.io"
	groupDiscovery  = "discovery.k8s.io"
	groupMeshlite   = "meshlite.io"
)

var (
	networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
	securityVersions   = []string{"v1", "v1beta1"}
)

// Kind names as they appear in `kind:` and in model.Object.Kind.
const (
	KindService             = "Service"
	KindEndpoints           = "Endpoints"
	KindEndpointSlice       = "EndpointSlice"
	KindServiceEntry        = "ServiceEntry"
	KindWorkloadEntry       = "WorkloadEntry"
	KindVirtualService      = "VirtualService"
	KindDestinationRule     = "DestinationRule"
	KindGateway             = "Gateway"
	KindSidecar             = "Sidecar"
	KindPeerAuthentication  = "PeerAuthentication"
	KindAuthorizationPolicy = "AuthorizationPolicy"
	KindMeshConfig          = "MeshConfig"
	KindConfigMap           = "ConfigMap"
)

type kindInfo struct {
	group         string
	versions      []string
	kind          string
	core          bool // Kubernetes type decoded whole, not envelope + proto spec
	clusterScoped bool
	nameOptional  bool
	decodeCore    func(r *reporter, raw []byte, opts Options) any
	decodeIstio   func(r *reporter, env *envelope, spec any) any
}

func (k *kindInfo) apiVersion() string {
	if k.group == "" {
		return k.versions[0]
	}
	return k.group + "/" + k.versions[0]
}

var kinds = []*kindInfo{
	coreKind("", "v1", KindService, func(r *reporter, raw []byte, opts Options) any {
		var o corev1.Service
		if !strictDecode(r, raw, &o) {
			return nil
		}
		setIdentity(r, &o.ObjectMeta, opts, false, false)
		validateService(r, &o)
		return &o
	}),
	coreKind("", "v1", KindEndpoints, func(r *reporter, raw []byte, opts Options) any {
		var o corev1.Endpoints
		if !strictDecode(r, raw, &o) {
			return nil
		}
		setIdentity(r, &o.ObjectMeta, opts, false, false)
		validateEndpoints(r, &o)
		return &o
	}),
	coreKind(groupDiscovery, "v1", KindEndpointSlice, func(r *reporter, raw []byte, opts Options) any {
		var o discoveryv1.EndpointSlice
		if !strictDecode(r, raw, &o) {
			return nil
		}
		setIdentity(r, &o.ObjectMeta, opts, false, false)
		validateEndpointSlice(r, &o)
		return &o
	}),
	istioKind(groupNetworking, networkingVersions, KindServiceEntry, func(m metav1.ObjectMeta) (*networkingv1.ServiceEntry, proto.Message) {
		o := &networkingv1.ServiceEntry{ObjectMeta: m}
		return o, &o.Spec
	}, validateServiceEntry),
	istioKind(groupNetworking, networkingVersions, KindWorkloadEntry, func(m metav1.ObjectMeta) (*networkingv1.WorkloadEntry, proto.Message) {
		o := &networkingv1.WorkloadEntry{ObjectMeta: m}
		return o, &o.Spec
	}, validateWorkloadEntry),
	istioKind(groupNetworking, networkingVersions, KindVirtualService, func(m metav1.ObjectMeta) (*networkingv1.VirtualService, proto.Message) {
		o := &networkingv1.VirtualService{ObjectMeta: m}
		return o, &o.Spec
	}, validateVirtualService),
	istioKind(groupNetworking, networkingVersions, KindDestinationRule, func(m metav1.ObjectMeta) (*networkingv1.DestinationRule, proto.Message) {
		o := &networkingv1.DestinationRule{ObjectMeta: m}
		return o, &o.Spec
	}, validateDestinationRule),
	istioKind(groupNetworking, networkingVersions, KindGateway, func(m metav1.ObjectMeta) (*networkingv1.Gateway, proto.Message) {
		o := &networkingv1.Gateway{ObjectMeta: m}
		return o, &o.Spec
	}, validateGateway),
	istioKind(groupNetworking, networkingVersions, KindSidecar, func(m metav1.ObjectMeta) (*networkingv1.Sidecar, proto.Message) {
		o := &networkingv1.Sidecar{ObjectMeta: m}
		return o, &o.Spec
	}, validateSidecar),
	istioKind(groupSecurity, securityVersions, KindPeerAuthentication, func(m metav1.ObjectMeta) (*securityv1.PeerAuthentication, proto.Message) {
		o := &securityv1.PeerAuthentication{ObjectMeta: m}
		return o, &o.Spec
	}, validatePeerAuthentication),
	istioKind(groupSecurity, securityVersions, KindAuthorizationPolicy, func(m metav1.ObjectMeta) (*securityv1.AuthorizationPolicy, proto.Message) {
		o := &securityv1.AuthorizationPolicy{ObjectMeta: m}
		return o, &o.Spec
	}, validateAuthorizationPolicy),
	func() *kindInfo {
		k := istioKind(groupMeshlite, []string{"v1alpha1"}, KindMeshConfig, func(metav1.ObjectMeta) (*meshv1alpha1.MeshConfig, proto.Message) {
			o := &meshv1alpha1.MeshConfig{}
			return o, o
		}, validateMeshConfig)
		k.clusterScoped, k.nameOptional = true, true
		return k
	}(),
	// Istio's own mesh ConfigMap, an alternative to the MeshConfig document.
	coreKind("", "v1", KindConfigMap, decodeMeshConfigMap),
}

func coreKind(group, version, kind string, decode func(*reporter, []byte, Options) any) *kindInfo {
	return &kindInfo{group: group, versions: []string{version}, kind: kind, core: true, decodeCore: decode}
}

// istioKind wires an Istio kind: newObj builds the typed object around the
// decoded metadata and returns its spec to decode into, and validate runs the
// kind's semantic rules on the result.
func istioKind[T any](group string, versions []string, kind string, newObj func(metav1.ObjectMeta) (*T, proto.Message), validate func(*reporter, *T)) *kindInfo {
	k := &kindInfo{group: group, versions: versions, kind: kind}
	k.decodeIstio = func(r *reporter, env *envelope, specValue any) any {
		obj, spec := newObj(env.Metadata)
		if !decodeSpec(r, specValue, spec) {
			return nil
		}
		setTypeMeta(obj, k)
		validate(r, obj)
		return obj
	}
	return k
}

// setTypeMeta normalises apiVersion to the storage version so that the
// snapshot (and its hash) does not depend on which alias a file used.
func setTypeMeta(obj any, k *kindInfo) {
	tm := metav1.TypeMeta{APIVersion: k.apiVersion(), Kind: k.kind}
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		o.TypeMeta = tm
	case *networkingv1.WorkloadEntry:
		o.TypeMeta = tm
	case *networkingv1.VirtualService:
		o.TypeMeta = tm
	case *networkingv1.DestinationRule:
		o.TypeMeta = tm
	case *networkingv1.Gateway:
		o.TypeMeta = tm
	case *networkingv1.Sidecar:
		o.TypeMeta = tm
	case *securityv1.PeerAuthentication:
		o.TypeMeta = tm
	case *securityv1.AuthorizationPolicy:
		o.TypeMeta = tm
	}
}

func kindByName(kind string) *kindInfo {
	for _, k := range kinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}

// lookupKind finds the kind for apiVersion and kind, or explains what is accepted.
func lookupKind(apiVersion, kind string) (*kindInfo, string) {
	group, version, found := strings.Cut(apiVersion, "/")
	if !found {
		group, version = "", apiVersion
	}
	k := kindByName(kind)
	if k == nil {
		var names []string
		for _, k := range kinds {
			names = append(names, k.kind)
		}
		return nil, fmt.Sprintf("unsupported kind %q; supported kinds: %s", kind, strings.Join(names, ", "))
	}
	if k.group != group || !slices.Contains(k.versions, version) {
		var want []string
		for _, v := range k.versions {
			if k.group == "" {
				want = append(want, v)
			} else {
				want = append(want, k.group+"/"+v)
			}
		}
		return nil, fmt.Sprintf("kind %s is not served by apiVersion %q; use %s", kind, apiVersion, strings.Join(want, " or "))
	}
	return k, ""
}
