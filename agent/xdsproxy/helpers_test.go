package xdsproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const nodeID = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"

// testCA is a minimal in-test certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{name}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, dns []string, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeCerts is a CertSource whose trust bundle the test can replace.
type fakeCerts struct {
	cert tls.Certificate
	mu   sync.Mutex
	pool *x509.CertPool
	ch   chan struct{}
}

func (f *fakeCerts) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &f.cert, nil
}

func (f *fakeCerts) TrustBundle() (*x509.CertPool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.pool, f.ch
}

func (f *fakeCerts) setBundle(p *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pool = p
	if f.ch != nil {
		close(f.ch)
	}
	f.ch = make(chan struct{})
}

// controlPlane is an in-process ADS server over mTLS, backed by
// go-control-plane's snapshot cache, that the test can stop and restart on
// the same address.
type controlPlane struct {
	t      *testing.T
	addr   string
	ca     *testCA // verifies client certs
	cert   tls.Certificate
	cache  cachev3.SnapshotCache
	srv    *grpc.Server
	reject func() error // non-nil result rejects every stream
	open   atomic.Int64 // SotW streams open on this incarnation

	mu    sync.Mutex
	sotw  []*discovery.DiscoveryRequest
	delta []*discovery.DeltaDiscoveryRequest
	md    []metadata.MD
}

func newControlPlane(t *testing.T, ca *testCA, serverCert tls.Certificate) *controlPlane {
	cp := &controlPlane{t: t, ca: ca, cert: serverCert, addr: "127.0.0.1:0"}
	cp.start()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) start() {
	t := cp.t
	lis, err := net.Listen("tcp", cp.addr)
	if err != nil {
		t.Fatalf("listen %s: %v", cp.addr, err)
	}
	cp.addr = lis.Addr().String()
	cp.mu.Lock()
	cp.sotw, cp.delta = nil, nil // requests seen by this incarnation only
	cp.mu.Unlock()
	cp.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			cp.open.Add(1)
			return nil
		},
		StreamClosedFunc: func(int64, *core.Node) { cp.open.Add(-1) },
		StreamRequestFunc: func(_ int64, r *discovery.DiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			cp.sotw = append(cp.sotw, r)
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			cp.delta = append(cp.delta, r)
			return nil
		},
	}
	xds := serverv3.NewServer(context.Background(), cp.cache, cb)
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cp.cert},
		ClientCAs:    cp.ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	cp.srv = grpc.NewServer(grpc.Creds(creds), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		cp.mu.Lock()
		cp.md = append(cp.md, md)
		reject := cp.reject
		cp.mu.Unlock()
		if reject != nil {
			if err := reject(); err != nil {
				return err
			}
		}
		return h(srv, ss)
	}))
	discovery.RegisterAggregatedDiscoveryServiceServer(cp.srv, xds)
	go func() { _ = cp.srv.Serve(lis) }()
}

func (cp *controlPlane) stop() { cp.srv.Stop() }

func (cp *controlPlane) restart() {
	cp.stop()
	cp.start()
}

func (cp *controlPlane) setClusters(version string, names ...string) {
	cp.t.Helper()
	var res []types.Resource
	for _, n := range names {
		res = append(res, &clusterv3.Cluster{Name: n, ConnectTimeout: nil})
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: res})
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *controlPlane) openStreams() int64 { return cp.open.Load() }

func (cp *controlPlane) sotwRequests() []*discovery.DiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discovery.DiscoveryRequest(nil), cp.sotw...)
}

func (cp *controlPlane) deltaRequests() []*discovery.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discovery.DeltaDiscoveryRequest(nil), cp.delta...)
}

func (cp *controlPlane) metadata() []metadata.MD {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]metadata.MD(nil), cp.md...)
}

func (cp *controlPlane) setReject(f func() error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.reject = f
}

func unauthenticated() error {
	return status.Error(codes.Unauthenticated, "authentication failure: token audience mismatch")
}

// env is a running proxy wired to a control plane.
type env struct {
	t      *testing.T
	ca     *testCA
	certs  *fakeCerts
	cp     *controlPlane
	proxy  *Proxy
	reg    *prometheus.Registry
	socket string
	token  string
}

func newEnv(t *testing.T, mutate ...func(*Options)) *env {
	t.Helper()
	ca := newTestCA(t, "root-1")
	cp := newControlPlane(t, ca, ca.issue(t, []string{DefaultServerName}, ""))
	dir := t.TempDir()
	e := &env{
		t:      t,
		ca:     ca,
		cp:     cp,
		certs:  &fakeCerts{cert: ca.issue(t, nil, "spiffe://cluster.local/ns/default/sa/app"), pool: ca.pool},
		reg:    prometheus.NewRegistry(),
		socket: filepath.Join(dir, "XDS"),
		token:  filepath.Join(dir, "istio-token"),
	}
	if err := os.WriteFile(e.token, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		SocketPath:            e.socket,
		DiscoveryAddress:      cp.addr,
		Certs:                 e.certs,
		TokenPath:             e.token,
		ClusterID:             "Kubernetes",
		InitialBackoff:        10 * time.Millisecond,
		MaxBackoff:            50 * time.Millisecond,
		PermanentErrorBackoff: 100 * time.Millisecond,
		Registerer:            e.reg,
	}
	for _, m := range mutate {
		m(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	lis, err := p.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- p.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) client() discovery.AggregatedDiscoveryServiceClient {
	e.t.Helper()
	conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return discovery.NewAggregatedDiscoveryServiceClient(conn)
}

func node() *core.Node { return &core.Node{Id: nodeID} }

// eventually polls cond with a short deadline; the proxy's work is
// asynchronous (reconnects), so a bounded poll is the only option.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recvTimeout receives one message or fails the test after a deadline.
func recvTimeout[T any](t *testing.T, recv func() (T, error)) T {
	t.Helper()
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() { v, err := recv(); ch <- res{v, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("recv: %v", r.err)
		}
		return r.v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a discovery response")
	}
	var zero T
	return zero
}

func clusterNames(t *testing.T, resp *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.GetName())
	}
	slices.Sort(out) // wildcard responses come in map order
	return out
}

// value reads a counter's current value.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
