package sds_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds"
	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/internal/testca"
	"github.com/meshlite/meshlite/sds/internal/testcerts"
	"github.com/meshlite/meshlite/sds/internal/testenvoy"
	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/spiffe"
	"google.golang.org/grpc/codes"
	clocktesting "k8s.io/utils/clock/testing"
)

var id = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}

type world struct {
	ca    *testca.CA
	clock *clocktesting.FakeClock
	svc   *sds.Service
	dir   string
	sock  string
	out   string
	errc  chan error
}

func newWorld(t *testing.T, mutate func(*sds.Config)) *world {
	t.Helper()
	return newWorldWithCA(t, mutate, nil)
}

// newWorldWithCA lets prepare set the CA up before the agent's first request.
func newWorldWithCA(t *testing.T, mutate func(*sds.Config), prepare func(*testca.CA)) *world {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Now())
	ca := testca.New(t, testca.WithClock(fc))
	if prepare != nil {
		prepare(ca)
	}
	dir := t.TempDir()
	w := &world{ca: ca, clock: fc, dir: dir, sock: filepath.Join(dir, "uds", "socket"), out: filepath.Join(dir, "out"), errc: make(chan error, 1)}
	must(t, os.WriteFile(filepath.Join(dir, "root-cert.pem"), ca.FirstRootPEM(), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "istio-token"), []byte("test-token"), 0o600))
	cfg := sds.Config{
		Identity: id, CAAddress: ca.Addr(), CAServerName: testca.ServerName,
		RootCAFile: filepath.Join(dir, "root-cert.pem"), TokenPath: filepath.Join(dir, "istio-token"),
		TTL: time.Hour, SDSSocket: w.sock, OutputCertsDir: w.out, Clock: fc,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := sds.New(cfg)
	must(t, err)
	w.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.errc <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-w.errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the SDS socket", func() bool { _, err := os.Stat(w.sock); return err == nil })
	return w
}

func TestEndToEndFirstCertRotationAndRootChange(t *testing.T) {
	w := newWorld(t, nil)
	env := testenvoy.Dial(t, w.sock)
	def, root := env.Open(secret.ResourceDefault), env.Open(secret.ResourceRoot)

	// First certificate, served and ACKed; readiness follows.
	first := parseChain(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	roots1 := root.Next().GetValidationContext().GetTrustedCa().GetInlineBytes()
	verify(t, first, roots1, w.clock.Now())
	if first[0].URIs[0].String() != id.String() {
		t.Errorf("SAN = %v, want %s", first[0].URIs, id)
	}
	waitFor(t, "readiness", func() bool { return w.svc.Ready() == nil })
	waitFor(t, "OUTPUT_CERTS", func() bool {
		b, err := os.ReadFile(filepath.Join(w.out, "cert-chain.pem"))
		return err == nil && string(b) == string(w.svc.Source().Workload().CertChainPEM)
	})
	openssl(t, w.out)

	// Rotation at half-life pushes `default` only.
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(31 * time.Minute) // past the half-life and its ±1% jitter
	second := parseChain(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if second[0].SerialNumber.Cmp(first[0].SerialNumber) == 0 {
		t.Fatal("rotation served the same certificate")
	}

	// The CA moves to a new root: the next issuance brings it, ROOTCA is
	// pushed with both roots, and the new leaf verifies against the bundle.
	w.ca.RotateRoot()
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(31 * time.Minute) // past the half-life and its ±1% jitter
	roots2 := root.Next().GetValidationContext().GetTrustedCa().GetInlineBytes()
	third := parseChain(t, def.Next().GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if n := len(mustParse(t, roots2)); n != 2 {
		t.Errorf("ROOTCA after root rotation has %d roots, want 2", n)
	}
	verify(t, third, roots2, w.clock.Now())
	verify(t, second, roots2, w.clock.Now()) // peers still on the old root keep working
	waitFor(t, "root-cert.pem to follow", func() bool {
		b, _ := os.ReadFile(filepath.Join(w.out, "root-cert.pem"))
		return string(b) == string(roots2)
	})
}

func TestCADownAtRotationKeepsServing(t *testing.T) {
	w := newWorld(t, nil)
	def := testenvoy.Dial(t, w.sock).Open(secret.ResourceDefault)
	first := def.Next()
	w.ca.FailAlways(codes.Unavailable)
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.Step(31 * time.Minute) // past the half-life and its ±1% jitter
	waitFor(t, "the failed rotation", func() bool { return w.svc.Source().Status().LastError != nil })
	if got := w.svc.Source().Workload().CertChainPEM; string(got) != string(first.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) {
		t.Error("the served certificate changed while the CA was down")
	}
	if err := w.svc.Ready(); err != nil {
		t.Errorf("a retryable outage after delivery made the agent unready: %v", err)
	}
	w.ca.FailAlways(codes.OK)
	waitFor(t, "the retry timer", w.clock.HasWaiters)
	w.clock.Step(time.Minute)
	def.Next()
}

func TestExpiredCertificateIsNotReady(t *testing.T) {
	w := newWorld(t, nil)
	testenvoy.Dial(t, w.sock).Open(secret.ResourceDefault).Next()
	w.ca.FailAlways(codes.Unavailable)
	expiry := w.svc.Source().Status().Expiry
	waitFor(t, "the rotation timer", w.clock.HasWaiters)
	w.clock.SetTime(expiry.Add(time.Second))
	err := w.svc.Ready()
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Ready() with an expired certificate and the CA down = %v, want an error saying it expired", err)
	}
	w.ca.FailAlways(codes.OK)
	waitFor(t, "readiness after the CA returns", func() bool {
		if w.clock.HasWaiters() {
			w.clock.Step(time.Minute)
		}
		return w.svc.Ready() == nil
	})
}

func TestPermanentRefusalSurfacesInReady(t *testing.T) {
	w := newWorldWithCA(t, nil, func(ca *testca.CA) { ca.FailAlways(codes.PermissionDenied) })
	waitFor(t, "the refusal", func() bool {
		err := w.svc.Ready()
		return err != nil && cache.IsPermanent(err)
	})
	if err := w.svc.Ready(); errors.Is(err, sds.ErrNotReady) {
		t.Errorf("a permanent refusal reads as 'not ready yet': %v", err)
	}
}

func TestFileMountedServedOverSDS(t *testing.T) {
	certs := t.TempDir()
	root := testcerts.SelfSigned(t, "root")
	pair := testcerts.SelfSigned(t, "mounted")
	must(t, os.WriteFile(filepath.Join(certs, "root-cert.pem"), root.CertPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(certs, "cert-chain.pem"), pair.CertPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(certs, "key.pem"), pair.KeyPEM, 0o600))
	w := newWorld(t, func(c *sds.Config) { c.FileMountedCerts, c.FileMountedCertsDir = true, certs })
	env := testenvoy.Dial(t, w.sock)
	if got := env.Open(secret.ResourceDefault).Next().GetTlsCertificate().GetPrivateKey().GetInlineBytes(); string(got) != string(pair.KeyPEM) {
		t.Error("file-mounted key not served")
	}
	if got := env.Open(secret.ResourceRoot).Next().GetValidationContext().GetTrustedCa().GetInlineBytes(); string(got) != string(root.CertPEM) {
		t.Error("file-mounted root not served")
	}
	if n := len(w.ca.Requests()); n != 0 {
		t.Errorf("file-mounted mode called the CA %d times", n)
	}
}

func parseChain(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	return mustParse(t, pemBytes)
}

func mustParse(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	c, err := secret.ParseCertificates(b)
	must(t, err)
	return c
}

func verify(t *testing.T, chain []*x509.Certificate, rootsPEM []byte, now time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootsPEM)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
}

// openssl checks the written files the way an operator would, when openssl
// is installed.
func openssl(t *testing.T, dir string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not on PATH; skipping the openssl verify check")
		return
	}
	out, err := exec.Command(bin, "verify", "-CAfile", filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "cert-chain.pem")).CombinedOutput()
	if err != nil {
		t.Errorf("openssl verify: %v: %s", err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
