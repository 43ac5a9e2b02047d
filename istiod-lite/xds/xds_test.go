package xds

import (
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

func TestParseNode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		node    *core.Node
		want    *Proxy
		wantErr string
	}{
		{
			name: "sidecar with metadata",
			node: node(t, "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local", map[string]any{
				"NAMESPACE": "default", "SERVICE_ACCOUNT": "reviews", "INSTANCE_IPS": "10.0.0.1, fd00::1",
				"LABELS": map[string]any{"app": "reviews"},
			}),
			want: &Proxy{ID: "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local", Type: SidecarProxy,
				IPAddresses: []string{"10.0.0.1", "fd00::1"}, PodName: "reviews-v1-abc", Namespace: "default",
				DNSDomain: "default.svc.cluster.local", ServiceAccount: "reviews", Labels: map[string]string{"app": "reviews"}},
		},
		{
			name: "proxyless gRPC, namespace from the node ID",
			node: node(t, "sidecar~10.0.1.9~client.demo~demo.svc.cluster.local", map[string]any{"GENERATOR": "grpc"}),
			want: &Proxy{ID: "sidecar~10.0.1.9~client.demo~demo.svc.cluster.local", Type: SidecarProxy, IPAddresses: []string{"10.0.1.9"},
				PodName: "client", Namespace: "demo", DNSDomain: "demo.svc.cluster.local", Generator: "grpc"},
		},
		{
			name: "router",
			node: &core.Node{Id: "router~10.0.0.5~gw.istio-system~istio-system.svc.cluster.local"},
			want: &Proxy{ID: "router~10.0.0.5~gw.istio-system~istio-system.svc.cluster.local", Type: Router, IPAddresses: []string{"10.0.0.5"},
				PodName: "gw", Namespace: "istio-system", DNSDomain: "istio-system.svc.cluster.local"},
		},
		{name: "empty", node: &core.Node{}, wantErr: "node ID is empty"},
		{name: "not Istio's format", node: &core.Node{Id: "envoy-1"}, wantErr: "want 4"},
		{name: "unknown type", node: &core.Node{Id: "waypoint~1.2.3.4~a.b~b.svc.cluster.local"}, wantErr: `type "waypoint"`},
		{name: "bad IP", node: &core.Node{Id: "sidecar~nope~a.b~b.svc.cluster.local"}, wantErr: "not an IP"},
		{name: "bad INSTANCE_IPS", node: node(t, "sidecar~1.2.3.4~a.b~b.svc.cluster.local", map[string]any{"INSTANCE_IPS": "1.2.3.4,x"}), wantErr: "INSTANCE_IPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNode(tc.node)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestMTLSModePrecedence(t *testing.T) {
	mesh := pa(t, `{metadata: {name: default, namespace: istio-system}, spec: {mtls: {mode: STRICT}}}`)
	ns := pa(t, `{metadata: {name: default, namespace: default}, spec: {mtls: {mode: PERMISSIVE}}}`)
	wl := pa(t, `{metadata: {name: r, namespace: default}, spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {"8080": {mode: DISABLE}}}}`)
	for _, tc := range []struct {
		name   string
		pas    []*securityv1.PeerAuthentication
		labels map[string]string
		port   uint32
		want   security.PeerAuthentication_MutualTLS_Mode
	}{
		{"no policy is PERMISSIVE", nil, nil, 80, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"mesh-wide", []*securityv1.PeerAuthentication{mesh}, nil, 80, security.PeerAuthentication_MutualTLS_STRICT},
		{"namespace beats mesh", []*securityv1.PeerAuthentication{mesh, ns}, nil, 80, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"workload beats namespace", []*securityv1.PeerAuthentication{mesh, ns, wl}, map[string]string{"app": "reviews"}, 80, security.PeerAuthentication_MutualTLS_STRICT},
		{"selector not matching", []*securityv1.PeerAuthentication{ns, wl}, map[string]string{"app": "ratings"}, 80, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"port level beats workload", []*securityv1.PeerAuthentication{wl}, map[string]string{"app": "reviews"}, 8080, security.PeerAuthentication_MutualTLS_DISABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := newIndex(&model.Snapshot{PeerAuthentications: tc.pas})
			if got := ix.mtlsMode("default", tc.labels, tc.port); got != tc.want {
				t.Errorf("mode = %v, want %v", got, tc.want)
			}
		})
	}
}

func generate(t *testing.T, snap *model.Snapshot, n *core.Node) *Resources {
	t.Helper()
	p, err := ParseNode(n)
	if err != nil {
		t.Fatal(err)
	}
	return NewGenerator(snap).Generate(p)
}

func find[T proto.Message](t *testing.T, r *Resources, typeURL, name string) T {
	t.Helper()
	for _, res := range r.ByType[typeURL] {
		if res.Name == name {
			return res.Message.(T)
		}
	}
	var names []string
	for _, res := range r.ByType[typeURL] {
		names = append(names, res.Name)
	}
	t.Fatalf("no %s named %q; have %v", typeURL, name, names)
	var zero T
	return zero
}

// STRICT must leave no plaintext path to the workload.
func TestStrictInboundRejectsPlaintext(t *testing.T) {
	snap := &model.Snapshot{Services: bookinfo(), PeerAuthentications: []*securityv1.PeerAuthentication{
		pa(t, `{metadata: {name: default, namespace: istio-system}, spec: {mtls: {mode: STRICT}}}`)}}
	l := find[*listener.Listener](t, generate(t, snap, node(t, productpageID, sidecarMD())), resourcev3.ListenerType, InboundListenerName)
	chains := append([]*listener.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
	for _, fc := range chains {
		if fc.GetTransportSocket() != nil {
			continue // terminates mTLS
		}
		tp := &tcpproxy.TcpProxy{}
		f := fc.GetFilters()[0]
		if f.GetTypedConfig().MessageIs(tp) {
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				t.Fatal(err)
			}
			if tp.GetCluster() == BlackHoleCluster {
				continue
			}
		}
		t.Errorf("filter chain %q serves plaintext under STRICT", fc.GetName())
	}
}

func TestWeightedRoute(t *testing.T) {
	snap := &model.Snapshot{
		Services:         bookinfo(),
		VirtualServices:  []*networkingv1.VirtualService{vs(t, reviewsVS)},
		DestinationRules: []*networkingv1.DestinationRule{dr(t, reviewsDR)},
	}
	rc := find[*route.RouteConfiguration](t, generate(t, snap, node(t, productpageID, sidecarMD())), resourcev3.RouteType, "9080")
	var split *route.Route
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == "split" {
				split = r
			}
		}
	}
	if split == nil {
		t.Fatal("route split not generated")
	}
	got := map[string]uint32{}
	for _, c := range split.GetRoute().GetWeightedClusters().GetClusters() {
		got[c.GetName()] = c.GetWeight().GetValue()
	}
	want := map[string]uint32{
		"outbound|9080|v1|reviews.default.svc.cluster.local": 80,
		"outbound|9080|v2|reviews.default.svc.cluster.local": 20,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("weights (-want +got):\n%s", d)
	}
	if got := split.GetRoute().GetTimeout().AsDuration().String(); got != "5s" {
		t.Errorf("timeout %s, want 5s", got)
	}
	if got := split.GetRoute().GetRetryPolicy().GetNumRetries().GetValue(); got != 3 {
		t.Errorf("retries %d, want 3", got)
	}
}

// grpc-go rejects SDS secret configs: nothing sent to a proxyless client may carry one.
func TestGRPCNeverUsesSDS(t *testing.T) {
	snap := &model.Snapshot{
		Services: greeter(),
		DestinationRules: []*networkingv1.DestinationRule{dr(t, `
metadata: {name: greeter, namespace: demo}
spec: {host: greeter.demo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
`)},
		PeerAuthentications: []*securityv1.PeerAuthentication{pa(t, `{metadata: {name: default, namespace: demo}, spec: {mtls: {mode: STRICT}}}`)},
	}
	res := generate(t, snap, node(t, grpcClientID, grpcMD()))
	tlsContexts := 0
	for _, typ := range TypeURLs {
		for _, r := range res.ByType[typ] {
			eachMessage(r.Message.ProtoReflect(), func(m proto.Message) {
				if c, ok := m.(*tlsv3.CommonTlsContext); ok {
					tlsContexts++
					if len(c.GetTlsCertificateSdsSecretConfigs()) > 0 || c.GetValidationContextSdsSecretConfig() != nil || c.GetCombinedValidationContext() != nil {
						t.Errorf("%s %q: TLS context uses SDS, which grpc-go rejects", typ, r.Name)
					}
					if c.GetTlsCertificateProviderInstance().GetInstanceName() != CertProviderInstance {
						t.Errorf("%s %q: identity certificate provider %q, want %q", typ, r.Name, c.GetTlsCertificateProviderInstance().GetInstanceName(), CertProviderInstance)
					}
				}
			})
		}
	}
	if tlsContexts == 0 {
		t.Fatal("ISTIO_MUTUAL and STRICT produced no TLS contexts")
	}
	c := find[*cluster.Cluster](t, res, resourcev3.ClusterType, "outbound|7070||greeter.demo.svc.cluster.local")
	up := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	var sans []string
	//lint:ignore SA1019 grpc-go reads only the untyped SAN matchers.
	for _, m := range up.GetCommonTlsContext().GetValidationContext().GetMatchSubjectAltNames() {
		sans = append(sans, m.GetExact())
	}
	if d := cmp.Diff([]string{"spiffe://cluster.local/ns/demo/sa/greeter"}, sans); d != "" {
		t.Errorf("upstream SANs (-want +got):\n%s", d)
	}
}

// eachMessage calls f on m and every message inside it, unpacking Anys.
func eachMessage(m protoreflect.Message, f func(proto.Message)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		if inner, err := a.UnmarshalNew(); err == nil {
			eachMessage(inner.ProtoReflect(), f)
		}
		return
	}
	f(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				eachMessage(v.List().Get(i).Message(), f)
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { eachMessage(mv.Message(), f); return true })
			}
		default:
			eachMessage(v.Message(), f)
		}
		return true
	})
}

// Equal content must give equal versions, and a change only changes the affected type.
func TestVersionsFollowContent(t *testing.T) {
	n := node(t, grpcClientID, grpcMD())
	a := generate(t, &model.Snapshot{Services: greeter()}, n)
	b := generate(t, &model.Snapshot{Services: greeter()}, n)
	for _, typ := range TypeURLs {
		if a.Version(typ) != b.Version(typ) {
			t.Errorf("%s: equal snapshots gave versions %s and %s", typ, a.Version(typ), b.Version(typ))
		}
	}
	svcs := greeter()
	svcs[0].Endpoints = svcs[0].Endpoints[:2]
	c := generate(t, &model.Snapshot{Services: svcs}, n)
	if a.Version(resourcev3.EndpointType) == c.Version(resourcev3.EndpointType) {
		t.Error("removing an endpoint did not change the EDS version")
	}
	if a.Version(resourcev3.RouteType) != c.Version(resourcev3.RouteType) {
		t.Error("removing an endpoint changed the RDS version")
	}
}

func TestMeshRootNamespace(t *testing.T) {
	rootPA := pa(t, `{metadata: {name: default, namespace: mesh-root}, spec: {mtls: {mode: STRICT}}}`)
	ix := newIndex(&model.Snapshot{PeerAuthentications: []*securityv1.PeerAuthentication{rootPA}, Mesh: &meshv1alpha1.MeshConfig{RootNamespace: "mesh-root"}})
	if got := ix.mtlsMode("default", nil, 80); got != security.PeerAuthentication_MutualTLS_STRICT {
		t.Errorf("policy in meshConfig.rootNamespace: mode %v, want STRICT", got)
	}
	ix = newIndex(&model.Snapshot{PeerAuthentications: []*securityv1.PeerAuthentication{rootPA}})
	if got := ix.mtlsMode("default", nil, 80); got != security.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("policy outside the default root namespace applied mesh-wide: %v", got)
	}
}
