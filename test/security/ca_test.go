package security

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

// caFixture is istiod-lite's CA on its TLS port, as agents reach it: gRPC
// over TLS verified against root-cert.pem with the istiod.istio-system.svc
// SAN, trusting the JWKS written by `istiod-lite token keygen`.
//
// It runs `istiod-lite discovery` (which mounts the CA on --secureGRPCAddr).
// A binary whose discovery has no CA flags yet gets the CA in-process through
// the same ca.Config.Build, over real gRPC+TLS; tokens always come from the
// binary.
type caFixture struct {
	bin     string
	keyDir  string // signing-key.pem and jwks.json trusted by the CA
	addr    string
	roots   *x509.CertPool
	trustTD string
	mode    string // "istiod-lite discovery" or "in-process"
	// plainAddr is discovery's plaintext --grpcAddr (binary mode only).
	plainAddr string
}

func newCAFixture(t *testing.T) *caFixture {
	t.Helper()
	f := &caFixture{bin: filepath.Join(binaries(t), "istiod-lite"), keyDir: filepath.Join(t.TempDir(), "keys"), trustTD: "cluster.local"}
	f.run(t, "token", "keygen", "--out", f.keyDir)
	caDir := filepath.Join(t.TempDir(), "cacerts")
	jwks := filepath.Join(f.keyDir, jwtissuer.JWKSFile)
	if help, _ := exec.Command(f.bin, "discovery", "--help").CombinedOutput(); strings.Contains(string(help), "--jwksFile") {
		f.startDiscovery(t, caDir, jwks)
	} else {
		f.startInProcess(t, caDir, jwks)
	}
	t.Logf("CA served by %s on %s", f.mode, f.addr)
	return f
}

func (f *caFixture) startDiscovery(t *testing.T, caDir, jwks string) {
	t.Helper()
	f.mode = "istiod-lite discovery"
	configDir := t.TempDir()
	f.addr = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	f.plainAddr = fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	cmd := exec.Command(f.bin, "discovery", "--grpcAddr="+f.plainAddr, "--httpAddr=", "--secureGRPCAddr="+f.addr,
		"--configDir="+configDir, "--caDir="+caDir, "--jwksFile="+jwks, "--trustDomain="+f.trustTD,
		"--maxWorkloadCertTTL=48h", "--workloadCertTTL=1h")
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("istiod-lite output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("istiod-lite discovery exited (%v):\n%s", err, out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", f.addr, time.Second); err == nil {
			c.Close()
			if c, err := net.DialTimeout("tcp", f.plainAddr, time.Second); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("istiod-lite discovery did not listen on %s within 20s:\n%s", f.addr, out.String())
		}
	}
	pemData, err := os.ReadFile(filepath.Join(caDir, ca.RootCertFile))
	if err != nil {
		t.Fatalf("the CA did not write %s: %v", ca.RootCertFile, err)
	}
	f.roots = x509.NewCertPool()
	if !f.roots.AppendCertsFromPEM(pemData) {
		t.Fatalf("%s holds no certificate", ca.RootCertFile)
	}
}

func (f *caFixture) startInProcess(t *testing.T, caDir, jwks string) {
	t.Helper()
	f.mode = "in-process ca.Config.Build"
	cfg := ca.Config{
		CADir: caDir, TrustDomain: f.trustTD, MaxWorkloadCertTTL: 48 * time.Hour, WorkloadCertTTL: time.Hour,
		JWKSFile: jwks, JWTIssuer: jwtissuer.DefaultIssuer, JWTAudiences: []string{jwtissuer.DefaultAudience},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	authority, svc, err := cfg.Build(nil, clock.RealClock{}, logger)
	if err != nil {
		t.Fatalf("building the CA: %v", err)
	}
	tlsCfg, err := authority.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	svc.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	f.addr, f.roots = lis.Addr().String(), authority.TrustPool()
}

// run executes istiod-lite with args and returns its stdout.
func (f *caFixture) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(f.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("istiod-lite %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// token mints a service account token with the binary.
func (f *caFixture) token(t *testing.T, keyDir, ns, sa string, extra ...string) string {
	t.Helper()
	args := append([]string{"token", "create", "--signing-key", filepath.Join(keyDir, jwtissuer.KeyFile),
		"--namespace", ns, "--service-account", sa}, extra...)
	return f.run(t, args...)
}

// call sends one CreateCertificate for spiffeID with an optional bearer
// token and client certificate, as pilot-agent's CA client does.
func (f *caFixture) call(t *testing.T, token, spiffeID string, clientCert *tls.Certificate) (*pb.IstioCertificateResponse, error) {
	t.Helper()
	tc := &tls.Config{RootCAs: f.roots, ServerName: ca.IstiodSAN, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		tc.Certificates = []tls.Certificate{*clientCert}
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "clusterid", "Kubernetes")
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&pb.IstioCertificateRequest{Csr: csrFor(t, key, spiffeID), ValidityDuration: 3600})
}

func csrFor(t *testing.T, key crypto.Signer, spiffeID string) string {
	t.Helper()
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func spiffeID(td, ns, sa string) string { return "spiffe://" + td + "/ns/" + ns + "/sa/" + sa }

// TestCADeniesUnauthorizedCSRs: the CA signs a workload's own identity for
// a valid token and nothing else.
func TestCADeniesUnauthorizedCSRs(t *testing.T) {
	f := newCAFixture(t)
	idA, idB := spiffeID(f.trustTD, "shop", "frontend"), spiffeID(f.trustTD, "shop", "payments")
	tokenA := f.token(t, f.keyDir, "shop", "frontend")

	// Positive control: without it, every denial below could be a broken setup.
	resp, err := f.call(t, tokenA, idA, nil)
	if err != nil {
		t.Fatalf("CSR for its own identity with a valid token was refused: %v", err)
	}
	leaf, err := ca.ParseCertsPEM([]byte(resp.GetCertChain()[0]))
	if err != nil || len(leaf) != 1 || len(leaf[0].URIs) != 1 || leaf[0].URIs[0].String() != idA {
		t.Fatalf("issued certificate does not name exactly %s: %v %v", idA, leaf, err)
	}

	otherKeys := filepath.Join(t.TempDir(), "other")
	f.run(t, "token", "keygen", "--out", otherKeys)
	iss, err := jwtissuer.Load(filepath.Join(f.keyDir, jwtissuer.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := iss.Mint(jwtissuer.Claims{Issuer: jwtissuer.DefaultIssuer, Audiences: []string{jwtissuer.DefaultAudience},
		Namespace: "shop", ServiceAccount: "frontend", TTL: time.Hour, Now: time.Now().Add(-3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	forged := f.token(t, otherKeys, "shop", "frontend")
	// A valid token with its signature replaced by another key's signature
	// over the same header and claims: the kid is the trusted one.
	tampered := tokenA[:strings.LastIndex(tokenA, ".")] + forged[strings.LastIndex(forged, "."):]

	cases := []struct {
		name, token, id string
		cert            *tls.Certificate
		want            codes.Code
		msg             string // part of the message the agent logs
	}{
		{"no token", "", idA, nil, codes.Unauthenticated, "authentication failed"},
		{"token for A asking for B", tokenA, idB, nil, codes.PermissionDenied, idB},
		{"token for A asking for another trust domain", tokenA, spiffeID("evil.example", "shop", "frontend"), nil, codes.PermissionDenied, "not the caller's identity"},
		{"expired token", expired, idA, nil, codes.Unauthenticated, "authentication failed"},
		{"token signed by an untrusted key", forged, idA, nil, codes.Unauthenticated, "authentication failed"},
		{"trusted kid, signature from another key", tampered, idA, nil, codes.Unauthenticated, "authentication failed"},
		{"token for another audience", f.token(t, f.keyDir, "shop", "frontend", "--audience", "not-istio-ca"), idA, nil, codes.Unauthenticated, "authentication failed"},
		{"token from another issuer", f.token(t, f.keyDir, "shop", "frontend", "--issuer", "https://evil.example"), idA, nil, codes.Unauthenticated, "authentication failed"},
		{"garbage token", "not.a.jwt", idA, nil, codes.Unauthenticated, "authentication failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.call(t, tc.token, tc.id, tc.cert)
			if err == nil {
				t.Fatalf("CA issued a certificate (%d PEMs); want %s", len(resp.GetCertChain()), tc.want)
			}
			st := status.Convert(err)
			if st.Code() != tc.want || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %s %q, want %s mentioning %q", st.Code(), st.Message(), tc.want, tc.msg)
			}
		})
	}

	// Bearer tokens must never cross plaintext: the CA is not served on
	// discovery's plaintext port, even with a valid token.
	t.Run("valid token on the plaintext port", func(t *testing.T) {
		if f.plainAddr == "" {
			t.Skip("the CA runs in-process: there is no plaintext port")
		}
		conn, err := grpc.NewClient(f.plainAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokenA)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrFor(t, key, idA)})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("CreateCertificate over plaintext = %v, want Unimplemented (the CA is served only over TLS)", err)
		}
	})

	// Renewal with a client certificate from a CA the mesh does not trust:
	// the TLS layer or the authenticator must refuse it; no token is sent.
	t.Run("client certificate from an untrusted CA", func(t *testing.T) {
		cert := selfSignedWorkloadCert(t, idA)
		resp, err := f.call(t, "", idA, &cert)
		if err == nil {
			t.Fatalf("CA issued a certificate (%d PEMs) to a caller with a forged client certificate", len(resp.GetCertChain()))
		}
		if c := status.Code(err); c != codes.Unauthenticated && c != codes.Unavailable {
			t.Fatalf("got %s %v, want Unauthenticated or a refused handshake", c, err)
		}
	})
}

// selfSignedWorkloadCert is a certificate claiming id, issued by nobody the
// mesh trusts.
func selfSignedWorkloadCert(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "forged"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
