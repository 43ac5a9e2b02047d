package cache_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/caclient"
	"github.com/meshlite/meshlite/sds/internal/testca"
	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/spiffe"
	"google.golang.org/grpc/codes"
	clocktesting "k8s.io/utils/clock/testing"
)

var testID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "httpbin"}

type env struct {
	ca        *testca.CA
	clock     *clocktesting.FakeClock
	cache     *cache.Cache
	rootFile  string
	tokenFile string
}

// newEnv wires a cache to a test CA over real TLS, the way the agent does.
func newEnv(t *testing.T, mutate func(*cache.Options)) *env {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Now())
	ca := testca.New(t, testca.WithClock(fc))
	dir := t.TempDir()
	e := &env{ca: ca, clock: fc, rootFile: filepath.Join(dir, "root-cert.pem"), tokenFile: filepath.Join(dir, "istio-token")}
	must(t, os.WriteFile(e.rootFile, ca.FirstRootPEM(), 0o644))
	must(t, os.WriteFile(e.tokenFile, []byte("test-token\n"), 0o600))
	cl, err := caclient.New(caclient.Options{
		Addr: ca.Addr(), ServerName: testca.ServerName, TokenPath: e.tokenFile, ClusterID: "Kubernetes",
		Roots:             func() *x509.CertPool { return e.cache.Roots() },
		ClientCertificate: func() *tls.Certificate { return e.cache.ClientCertificate() },
	})
	must(t, err)
	t.Cleanup(func() { cl.Close() })
	opts := cache.Options{
		Identity: testID, CA: cl, RootCertFile: e.rootFile, Clock: fc,
		TTL: time.Hour, GraceRatioJitter: -1, InitialBackoff: time.Second, MaxBackoff: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	e.cache, err = cache.New(opts)
	must(t, err)
	return e
}

func (e *env) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitCert waits for a workload different from prev.
func (e *env) waitCert(t *testing.T, prev *secret.Workload) *secret.Workload {
	t.Helper()
	var w *secret.Workload
	waitFor(t, "a new workload certificate", func() bool {
		w = e.cache.Workload()
		return w != nil && !w.Equal(prev)
	})
	return w
}

// stepWhenWaiting advances the fake clock once the cache is parked on a timer,
// so the step is never lost to a race with the cache's goroutine.
func (e *env) stepWhenWaiting(t *testing.T, d time.Duration) {
	t.Helper()
	waitFor(t, "the cache to wait on its clock", e.clock.HasWaiters)
	e.clock.Step(d)
}

func TestFirstCertificate(t *testing.T) {
	e := newEnv(t, nil)
	e.run(t)
	w := e.waitCert(t, nil)

	if got := w.Leaf.URIs[0].String(); got != testID.String() {
		t.Errorf("leaf SAN = %s, want %s", got, testID)
	}
	k, ok := w.Certificate.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Errorf("default key is %T, want ECDSA P-256", w.Certificate.PrivateKey)
	}
	b := e.cache.Bundle()
	if b == nil || len(b.Roots) != 1 {
		t.Fatalf("trust bundle = %+v, want the one root (file and CA agree)", b)
	}
	if _, err := w.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool, CurrentTime: e.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued leaf does not verify against the bundle: %v", err)
	}
	reqs := e.ca.Requests()
	if len(reqs) != 1 || reqs[0].Token != "test-token" || reqs[0].ClusterID != "Kubernetes" || reqs[0].TTL != time.Hour {
		t.Errorf("CA saw %+v, want one request with token, ClusterID and a 1h TTL", reqs)
	}
	if got := e.cache.RotateAt(); !got.Equal(w.Leaf.NotBefore.Add(30 * time.Minute)) {
		t.Errorf("rotate at %s, want half-life %s", got, w.Leaf.NotBefore.Add(30*time.Minute))
	}
	if st := e.cache.Status(); !st.HasCert || st.LastError != nil || !st.Expiry.Equal(w.NotAfter()) {
		t.Errorf("status = %+v", st)
	}
}

func TestKeyAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  func(*cache.Options)
		check func(any) bool
	}{
		{"rsa-2048", func(o *cache.Options) { o.KeyAlgorithm = cache.KeyRSA }, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 }},
		{"rsa-3072", func(o *cache.Options) { o.KeyAlgorithm, o.RSAKeySize = cache.KeyRSA, 3072 }, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 3072 }},
		{"ecdsa-p384", func(o *cache.Options) { o.ECCCurve = "P384" }, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P384() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			e.run(t)
			w := e.waitCert(t, nil)
			if !tc.check(w.Certificate.PrivateKey) {
				t.Errorf("key %T does not match the options", w.Certificate.PrivateKey)
			}
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		opts       func(*cache.Options)
	}{
		{"rsa too small", "WORKLOAD_RSA_KEY_SIZE=1024", func(o *cache.Options) { o.KeyAlgorithm, o.RSAKeySize = cache.KeyRSA, 1024 }},
		{"bad curve", `ECC_CURVE="P521"`, func(o *cache.Options) { o.ECCCurve = "P521" }},
		{"grace ratio", "SECRET_GRACE_PERIOD_RATIO=1.5", func(o *cache.Options) { o.GraceRatio = 1.5 }},
		{"ttl", "SECRET_TTL=1s", func(o *cache.Options) { o.TTL = time.Second }},
		{"identity", "service account is empty", func(o *cache.Options) { o.Identity.ServiceAccount = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cache.Options{Identity: testID, CA: nopSigner{}}
			tc.opts(&o)
			_, err := cache.New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRotationAtGracePeriod(t *testing.T) {
	e := newEnv(t, nil)
	e.run(t)
	first := e.waitCert(t, nil)

	e.stepWhenWaiting(t, 29*time.Minute)
	if !e.clock.HasWaiters() || len(e.ca.Requests()) != 1 {
		t.Fatalf("rotated before the grace period: %d CA requests", len(e.ca.Requests()))
	}
	e.clock.Step(time.Minute)
	second := e.waitCert(t, first)
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Error("rotation kept the same serial")
	}
	if second.Certificate.PrivateKey.(*ecdsa.PrivateKey).Equal(first.Certificate.PrivateKey) {
		t.Error("rotation reused the private key")
	}
	if reqs := e.ca.Requests(); !reqs[1].ClientCert {
		t.Error("renewal did not present the current certificate")
	}
}

func TestRotationJitterStaysInBounds(t *testing.T) {
	for _, r := range []float64{0, 0.999} {
		e := newEnv(t, func(o *cache.Options) { o.GraceRatioJitter = 0.1; o.Rand = func() float64 { return r } })
		e.run(t)
		w := e.waitCert(t, nil)
		got := e.cache.RotateAt().Sub(w.Leaf.NotBefore)
		if got < 24*time.Minute || got > 36*time.Minute {
			t.Errorf("rand=%v: rotation after %s, want within 30m ± 6m", r, got)
		}
	}
}

func TestCADownDuringRotationKeepsServingAndRecovers(t *testing.T) {
	e := newEnv(t, nil)
	e.run(t)
	first := e.waitCert(t, nil)
	e.ca.FailAlways(codes.Unavailable)

	e.stepWhenWaiting(t, 30*time.Minute) // rotation time: the CA is down
	// Each step covers the longest jittered backoff (MaxBackoff 2s × 1.5), so
	// every step fires the pending retry.
	for i := 0; i < 3; i++ { // a few retries with backoff
		e.stepWhenWaiting(t, 3*time.Second)
	}
	waitFor(t, "retries to fail", func() bool { return len(e.ca.Requests()) >= 4 })
	st := e.cache.Status()
	if st.LastError == nil || st.Permanent || !strings.Contains(st.LastError.Error(), "Unavailable") {
		t.Errorf("status during outage = %+v, want a retryable Unavailable error", st)
	}
	if !e.cache.Workload().Equal(first) {
		t.Error("the current certificate was dropped while the CA was down")
	}

	e.ca.FailAlways(codes.OK)
	e.stepWhenWaiting(t, 3*time.Second)
	e.waitCert(t, first)
	if st := e.cache.Status(); st.LastError != nil {
		t.Errorf("error not cleared after recovery: %v", st.LastError)
	}
}

func TestCAProcessRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.run(t)
	first := e.waitCert(t, nil)
	e.ca.Stop()
	e.stepWhenWaiting(t, 30*time.Minute)
	waitFor(t, "the failed attempt to be recorded", func() bool { return e.cache.Status().LastError != nil })
	must(t, e.ca.Start())
	// gRPC reconnects on its own (real-time) backoff; keep stepping ours.
	waitFor(t, "recovery after the CA is back", func() bool {
		if e.clock.HasWaiters() {
			e.clock.Step(2 * time.Second)
		}
		w := e.cache.Workload()
		return !w.Equal(first)
	})
}

func TestRetryableAndPermanentCodes(t *testing.T) {
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown} {
		t.Run("retry "+c.String(), func(t *testing.T) {
			e := newEnv(t, nil)
			e.ca.FailNext(c)
			e.run(t)
			e.stepWhenWaiting(t, 2*time.Second)
			e.waitCert(t, nil)
		})
	}
	for _, c := range []codes.Code{codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument} {
		t.Run("permanent "+c.String(), func(t *testing.T) {
			e := newEnv(t, nil)
			e.ca.FailNext(c)
			e.run(t)
			waitFor(t, "a permanent failure", func() bool { return e.cache.Status().Permanent })
			st := e.cache.Status()
			if !cache.IsPermanent(st.LastError) || !strings.Contains(st.LastError.Error(), c.String()) || st.HasCert {
				t.Errorf("status = %+v, want permanent %s without a cert", st, c)
			}
			e.clock.Step(time.Hour)
			if n := len(e.ca.Requests()); n != 1 || e.clock.HasWaiters() {
				t.Errorf("a permanent failure was retried (%d requests)", n)
			}
			e.cache.Refresh() // operator fixed the cause
			e.waitCert(t, nil)
		})
	}
}

func TestTokenRefusedIsPermanentAndRotatedTokenIsUsed(t *testing.T) {
	e := newEnv(t, nil)
	e.ca.SetToken("rotated-token")
	e.run(t)
	waitFor(t, "the refusal", func() bool { return e.cache.Status().Permanent })
	must(t, os.WriteFile(e.tokenFile, []byte("rotated-token"), 0o600))
	e.cache.Refresh()
	e.waitCert(t, nil)
	if reqs := e.ca.Requests(); reqs[len(reqs)-1].Token != "rotated-token" {
		t.Errorf("the token file was not re-read: CA saw %q", reqs[len(reqs)-1].Token)
	}
}

func TestOneCSRInFlight(t *testing.T) {
	e := newEnv(t, nil)
	release := e.ca.Hold()
	e.run(t)
	waitFor(t, "the first CSR", func() bool { return len(e.ca.Requests()) == 1 })
	for range 20 {
		e.cache.Refresh()
	}
	release()
	w := e.waitCert(t, nil)
	e.waitCert(t, w) // the coalesced refresh
	if got := e.ca.MaxInFlight(); got != 1 {
		t.Errorf("max CSRs in flight = %d, want 1", got)
	}
	if n := len(e.ca.Requests()); n > 3 {
		t.Errorf("20 refreshes made %d CSRs; they should coalesce", n)
	}
}

func TestCARootRotationIsPushedAsROOTCA(t *testing.T) {
	e := newEnv(t, nil)
	rootCh, cancel := e.cache.Subscribe(secret.ResourceRoot)
	defer cancel()
	e.run(t)
	first := e.waitCert(t, nil)
	drainSignal(rootCh)

	e.ca.RotateRoot()
	e.cache.Refresh()
	second := e.waitCert(t, first)
	expectSignal(t, rootCh, "ROOTCA after a CA root rotation")
	b := e.cache.Bundle()
	if len(b.Roots) != 2 {
		t.Fatalf("bundle has %d roots, want the configured and the new CA root", len(b.Roots))
	}
	if _, err := second.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool, CurrentTime: e.clock.Now()}); err != nil {
		t.Errorf("new leaf does not verify with the new bundle: %v", err)
	}
	if _, err := first.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool, CurrentTime: e.clock.Now()}); err != nil {
		t.Errorf("old peers' certs no longer verify: %v", err)
	}
}

func TestRootFileChangeIsPushedAsROOTCA(t *testing.T) {
	e := newEnv(t, nil)
	rootCh, cancel := e.cache.Subscribe(secret.ResourceRoot)
	defer cancel()
	defCh, cancelDef := e.cache.Subscribe(secret.ResourceDefault)
	defer cancelDef()
	e.run(t)
	e.waitCert(t, nil)
	drainSignal(rootCh)
	drainSignal(defCh)

	other := testca.New(t)
	both := append(e.ca.FirstRootPEM(), other.FirstRootPEM()...)
	tmp := e.rootFile + ".tmp"
	must(t, os.WriteFile(tmp, both, 0o644))
	must(t, os.Rename(tmp, e.rootFile))
	expectSignal(t, rootCh, "ROOTCA after the root file changed")
	if n := len(e.cache.Bundle().Roots); n != 2 {
		t.Errorf("bundle has %d roots, want 2", n)
	}
	select {
	case <-defCh:
		t.Error("a root change pushed `default` too")
	default:
	}
}

type nopSigner struct{}

func (nopSigner) Sign(context.Context, []byte, time.Duration) ([]string, error) { return nil, nil }

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

func drainSignal(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func expectSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal: %s", what)
	}
}

// A CA that backdates NotBefore (istiod-lite by 2m) must not make a short
// SECRET_TTL due for rotation on arrival: half-life counts from receipt.
func TestShortTTLWithBackdatedCertificate(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Now())
	ca := testca.New(t, testca.WithClock(fc), testca.WithBackdate(2*time.Minute))
	dir := t.TempDir()
	rootFile, tokenFile := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "istio-token")
	must(t, os.WriteFile(rootFile, ca.FirstRootPEM(), 0o644))
	must(t, os.WriteFile(tokenFile, []byte("test-token\n"), 0o600))
	var c *cache.Cache
	cl, err := caclient.New(caclient.Options{
		Addr: ca.Addr(), ServerName: testca.ServerName, TokenPath: tokenFile, ClusterID: "Kubernetes",
		Roots:             func() *x509.CertPool { return c.Roots() },
		ClientCertificate: func() *tls.Certificate { return c.ClientCertificate() },
	})
	must(t, err)
	t.Cleanup(func() { cl.Close() })
	c, err = cache.New(cache.Options{Identity: testID, CA: cl, RootCertFile: rootFile, Clock: fc, TTL: 30 * time.Second, GraceRatioJitter: -1})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for c.Workload() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no certificate issued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if want := fc.Now().Truncate(time.Second).Add(15 * time.Second); !c.RotateAt().Equal(want) {
		t.Errorf("rotate at %s, want %s (half of the 30s TTL from receipt, not from the backdated NotBefore %s)",
			c.RotateAt(), want, c.Workload().Leaf.NotBefore)
	}
}
