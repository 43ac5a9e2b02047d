package xdsproxy_test

// Integration of the agent's xDS proxy with the real istiod-lite: its ADS
// server (istiod-lite/server) and its CA (istiod-lite/ca), which issues both
// istiod-lite's serving certificate and the agent's workload certificate
// through the agent's real secret cache (sds). Downstream is grpc-go's own
// xDS client (or, for the NACK path, a raw ADS stream) on the proxy's socket.
// The package's other tests use an in-test go-control-plane server.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/agent/xdsproxy"
	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/model/modeltest"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/sds"
	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/spiffe"
)

const (
	greeterHost   = "greeter.demo.svc.cluster.local"
	greeterTarget = "xds:///" + greeterHost + ":7070"
	clientNode    = "sidecar~127.0.0.1~client-1.demo~demo.svc.cluster.local"
	listenerType  = "envoy.config.listener.v3.Listener"
)

var clientID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "demo", ServiceAccount: "client"}

// greeterMesh is the demo's greeter service with one endpoint on 127.0.0.1.
func greeterMesh(port int) *model.Snapshot {
	return &model.Snapshot{Version: fmt.Sprint(port), Services: []*model.Service{{
		Hostname: greeterHost, Name: "greeter", Namespace: "demo", Resolution: model.ResolutionStatic,
		Ports: []model.Port{{Name: "grpc", Port: 7070, Protocol: model.ProtocolGRPC}},
		Endpoints: []model.Endpoint{{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": uint32(port)}, Healthy: true,
			Labels: map[string]string{"app": "greeter"}, Namespace: "demo", ServiceAccount: "greeter"}},
	}}}
}

// istiod is one incarnation of istiod-lite on a fixed address: the CA
// loaded from (or created in) caDir, the ADS server and the CA service on
// one TLS gRPC server, as `istiod-lite discovery` serves :15012.
type istiod struct {
	auth   *ca.Authority
	ads    *server.Server
	cancel context.CancelFunc
	done   chan struct{}
}

type istiodOptions struct {
	caDir, jwks, addr string
	mesh              *model.Snapshot
	// authorize, when set, authenticates every ADS stream with the CA's
	// client-certificate authenticator and lets it through only if it
	// returns nil: the per-node check istiod makes on :15012.
	authorize func(id spiffe.Identity, node *corev3.Node) error
}

func startIstiod(t *testing.T, o istiodOptions) *istiod {
	t.Helper()
	cfg := ca.Config{CADir: o.caDir, TrustDomain: "cluster.local",
		MaxWorkloadCertTTL: ca.DefaultMaxWorkloadCertTTL, WorkloadCertTTL: ca.DefaultWorkloadCertTTL,
		JWKSFile: o.jwks, JWTIssuer: jwtissuer.DefaultIssuer, JWTAudiences: []string{jwtissuer.DefaultAudience}}
	auth, caSrv, err := cfg.Build(prometheus.NewRegistry(), clock.RealClock{}, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := auth.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for { // the previous incarnation's socket may linger a moment
		if lis, err = net.Listen("tcp", o.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ads := server.New(modeltest.NewStaticRegistry(o.mesh), server.Options{Logger: testLogger(t, nil)})
	var opts []grpc.ServerOption
	if o.authorize != nil {
		certs := &authn.ClientCert{Roots: auth.TrustPool, TrustDomain: auth.TrustDomain(), Clock: clock.RealClock{}}
		opts = append(opts, grpc.StreamInterceptor(xdsAuthorizer(certs, o.authorize)))
	}
	gs := ads.NewGRPCServer(tlsCfg, opts...)
	caSrv.Register(gs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = ads.Run(ctx) }()
	go func() { defer wg.Done(); _ = server.Serve(ctx, gs, lis, 10*time.Millisecond) }()
	go func() { wg.Wait(); close(done) }()
	d := &istiod{auth: auth, ads: ads, cancel: cancel, done: done}
	t.Cleanup(d.stop)
	return d
}

// stop kills this incarnation: open streams are cut after a 10ms grace.
func (d *istiod) stop() {
	d.cancel()
	<-d.done
}

// xdsAuthorizer authenticates the caller by its client certificate and
// checks the node of its first request before the ADS server sees the
// stream, refusing it with a status the agent receives (go-control-plane
// would turn an error from inside its handler into a plain end of stream).
func xdsAuthorizer(certs authn.Authenticator, authorize func(spiffe.Identity, *corev3.Node) error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources" {
			return h(srv, ss)
		}
		id, err := certs.Authenticate(ss.Context())
		if err != nil {
			return status.Errorf(codes.Unauthenticated, "xDS: %v", err)
		}
		first := &discovery.DiscoveryRequest{}
		if err := ss.RecvMsg(first); err != nil {
			return err
		}
		if err := authorize(id, first.GetNode()); err != nil {
			return err
		}
		return h(srv, &replayStream{ServerStream: ss, first: first})
	}
}

// replayStream hands the handler the request the interceptor already read.
type replayStream struct {
	grpc.ServerStream
	first *discovery.DiscoveryRequest
}

func (s *replayStream) RecvMsg(m any) error {
	if s.first != nil {
		proto.Merge(m.(proto.Message), s.first)
		s.first = nil
		return nil
	}
	return s.ServerStream.RecvMsg(m)
}

// namespaceMustMatch is Istio's rule: a workload gets config only for a node
// in its own namespace (node ID <type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local).
func namespaceMustMatch(id spiffe.Identity, n *corev3.Node) error {
	parts := strings.Split(n.GetId(), "~")
	if len(parts) != 4 {
		return status.Errorf(codes.InvalidArgument, "node ID %q is malformed", n.GetId())
	}
	_, ns, _ := strings.Cut(parts[2], ".")
	if ns != id.Namespace {
		return status.Errorf(codes.PermissionDenied, "identity %s may not get config for node %s in namespace %q", id, n.GetId(), ns)
	}
	return nil
}

// world is istiod-lite plus one agent (secret cache + xDS proxy).
type world struct {
	t       *testing.T
	caDir   string
	jwks    string
	addr    string
	socket  string
	istiod  *istiod
	certs   *sds.Service
	proxy   *xdsproxy.Proxy
	metrics *prometheus.Registry
	logs    *syncBuffer
}

func newWorld(t *testing.T, agentID spiffe.Identity, o istiodOptions) *world {
	t.Helper()
	dir := t.TempDir()
	iss, err := jwtissuer.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	_, jwks, err := iss.WriteDir(filepath.Join(dir, "issuer"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, caDir: filepath.Join(dir, "cacerts"), jwks: jwks, addr: lis.Addr().String(),
		socket: filepath.Join(dir, "etc", "istio", "proxy", "XDS"), metrics: prometheus.NewRegistry(), logs: &syncBuffer{}}
	lis.Close()
	o.caDir, o.jwks, o.addr = w.caDir, w.jwks, w.addr
	w.istiod = startIstiod(t, o)

	// The agent: root-cert.pem from the CA, a projected token, the secret
	// cache getting its certificate from istiod-lite, the xDS proxy dialling
	// istiod-lite with it.
	root, token := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "istio-token")
	if err := os.WriteFile(root, w.istiod.auth.TrustBundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(jwtissuer.Claims{Issuer: jwtissuer.DefaultIssuer, Audiences: []string{jwtissuer.DefaultAudience},
		Namespace: agentID.Namespace, ServiceAccount: agentID.ServiceAccount, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := testLogger(t, w.logs)
	w.certs, err = sds.New(sds.Config{Identity: agentID, CAAddress: w.addr, CAServerName: ca.IstiodSAN,
		RootCAFile: root, TokenPath: token, DisableSDS: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	w.proxy, err = xdsproxy.New(xdsproxy.Options{
		SocketPath: w.socket, DiscoveryAddress: w.addr, ServerName: ca.IstiodSAN,
		Certs: newCertSource(t, w.certs.Source()), TokenPath: token, ClusterID: "Kubernetes",
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PermanentErrorBackoff: 100 * time.Millisecond,
		Registerer: w.metrics, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { errc <- w.certs.Run(ctx) }()
	go func() { errc <- w.proxy.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-errc; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
	})
	eventually(t, "the workload certificate", func() bool { return w.certs.Source().Workload() != nil })
	eventually(t, "the xDS socket", func() bool { _, err := os.Stat(w.socket); return err == nil })
	return w
}

// restartIstiod kills istiod-lite and starts a new one on the same address
// and key material, serving mesh.
func (w *world) restartIstiod(mesh *model.Snapshot) {
	w.istiod.stop()
	w.istiod = startIstiod(w.t, istiodOptions{caDir: w.caDir, jwks: w.jwks, addr: w.addr, mesh: mesh})
}

// grpcClient is a proxyless gRPC application whose xDS client talks to the
// agent's socket, as the bootstrap the agent writes in proxyless mode says.
func (w *world) grpcClient() testpb.TestServiceClient {
	w.t.Helper()
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": "unix://" + w.socket,
			"channel_creds": []any{map[string]any{"type": "insecure"}}, "server_features": []string{"xds_v3"}}},
		"node":                                   map[string]any{"id": clientNode, "metadata": map[string]any{"GENERATOR": "grpc", "NAMESPACE": "demo"}},
		"server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
	})
	if err != nil {
		w.t.Fatal(err)
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		w.t.Fatal(err)
	}
	cc, err := grpc.NewClient(greeterTarget, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// ads opens a raw ADS stream on the agent's socket, as Envoy would.
func (w *world) ads() discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	w.t.Helper()
	cc, err := grpc.NewClient("unix://"+w.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.t.Cleanup(func() { cancel(); cc.Close() })
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) metric(name string, labels map[string]string) float64 {
	w.t.Helper()
	mfs, err := w.metrics.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestLiveIstiodRestartKeepsClientConfigAndPicksUpNewConfig(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	w := newWorld(t, clientID, istiodOptions{mesh: greeterMesh(a)})
	client := w.grpcClient()
	if got, err := callGreeter(client, 10*time.Second); err != nil || got != "a" {
		t.Fatalf("first call answered by %q (%v), want backend a", got, err)
	}

	// istiod-lite dies mid-stream.
	w.istiod.stop()
	eventually(t, "the proxy to see istiod-lite gone", func() bool {
		s := w.proxy.SyncStatus()
		return len(s.Streams) == 1 && !s.Streams[0].UpstreamConnected
	})
	if got, err := callGreeter(client, 5*time.Second); err != nil || got != "a" {
		t.Fatalf("call while istiod-lite is down answered by %q (%v), want the last config (backend a)", got, err)
	}

	// A new istiod-lite on the same address, with a changed mesh: the
	// greeter moved to backend b.
	w.restartIstiod(greeterMesh(b))
	eventually(t, "the client to follow the new endpoint", func() bool {
		got, err := callGreeter(client, time.Second)
		return err == nil && got == "b"
	})
	if n := w.metric("istio_agent_xds_proxy_downstream_streams_total", map[string]string{"mode": "sotw"}); n != 1 {
		t.Errorf("downstream streams = %v, want 1: istiod-lite's restart must be invisible to the client", n)
	}
	if n := w.metric("istio_agent_xds_proxy_upstream_connects_total", nil); n < 2 {
		t.Errorf("upstream connects = %v, want at least 2 (before and after the restart)", n)
	}
	st := w.proxy.SyncStatus()
	if !st.Healthy || len(st.Streams) != 1 || !st.Streams[0].UpstreamConnected {
		t.Errorf("syncz after the restart = %+v, want one healthy, connected stream", st)
	}
	// The new istiod-lite knows the client and what it ACKed.
	proxies := w.istiod.ads.Proxies()
	if len(proxies) != 1 || proxies[0].ID != clientNode {
		t.Fatalf("istiod-lite after the restart sees %+v, want the client's node", proxies)
	}
	eventually(t, "istiod-lite to record the client's ACKs", func() bool {
		p := w.istiod.ads.Proxies()
		return len(p) == 1 && len(p[0].Types) > 0 && allAcked(p[0].Types)
	})
}

// TestLiveIstiodUntrustedServerIsVisible: istiod-lite comes back with new key
// material (its CA directory was lost), so the agent cannot verify it. That
// is a TLS failure, not an xDS status, so the proxy keeps retrying; the
// reason is visible in syncz, the failure metrics and readiness.
func TestLiveIstiodUntrustedServerIsVisible(t *testing.T) {
	w := newWorld(t, clientID, istiodOptions{mesh: greeterMesh(7070)})
	s := w.ads()
	if err := s.Send(&discovery.DiscoveryRequest{Node: grpcNode(), TypeUrl: resourcev3.ListenerType, ResourceNames: []string{greeterHost + ":7070"}}); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, s, 15*time.Second)

	w.istiod.stop()
	w.istiod = startIstiod(t, istiodOptions{caDir: filepath.Join(t.TempDir(), "new-cacerts"), jwks: w.jwks, addr: w.addr, mesh: greeterMesh(7070)})
	eventually(t, "the certificate failure in syncz", func() bool {
		st := w.proxy.SyncStatus()
		return len(st.Streams) == 1 && !st.Streams[0].UpstreamConnected &&
			strings.Contains(st.Streams[0].LastUpstreamError, "x509")
	})
	if n := w.metric("istio_agent_xds_proxy_upstream_failures_total", map[string]string{"code": "Unavailable"}); n < 1 {
		t.Errorf("upstream failures (Unavailable) = %v, want at least 1", n)
	}
	// Retried at the normal pace (a new trust bundle re-dials at once), but
	// readiness fails and says why.
	err := w.proxy.Health()
	if err == nil || !strings.Contains(err.Error(), "does not trust") || !strings.Contains(err.Error(), "CA_ROOT_CA") {
		t.Errorf("Health() = %v, want the untrusted control plane named with what to check", err)
	}
}

func allAcked(types map[string]server.TypeStatus) bool {
	for _, ts := range types {
		if ts.Sent == "" || ts.Acked != ts.Sent {
			return false
		}
	}
	return true
}

func TestLiveIstiodNACKIsCountedLoggedAndInSyncz(t *testing.T) {
	w := newWorld(t, clientID, istiodOptions{mesh: greeterMesh(7070)})
	s := w.ads()
	node := grpcNode()
	listener := greeterHost + ":7070"
	if err := s.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{listener}}); err != nil {
		t.Fatal(err)
	}
	resp := recvWithin(t, s, 15*time.Second)
	if len(resp.GetResources()) != 1 {
		t.Fatalf("istiod-lite answered LDS %s with %d resources, want 1", listener, len(resp.GetResources()))
	}
	const detail = "listener greeter: unknown HTTP filter (rejected by the test client)"
	if err := s.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{listener},
		ResponseNonce: resp.GetNonce(), ErrorDetail: status.New(codes.InvalidArgument, detail).Proto()}); err != nil {
		t.Fatal(err)
	}

	eventually(t, "the NACK to be counted", func() bool {
		return w.metric("istio_agent_xds_proxy_nacks_total", map[string]string{"type": listenerType}) == 1
	})
	st := w.proxy.SyncStatus()
	var lds *xdsproxy.TypeStatus
	for i, ts := range st.Streams[0].Types {
		if ts.TypeURL == resourcev3.ListenerType {
			lds = &st.Streams[0].Types[i]
		}
	}
	if lds == nil || lds.NACKs != 1 || lds.LastNACK == nil || lds.LastNACK.Message != detail || lds.LastNACK.Nonce != resp.GetNonce() {
		t.Fatalf("syncz LDS state = %+v, want one NACK of nonce %s with the client's detail", lds, resp.GetNonce())
	}
	if lds.AckedVersion != "" {
		t.Errorf("syncz shows LDS version %q accepted after a NACK", lds.AckedVersion)
	}
	syncz, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(syncz), `"lastNack"`) || !strings.Contains(string(syncz), "unknown HTTP filter") {
		t.Errorf("/debug/syncz JSON does not show the NACK: %s", syncz)
	}
	if logs := w.logs.String(); !strings.Contains(logs, "NACK") || !strings.Contains(logs, "unknown HTTP filter") {
		t.Errorf("the NACK was not logged with its detail; logs:\n%s", logs)
	}
	// Envoy could not start without its first listeners: readiness says why.
	if err := w.proxy.Health(); err == nil || !strings.Contains(err.Error(), "unknown HTTP filter") {
		t.Errorf("Health() = %v, want the rejection of the first listeners", err)
	}
	// The NACK reached istiod-lite, which records it too.
	eventually(t, "istiod-lite to record the NACK", func() bool {
		for _, p := range w.istiod.ads.Proxies() {
			if n := p.Types["lds"].LastNack; n != nil && n.Message == detail {
				return true
			}
		}
		return false
	})
}

func TestLiveIstiodPermanentRejectionFailsReadiness(t *testing.T) {
	// The workload's certificate is for namespace "other", its node for
	// "demo": istiod-lite (with the node authorization istiod applies)
	// refuses every stream with PermissionDenied.
	var allow atomic.Bool
	intruder := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "other", ServiceAccount: "client"}
	w := newWorld(t, intruder, istiodOptions{mesh: greeterMesh(7070), authorize: func(id spiffe.Identity, n *corev3.Node) error {
		if allow.Load() {
			return nil
		}
		return namespaceMustMatch(id, n)
	}})
	s := w.ads()
	node := grpcNode()
	if err := s.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{greeterHost + ":7070"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness to fail", func() bool { return w.proxy.Health() != nil })
	err := w.proxy.Health()
	for _, want := range []string{"PermissionDenied", intruder.String(), "namespace \"demo\"", w.addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Health() = %q, does not say %q", err, want)
		}
	}
	if st := w.proxy.SyncStatus(); st.Healthy || st.Reason != err.Error() {
		t.Errorf("syncz healthy=%v reason=%q, want unhealthy with the same reason", st.Healthy, st.Reason)
	}
	if n := w.metric("istio_agent_xds_proxy_upstream_permanent_failures_total", map[string]string{"code": "PermissionDenied"}); n < 1 {
		t.Errorf("permanent failures counted = %v, want at least 1", n)
	}
	// The downstream stream stays open while the proxy retries slowly.
	if n := w.metric("istio_agent_xds_proxy_downstream_streams", map[string]string{"mode": "sotw"}); n != 1 {
		t.Errorf("open downstream streams = %v, want 1", n)
	}

	// Once istiod-lite accepts the workload, config flows and readiness
	// recovers without a restart.
	allow.Store(true)
	if r := recvWithin(t, s, 15*time.Second); len(r.GetResources()) != 1 {
		t.Errorf("after istiod-lite accepted the agent, LDS brought %d listeners, want 1", len(r.GetResources()))
	}
	eventually(t, "readiness to recover", func() bool { return w.proxy.Health() == nil })
}

// grpcNode is the node a proxyless gRPC client in namespace demo announces.
func grpcNode() *corev3.Node {
	return &corev3.Node{Id: clientNode, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		"GENERATOR": structpb.NewStringValue("grpc"), "NAMESPACE": structpb.NewStringValue("demo")}}}
}

func backend(t *testing.T, name string) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &namedBackend{name: name})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

type namedBackend struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (b *namedBackend) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{ServerId: b.name}, nil
}

func callGreeter(c testpb.TestServiceClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
	return resp.GetServerId(), err
}

// certSource adapts the secret cache for the proxy as the agent does
// (agent/certs.go): the current workload certificate on every handshake and
// the trust bundle with a channel closed when ROOTCA changes.
type certSource struct {
	src     secret.Source
	mu      sync.Mutex
	changed chan struct{}
}

func newCertSource(t *testing.T, src secret.Source) *certSource {
	c := &certSource{src: src, changed: make(chan struct{})}
	ch, cancel := src.Subscribe(secret.ResourceRoot)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-ch:
				c.mu.Lock()
				close(c.changed)
				c.changed = make(chan struct{})
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; cancel() })
	return c
}

func (c *certSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	w := c.src.Workload()
	if w == nil {
		return nil, fmt.Errorf("no workload certificate yet")
	}
	return &w.Certificate, nil
}

func (c *certSource) TrustBundle() (*x509.CertPool, <-chan struct{}) {
	c.mu.Lock()
	ch := c.changed
	c.mu.Unlock()
	if b := c.src.Bundle(); b != nil {
		return b.Pool, ch
	}
	return x509.NewCertPool(), ch
}

// recvWithin waits up to d for the next response on s.
func recvWithin(t *testing.T, s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, d time.Duration) *discovery.DiscoveryResponse {
	t.Helper()
	type result struct {
		r   *discovery.DiscoveryResponse
		err error
	}
	c := make(chan result, 1)
	go func() { r, err := s.Recv(); c <- result{r, err} }()
	select {
	case res := <-c:
		if res.err != nil {
			t.Fatalf("ADS stream: %v", res.err)
		}
		return res.r
	case <-time.After(d):
		t.Fatalf("no ADS response within %s", d)
		return nil
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger writes to buf (if any), and to stderr with -v.
func testLogger(t *testing.T, buf *syncBuffer) *slog.Logger {
	ws := []io.Writer{io.Discard}
	if buf != nil {
		ws = append(ws, buf)
	}
	if testing.Verbose() {
		ws = append(ws, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(io.MultiWriter(ws...), &slog.HandlerOptions{Level: slog.LevelInfo}))
}
