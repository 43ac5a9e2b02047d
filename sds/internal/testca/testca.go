// Package testca is a small in-process Istio CA for tests: it serves
// istio.v1.auth.IstioCertificateService over real TLS on 127.0.0.1, signs CSRs
// with a root it generated, and can be told to fail, block, go down or rotate
// its root. It is deliberately independent of istiod-lite's CA.
package testca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	"k8s.io/utils/clock"
)

// ServerName is the DNS SAN of the CA's serving certificate, as istiod's.
const ServerName = "istiod.istio-system.svc"

// Request is what the CA saw of one CreateCertificate call.
type Request struct {
	Token      string
	ClusterID  string
	ClientCert bool
	URIs       []string
	TTL        time.Duration
}

// CA is a running test CA.
type CA struct {
	clock clock.Clock
	addr  string

	mu       sync.Mutex
	token    string // expected bearer token; empty accepts any non-empty token
	root     *x509.Certificate
	rootKey  *ecdsa.PrivateKey
	roots    []*x509.Certificate // every root ever used, for client-cert auth
	serving  tls.Certificate
	failures []codes.Code // consumed one per call
	always   codes.Code   // returned on every call while set
	gate     chan struct{}
	inFlight int
	maxIn    int
	requests []Request
	srv      *grpc.Server
	backdate time.Duration
}

// Option configures New.
type Option func(*CA)

// WithClock makes issued certificates start at clock.Now().
func WithClock(c clock.Clock) Option { return func(ca *CA) { ca.clock = c } }

// WithBackdate starts issued certificates d before now, as CAs do for clock
// skew (istiod and istiod-lite by 2 minutes).
func WithBackdate(d time.Duration) Option { return func(ca *CA) { ca.backdate = d } }

// New starts a CA listening on an ephemeral loopback port; it stops with tb.
func New(tb testing.TB, opts ...Option) *CA {
	tb.Helper()
	ca := &CA{token: "test-token", clock: clock.RealClock{}}
	for _, o := range opts {
		o(ca)
	}
	ca.RotateRoot()
	// The serving certificate uses real time: TLS handshakes do not see the fake clock.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ServerName},
		DNSNames:     []string{ServerName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca.serving = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ca.addr = lis.Addr().String()
	ca.serve(lis)
	tb.Cleanup(ca.Stop)
	return ca
}

// SetToken changes the bearer token the CA accepts ("" accepts any).
func (ca *CA) SetToken(tok string) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.token = tok
}

// Addr is host:port of the CA.
func (ca *CA) Addr() string { return ca.addr }

// RootPEM is the current signing root.
func (ca *CA) RootPEM() []byte {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// FirstRootPEM is the root the CA started with (it also signed the serving
// certificate, so it is what agents are configured with).
func (ca *CA) FirstRootPEM() []byte {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.roots[0].Raw})
}

// RotateRoot switches to a new self-signed root for future signings.
func (ca *CA) RotateRoot() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca.mu.Lock()
	defer ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(len(ca.roots) + 100)),
		Subject:               pkix.Name{Organization: []string{"cluster.local"}, CommonName: "test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	root, _ := x509.ParseCertificate(der)
	ca.root, ca.rootKey = root, key
	ca.roots = append(ca.roots, root)
}

// FailNext makes the next len(codes) calls fail with those codes, in order.
func (ca *CA) FailNext(c ...codes.Code) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.failures = append(ca.failures, c...)
}

// FailAlways makes every call fail with c until FailAlways(codes.OK).
func (ca *CA) FailAlways(c codes.Code) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.always = c
}

// Hold makes calls wait until the returned function is called.
func (ca *CA) Hold() (release func()) {
	g := make(chan struct{})
	ca.mu.Lock()
	ca.gate = g
	ca.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ca.mu.Lock()
			ca.gate = nil
			ca.mu.Unlock()
			close(g)
		})
	}
}

// Requests returns every call received so far (including failed ones).
func (ca *CA) Requests() []Request {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return append([]Request(nil), ca.requests...)
}

// MaxInFlight is the largest number of concurrent calls seen.
func (ca *CA) MaxInFlight() int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.maxIn
}

// Stop takes the CA down: connections fail with Unavailable until Start.
func (ca *CA) Stop() {
	ca.mu.Lock()
	srv := ca.srv
	ca.srv = nil
	ca.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Start brings a stopped CA back on the same address.
func (ca *CA) Start() error {
	lis, err := net.Listen("tcp", ca.addr)
	if err != nil {
		return err
	}
	ca.serve(lis)
	return nil
}

func (ca *CA) serve(lis net.Listener) {
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.serving},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	srv := grpc.NewServer(grpc.Creds(creds))
	pb.RegisterIstioCertificateServiceServer(srv, &service{ca: ca})
	ca.mu.Lock()
	ca.srv = srv
	ca.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

type service struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca *CA
}

func (s *service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	ca := s.ca
	md, _ := metadata.FromIncomingContext(ctx)
	r := Request{TTL: time.Duration(req.GetValidityDuration()) * time.Second}
	if v := md.Get("authorization"); len(v) > 0 {
		r.Token = strings.TrimPrefix(v[0], "Bearer ")
	}
	if v := md.Get("clusterid"); len(v) > 0 {
		r.ClusterID = v[0]
	}
	var clientCert *x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			clientCert = ti.State.PeerCertificates[0]
			r.ClientCert = true
		}
	}
	csr, csrErr := parseCSR(req.GetCsr())
	if csr != nil {
		for _, u := range csr.URIs {
			r.URIs = append(r.URIs, u.String())
		}
	}

	ca.mu.Lock()
	ca.requests = append(ca.requests, r)
	ca.inFlight++
	ca.maxIn = max(ca.maxIn, ca.inFlight)
	gate := ca.gate
	var fail codes.Code
	if len(ca.failures) > 0 {
		fail, ca.failures = ca.failures[0], ca.failures[1:]
	} else {
		fail = ca.always
	}
	ca.mu.Unlock()
	defer func() {
		ca.mu.Lock()
		ca.inFlight--
		ca.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != codes.OK {
		return nil, status.Errorf(fail, "test CA told to fail with %s", fail)
	}
	if !ca.authenticated(r, clientCert) {
		return nil, status.Error(codes.Unauthenticated, "test CA: no valid bearer token or client certificate")
	}
	if csrErr != nil {
		return nil, status.Errorf(codes.InvalidArgument, "test CA: %v", csrErr)
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	ca.mu.Lock()
	root, key := ca.root, ca.rootKey
	ca.mu.Unlock()
	now := ca.clock.Now()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		URIs:         csr.URIs,
		NotBefore:    now.Add(-ca.backdate),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, csr.PublicKey, key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "test CA: sign: %v", err)
	}
	return &pb.IstioCertificateResponse{CertChain: []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})),
	}}, nil
}

func (ca *CA) authenticated(r Request, clientCert *x509.Certificate) bool {
	if clientCert != nil {
		ca.mu.Lock()
		pool := x509.NewCertPool()
		for _, rt := range ca.roots {
			pool.AddCert(rt)
		}
		ca.mu.Unlock()
		_, err := clientCert.Verify(x509.VerifyOptions{
			Roots: pool, CurrentTime: ca.clock.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err == nil {
			return true
		}
	}
	ca.mu.Lock()
	want := ca.token
	ca.mu.Unlock()
	return r.Token != "" && (want == "" || r.Token == want)
}

func parseCSR(s string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("csr is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, err
	}
	return csr, nil
}
