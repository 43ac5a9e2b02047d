package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/sds/spiffe"
)

func peerCtx(certs ...*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: certs}},
	})
}

func TestClientCert(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	a, err := ca.New(ca.Options{Dir: t.TempDir(), Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New(ca.Options{Dir: t.TempDir(), Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(auth *ca.Authority, uris ...string) []*x509.Certificate {
		t.Helper()
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req := ca.LeafRequest{PublicKey: key.Public(), TTL: time.Hour, DNSNames: []string{"x"}}
		for _, u := range uris {
			pu, _ := url.Parse(u)
			req.URIs = append(req.URIs, pu)
		}
		iss, err := auth.Sign(req)
		if err != nil {
			t.Fatal(err)
		}
		return iss.Chain[:len(iss.Chain)-1]
	}
	au := &authn.ClientCert{Roots: a.TrustPool, TrustDomain: "cluster.local", Clock: clk}
	const id = "spiffe://cluster.local/ns/default/sa/app"

	got, err := au.Authenticate(peerCtx(issue(a, id)...))
	if err != nil {
		t.Fatal(err)
	}
	if want := (spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "app"}); got != want {
		t.Errorf("identity = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"another CA", peerCtx(issue(other, id)...), "not a valid client certificate from this CA"},
		{"no SPIFFE ID", peerCtx(issue(a)...), "has 0 URI SANs"},
		{"not a mesh SPIFFE ID", peerCtx(issue(a, "spiffe://cluster.local/foo")...), "is not of the form"},
		{"foreign trust domain", peerCtx(issue(a, "spiffe://other.org/ns/a/sa/b")...), `trust domain "other.org"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := au.Authenticate(tc.ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, authn.ErrNoCredentials) {
				t.Errorf("err = %v, want a rejection containing %q", err, tc.want)
			}
		})
	}
	if _, err := au.Authenticate(context.Background()); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("no peer: %v, want ErrNoCredentials", err)
	}
	if _, err := au.Authenticate(peerCtx()); !errors.Is(err, authn.ErrNoCredentials) {
		t.Errorf("TLS peer without certificate: %v, want ErrNoCredentials", err)
	}
	// An expired certificate no longer renews.
	chain := issue(a, id)
	clk.Step(2 * time.Hour)
	if _, err := au.Authenticate(peerCtx(chain...)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired cert: %v", err)
	}
}

func TestChain(t *testing.T) {
	none := authn.Chain{}
	if _, err := none.Authenticate(context.Background()); !errors.Is(err, authn.ErrNoCredentials) || !strings.Contains(err.Error(), "Bearer") {
		t.Errorf("empty chain: %v", err)
	}
}
