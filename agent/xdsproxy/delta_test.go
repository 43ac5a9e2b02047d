package xdsproxy

import (
	"context"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

func deltaNames(t *testing.T, resp *discovery.DeltaDiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, r := range resp.GetResources() {
		c := &clusterv3.Cluster{}
		if err := r.GetResource().UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.GetName())
	}
	slices.Sort(out)
	return out
}

func TestDeltaReplaysSubscriptionsAndVersions(t *testing.T) {
	e := newEnv(t)
	e.cp.setClusters("1", "c1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.client().DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	if got := deltaNames(t, resp); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("first delta response = %v, want [c1]", got)
	}
	c1Version := resp.GetResources()[0].GetVersion()
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delta ACK recorded", func() bool {
		s := e.proxy.SyncStatus()
		return len(s.Streams) == 1 && len(s.Streams[0].Types) == 1 && s.Streams[0].Types[0].AckedNonce == resp.GetNonce()
	})

	// Restart with c1 unchanged and c2 added: the new control plane learns
	// the client already holds c1 and sends only c2.
	e.cp.restart()
	e.cp.setClusters("2", "c1", "c2")
	resp = recvTimeout(t, stream.Recv)
	if got := deltaNames(t, resp); !slices.Equal(got, []string{"c2"}) {
		t.Fatalf("delta response after restart = %v, want only [c2]", got)
	}
	reqs := e.cp.deltaRequests()
	if len(reqs) == 0 {
		t.Fatal("restarted control plane received no delta request")
	}
	first := reqs[0]
	if first.GetNode().GetId() != nodeID {
		t.Errorf("replayed delta request node = %q, want %q", first.GetNode().GetId(), nodeID)
	}
	if got := first.GetInitialResourceVersions(); got["c1"] != c1Version || len(got) != 1 {
		t.Errorf("initial_resource_versions = %v, want {c1: %s}", got, c1Version)
	}

	// A delta NACK is counted and shown.
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "c2: bad lb policy"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delta NACK recorded", func() bool {
		ts := e.proxy.SyncStatus().Streams[0].Types[0]
		return ts.LastNACK != nil && ts.LastNACK.Message == "c2: bad lb policy"
	})
	if got := value(t, e.proxy.metrics.nacks.WithLabelValues(cdsLabel)); got != 1 {
		t.Errorf("nacks = %v, want 1", got)
	}
}

func TestDeltaSubscriptionTracking(t *testing.T) {
	p, err := New(Options{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &deltaSession{streamState: p.openStream("delta"), p: p, sub: map[string]*deltaType{}}
	s.observe(&discovery.DeltaDiscoveryRequest{TypeUrl: "eds", ResourceNamesSubscribe: []string{"a", "b"},
		InitialResourceVersions: map[string]string{"a": "v1"}})
	s.observe(&discovery.DeltaDiscoveryRequest{TypeUrl: "eds", ResourceNamesUnsubscribe: []string{"a"}, ResourceNamesSubscribe: []string{"c"}})
	s.observe(&discovery.DeltaDiscoveryRequest{TypeUrl: "cds"})
	got := s.replay()
	if len(got) != 2 {
		t.Fatalf("replay = %d requests, want 2", len(got))
	}
	if !slices.Equal(got[0].GetResourceNamesSubscribe(), []string{"b", "c"}) || len(got[0].GetInitialResourceVersions()) != 0 {
		t.Errorf("eds replay = subscribe %v versions %v; want [b c] and none (a was unsubscribed)",
			got[0].GetResourceNamesSubscribe(), got[0].GetInitialResourceVersions())
	}
	if got[1].GetTypeUrl() != "cds" || len(got[1].GetResourceNamesSubscribe()) != 0 {
		t.Errorf("cds replay = %v, want a legacy wildcard request", got[1])
	}
}
