package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
	"github.com/meshlite/meshlite/sds/caclient"
)

// agent is one pilot-agent's worth of certificate signing: a projected
// service-account token on disk and a CSR for its SPIFFE identity, sent with
// the agent's own CA client (TLS, bearer token) the way the agent sends it.
type agent struct {
	spiffeID  string
	tokenPath string
	csr       []byte
}

// newAgents mints a token and a CSR per agent before the run starts, so that
// key generation does not compete with the server during the measurement.
func newAgents(dir, signingKey string, n int) ([]*agent, error) {
	iss, err := jwtissuer.Load(signingKey)
	if err != nil {
		return nil, err
	}
	out := make([]*agent, n)
	for i := range out {
		sa := fmt.Sprintf("agent-%d", i)
		tok, err := iss.Mint(jwtissuer.Claims{Issuer: jwtissuer.DefaultIssuer, Audiences: []string{jwtissuer.DefaultAudience},
			Namespace: "demo", ServiceAccount: sa, TTL: time.Hour})
		if err != nil {
			return nil, err
		}
		a := &agent{spiffeID: "spiffe://cluster.local/ns/demo/sa/" + sa, tokenPath: filepath.Join(dir, sa, "istio-token")}
		if err := os.MkdirAll(filepath.Dir(a.tokenPath), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(a.tokenPath, []byte(tok), 0o600); err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		u, _ := url.Parse(a.spiffeID)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			return nil, err
		}
		a.csr = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		out[i] = a
	}
	return out, nil
}

// sign connects a fresh CA client (as a starting agent does), sends the CSR
// and checks that the leaf carries the agent's SPIFFE ID. The latency
// includes the TLS handshake.
func (a *agent) sign(ctx context.Context, caAddr string, roots *x509.CertPool) (time.Duration, error) {
	c, err := caclient.New(caclient.Options{
		Addr: caAddr, ServerName: caclient.DefaultServerName, TokenPath: a.tokenPath,
		Roots: func() *x509.CertPool { return roots },
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	chain, err := c.Sign(ctx, a.csr, 24*time.Hour)
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("agent %s: %w", a.spiffeID, err)
	}
	block, _ := pem.Decode([]byte(chain[0]))
	if block == nil {
		return took, fmt.Errorf("agent %s: the CA answered a leaf that is not PEM", a.spiffeID)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return took, fmt.Errorf("agent %s: parsing the leaf: %w", a.spiffeID, err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != a.spiffeID {
		return took, fmt.Errorf("agent %s: leaf URI SANs are %v, want exactly %s", a.spiffeID, leaf.URIs, a.spiffeID)
	}
	return took, nil
}

func loadRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the CA's roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
