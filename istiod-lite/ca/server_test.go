package ca_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/sds/spiffe"
)

// staticAuthn authenticates every caller as id, or fails with err.
type staticAuthn struct {
	id  spiffe.Identity
	err error
}

func (s staticAuthn) Authenticate(context.Context) (spiffe.Identity, error) { return s.id, s.err }

var appID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "app"}

type serverFixture struct {
	a   *ca.Authority
	s   *ca.Server
	reg *prometheus.Registry
	log *syncBuffer
}

func newServer(t *testing.T, au authn.Authenticator, opts ca.ServerOptions) *serverFixture {
	t.Helper()
	clk := newClock()
	logger, buf := testLogger(t)
	a := newAuthority(t, ca.Options{Clock: clk, Logger: logger})
	reg := prometheus.NewRegistry()
	opts.Authenticator, opts.Registerer, opts.Clock, opts.Logger = au, reg, clk, logger
	s, err := ca.NewServer(a, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &serverFixture{a: a, s: s, reg: reg, log: buf}
}

func TestCreateCertificateRejections(t *testing.T) {
	key := mustKey(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		authn      authn.Authenticator
		req        *pb.IstioCertificateRequest
		wantCode   codes.Code
		wantReason string
		wantMsg    []string
	}{
		{"no credentials", authn.Chain{staticAuthn{err: authn.ErrNoCredentials}}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa})},
			codes.Unauthenticated, ca.ReasonUnauthenticated, []string{"no credentials", "Bearer"}},
		{"bad token", staticAuthn{err: errors.New("bearer token rejected: token expired")}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa})},
			codes.Unauthenticated, ca.ReasonUnauthenticated, []string{"token expired"}},
		{"malformed csr", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: "junk"},
			codes.InvalidArgument, ca.ReasonMalformedCSR, []string{"csr is not PEM"}},
		{"bad CSR signature", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: tamperSignature(t, csrPEM(t, key, []string{sa}))},
			codes.InvalidArgument, ca.ReasonBadSignature, []string{"csr signature does not verify"}},
		{"weak key", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, rsa1024, []string{sa})},
			codes.InvalidArgument, ca.ReasonWeakKey, []string{"RSA 1024 bits", "2048"}},
		{"no SAN", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, nil)},
			codes.InvalidArgument, ca.ReasonNoSAN, []string{"no subject alternative name"}},
		{"another service account", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{"spiffe://cluster.local/ns/default/sa/admin"})},
			codes.PermissionDenied, ca.ReasonForbiddenSAN, []string{"SAN URI:spiffe://cluster.local/ns/default/sa/admin is refused", "not the caller's identity", appID.String()}},
		{"another trust domain", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{"spiffe://evil.org/ns/default/sa/app"})},
			codes.PermissionDenied, ca.ReasonForbiddenSAN, []string{"spiffe://evil.org/ns/default/sa/app is refused"}},
		{"own ID plus another", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa, "spiffe://cluster.local/ns/kube-system/sa/app"})},
			codes.PermissionDenied, ca.ReasonForbiddenSAN, []string{"ns/kube-system/sa/app is refused"}},
		{"non-SPIFFE URI", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{"https://example.com"})},
			codes.PermissionDenied, ca.ReasonForbiddenSAN, []string{"URI:https://example.com is refused", "not a SPIFFE ID"}},
		{"DNS SAN", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa}, "istiod.istio-system.svc")},
			codes.PermissionDenied, ca.ReasonForbiddenSAN, []string{"SAN DNS:istiod.istio-system.svc is refused", "not DNS names"}},
		{"TTL above max", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa}), ValidityDuration: int64(91 * 24 * 3600)},
			codes.InvalidArgument, ca.ReasonTTL, []string{"validity_duration 7862400s is above the maximum of 7776000s", "--maxWorkloadCertTTL"}},
		{"negative TTL", staticAuthn{id: appID}, &pb.IstioCertificateRequest{Csr: csrPEM(t, key, []string{sa}), ValidityDuration: -5},
			codes.InvalidArgument, ca.ReasonTTL, []string{"validity_duration -5s is negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newServer(t, tc.authn, ca.ServerOptions{})
			_, err := f.s.CreateCertificate(context.Background(), tc.req)
			st, _ := status.FromError(err)
			if st.Code() != tc.wantCode {
				t.Fatalf("code = %s (%v), want %s", st.Code(), err, tc.wantCode)
			}
			for _, w := range tc.wantMsg {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message %q does not contain %q", st.Message(), w)
				}
			}
			denied := metricValue(t, f.reg, "meshlite_ca_requests_denied_total", tc.wantReason)
			if denied != 1 {
				t.Errorf("denied{reason=%s} = %v, want 1", tc.wantReason, denied)
			}
			if n := seriesCount(t, f.reg, "citadel_server_success_cert_issuance_count"); n != 1 {
				t.Errorf("issued metric series = %d", n)
			}
		})
	}
}

func TestCreateCertificateIssues(t *testing.T) {
	f := newServer(t, staticAuthn{id: appID}, ca.ServerOptions{MaxWorkloadCertTTL: 48 * time.Hour})
	now := time.Now()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("ClusterID", "Kubernetes"))

	for _, tc := range []struct {
		name    string
		seconds int64
		want    time.Duration
	}{
		{"default lifetime", 0, 24 * time.Hour},
		{"requested lifetime", 3600, time.Hour},
		{"exactly the maximum", 48 * 3600, 48 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.s.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrPEM(t, mustKey(t), []string{sa}), ValidityDuration: tc.seconds})
			if err != nil {
				t.Fatal(err)
			}
			chain := parseChain(t, resp.CertChain)
			if len(chain) != 2 || !chain[1].Equal(f.a.SigningRoot()) {
				t.Fatalf("cert_chain has %d certs, want [leaf, root]", len(chain))
			}
			leaf := chain[0]
			if got := leaf.NotAfter.Sub(leaf.NotBefore) - ca.DefaultClockSkew; got != tc.want {
				t.Errorf("lifetime = %v, want %v", got, tc.want)
			}
			if err := verifyChain(t, chain, f.a.TrustPool(), now); err != nil {
				t.Errorf("chain does not verify: %v", err)
			}
		})
	}
	if got := metricValue(t, f.reg, "citadel_server_success_cert_issuance_count", ""); got != 3 {
		t.Errorf("issued = %v, want 3", got)
	}
	if n := seriesCount(t, f.reg, "citadel_server_root_cert_expiry_timestamp"); n != 1 {
		t.Errorf("root expiry gauge series = %d, want 1", n)
	}
	if n := seriesCount(t, f.reg, "meshlite_ca_signing_duration_seconds"); n != 1 {
		t.Errorf("latency histogram series = %d, want 1", n)
	}
	// One audit line per issuance with identity, serial, expiry and cluster.
	var audits int
	for _, line := range strings.Split(strings.TrimSpace(f.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "issued certificate" {
			continue
		}
		audits++
		for _, k := range []string{"identity", "serial", "notAfter", "cluster", "scope"} {
			if rec[k] == nil || rec[k] == "" {
				t.Errorf("audit line lacks %s: %s", k, line)
			}
		}
		if rec["identity"] != sa || rec["cluster"] != "Kubernetes" {
			t.Errorf("audit identity/cluster = %v/%v", rec["identity"], rec["cluster"])
		}
	}
	if audits != 3 {
		t.Errorf("audit lines = %d, want 3", audits)
	}
}

func TestNewServerNeedsAuthenticator(t *testing.T) {
	a := newAuthority(t, ca.Options{})
	if _, err := ca.NewServer(a, ca.ServerOptions{}); err == nil || !strings.Contains(err.Error(), "--jwksFile") {
		t.Errorf("NewServer without authenticator = %v", err)
	}
}

// metricValue reads a counter from reg; reason selects the denied series.
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
