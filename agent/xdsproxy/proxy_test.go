package xdsproxy

import (
	"context"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	agentstatus "github.com/meshlite/meshlite/agent/status"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	clocktesting "k8s.io/utils/clock/testing"
)

const cdsLabel = "envoy.config.cluster.v3.Cluster"

func TestSotWSurvivesControlPlaneRestart(t *testing.T) {
	e := newEnv(t)
	e.cp.setClusters("1", "c1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.client().StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv)
	if got := clusterNames(t, resp); !slices.Equal(got, []string{"c1"}) || resp.GetVersionInfo() != "1" {
		t.Fatalf("first response: version %q clusters %v, want 1 [c1]", resp.GetVersionInfo(), got)
	}
	ack := &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: "1", ResponseNonce: resp.GetNonce()}
	if err := stream.Send(ack); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ACK recorded", func() bool {
		s := e.proxy.SyncStatus()
		return len(s.Streams) == 1 && len(s.Streams[0].Types) == 1 && s.Streams[0].Types[0].AckedVersion == "1"
	})

	// Kill the control plane: the downstream stream must stay open.
	e.cp.stop()
	eventually(t, "proxy to notice the upstream is gone", func() bool {
		s := e.proxy.SyncStatus()
		return len(s.Streams) == 1 && !s.Streams[0].UpstreamConnected
	})

	// Restart with new config: it reaches the client on the same stream.
	e.cp.start()
	e.cp.setClusters("2", "c1", "c2")
	resp = recvTimeout(t, stream.Recv)
	if got := clusterNames(t, resp); !slices.Equal(got, []string{"c1", "c2"}) || resp.GetVersionInfo() != "2" {
		t.Fatalf("after restart: version %q clusters %v, want 2 [c1 c2]", resp.GetVersionInfo(), got)
	}

	// The new control plane saw a replay: node set, last ACKed version, no nonce.
	reqs := e.cp.sotwRequests()
	if len(reqs) == 0 {
		t.Fatal("restarted control plane received no request")
	}
	first := reqs[0]
	if first.GetNode().GetId() != nodeID || first.GetVersionInfo() != "1" || first.GetResponseNonce() != "" {
		t.Errorf("replayed request = node %q version %q nonce %q; want node %q, version 1, empty nonce",
			first.GetNode().GetId(), first.GetVersionInfo(), first.GetResponseNonce(), nodeID)
	}
	if got := value(t, e.proxy.metrics.upstreamConnects); got < 2 {
		t.Errorf("upstream connects = %v, want >= 2", got)
	}
	if got := value(t, e.proxy.metrics.responses.WithLabelValues(cdsLabel)); got != 2 {
		t.Errorf("responses{type=CDS} = %v, want 2", got)
	}

	// Envoy going away ends the upstream stream too.
	cancel()
	eventually(t, "the stream to be released", func() bool { return len(e.proxy.SyncStatus().Streams) == 0 })
	eventually(t, "the control plane to see its stream close", func() bool { return e.cp.openStreams() == 0 })
}

func TestUpstreamGetsTokenAndClusterID(t *testing.T) {
	e := newEnv(t)
	e.cp.setClusters("1", "c1")
	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	recvTimeout(t, stream.Recv)
	if n := len(e.cp.metadata()); n != 1 {
		t.Errorf("upstream streams for one downstream stream = %d, want exactly 1", n)
	}
	md := e.cp.metadata()[0]
	if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer token-1"}) {
		t.Errorf("authorization = %q, want [Bearer token-1]", got)
	}
	if got := md.Get("clusterid"); !slices.Equal(got, []string{"Kubernetes"}) {
		t.Errorf("ClusterID = %q, want [Kubernetes]", got)
	}

	// A rotated token is read on the next upstream RPC.
	if err := os.WriteFile(e.token, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cp.restart()
	e.cp.setClusters("2", "c1")
	recvTimeout(t, stream.Recv)
	mds := e.cp.metadata()
	if got := mds[len(mds)-1].Get("authorization"); !slices.Equal(got, []string{"Bearer token-2"}) {
		t.Errorf("authorization after rotation = %q, want [Bearer token-2]", got)
	}
}

func TestNACKIsForwardedLoggedAndCounted(t *testing.T) {
	e := newEnv(t)
	e.cp.setClusters("1", "c1")
	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	resp := recvTimeout(t, stream.Recv)
	nack := &discovery.DiscoveryRequest{
		TypeUrl:       resource.ClusterType,
		ResponseNonce: resp.GetNonce(),
		ErrorDetail:   &statuspb.Status{Code: 3, Message: "cluster c1: invalid connect_timeout"},
	}
	if err := stream.Send(nack); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK to reach the control plane", func() bool {
		return slices.ContainsFunc(e.cp.sotwRequests(), func(r *discovery.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	})
	if got := value(t, e.proxy.metrics.nacks.WithLabelValues(cdsLabel)); got != 1 {
		t.Errorf("nacks{type=CDS} = %v, want 1", got)
	}
	ts := e.proxy.SyncStatus().Streams[0].Types[0]
	if ts.LastNACK == nil || ts.LastNACK.Message != "cluster c1: invalid connect_timeout" || ts.LastNACK.Nonce != resp.GetNonce() {
		t.Errorf("syncz last NACK = %+v, want the rejection detail and nonce %q", ts.LastNACK, resp.GetNonce())
	}
	if ts.AckedVersion != "" {
		t.Errorf("acked version = %q after a NACK, want empty", ts.AckedVersion)
	}
	// Envoy never accepted any clusters: readiness must say why.
	if err := e.proxy.Health(); err == nil || !strings.Contains(err.Error(), "envoy rejected its first envoy.config.cluster.v3.Cluster") ||
		!strings.Contains(err.Error(), "invalid connect_timeout") {
		t.Errorf("health after a NACK of the first CDS = %v, want the rejection detail", err)
	}
	// A fixed config that Envoy ACKs clears it.
	e.cp.setClusters("2", "c1")
	resp = recvTimeout(t, stream.Recv)
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: "2", ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "health to recover after the ACK", func() bool { return e.proxy.Health() == nil })
}

func TestPermanentAuthFailureFailsHealth(t *testing.T) {
	e := newEnv(t)
	e.cp.setClusters("1", "c1")
	e.cp.setReject(unauthenticated)
	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	eventually(t, "health to report the rejection", func() bool { return e.proxy.Health() != nil })
	msg := e.proxy.Health().Error()
	for _, want := range []string{"rejected the agent", "Unauthenticated", "token audience mismatch", e.token} {
		if !strings.Contains(msg, want) {
			t.Errorf("health error %q does not mention %q", msg, want)
		}
	}
	if got := value(t, e.proxy.metrics.permanentFailures.WithLabelValues("Unauthenticated")); got < 1 {
		t.Errorf("permanent failures = %v, want >= 1", got)
	}
	if s := e.proxy.SyncStatus(); s.Healthy || s.Reason == "" {
		t.Errorf("syncz healthy=%v reason=%q, want unhealthy with a reason", s.Healthy, s.Reason)
	}
	// The kubelet sees the reason on the status server's readiness.
	st, err := agentstatus.New(agentstatus.Options{Ready: []agentstatus.Check{agentstatus.XDSProxy(e.proxy)}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	st.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz/ready", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "xds-proxy: control plane") || !strings.Contains(rec.Body.String(), "Unauthenticated") {
		t.Errorf("readiness = %d %q, want 503 naming the Unauthenticated rejection", rec.Code, rec.Body)
	}

	// Once the control plane accepts the agent, the slow retry recovers.
	e.cp.setReject(nil)
	resp := recvTimeout(t, stream.Recv)
	if got := clusterNames(t, resp); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("clusters after recovery = %v", got)
	}
	if err := e.proxy.Health(); err != nil {
		t.Errorf("health after recovery = %v, want nil", err)
	}
}

func TestTrustBundleChangeRedials(t *testing.T) {
	e := newEnv(t)
	// The control plane now serves a certificate from a new root the
	// agent does not trust yet.
	newRoot := newTestCA(t, "root-2")
	e.cp.stop()
	e.cp.cert = newRoot.issue(t, []string{DefaultServerName}, "")
	e.cp.start()
	e.cp.setClusters("1", "c1")

	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	eventually(t, "TLS verification failures", func() bool {
		return value(t, e.proxy.metrics.upstreamFailures.WithLabelValues("Unavailable")) >= 2
	})
	if got := e.proxy.SyncStatus().Streams[0].LastUpstreamError; !strings.Contains(got, "certificate") {
		t.Errorf("last upstream error = %q, want a certificate verification failure", got)
	}

	both := e.ca.pool.Clone()
	both.AddCert(newRoot.cert)
	e.certs.setBundle(both)
	resp := recvTimeout(t, stream.Recv)
	if got := clusterNames(t, resp); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("clusters after trust bundle change = %v", got)
	}
	if got := value(t, e.proxy.metrics.redials); got != 1 {
		t.Errorf("redials = %v, want 1", got)
	}
}

func TestWrongSANIsRejected(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ServerName = "istiod.other-ns.svc" })
	e.cp.setClusters("1", "c1")
	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	eventually(t, "SAN mismatch failure", func() bool {
		s := e.proxy.SyncStatus()
		return len(s.Streams) == 1 && strings.Contains(s.Streams[0].LastUpstreamError, "istiod.other-ns.svc")
	})
	if len(e.cp.sotwRequests()) != 0 {
		t.Error("control plane received a request over a connection with the wrong SAN")
	}
}

func TestSocketReplacesStaleFileWithMode0600(t *testing.T) {
	e := newEnv(t)
	fi, err := os.Stat(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	// A second proxy on the same path (agent restart) replaces the file.
	p, err := New(Options{SocketPath: e.socket, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := p.Listen()
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	lis.Close()
}

func TestNewRequiresCerts(t *testing.T) {
	_, err := New(Options{})
	if err == nil || !strings.Contains(err.Error(), "Options.Certs") {
		t.Fatalf("New without certs: err = %v, want one naming Options.Certs", err)
	}
}

func TestPermanentFailureRetriesSlowly(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	e := newEnv(t, func(o *Options) {
		o.Clock = fake
		o.PermanentErrorBackoff = time.Hour
	})
	e.cp.setClusters("1", "c1")
	e.cp.setReject(func() error { return status.Error(codes.PermissionDenied, "node sidecar~x is not authorized") })
	stream, err := e.client().StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discovery.DiscoveryRequest{Node: node(), TypeUrl: resource.ClusterType})
	eventually(t, "the proxy to wait out the permanent-error backoff", func() bool {
		return e.proxy.Health() != nil && fake.HasWaiters()
	})
	if n := len(e.cp.metadata()); n != 1 {
		t.Fatalf("upstream attempts before the backoff elapsed = %d, want 1", n)
	}
	e.cp.setReject(nil)
	fake.Step(59 * time.Minute)
	if n := len(e.cp.metadata()); n != 1 {
		t.Fatalf("retried after 59m of a 1h backoff (%d attempts)", n)
	}
	fake.Step(time.Minute)
	resp := recvTimeout(t, stream.Recv)
	if got := clusterNames(t, resp); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("clusters after the slow retry = %v", got)
	}
	if err := e.proxy.Health(); err != nil {
		t.Errorf("health after recovery = %v", err)
	}
}
