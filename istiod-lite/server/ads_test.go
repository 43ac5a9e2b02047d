package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

func adsClient(t *testing.T, addr string) discovery.AggregatedDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return discovery.NewAggregatedDiscoveryServiceClient(cc)
}

func grpcNode(t *testing.T, id string) *core.Node {
	md, err := structpb.NewStruct(map[string]any{"GENERATOR": "grpc", "NAMESPACE": "demo"})
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: md}
}

func recvTimeout[T any](t *testing.T, recv func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() { v, err := recv(); ch <- result{v, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("receive: %v", r.err)
		}
		return r.v
	case <-time.After(10 * time.Second):
		t.Fatal("no xDS response within 10s")
	}
	panic("unreachable")
}

func testSnapshot(t *testing.T, version string) *model.Snapshot {
	return &model.Snapshot{
		Version:          version,
		Services:         []*model.Service{greeterService(localEndpoint(1001, "v1"), localEndpoint(1002, "v2"))},
		DestinationRules: []*networkingv1.DestinationRule{mustYAML[networkingv1.DestinationRule](t, subsetsDR)},
	}
}

// TestNACKTracked: a rejection is recorded per proxy and type with the
// client's error detail, and the ACKed version stays the last good one.
func TestNACKTracked(t *testing.T) {
	reg := newStaticRegistry(testSnapshot(t, "1"))
	s, addr := startServer(t, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const id = "sidecar~10.0.9.8~nacker.demo~demo.svc.cluster.local"
	if err := stream.Send(&discovery.DiscoveryRequest{Node: grpcNode(t, id), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	if len(resp.GetResources()) != 3 {
		t.Fatalf("got %d clusters, want 3 (default + 2 subsets)", len(resp.GetResources()))
	}
	// ACK, then a new version arrives and is NACKed.
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	good := resp.GetVersionInfo()
	next := testSnapshot(t, "2")
	next.DestinationRules = nil
	reg.Set(next)
	resp2 := recvTimeout(t, stream.Recv)
	if resp2.GetVersionInfo() == good {
		t.Fatalf("changed config re-sent with the same version %s", good)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{
		TypeUrl: resourcev3.ClusterType, VersionInfo: good, ResponseNonce: resp2.GetNonce(),
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "cluster outbound|7070||x: bad lb policy"},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		ps := s.Proxies()
		if len(ps) != 1 {
			return fmt.Errorf("want 1 proxy, got %d", len(ps))
		}
		cds := ps[0].Types["cds"]
		if cds.LastNack == nil || cds.LastNack.Message != "cluster outbound|7070||x: bad lb policy" {
			return fmt.Errorf("cds status %+v: want the NACK's error detail recorded", cds)
		}
		if cds.Acked != good || cds.Sent != resp2.GetVersionInfo() {
			return fmt.Errorf("cds status %+v: want acked %s, sent %s", cds, good, resp2.GetVersionInfo())
		}
		return nil
	})
}

// TestUnchangedConfigNotRepushed: a new snapshot with equal content sets no
// proxy snapshot; a change sets it again.
func TestUnchangedConfigNotRepushed(t *testing.T) {
	reg := newStaticRegistry(testSnapshot(t, "1"))
	s := New(reg, quiet)
	for _, id := range []string{"sidecar~10.0.0.1~a.demo~demo.svc.cluster.local", "sidecar~10.0.0.2~b.demo~demo.svc.cluster.local"} {
		if err := s.connect(int64(len(id)+len(s.proxies)), grpcNode(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	reg.Set(testSnapshot(t, "1-again"))
	if n := s.push(); n != 0 {
		t.Errorf("equal content: %d proxies re-pushed, want 0", n)
	}
	changed := testSnapshot(t, "2")
	changed.Services[0].Endpoints = changed.Services[0].Endpoints[:1]
	reg.Set(changed)
	if n := s.push(); n != 2 {
		t.Errorf("endpoint removed: %d proxies re-pushed, want 2", n)
	}
}

// TestDeltaADS: delta clients get the full set first, then only what changed.
func TestDeltaADS(t *testing.T) {
	reg := newStaticRegistry(testSnapshot(t, "1"))
	s, addr := startServer(t, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := adsClient(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const id = "sidecar~10.0.9.7~delta.demo~demo.svc.cluster.local"
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: grpcNode(t, id), TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	if len(resp.GetResources()) != 3 {
		t.Fatalf("first delta response has %d clusters, want 3", len(resp.GetResources()))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// Change one subset's policy: only that cluster is re-sent.
	next := testSnapshot(t, "2")
	next.DestinationRules = []*networkingv1.DestinationRule{mustYAML[networkingv1.DestinationRule](t, `
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}}
`)}
	reg.Set(next)
	resp2 := recvTimeout(t, stream.Recv)
	if len(resp2.GetResources()) != 1 || resp2.GetResources()[0].GetName() != "outbound|7070|v2|greeter.demo.svc.cluster.local" {
		var names []string
		for _, r := range resp2.GetResources() {
			names = append(names, r.GetName())
		}
		t.Fatalf("delta update sent %v, want only the v2 subset cluster", names)
	}
	c := &cluster.Cluster{}
	if err := resp2.GetResources()[0].GetResource().UnmarshalTo(c); err != nil {
		t.Fatal(err)
	}
	if c.GetLbPolicy() != cluster.Cluster_LEAST_REQUEST {
		t.Errorf("v2 cluster lb policy %v, want LEAST_REQUEST", c.GetLbPolicy())
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp2.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		ps := s.Proxies()
		if len(ps) != 1 {
			return fmt.Errorf("want 1 proxy, got %d", len(ps))
		}
		if cds := ps[0].Types["cds"]; cds.Acked == "" || cds.Acked != cds.Sent {
			return fmt.Errorf("delta cds status %+v, want the new version ACKed", cds)
		}
		return nil
	})
}

// TestBadNodeRejected: a client without Istio's node ID gets an error that says what to send.
func TestBadNodeRejected(t *testing.T) {
	_, addr := startServer(t, newStaticRegistry(testSnapshot(t, "1")))
	stream, err := adsClient(t, addr).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "envoy-1"}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if err == nil {
		t.Fatal("stream with a non-Istio node ID was served")
	}
	st := grpcstatus.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "node ID") {
		t.Errorf("error %v: want InvalidArgument explaining the node ID problem", err)
	}
}

// TestWaitsForRegistry: a proxy connecting before the first config load is
// answered once the registry has one, not with an empty config.
func TestWaitsForRegistry(t *testing.T) {
	reg := newStaticRegistry(nil)
	_, addr := startServer(t, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: grpcNode(t, "sidecar~10.0.9.6~early.demo~demo.svc.cluster.local"), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *discovery.DiscoveryResponse, 1)
	go func() {
		if r, err := stream.Recv(); err == nil {
			got <- r
		}
	}()
	select {
	case r := <-got:
		t.Fatalf("answered before the registry loaded: %d clusters", len(r.GetResources()))
	case <-time.After(100 * time.Millisecond):
	}
	reg.Set(testSnapshot(t, "1"))
	select {
	case r := <-got:
		if len(r.GetResources()) != 3 {
			t.Fatalf("got %d clusters after the first load, want 3", len(r.GetResources()))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not answered within 10s of the registry's first load")
	}
}
