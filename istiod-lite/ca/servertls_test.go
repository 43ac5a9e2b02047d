package ca_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

func servedCert(t *testing.T, cfg *tls.Config) *tls.Certificate {
	t.Helper()
	c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientAuth != tls.VerifyClientCertIfGiven || c.ClientCAs == nil {
		t.Errorf("client auth = %v (pool set %v), want client certs requested and verified against the bundle", c.ClientAuth, c.ClientCAs != nil)
	}
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestServingCertRenewal(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, ca.Options{Clock: clk, ServingCertTTL: time.Hour})
	cfg, err := a.ServerTLSConfig("istiod.example", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	first := servedCert(t, cfg)
	if got := first.Leaf.DNSNames; len(got) != 2 || got[0] != ca.IstiodSAN || got[1] != "istiod.example" {
		t.Errorf("DNS SANs = %v", got)
	}
	if got := first.Leaf.IPAddresses; len(got) != 1 || got[0].String() != "10.0.0.1" {
		t.Errorf("IP SANs = %v", got)
	}
	clk.Step(29 * time.Minute)
	if servedCert(t, cfg) != first {
		t.Error("renewed before half of the lifetime")
	}
	clk.Step(2 * time.Minute)
	second := servedCert(t, cfg)
	if second == first || !second.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("not renewed past half of the lifetime")
	}
	if _, err := a.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	third := servedCert(t, cfg)
	if third == second {
		t.Fatal("serving certificate not reissued after root rotation")
	}
	if err := third.Leaf.CheckSignatureFrom(a.SigningRoot()); err != nil {
		t.Errorf("reissued serving cert not signed by the new root: %v", err)
	}
}
