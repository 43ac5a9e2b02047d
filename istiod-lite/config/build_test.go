package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

func buildFrom(t *testing.T, files map[string]string) *model.Snapshot {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := Load([]string{dir}, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return Build(set)
}

func TestBuildExampleMesh(t *testing.T) {
	set, err := Load([]string{"../../examples/mesh"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap := Build(set)
	if len(snap.Services) != 1 {
		t.Fatalf("want only the greeter service, got %d services", len(snap.Services))
	}
	want := &model.Service{
		Hostname:   "greeter.demo.svc.cluster.local",
		Name:       "greeter",
		Namespace:  "demo",
		Ports:      []model.Port{{Name: "grpc", Port: 7070, TargetPort: 7070, Protocol: model.ProtocolGRPC}},
		Resolution: model.ResolutionStatic,
		Labels:     map[string]string{"app": "greeter"},
		Endpoints: []model.Endpoint{
			{Address: "127.0.0.11", Ports: map[string]uint32{"grpc": 7070}, Labels: map[string]string{"app": "greeter", "version": "v1"}, Namespace: "demo", ServiceAccount: "greeter", Healthy: true, Weight: 1},
			{Address: "127.0.0.12", Ports: map[string]uint32{"grpc": 7070}, Labels: map[string]string{"app": "greeter", "version": "v2"}, Namespace: "demo", ServiceAccount: "greeter", Healthy: true, Weight: 1},
		},
	}
	if diff := cmp.Diff(want, snap.Services[0]); diff != "" {
		t.Errorf("greeter service (-want +got):\n%s", diff)
	}
	if len(snap.VirtualServices) != 1 || len(snap.DestinationRules) != 1 || len(snap.PeerAuthentications) != 1 || len(snap.WorkloadEntries) != 3 {
		t.Errorf("snapshot lists: %d VS, %d DR, %d PA, %d WE; want 1, 1, 1, 3",
			len(snap.VirtualServices), len(snap.DestinationRules), len(snap.PeerAuthentications), len(snap.WorkloadEntries))
	}
	if snap.Mesh.GetTrustDomain() != "cluster.local" {
		t.Errorf("trust domain %q", snap.Mesh.GetTrustDomain())
	}
	for _, o := range snap.Objects {
		if o.Source.File == "" || o.Source.Line == 0 {
			t.Errorf("object %s %s/%s has no source: %+v", o.Kind, o.Namespace, o.Name, o.Source)
		}
	}
}

// Endpoints, an EndpointSlice listing the same pod and a selected
// WorkloadEntry merge into one endpoint list without duplicates.
func TestBuildMergesEndpoints(t *testing.T) {
	snap := buildFrom(t, map[string]string{"svc.yaml": `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: metrics, port: 15014, appProtocol: http}
---
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: shop}
subsets:
- addresses: [{ip: 10.1.0.1}]
  notReadyAddresses: [{ip: 10.1.0.3}]
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-x
  namespace: shop
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: metrics, port: 15014}]
endpoints:
- addresses: [10.1.0.1]
- addresses: [10.1.0.2]
  conditions: {ready: false}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
spec:
  address: 10.2.0.1
  serviceAccount: reviews
  labels: {app: reviews, version: v3}
  ports: {http: 9999}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: elsewhere}
spec:
  address: 10.3.0.1
  labels: {app: reviews}
`})
	if len(snap.Services) != 1 {
		t.Fatalf("got %d services", len(snap.Services))
	}
	s := snap.Services[0]
	if s.Hostname != "reviews.shop.svc.cluster.local" || !cmp.Equal(s.Addresses, []string{"10.96.0.10"}) {
		t.Errorf("hostname %s addresses %v", s.Hostname, s.Addresses)
	}
	wantPorts := []model.Port{
		{Name: "http", Port: 9080, TargetPort: 8080, Protocol: model.ProtocolHTTP},
		{Name: "metrics", Port: 15014, Protocol: model.ProtocolHTTP},
	}
	if diff := cmp.Diff(wantPorts, s.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	type ep struct {
		Addr    string
		Ports   map[string]uint32
		Healthy bool
		SA      string
	}
	var got []ep
	for _, e := range s.Endpoints {
		got = append(got, ep{e.Address, e.Ports, e.Healthy, e.ServiceAccount})
	}
	want := []ep{
		{"10.1.0.1", map[string]uint32{"http": 8080, "metrics": 15014}, true, ""},
		{"10.1.0.2", map[string]uint32{"http": 8080, "metrics": 15014}, false, ""},
		{"10.1.0.3", map[string]uint32{"http": 8080}, false, ""},
		{"10.2.0.1", map[string]uint32{"http": 9999, "metrics": 15014}, true, "reviews"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
}

func TestBuildServiceEntries(t *testing.T) {
	snap := buildFrom(t, map[string]string{"se.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com, www.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
  ports:
  - {number: 5432, name: tcp-pg, targetPort: 15432}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: default}
spec: {address: 192.168.0.5, labels: {app: db}, serviceAccount: db}
`})
	var hosts []string
	for _, s := range snap.Services {
		hosts = append(hosts, s.Hostname)
	}
	if diff := cmp.Diff([]string{"api.example.com", "db.internal", "www.example.com"}, hosts); diff != "" {
		t.Fatalf("hostnames sorted (-want +got):\n%s", diff)
	}
	api, db := snap.Services[0], snap.Services[1]
	if !api.MeshExternal || api.Resolution != model.ResolutionDNS || api.Ports[0].Protocol != model.ProtocolTLS {
		t.Errorf("api: %+v", api)
	}
	if len(api.Endpoints) != 1 || api.Endpoints[0].Address != "api.example.com" {
		t.Errorf("DNS entry without endpoints resolves its host: %+v", api.Endpoints)
	}
	if db.MeshExternal || db.Resolution != model.ResolutionStatic || db.Ports[0].Protocol != model.ProtocolTCP {
		t.Errorf("db: %+v", db)
	}
	if len(db.Endpoints) != 1 || db.Endpoints[0].Address != "192.168.0.5" || db.Endpoints[0].Ports["tcp-pg"] != 15432 {
		t.Errorf("db endpoints from workloadSelector: %+v", db.Endpoints)
	}
}

// Equal content gives an equal version, whatever the file layout and order;
// a content change gives a new one.
func TestBuildVersionIsContentHash(t *testing.T) {
	vs := func(w1, w2 string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: ` + w1 + `
    - destination: {host: reviews, subset: v2}
      weight: ` + w2 + "\n"
	}
	a := buildFrom(t, map[string]string{"a.yaml": dr + "---\n" + vs("50", "50")})
	b := buildFrom(t, map[string]string{"z-vs.yaml": "# reformatted\n" + vs("50", "50"), "a-dr.yml": dr})
	c := buildFrom(t, map[string]string{"a.yaml": dr + "---\n" + vs("80", "20")})
	if a.Version == "" || a.Version != b.Version {
		t.Errorf("same content, different versions: %q vs %q", a.Version, b.Version)
	}
	if a.Version == c.Version {
		t.Errorf("changed weights kept version %q", a.Version)
	}
	for i := 0; i < 5; i++ {
		if again := buildFrom(t, map[string]string{"a.yaml": dr + "---\n" + vs("50", "50")}); again.Version != a.Version {
			t.Fatalf("version not stable across builds: %q vs %q", again.Version, a.Version)
		}
	}
}

func TestBuildHostServedOnce(t *testing.T) {
	snap := buildFrom(t, map[string]string{"x.yaml": `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a-web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local, web.example.com]
  ports: [{number: 8080, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b-web, namespace: other}
spec:
  hosts: [web.example.com]
  ports: [{number: 9090, name: http}]
`})
	got := map[string]string{}
	for _, s := range snap.Services {
		if _, dup := got[s.Hostname]; dup {
			t.Fatalf("host %s served twice", s.Hostname)
		}
		got[s.Hostname] = s.Namespace + "/" + s.Name
	}
	want := map[string]string{"web.shop.svc.cluster.local": "shop/web", "web.example.com": "other/b-web"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("owner per host (-want +got):\n%s", diff)
	}
}
