package sds_test

// Integration of the agent's certificate side with the real istiod-lite CA:
// the secret cache, CA client, SDS server and OUTPUT_CERTS writer against
// istiod-lite/ca's CreateCertificate service, its own serving TLS config and
// JWT authentication, all in process on 127.0.0.1. service_test.go covers the
// same paths against the small fake in sds/internal/testca; these tests prove
// both halves of issue 4 speak the same protocol.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
	"github.com/meshlite/meshlite/sds"
	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/internal/testenvoy"
	"github.com/meshlite/meshlite/sds/secret"
)

// liveCA is istiod-lite's CA serving CreateCertificate over TLS with the
// serving certificate it issues itself, as `istiod-lite discovery` does on
// :15012. It can be stopped and started again on the same address.
type liveCA struct {
	t      *testing.T
	auth   *ca.Authority
	svc    *ca.Server
	issuer *jwtissuer.Issuer
	clock  *clocktesting.FakeClock
	addr   string
	issued atomic.Int64 // successful CreateCertificate calls

	mu sync.Mutex
	gs *grpc.Server
}

func startLiveCA(t *testing.T, fc *clocktesting.FakeClock) *liveCA {
	t.Helper()
	dir := t.TempDir()
	iss, err := jwtissuer.Generate("")
	must(t, err)
	_, jwks, err := iss.WriteDir(filepath.Join(dir, "issuer"))
	must(t, err)
	cfg := ca.Config{
		CADir: filepath.Join(dir, "cacerts"), KeyType: string(ca.KeyECDSAP256), TrustDomain: id.TrustDomain,
		MaxWorkloadCertTTL: ca.DefaultMaxWorkloadCertTTL, WorkloadCertTTL: ca.DefaultWorkloadCertTTL,
		JWKSFile: jwks, JWTIssuer: jwtissuer.DefaultIssuer, JWTAudiences: []string{jwtissuer.DefaultAudience},
	}
	auth, svc, err := cfg.Build(prometheus.NewRegistry(), fc, quietLogger())
	must(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	c := &liveCA{t: t, auth: auth, svc: svc, issuer: iss, clock: fc, addr: lis.Addr().String()}
	c.serve(lis)
	t.Cleanup(c.stop)
	return c
}

func (c *liveCA) serve(lis net.Listener) {
	tlsCfg, err := c.auth.ServerTLSConfig()
	must(c.t, err)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err == nil {
				c.issued.Add(1)
			}
			return resp, err
		}))
	c.svc.Register(gs)
	c.mu.Lock()
	c.gs = gs
	c.mu.Unlock()
	go func() { _ = gs.Serve(lis) }()
}

// stop takes the CA down, cutting open connections, as a crashed istiod does.
func (c *liveCA) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gs.Stop()
}

// restart brings the CA back on the address agents are configured with.
func (c *liveCA) restart() {
	c.t.Helper()
	c.stop()
	lis, err := net.Listen("tcp", c.addr)
	must(c.t, err)
	c.serve(lis)
}

// token mints a projected service account token for ns/sa, issued now on
// the shared fake clock so the CA's expiry check sees it as fresh.
func (c *liveCA) token(ns, sa string) []byte {
	c.t.Helper()
	tok, err := c.issuer.Mint(jwtissuer.Claims{
		Issuer: jwtissuer.DefaultIssuer, Audiences: []string{jwtissuer.DefaultAudience},
		Namespace: ns, ServiceAccount: sa, TTL: 48 * time.Hour, Now: c.clock.Now(),
	})
	must(c.t, err)
	return []byte(tok)
}

// liveWorld is one agent's certificate side (sds.Service) wired to a liveCA.
type liveWorld struct {
	ca    *liveCA
	clock *clocktesting.FakeClock
	svc   *sds.Service
	root  string // CA_ROOT_CA
	sock  string
	out   string
}

// newLiveWorld starts a CA and an agent whose token file holds token(ca)
// (the workload's own token when nil).
//
// The CA and the agent share one fake clock, started well in the past: the
// agent verifies istiod's serving certificate with crypto/tls at wall time,
// so fake time must never overtake it while the tests step through
// rotations, or a serving certificate reissued after a root rotation would
// look not yet valid. openssl is told the fake time with -attime.
func newLiveWorld(t *testing.T, token func(*liveCA) []byte) *liveWorld {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Now().Add(-6 * time.Hour))
	c := startLiveCA(t, fc)
	dir := t.TempDir()
	w := &liveWorld{ca: c, clock: fc, root: filepath.Join(dir, "root-cert.pem"),
		sock: filepath.Join(dir, "uds", "socket"), out: filepath.Join(dir, "out")}
	// The trust bundle an operator hands agents: the CA's root-cert.pem.
	must(t, os.WriteFile(w.root, c.auth.TrustBundlePEM(), 0o644))
	tok := c.token(id.Namespace, id.ServiceAccount)
	if token != nil {
		tok = token(c)
	}
	must(t, os.WriteFile(filepath.Join(dir, "istio-token"), tok, 0o600))
	svc, err := sds.New(sds.Config{
		Identity: id, CAAddress: c.addr, CAServerName: ca.IstiodSAN,
		RootCAFile: w.root, TokenPath: filepath.Join(dir, "istio-token"),
		TTL: time.Hour, SDSSocket: w.sock, OutputCertsDir: w.out, Clock: fc, Logger: quietLogger(),
	})
	must(t, err)
	w.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the SDS socket", func() bool { _, err := os.Stat(w.sock); return err == nil })
	return w
}

// rotationWindow is when the cache may rotate leaf: with half its lifetime
// left (SECRET_GRACE_PERIOD_RATIO 0.5), spread by the cache's ±0.01 jitter.
// The lifetime is counted from NotBefore or from arrival, which is
// NotBefore plus the CA's clock-skew backdating; the window covers both.
func rotationWindow(leaf *x509.Certificate) (earliest, latest time.Time) {
	longest := leaf.NotAfter.Sub(leaf.NotBefore)
	shortest := longest - ca.DefaultClockSkew
	return leaf.NotAfter.Add(-time.Duration(0.51 * float64(longest))), leaf.NotAfter.Add(-time.Duration(0.49 * float64(shortest)))
}

func TestLiveCAFirstCertRotationAndRootChange(t *testing.T) {
	w := newLiveWorld(t, nil)
	env := testenvoy.Dial(t, w.sock)
	def, rootStream := env.Open(secret.ResourceDefault), env.Open(secret.ResourceRoot)

	// The first certificate comes from istiod-lite's CA and is served over
	// SDS next to ROOTCA; both are ACKed by the test Envoy.
	first := mustParse(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	roots1 := rootStream.Next().GetValidationContext().GetTrustedCa().GetInlineBytes()
	if got := mustParse(t, roots1); len(got) != 1 || !got[0].Equal(w.ca.auth.SigningRoot()) {
		t.Fatalf("ROOTCA = %d roots, want the CA's one root", len(got))
	}
	verify(t, first, roots1, w.clock.Now())
	leaf := first[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Errorf("leaf SANs = %v, want exactly %s", leaf.URIs, id)
	}
	// x509 times have whole seconds.
	if got := leaf.NotAfter.Sub(w.clock.Now()); got <= time.Hour-time.Second || got > time.Hour {
		t.Errorf("leaf lives %s from issuance, want the requested SECRET_TTL of 1h", got)
	}
	if n := w.ca.issued.Load(); n != 1 {
		t.Errorf("CA issued %d certificates for the first one, want 1", n)
	}
	waitFor(t, "readiness", func() bool { return w.svc.Ready() == nil })
	waitFor(t, "OUTPUT_CERTS", func() bool {
		b, err := os.ReadFile(filepath.Join(w.out, "cert-chain.pem"))
		return err == nil && string(b) == string(w.svc.Source().Workload().CertChainPEM)
	})
	opensslVerifyAt(t, w.out, w.clock.Now())

	// Rotation happens inside the grace window, not before it.
	earliest, latest := rotationWindow(leaf)
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(earliest.Sub(w.clock.Now()) - time.Second)
	if !w.clock.HasWaiters() || w.ca.issued.Load() != 1 {
		t.Fatalf("rotated before %s, when more than half the lifetime was left", earliest)
	}
	w.clock.Step(latest.Sub(w.clock.Now()) + time.Second)
	second := mustParse(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if second[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("rotation served the same certificate")
	}
	verify(t, second, roots1, w.clock.Now())

	// istiod-lite's CA rotates its root. The operator distributes the new
	// bundle (old and new root) as Istio's istio-ca-root-cert ConfigMap
	// does: the agent pushes it as ROOTCA without a restart or a new leaf.
	oldRoot := w.ca.auth.SigningRoot()
	newRoot, err := w.ca.auth.RotateRoot()
	must(t, err)
	writeAtomic(t, w.root, w.ca.auth.TrustBundlePEM())
	roots2 := rootStream.Next().GetValidationContext().GetTrustedCa().GetInlineBytes()
	if !containsRoot(mustParse(t, roots2), oldRoot) || !containsRoot(mustParse(t, roots2), newRoot) {
		t.Fatalf("ROOTCA after the root rotation = %d roots, want both the old and the new root", len(mustParse(t, roots2)))
	}

	// The next rotation renews (presenting the old-root certificate) and
	// brings a leaf under the new root; peers on either root verify.
	_, latest = rotationWindow(second[0])
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(latest.Sub(w.clock.Now()) + time.Second)
	third := mustParse(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if err := third[0].CheckSignatureFrom(newRoot); err != nil {
		t.Errorf("the leaf issued after the root rotation is not signed by the new root: %v", err)
	}
	verify(t, third, roots2, w.clock.Now())
	verify(t, second, roots2, w.clock.Now())
	waitFor(t, "OUTPUT_CERTS to follow the new root", func() bool {
		b, _ := os.ReadFile(filepath.Join(w.out, "cert-chain.pem"))
		return string(b) == string(w.svc.Source().Workload().CertChainPEM) &&
			containsRoot(mustParseQuiet(filepath.Join(w.out, "root-cert.pem")), newRoot)
	})
	opensslVerifyAt(t, w.out, w.clock.Now())
}

func TestLiveCADownAtRotationKeepsServingAndRecovers(t *testing.T) {
	w := newLiveWorld(t, nil)
	def := testenvoy.Dial(t, w.sock).Open(secret.ResourceDefault)
	first := def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes()
	leaf := mustParse(t, first)[0]
	waitFor(t, "readiness", func() bool { return w.svc.Ready() == nil })

	w.ca.stop()
	_, latest := rotationWindow(leaf)
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(latest.Sub(w.clock.Now()) + time.Second)
	waitFor(t, "the failed rotation", func() bool { return w.svc.Source().Status().LastError != nil })
	st := w.svc.Source().Status()
	if st.Permanent {
		t.Fatalf("a CA outage was taken as a permanent refusal: %v", st.LastError)
	}
	if got := w.svc.Source().Workload().CertChainPEM; string(got) != string(first) {
		t.Error("the served certificate changed while the CA was down")
	}
	if err := w.svc.Ready(); err != nil {
		t.Errorf("a CA outage after delivery made the agent unready: %v", err)
	}
	select {
	case r := <-def.Msgs:
		t.Fatalf("SDS pushed %q while the CA was down", r.GetVersionInfo())
	default:
	}

	// The CA comes back on the same address: a retry (driven by the fake
	// clock, well before the old leaf expires) gets and serves a new one.
	w.ca.restart()
	var next []byte
	deadline := time.Now().Add(20 * time.Second)
	for next == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no new certificate after the CA came back; last error: %v", w.svc.Source().Status().LastError)
		}
		if w.clock.HasWaiters() {
			w.clock.Step(10 * time.Second)
		}
		select {
		case r, ok := <-def.Msgs:
			if !ok {
				t.Fatal("the SDS stream closed")
			}
			def.Send(r.VersionInfo, r.Nonce)
			next = def.Decode(r).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if w.clock.Now().After(leaf.NotAfter) {
		t.Errorf("recovered only after the old certificate expired (%s)", leaf.NotAfter)
	}
	if mustParse(t, next)[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("recovery served the old certificate again")
	}
	if st := w.svc.Source().Status(); st.LastError != nil {
		t.Errorf("the error stayed after recovery: %v", st.LastError)
	}
}

func TestLiveCARefusalIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token func(*liveCA) []byte
		code  codes.Code
		says  []string
	}{{
		name:  "token of another service account",
		token: func(c *liveCA) []byte { return c.token(id.Namespace, "other") },
		code:  codes.PermissionDenied,
		says:  []string{id.String(), "spiffe://cluster.local/ns/shop/sa/other"},
	}, {
		name: "token signed by a key the CA does not know",
		token: func(c *liveCA) []byte {
			rogue, err := jwtissuer.Generate("")
			must(c.t, err)
			tok, err := rogue.Mint(jwtissuer.Claims{Issuer: jwtissuer.DefaultIssuer, Audiences: []string{jwtissuer.DefaultAudience},
				Namespace: id.Namespace, ServiceAccount: id.ServiceAccount, TTL: time.Hour, Now: c.clock.Now()})
			must(c.t, err)
			return []byte(tok)
		},
		code: codes.Unauthenticated,
		says: []string{"authentication failed"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newLiveWorld(t, tc.token)
			waitFor(t, "the refusal", func() bool { return w.svc.Source().Status().Permanent })
			st := w.svc.Source().Status()
			var pe *cache.PermanentError
			if !errors.As(st.LastError, &pe) || pe.Code != tc.code {
				t.Fatalf("cache state error = %v, want a permanent %s", st.LastError, tc.code)
			}
			for _, s := range tc.says {
				if !strings.Contains(st.LastError.Error(), s) {
					t.Errorf("error %q does not say %q", st.LastError, s)
				}
			}
			err := w.svc.Ready()
			if err == nil || !cache.IsPermanent(err) || errors.Is(err, sds.ErrNotReady) {
				t.Errorf("Ready() = %v, want the permanent refusal rather than 'not ready yet'", err)
			}
			if st.HasCert || w.ca.issued.Load() != 0 {
				t.Error("a certificate was issued for a refused caller")
			}
		})
	}
}

func containsRoot(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, r := range list {
		if r.Equal(c) {
			return true
		}
	}
	return false
}

func mustParseQuiet(path string) []*x509.Certificate {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	c, _ := secret.ParseCertificates(b)
	return c
}

// writeAtomic replaces path the way a ConfigMap update or `mv` does.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	must(t, os.WriteFile(tmp, data, 0o644))
	must(t, os.Rename(tmp, path))
}

// opensslVerifyAt checks the OUTPUT_CERTS files with openssl at the given
// (fake) time, when openssl is installed.
func opensslVerifyAt(t *testing.T, dir string, at time.Time) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not on PATH; skipping the openssl verify check")
		return
	}
	out, err := exec.Command(bin, "verify", "-attime", fmt.Sprint(at.Unix()),
		"-CAfile", filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "cert-chain.pem")).CombinedOutput()
	if err != nil {
		t.Errorf("openssl verify: %v: %s", err, out)
	}
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
