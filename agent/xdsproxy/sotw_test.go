package xdsproxy

import (
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

func newSotw(t *testing.T) *sotwSession {
	t.Helper()
	p, err := New(Options{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	return &sotwSession{streamState: p.openStream("sotw"), p: p, sub: map[string]*sotwType{}}
}

func TestSotWReplayAndForwarding(t *testing.T) {
	s := newSotw(t)
	// First upstream stream: Envoy subscribes to CDS then EDS.
	s.replay()
	if fwd := s.onRequest(&discovery.DiscoveryRequest{Node: node(), TypeUrl: "cds"}, true); fwd == nil || fwd.GetNode() == nil {
		t.Fatalf("first request not forwarded with its node: %v", fwd)
	}
	s.onResponse(&discovery.DiscoveryResponse{TypeUrl: "cds", VersionInfo: "v1", Nonce: "n1"})
	s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "cds", VersionInfo: "v1", ResponseNonce: "n1"}, true)
	s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", ResourceNames: []string{"a"}}, true)
	s.onResponse(&discovery.DiscoveryResponse{TypeUrl: "eds", VersionInfo: "e1", Nonce: "n2"})
	// Envoy NACKs the next EDS push, keeping e1.
	s.onResponse(&discovery.DiscoveryResponse{TypeUrl: "eds", VersionInfo: "e2", Nonce: "n3"})
	s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "e1", ResourceNames: []string{"a"}, ResponseNonce: "n2"}, true)
	s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "e1", ResourceNames: []string{"a"}, ResponseNonce: "n3",
		ErrorDetail: &statuspb.Status{Message: "bad"}}, true)

	// Reconnect: CDS first with the node, then EDS; ACKed versions, no nonces.
	got := s.replay()
	if len(got) != 2 {
		t.Fatalf("replay = %d requests, want 2", len(got))
	}
	want := []struct {
		typ, version string
		names        []string
		node         bool
	}{{"cds", "v1", nil, true}, {"eds", "e1", []string{"a"}, false}}
	for i, w := range want {
		r := got[i]
		if r.GetTypeUrl() != w.typ || r.GetVersionInfo() != w.version || !slices.Equal(r.GetResourceNames(), w.names) ||
			r.GetResponseNonce() != "" || r.GetErrorDetail() != nil || (r.GetNode() != nil) != w.node {
			t.Errorf("replay[%d] = %v; want type %s version %s names %v node %v, no nonce or error", i, r, w.typ, w.version, w.names, w.node)
		}
	}

	// Late ACK of the old stream's response: dropped, the replay covered it.
	if fwd := s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "e1", ResourceNames: []string{"a"}, ResponseNonce: "n2"}, true); fwd != nil {
		t.Errorf("stale ACK forwarded: %v", fwd)
	}
	// Old nonce but a new subscription: forwarded as a fresh request.
	fwd := s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "e1", ResourceNames: []string{"a", "b"}, ResponseNonce: "n2"}, true)
	if fwd == nil || fwd.GetResponseNonce() != "" || !slices.Equal(fwd.GetResourceNames(), []string{"a", "b"}) {
		t.Errorf("subscription change on a stale nonce = %v, want forwarded without the nonce", fwd)
	}
	// Once the new stream answered, ACKs flow as usual.
	s.onResponse(&discovery.DiscoveryResponse{TypeUrl: "eds", VersionInfo: "e3", Nonce: "m1"})
	if fwd := s.onRequest(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "e3", ResourceNames: []string{"a", "b"}, ResponseNonce: "m1"}, true); fwd == nil || fwd.GetResponseNonce() != "m1" {
		t.Errorf("ACK on the new stream = %v, want forwarded as is", fwd)
	}

	st := s.snapshot()
	eds := st.Types[1]
	if eds.NACKs != 1 || eds.LastNACK.Message != "bad" || eds.AckedVersion != "e3" || eds.SentVersion != "e3" {
		t.Errorf("syncz for EDS = %+v", eds)
	}
}

func TestSotWRequestsWhileDisconnectedAreReplayed(t *testing.T) {
	s := newSotw(t)
	s.observe(&discovery.DiscoveryRequest{Node: node(), TypeUrl: "lds"})
	s.observe(&discovery.DiscoveryRequest{TypeUrl: "rds", ResourceNames: []string{"80"}})
	s.observe(&discovery.DiscoveryRequest{TypeUrl: "rds", ResourceNames: []string{"80", "8080"}})
	got := s.replay()
	if len(got) != 2 || got[0].GetNode().GetId() != nodeID || !slices.Equal(got[1].GetResourceNames(), []string{"80", "8080"}) {
		t.Errorf("replay = %v; want LDS with the node, then RDS with the latest names", got)
	}
}
