package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

func TestSubscriptionGrows(t *testing.T) {
	var s subscription
	if !s.add([]string{"b", "a"}, false, nil) || !slices.Equal(s.names, []string{"a", "b"}) {
		t.Fatalf("names %v, want sorted a, b", s.names)
	}
	if s.add([]string{"a"}, false, nil) {
		t.Error("a name already there grew the set")
	}
	if !s.has("b") || s.has("c") {
		t.Error("has is wrong")
	}
	if !s.add([]string{"*"}, false, nil) || !s.all || !s.has("anything") {
		t.Error(`"*" is a wildcard`)
	}
	if s.add(nil, true, nil) {
		t.Error("a wildcard on a wildcard grew the set")
	}
}

// TestSubscriptionSharesKnownNames: a subscribed name that is a resource's is
// kept as the resource's string, and duplicates in a request count once.
func TestSubscriptionSharesKnownNames(t *testing.T) {
	known := []xds.Resource{{Name: "a"}, {Name: "outbound|7070||greeter.demo.svc.cluster.local"}}
	asked := string([]byte("outbound|7070||greeter.demo.svc.cluster.local")) // a distinct copy, as a request's is
	var s subscription
	if !s.add([]string{asked, "z", asked}, false, known) {
		t.Fatal("nothing added")
	}
	if !slices.Equal(s.names, []string{known[1].Name, "z"}) {
		t.Fatalf("names %q", s.names)
	}
	if unsafe.StringData(s.names[0]) != unsafe.StringData(known[1].Name) {
		t.Error("a known name was kept as the request's copy")
	}
}

func BenchmarkSubscriptionAddMany(b *testing.B) {
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("outbound|%d||svc-%d.demo.svc.cluster.local", 7000+i%100, i)
	}
	for b.Loop() {
		var s subscription
		s.add(names, false, nil)
	}
}

// TestSnapshotHoldsSubscribedNames: a proxy's cache snapshot holds only what
// it asked for, and asking for one more name at the version it already has
// is answered at once with both, the version unchanged.
func TestSnapshotHoldsSubscribedNames(t *testing.T) {
	s, addr := startServer(t, newStaticRegistry(testSnapshot(t, "1")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const id = "sidecar~10.0.9.7~subscriber.demo~demo.svc.cluster.local"
	v1 := "outbound|7070|v1|greeter.demo.svc.cluster.local"
	v2 := "outbound|7070|v2|greeter.demo.svc.cluster.local"
	if err := stream.Send(&discovery.DiscoveryRequest{Node: grpcNode(t, id), TypeUrl: resourcev3.ClusterType, ResourceNames: []string{v1}}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	if len(resp.GetResources()) != 1 {
		t.Fatalf("got %d clusters, want the one asked for", len(resp.GetResources()))
	}
	held := func() int {
		snap, err := s.cache.GetSnapshot(id)
		if err != nil {
			t.Fatal(err)
		}
		return len(snap.GetResources(resourcev3.ClusterType))
	}
	if n := held(); n != 1 {
		t.Errorf("cache snapshot holds %d clusters, want 1", n)
	}

	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNames: []string{v1, v2},
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	resp2 := recvTimeout(t, stream.Recv)
	if len(resp2.GetResources()) != 2 || resp2.GetVersionInfo() != resp.GetVersionInfo() {
		t.Fatalf("got %d clusters at version %s, want 2 at %s", len(resp2.GetResources()), resp2.GetVersionInfo(), resp.GetVersionInfo())
	}
	if n := held(); n != 2 {
		t.Errorf("cache snapshot holds %d clusters, want 2", n)
	}

	// The version is that of every cluster, so it matches what a proxy that
	// asked for all of them gets.
	res := xds.NewGenerator(testSnapshot(t, "1")).Generate(s.proxyForTest(t, id))
	if want := res.Version(resourcev3.ClusterType); resp.GetVersionInfo() != want {
		t.Errorf("version %s, want %s (all clusters)", resp.GetVersionInfo(), want)
	}
}

func (s *Server) proxyForTest(t *testing.T, id string) *xds.Proxy {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[id]
	if !ok {
		t.Fatalf("proxy %s not connected", id)
	}
	return p.p
}
