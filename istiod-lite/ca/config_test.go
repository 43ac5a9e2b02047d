package ca_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

func TestConfigFlagsAndBuild(t *testing.T) {
	t.Setenv("MAX_WORKLOAD_CERT_TTL", "48h")
	iss, _ := jwtissuer.Generate("")
	_, jwks, err := iss.WriteDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var c ca.Config
	fs := pflag.NewFlagSet("istiod-lite", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--caDir", t.TempDir(), "--jwksFile", jwks}); err != nil {
		t.Fatal(err)
	}
	if c.MaxWorkloadCertTTL != 48*time.Hour || c.WorkloadCertTTL != 24*time.Hour {
		t.Errorf("TTLs = %s/%s, want 48h from MAX_WORKLOAD_CERT_TTL and the 24h default", c.MaxWorkloadCertTTL, c.WorkloadCertTTL)
	}
	a, s, err := c.Build(prometheus.NewRegistry(), newClock(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if a == nil || s == nil {
		t.Fatal("Build returned nil")
	}

	good := c
	for _, tc := range []struct {
		mod  func(*ca.Config)
		want string
	}{
		{func(c *ca.Config) { c.CADir = "" }, "--caDir is empty"},
		{func(c *ca.Config) { c.KeyType = "rsa-1024" }, "--caKeyType"},
		{func(c *ca.Config) { c.WorkloadCertTTL = 72 * time.Hour }, "at most --maxWorkloadCertTTL"},
		{func(c *ca.Config) { c.JWTIssuer = "" }, "--jwksFile needs --jwtIssuer"},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
}

func TestReloadPluggedInRotation(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	oldRoot := newTestRoot(t, "old root", now)
	oldInter := oldRoot.newIntermediate(t, "old inter", now, now.Add(24*time.Hour))
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		ca.CACertFile: ca.EncodeCertPEM(oldInter.cert), ca.CAKeyFile: keyPEM(t, oldInter.key),
		ca.RootCertFile: ca.EncodeCertPEM(oldRoot.cert), ca.CertChainFile: ca.EncodeCertPEM(oldInter.cert, oldRoot.cert),
	})
	a := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	if changed, err := a.Reload(); err != nil || changed {
		t.Fatalf("Reload of unchanged files = %v, %v", changed, err)
	}
	// The operator trusts the new root first, then plugs in the new intermediate.
	newRoot := newTestRoot(t, "new root", now)
	if err := a.AddTrustedRoot(ca.EncodeCertPEM(newRoot.cert)); err != nil {
		t.Fatal(err)
	}
	newInter := newRoot.newIntermediate(t, "new inter", now, now.Add(24*time.Hour))
	writeFiles(t, dir, map[string][]byte{
		ca.CACertFile: ca.EncodeCertPEM(newInter.cert), ca.CAKeyFile: keyPEM(t, newInter.key),
		ca.CertChainFile: ca.EncodeCertPEM(newInter.cert, newRoot.cert),
	})
	if changed, err := a.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want the new intermediate loaded", changed, err)
	}
	if !a.SigningRoot().Equal(newRoot.cert) || len(a.TrustBundle()) != 2 {
		t.Fatalf("after reload: signing root %q, %d roots", a.SigningRoot().Subject, len(a.TrustBundle()))
	}
	// A broken edit is refused and the CA keeps signing with what it had.
	writeFiles(t, dir, map[string][]byte{ca.CAKeyFile: keyPEM(t, mustKey(t))})
	if _, err := a.Reload(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Reload of a mismatched key = %v", err)
	}
	if !a.SigningRoot().Equal(newRoot.cert) {
		t.Error("a failed reload replaced the signing CA")
	}
}
