package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func node(t testing.TB, id string, md map[string]any) *core.Node {
	t.Helper()
	s, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: s}
}

const (
	productpageID = "sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local"
	grpcClientID  = "sidecar~10.0.1.9~client-7d9.demo~demo.svc.cluster.local"
)

func sidecarMD() map[string]any {
	return map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "bookinfo-productpage", "LABELS": map[string]any{"app": "productpage", "version": "v1"}}
}

func grpcMD() map[string]any {
	return map[string]any{"NAMESPACE": "demo", "GENERATOR": "grpc", "INSTANCE_IPS": "10.0.1.9", "LABELS": map[string]any{"app": "greeter", "version": "v1"}}
}

type goldenCase struct {
	name string
	snap *model.Snapshot
	node *core.Node
}

func goldenCases(t testing.TB) []goldenCase {
	strict := pa(t, `{metadata: {name: default, namespace: istio-system}, spec: {mtls: {mode: STRICT}}}`)
	return []goldenCase{
		{
			name: "sidecar-default",
			snap: &model.Snapshot{Services: bookinfo()},
			node: node(t, productpageID, sidecarMD()),
		},
		{
			name: "sidecar-subsets-weighted-faults",
			snap: &model.Snapshot{
				Services:         bookinfo(),
				VirtualServices:  []*networkingv1.VirtualService{vs(t, reviewsVS)},
				DestinationRules: []*networkingv1.DestinationRule{dr(t, reviewsDR)},
			},
			node: node(t, productpageID, sidecarMD()),
		},
		{
			name: "sidecar-strict-istio-mutual",
			snap: &model.Snapshot{
				Services: bookinfo(),
				DestinationRules: []*networkingv1.DestinationRule{dr(t, `
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
`)},
				PeerAuthentications: []*securityv1.PeerAuthentication{strict},
				Mesh:                &meshv1alpha1.MeshConfig{TrustDomain: "example.org"},
			},
			node: node(t, productpageID, sidecarMD()),
		},
		{
			name: "sidecar-permissive-no-automtls",
			snap: &model.Snapshot{
				Services: bookinfo(),
				PeerAuthentications: []*securityv1.PeerAuthentication{pa(t, `
metadata: {name: pp, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"9080": {mode: DISABLE}}
`)},
				Mesh: &meshv1alpha1.MeshConfig{EnableAutoMtls: wrapperspb.Bool(false)},
			},
			node: node(t, productpageID, sidecarMD()),
		},
		{
			name: "grpc-weighted-subsets",
			snap: &model.Snapshot{
				Services:         greeter(),
				VirtualServices:  []*networkingv1.VirtualService{vs(t, greeterVS)},
				DestinationRules: []*networkingv1.DestinationRule{dr(t, greeterDR)},
			},
			node: node(t, grpcClientID, grpcMD()),
		},
		{
			name: "grpc-strict-istio-mutual",
			snap: &model.Snapshot{
				Services: greeter(),
				DestinationRules: []*networkingv1.DestinationRule{dr(t, `
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    loadBalancer: {simple: RANDOM}
    connectionPool: {http: {http2MaxRequests: 50}}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 15s}
`)},
				PeerAuthentications: []*securityv1.PeerAuthentication{pa(t, `{metadata: {name: default, namespace: demo}, spec: {mtls: {mode: STRICT}}}`)},
			},
			node: node(t, grpcClientID, grpcMD()),
		},
	}
}

// render prints resources as stable, indented JSON (protojson randomises
// whitespace, so it is re-indented) grouped by type.
func render(t testing.TB, r *Resources) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, typ := range TypeURLs {
		fmt.Fprintf(&b, "### %s (version %s)\n", typ, r.Version(typ))
		for _, res := range r.ByType[typ] {
			j, err := protojson.Marshal(res.Message)
			if err != nil {
				t.Fatal(err)
			}
			var c, out bytes.Buffer
			if err := json.Compact(&c, j); err != nil {
				t.Fatal(err)
			}
			if err := json.Indent(&out, c.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "## %s\n%s\n", res.Name, out.String())
		}
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseNode(tc.node)
			if err != nil {
				t.Fatal(err)
			}
			res := NewGenerator(tc.snap).Generate(p)
			for _, typ := range TypeURLs {
				for _, r := range res.ByType[typ] {
					if err := Validate(r.Message); err != nil {
						t.Errorf("%s %q fails validation: %v", typ, r.Name, err)
					}
				}
			}
			got := render(t, res)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("generated xDS differs from %s (-want +got); rerun with -update if intended:\n%s", path, d)
			}
		})
	}
}
