package caclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/caclient"
	"github.com/meshlite/meshlite/sds/internal/testca"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func csr(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/x")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func pool(pemBytes []byte) func() *x509.CertPool {
	return func() *x509.CertPool {
		p := x509.NewCertPool()
		p.AppendCertsFromPEM(pemBytes)
		return p
	}
}

func TestSignSendsTokenClusterIDAndTTL(t *testing.T) {
	ca := testca.New(t)
	tok := filepath.Join(t.TempDir(), "istio-token")
	if err := os.WriteFile(tok, []byte("test-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := caclient.New(caclient.Options{Addr: ca.Addr(), ServerName: testca.ServerName, Roots: pool(ca.RootPEM()), TokenPath: tok, ClusterID: "east"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chain, err := c.Sign(context.Background(), csr(t), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 {
		t.Errorf("chain has %d elements, want leaf and root", len(chain))
	}
	// The kubelet rotates the projected token in place: the next call must use it.
	ca.SetToken("rotated")
	if err := os.WriteFile(tok, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sign(context.Background(), csr(t), time.Hour); err != nil {
		t.Fatalf("rotated token not picked up: %v", err)
	}
	reqs := ca.Requests()
	if reqs[0].Token != "test-token" || reqs[1].Token != "rotated" || reqs[0].ClusterID != "east" || reqs[0].TTL != 2*time.Hour {
		t.Errorf("CA saw %+v", reqs)
	}
}

func TestCAIsVerified(t *testing.T) {
	ca := testca.New(t)
	other := testca.New(t)
	tok := filepath.Join(t.TempDir(), "t")
	_ = os.WriteFile(tok, []byte("test-token"), 0o600)
	for _, tc := range []struct {
		name, serverName string
		roots            []byte
		want             string
	}{
		{"untrusted root", testca.ServerName, other.RootPEM(), "not trusted"},
		{"wrong server name", "istiod.other.svc", ca.RootPEM(), "valid for istiod.istio-system.svc, not istiod.other.svc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := caclient.New(caclient.Options{Addr: ca.Addr(), ServerName: tc.serverName, Roots: pool(tc.roots), TokenPath: tok})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Sign(context.Background(), csr(t), time.Hour)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want Unavailable mentioning %s", err, tc.want)
			}
			if len(ca.Requests()) != 0 {
				t.Error("the CSR reached an unverified CA")
			}
		})
	}
}

func TestMissingTokenIsRetryableAndNamed(t *testing.T) {
	ca := testca.New(t)
	c, err := caclient.New(caclient.Options{Addr: ca.Addr(), ServerName: testca.ServerName, Roots: pool(ca.RootPEM()), TokenPath: "/nonexistent/istio-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Sign(context.Background(), csr(t), time.Hour)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "/nonexistent/istio-token") {
		t.Errorf("err = %v, want Unavailable naming the token file", err)
	}
}

func TestNewRequiresAddrAndRoots(t *testing.T) {
	if _, err := caclient.New(caclient.Options{Roots: pool(nil)}); err == nil || !strings.Contains(err.Error(), "CA_ADDR") {
		t.Errorf("err = %v, want it to mention CA_ADDR", err)
	}
	if _, err := caclient.New(caclient.Options{Addr: "x:1"}); err == nil || !strings.Contains(err.Error(), "CA_ROOT_CA") {
		t.Errorf("err = %v, want it to mention CA_ROOT_CA", err)
	}
}
