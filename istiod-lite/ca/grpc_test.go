package ca_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

const (
	testIssuer   = "https://kubernetes.default.svc.cluster.local"
	testAudience = "istio-ca"
)

// liveCA is a CA served over real gRPC+TLS on 127.0.0.1.
type liveCA struct {
	a      *ca.Authority
	addr   string
	tokens *jwtissuer.Issuer
}

func startLiveCA(t testing.TB, kt ca.KeyType) *liveCA {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil)) // benchmarks issue too many certificates to keep their logs
	a, err := ca.New(ca.Options{Dir: t.TempDir(), KeyType: kt, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := jwtissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	_, jwks, err := iss.WriteDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ja, err := authn.NewJWT(authn.JWTOptions{JWKSFile: jwks, Issuer: testIssuer, Audiences: []string{testAudience}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.NewServer(a, ca.ServerOptions{
		Authenticator: authn.Chain{ja, &authn.ClientCert{Roots: a.TrustPool, TrustDomain: a.TrustDomain()}},
		Registerer:    prometheus.NewRegistry(),
		Logger:        logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := a.ServerTLSConfig("127.0.0.1", "istiod-lite.example")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return &liveCA{a: a, addr: lis.Addr().String(), tokens: iss}
}

func (l *liveCA) token(t testing.TB, ns, sa string) string {
	t.Helper()
	tok, err := l.tokens.Mint(jwtissuer.Claims{Issuer: testIssuer, Audiences: []string{testAudience}, Namespace: ns, ServiceAccount: sa, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects as an agent does: verifying istiod's SAN against the trust
// bundle, optionally presenting a workload certificate.
func (l *liveCA) dial(t testing.TB, clientCert *tls.Certificate) pb.IstioCertificateServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: l.a.TrustPool(), ServerName: ca.IstiodSAN, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	cc, err := grpc.NewClient(l.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewIstioCertificateServiceClient(cc)
}

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok, "ClusterID", "Kubernetes")
}

func ctxTimeout(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func asTLSCert(t *testing.T, key crypto.Signer, chainPEM []string) *tls.Certificate {
	t.Helper()
	tc := &tls.Certificate{PrivateKey: key}
	for _, c := range parseChain(t, chainPEM) {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

func TestOverGRPCWithJWTThenClientCertRenewal(t *testing.T) {
	l := startLiveCA(t, ca.KeyECDSAP256)
	const id = "spiffe://cluster.local/ns/default/sa/app"

	// First certificate: bearer token.
	key := mustKey(t)
	resp, err := l.dial(t, nil).CreateCertificate(ctxTimeout(t, withToken(l.token(t, "default", "app"))),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{id})})
	if err != nil {
		t.Fatalf("CreateCertificate with JWT: %v", err)
	}
	chain := parseChain(t, resp.CertChain)
	if err := verifyChain(t, chain, l.a.TrustPool(), time.Now()); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}

	// Renewal: no token, the current workload certificate authenticates.
	renewer := l.dial(t, asTLSCert(t, key, resp.CertChain))
	key2 := mustKey(t)
	resp2, err := renewer.CreateCertificate(ctxTimeout(t, context.Background()), &pb.IstioCertificateRequest{Csr: csrPEM(t, key2, []string{id})})
	if err != nil {
		t.Fatalf("renewal with client certificate: %v", err)
	}
	if got := parseChain(t, resp2.CertChain)[0].URIs[0].String(); got != id {
		t.Errorf("renewed identity = %s", got)
	}
	// The certificate only renews its own identity.
	_, err = renewer.CreateCertificate(ctxTimeout(t, context.Background()),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, key2, []string{"spiffe://cluster.local/ns/default/sa/other"})})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("renewing another identity: %v, want PermissionDenied", err)
	}

	anon := l.dial(t, nil)
	_, err = anon.CreateCertificate(ctxTimeout(t, context.Background()), &pb.IstioCertificateRequest{Csr: csrPEM(t, key2, []string{id})})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials: %v, want Unauthenticated", err)
	}
	_, err = anon.CreateCertificate(ctxTimeout(t, withToken(l.token(t, "default", "app"))),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, key2, []string{"spiffe://cluster.local/ns/kube-system/sa/admin"})})
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
		t.Errorf("token for default/app asking for kube-system/admin: %v, want PermissionDenied", err)
	}
}

func TestServingCertificate(t *testing.T) {
	l := startLiveCA(t, ca.KeyECDSAP256)
	conn, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: l.a.TrustPool(), ServerName: ca.IstiodSAN, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("TLS to the CA with ServerName %s: %v", ca.IstiodSAN, err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := leaf.VerifyHostname("istiod-lite.example"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if len(leaf.URIs) != 0 {
		t.Errorf("serving cert carries URI SANs %v", leaf.URIs)
	}
}

func TestRotationOverGRPC(t *testing.T) {
	l := startLiveCA(t, ca.KeyECDSAP256)
	const id = "spiffe://cluster.local/ns/default/sa/app"
	oldRoot := l.a.SigningRoot()
	key := mustKey(t)
	resp, err := l.dial(t, nil).CreateCertificate(ctxTimeout(t, withToken(l.token(t, "default", "app"))),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{id})})
	if err != nil {
		t.Fatal(err)
	}
	newRoot, err := l.a.RotateRoot()
	if err != nil {
		t.Fatal(err)
	}
	// An agent with the old-root certificate renews during the overlap and
	// gets a new-root certificate; istiod now serves under the new root.
	resp2, err := l.dial(t, asTLSCert(t, key, resp.CertChain)).CreateCertificate(ctxTimeout(t, context.Background()),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, mustKey(t), []string{id})})
	if err != nil {
		t.Fatalf("renewal with an old-root certificate after rotation: %v", err)
	}
	chain := parseChain(t, resp2.CertChain)
	if !chain[len(chain)-1].Equal(newRoot) {
		t.Error("renewed chain does not end at the new root")
	}
	onlyNew := x509.NewCertPool()
	onlyNew.AddCert(newRoot)
	conn, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: onlyNew, ServerName: ca.IstiodSAN, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("istiod serving cert is not under the new root: %v", err)
	}
	conn.Close()
	// After the old root is removed its certificates no longer authenticate.
	if err := l.a.RemoveRoot(ca.Fingerprint(oldRoot)); err != nil {
		t.Fatal(err)
	}
	_, err = l.dial(t, asTLSCert(t, key, resp.CertChain)).CreateCertificate(ctxTimeout(t, context.Background()),
		&pb.IstioCertificateRequest{Csr: csrPEM(t, mustKey(t), []string{id})})
	if err == nil {
		t.Error("an old-root certificate still authenticates after the old root was removed")
	}
}
