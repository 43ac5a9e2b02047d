package server

import (
	"bytes"
	"context"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// Proxies are sent generation's wire bytes, which must be exactly the
// deterministic marshal of the generated message, typed by the request, so
// that sharing the bytes changes nothing a proxy can see.
func TestResponsesCarryGeneratedBytes(t *testing.T) {
	reg := newStaticRegistry(testSnapshot(t, "1"))
	s, addr := startServer(t, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const id = "sidecar~10.0.9.7~wire.demo~demo.svc.cluster.local"
	stream, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: grpcNode(t, id), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	res, ok := s.ProxyResources(id)
	if !ok {
		t.Fatal("no resources recorded for the proxy")
	}
	want := map[string]xds.Resource{}
	for _, r := range res.ByType[resourcev3.ClusterType] {
		want[r.Name] = r
	}
	if len(resp.GetResources()) != len(want) || len(want) == 0 {
		t.Fatalf("got %d clusters, generated %d", len(resp.GetResources()), len(want))
	}
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() != resourcev3.ClusterType {
			t.Errorf("resource type URL %q, want %q", a.GetTypeUrl(), resourcev3.ClusterType)
		}
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		g, ok := want[c.GetName()]
		if !ok {
			t.Fatalf("cluster %q was not generated", c.GetName())
		}
		if !proto.Equal(&c, g.Message) {
			t.Errorf("cluster %q differs from the generated message", c.GetName())
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(g.Message)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.GetValue(), b) {
			t.Errorf("cluster %q bytes differ from the deterministic marshal of the generated message", c.GetName())
		}
	}
}

func TestWireResourceMarshalsToItsBytes(t *testing.T) {
	c := &cluster.Cluster{Name: "outbound|80||a.b.svc.cluster.local", AltStatName: "x"}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	w := premarshaled(xds.Resource{Name: c.Name, Message: c, Wire: b})
	got, err := proto.MarshalOptions{Deterministic: true}.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) || w.GetName() != c.Name {
		t.Errorf("wire resource marshals to %x named %q, want %x named %q", got, w.GetName(), b, c.Name)
	}
}

// Every generated type has a status slot, so push-to-ACK is measured for all of them.
func TestTypeSlotsCoverGeneratedTypes(t *testing.T) {
	if len(xds.TypeURLs) != numTypes {
		t.Fatalf("xds.TypeURLs has %d types, proxy.byType has %d slots", len(xds.TypeURLs), numTypes)
	}
	for i, u := range xds.TypeURLs {
		if typeIndex(u) != i {
			t.Errorf("typeIndex(%s) = %d, want %d", u, typeIndex(u), i)
		}
	}
	if typeIndex("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret") != -1 {
		t.Error("a type generation does not produce got a slot")
	}
}
