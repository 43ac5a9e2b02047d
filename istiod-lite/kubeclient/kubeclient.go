// Package kubeclient reaches the Kubernetes API server for exactly the API
// groups and kinds istiod-lite reads and writes, and nothing more.
//
// client-go's kubernetes.Clientset, its informer factory and Istio's
// generated clientset register every API group they know into their schemes
// and link all of their generated code: that doubled the istiod-lite binary
// (35 to 75 MB) and cost about 15 MiB of resident binary pages even when the
// file registry is the only one in use (docs/performance.md). The clients
// here are client-go's own generic typed clients (gentype) over REST clients
// whose scheme holds only the groups below, so the behaviour (requests,
// errors, watch decoding) is client-go's.
//
// Every field of Clients has the method set of client-go's typed clients, so
// code written against it also accepts client-go's clientsets and fakes (see
// kubeclienttest), which is how the unit tests drive it.
package kubeclient

import (
	"context"
	"encoding/json"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

// Reader is what istiod-lite does with a watched kind: list it and watch it
// (for informers) and read one object.
type Reader[T, L runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Writer adds creating and updating objects of a kind.
type Writer[T, L runtime.Object] interface {
	Reader[T, L]
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Creator is a kind that is only ever created (a review request).
type Creator[T runtime.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// Clients are the typed clients istiod-lite uses, one per kind. Namespaced
// kinds take the namespace ("" is all namespaces, for lists and watches).
type Clients struct {
	Services       func(ns string) Reader[*corev1.Service, *corev1.ServiceList]
	Pods           func(ns string) Reader[*corev1.Pod, *corev1.PodList]
	Namespaces     func() Reader[*corev1.Namespace, *corev1.NamespaceList]
	ConfigMaps     func(ns string) Writer[*corev1.ConfigMap, *corev1.ConfigMapList]
	EndpointSlices func(ns string) Reader[*discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList]

	TokenReviews func() Creator[*authenticationv1.TokenReview]

	ValidatingWebhookConfigurations func() Writer[*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfigurationList]
	MutatingWebhookConfigurations   func() Writer[*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfigurationList]

	VirtualServices       func(ns string) Reader[*networkingv1.VirtualService, *networkingv1.VirtualServiceList]
	DestinationRules      func(ns string) Reader[*networkingv1.DestinationRule, *networkingv1.DestinationRuleList]
	Gateways              func(ns string) Reader[*networkingv1.Gateway, *networkingv1.GatewayList]
	Sidecars              func(ns string) Reader[*networkingv1.Sidecar, *networkingv1.SidecarList]
	ServiceEntries        func(ns string) Reader[*networkingv1.ServiceEntry, *networkingv1.ServiceEntryList]
	WorkloadEntries       func(ns string) Reader[*networkingv1.WorkloadEntry, *networkingv1.WorkloadEntryList]
	PeerAuthentications   func(ns string) Reader[*securityv1.PeerAuthentication, *securityv1.PeerAuthenticationList]
	AuthorizationPolicies func(ns string) Reader[*securityv1.AuthorizationPolicy, *securityv1.AuthorizationPolicyList]

	// ServerVersion asks the API server for its version: a cheap liveness
	// probe that needs no RBAC.
	ServerVersion func(ctx context.Context) error
	// ServedResources lists the resource names (plural) the API server
	// serves in a group version, such as "networking.istio.io/v1": how a
	// missing CRD is told apart from an empty one.
	ServedResources func(ctx context.Context, groupVersion string) (map[string]bool, error)
	// REST is a client for the core group, for raw paths such as the
	// service account issuer's discovery document.
	REST rest.Interface
}

// groups are the API groups of Clients, each with the types to register.
var groups = []struct {
	gv      schema.GroupVersion
	addToGV func(*runtime.Scheme) error
}{
	{corev1.SchemeGroupVersion, corev1.AddToScheme},
	{discoveryv1.SchemeGroupVersion, discoveryv1.AddToScheme},
	{authenticationv1.SchemeGroupVersion, authenticationv1.AddToScheme},
	{admissionregistrationv1.SchemeGroupVersion, admissionregistrationv1.AddToScheme},
	{networkingv1.SchemeGroupVersion, networkingv1.AddToScheme},
	{securityv1.SchemeGroupVersion, securityv1.AddToScheme},
}

// New returns the clients for the cluster cfg points at. The groups share one
// HTTP client (one connection pool), as a client-go clientset's do.
func New(cfg *rest.Config) (*Clients, error) {
	scheme := runtime.NewScheme()
	// List, get and watch options are encoded as unversioned query parameters.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	for _, g := range groups {
		utilruntime.Must(g.addToGV(scheme))
	}
	codecs := serializer.NewCodecFactory(scheme)
	params := runtime.NewParameterCodec(scheme)

	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes HTTP client: %w", err)
	}
	rc := map[string]*rest.RESTClient{}
	for _, g := range groups {
		c := rest.CopyConfig(cfg)
		gv := g.gv
		c.GroupVersion = &gv
		c.APIPath = "/apis"
		if gv.Group == "" {
			c.APIPath = "/api"
		}
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		client, err := rest.RESTClientForConfigAndClient(c, httpClient)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
		rc[gv.Group] = client
	}
	core := rc[""]
	return &Clients{
		Services: func(ns string) Reader[*corev1.Service, *corev1.ServiceList] {
			return gentype.NewClientWithList("services", core, params, ns, newOf[corev1.Service], newOf[corev1.ServiceList])
		},
		Pods: func(ns string) Reader[*corev1.Pod, *corev1.PodList] {
			return gentype.NewClientWithList("pods", core, params, ns, newOf[corev1.Pod], newOf[corev1.PodList])
		},
		Namespaces: func() Reader[*corev1.Namespace, *corev1.NamespaceList] {
			return gentype.NewClientWithList("namespaces", core, params, "", newOf[corev1.Namespace], newOf[corev1.NamespaceList])
		},
		ConfigMaps: func(ns string) Writer[*corev1.ConfigMap, *corev1.ConfigMapList] {
			return gentype.NewClientWithList("configmaps", core, params, ns, newOf[corev1.ConfigMap], newOf[corev1.ConfigMapList])
		},
		EndpointSlices: func(ns string) Reader[*discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList] {
			return gentype.NewClientWithList("endpointslices", rc[discoveryv1.GroupName], params, ns, newOf[discoveryv1.EndpointSlice], newOf[discoveryv1.EndpointSliceList])
		},
		TokenReviews: func() Creator[*authenticationv1.TokenReview] {
			return gentype.NewClient("tokenreviews", rc[authenticationv1.GroupName], params, "", newOf[authenticationv1.TokenReview])
		},
		ValidatingWebhookConfigurations: func() Writer[*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfigurationList] {
			return gentype.NewClientWithList("validatingwebhookconfigurations", rc[admissionregistrationv1.GroupName], params, "", newOf[admissionregistrationv1.ValidatingWebhookConfiguration], newOf[admissionregistrationv1.ValidatingWebhookConfigurationList])
		},
		MutatingWebhookConfigurations: func() Writer[*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfigurationList] {
			return gentype.NewClientWithList("mutatingwebhookconfigurations", rc[admissionregistrationv1.GroupName], params, "", newOf[admissionregistrationv1.MutatingWebhookConfiguration], newOf[admissionregistrationv1.MutatingWebhookConfigurationList])
		},
		VirtualServices: func(ns string) Reader[*networkingv1.VirtualService, *networkingv1.VirtualServiceList] {
			return gentype.NewClientWithList("virtualservices", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.VirtualService], newOf[networkingv1.VirtualServiceList])
		},
		DestinationRules: func(ns string) Reader[*networkingv1.DestinationRule, *networkingv1.DestinationRuleList] {
			return gentype.NewClientWithList("destinationrules", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.DestinationRule], newOf[networkingv1.DestinationRuleList])
		},
		Gateways: func(ns string) Reader[*networkingv1.Gateway, *networkingv1.GatewayList] {
			return gentype.NewClientWithList("gateways", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.Gateway], newOf[networkingv1.GatewayList])
		},
		Sidecars: func(ns string) Reader[*networkingv1.Sidecar, *networkingv1.SidecarList] {
			return gentype.NewClientWithList("sidecars", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.Sidecar], newOf[networkingv1.SidecarList])
		},
		ServiceEntries: func(ns string) Reader[*networkingv1.ServiceEntry, *networkingv1.ServiceEntryList] {
			return gentype.NewClientWithList("serviceentries", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.ServiceEntry], newOf[networkingv1.ServiceEntryList])
		},
		WorkloadEntries: func(ns string) Reader[*networkingv1.WorkloadEntry, *networkingv1.WorkloadEntryList] {
			return gentype.NewClientWithList("workloadentries", rc[networkingv1.SchemeGroupVersion.Group], params, ns, newOf[networkingv1.WorkloadEntry], newOf[networkingv1.WorkloadEntryList])
		},
		PeerAuthentications: func(ns string) Reader[*securityv1.PeerAuthentication, *securityv1.PeerAuthenticationList] {
			return gentype.NewClientWithList("peerauthentications", rc[securityv1.SchemeGroupVersion.Group], params, ns, newOf[securityv1.PeerAuthentication], newOf[securityv1.PeerAuthenticationList])
		},
		AuthorizationPolicies: func(ns string) Reader[*securityv1.AuthorizationPolicy, *securityv1.AuthorizationPolicyList] {
			return gentype.NewClientWithList("authorizationpolicies", rc[securityv1.SchemeGroupVersion.Group], params, ns, newOf[securityv1.AuthorizationPolicy], newOf[securityv1.AuthorizationPolicyList])
		},
		ServerVersion: func(ctx context.Context) error {
			return core.Get().AbsPath("/version").Do(ctx).Error()
		},
		ServedResources: func(ctx context.Context, groupVersion string) (map[string]bool, error) {
			return servedResources(ctx, core, groupVersion)
		},
		REST: core,
	}, nil
}

func newOf[T any]() *T { return new(T) }

// servedResources reads the API server's discovery document of one group
// version (/apis/<group>/<version>, or /api/v1 for the core group).
func servedResources(ctx context.Context, c rest.Interface, groupVersion string) (map[string]bool, error) {
	gv, err := schema.ParseGroupVersion(groupVersion)
	if err != nil {
		return nil, err
	}
	path := "/apis/" + gv.String()
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	raw, err := c.Get().AbsPath(path).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	out := make(map[string]bool, len(list.APIResources))
	for _, r := range list.APIResources {
		out[r.Name] = true
	}
	return out, nil
}
