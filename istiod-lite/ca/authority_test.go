package ca_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

func spiffeURL(t testing.TB, s string) []*url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return []*url.URL{u}
}

func TestNewGeneratesRootOnceAndReloadsIt(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	a := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	for _, f := range []string{ca.CACertFile, ca.CAKeyFile, ca.RootCertFile, ca.CertChainFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, ca.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, want 0600", ca.CAKeyFile, st.Mode().Perm())
	}
	root := a.SigningRoot()
	if root.Subject.Organization[0] != "cluster.local" || !root.IsCA {
		t.Errorf("root subject %v IsCA=%v, want O=cluster.local CA", root.Subject, root.IsCA)
	}
	rootFile, _ := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	if !bytes.Equal(rootFile, a.TrustBundlePEM()) {
		t.Error("root-cert.pem differs from TrustBundlePEM")
	}
	keyBefore, _ := os.ReadFile(filepath.Join(dir, ca.CAKeyFile))

	again := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	if ca.Fingerprint(again.SigningRoot()) != ca.Fingerprint(root) {
		t.Error("restart regenerated the root instead of reloading it")
	}
	keyAfter, _ := os.ReadFile(filepath.Join(dir, ca.CAKeyFile))
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("restart rewrote ca-key.pem")
	}
}

func TestKeyTypes(t *testing.T) {
	for _, kt := range []ca.KeyType{ca.KeyECDSAP256, ca.KeyRSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			clk := newClock()
			a := newAuthority(t, ca.Options{KeyType: kt, Clock: clk})
			_, isRSA := a.SigningRoot().PublicKey.(*rsa.PublicKey)
			if isRSA != (kt == ca.KeyRSA2048) {
				t.Errorf("root key %T for %s", a.SigningRoot().PublicKey, kt)
			}
			iss, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b"), TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyChain(t, iss.Chain, a.TrustPool(), clk.Now()); err != nil {
				t.Errorf("issued chain does not verify: %v", err)
			}
		})
	}
	if _, err := ca.ParseKeyType("dsa-1024"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Errorf("ParseKeyType(dsa-1024) = %v, want an error listing the supported types", err)
	}
}

func TestPluggedInIntermediate(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	root := newTestRoot(t, "corp root", now)
	inter := root.newIntermediate(t, "cluster1 intermediate", now, now.Add(365*24*time.Hour))
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		ca.CACertFile:    ca.EncodeCertPEM(inter.cert),
		ca.CAKeyFile:     keyPEM(t, inter.key),
		ca.RootCertFile:  ca.EncodeCertPEM(root.cert),
		ca.CertChainFile: ca.EncodeCertPEM(inter.cert, root.cert),
	})
	a := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	if !a.SigningRoot().Equal(root.cert) {
		t.Fatalf("signing root = %v, want the plugged-in root", a.SigningRoot().Subject)
	}
	iss, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(iss.Chain) != 3 || !iss.Chain[1].Equal(inter.cert) || !iss.Chain[2].Equal(root.cert) {
		t.Fatalf("chain = %d certs, want [leaf, intermediate, root]", len(iss.Chain))
	}
	if err := verifyChain(t, iss.Chain, a.TrustPool(), now); err != nil {
		t.Errorf("chain does not verify against the plugged-in root: %v", err)
	}
	if _, err := a.RotateRoot(); err == nil || !strings.Contains(err.Error(), "plugged-in intermediate") {
		t.Errorf("RotateRoot on a plugged-in CA = %v, want a refusal explaining how to rotate", err)
	}
}

func TestPluggedInFilesRejected(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	root := newTestRoot(t, "corp root", now)
	other := newTestRoot(t, "other root", now)
	inter := root.newIntermediate(t, "inter", now, now.Add(365*24*time.Hour))
	expired := root.newIntermediate(t, "expired", now.Add(-48*time.Hour), now.Add(-time.Hour))
	leafLike := signTestCA(t, &x509.Certificate{SerialNumber: inter.cert.SerialNumber, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, mustKey(t), root)
	good := func() map[string][]byte {
		return map[string][]byte{
			ca.CACertFile: ca.EncodeCertPEM(inter.cert), ca.CAKeyFile: keyPEM(t, inter.key),
			ca.RootCertFile: ca.EncodeCertPEM(root.cert), ca.CertChainFile: ca.EncodeCertPEM(inter.cert, root.cert),
		}
	}
	tests := []struct {
		name   string
		change func(map[string][]byte)
		want   []string
	}{
		{"key does not match cert", func(f map[string][]byte) { f[ca.CAKeyFile] = keyPEM(t, mustKey(t)) },
			[]string{"ca-key.pem does not match the public key of", "ca-cert.pem"}},
		{"missing root-cert.pem", func(f map[string][]byte) { delete(f, ca.RootCertFile) },
			[]string{"root-cert.pem is missing"}},
		{"cert does not chain to root", func(f map[string][]byte) { f[ca.RootCertFile] = ca.EncodeCertPEM(other.cert) },
			[]string{"ca-cert.pem does not chain to a root in", "root-cert.pem"}},
		{"chain does not start with ca-cert", func(f map[string][]byte) { f[ca.CertChainFile] = ca.EncodeCertPEM(root.cert) },
			[]string{"cert-chain.pem must start with the certificate in"}},
		{"not a CA certificate", func(f map[string][]byte) {
			f[ca.CACertFile], f[ca.CAKeyFile], f[ca.CertChainFile] = ca.EncodeCertPEM(leafLike.cert), keyPEM(t, leafLike.key), nil
		}, []string{"is not a CA certificate"}},
		{"expired CA", func(f map[string][]byte) {
			f[ca.CACertFile], f[ca.CAKeyFile], f[ca.CertChainFile] = ca.EncodeCertPEM(expired.cert), keyPEM(t, expired.key), nil
		}, []string{"ca-cert.pem", "plug in a current CA certificate"}},
		{"root bundle holds an intermediate", func(f map[string][]byte) { f[ca.RootCertFile] = ca.EncodeCertPEM(root.cert, inter.cert) },
			[]string{"certificate 2 of", "is not a self-signed CA certificate"}},
		{"garbage key", func(f map[string][]byte) { f[ca.CAKeyFile] = []byte("not a key") },
			[]string{"ca-key.pem: no PEM block"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := good()
			tc.change(files)
			dir := t.TempDir()
			writeFiles(t, dir, files)
			log, _ := testLogger(t)
			_, err := ca.New(ca.Options{Dir: dir, Clock: clk, Logger: log})
			if err == nil {
				t.Fatal("ca.New accepted inconsistent cacerts files")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRootRotationKeepsBothRootsTrusted(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	a := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	oldRoot := a.SigningRoot()
	changed := a.Changed()
	sign := func() *ca.Issued {
		t.Helper()
		iss, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b"), TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	oldLeaf := sign()

	newRoot, err := a.RotateRoot()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed() was not closed by the rotation")
	}
	if newRoot.Equal(oldRoot) || !a.SigningRoot().Equal(newRoot) {
		t.Fatal("signing did not switch to the new root")
	}
	if got := a.TrustBundle(); len(got) != 2 || !got[0].Equal(newRoot) || !got[1].Equal(oldRoot) {
		t.Fatalf("trust bundle has %d roots, want [new, old]", len(got))
	}
	newLeaf := sign()
	if !newLeaf.Chain[len(newLeaf.Chain)-1].Equal(newRoot) {
		t.Error("new leaf does not chain to the new root")
	}
	for name, leaf := range map[string]*ca.Issued{"old-root leaf": oldLeaf, "new-root leaf": newLeaf} {
		if err := verifyChain(t, leaf.Chain, a.TrustPool(), clk.Now()); err != nil {
			t.Errorf("%s does not verify against the bundle: %v", name, err)
		}
	}

	// The rotation is on disk: a restart signs with the new root and trusts both.
	restarted := newAuthority(t, ca.Options{Dir: dir, Clock: clk})
	if !restarted.SigningRoot().Equal(newRoot) || len(restarted.TrustBundle()) != 2 {
		t.Fatalf("after restart: signing root new=%v, %d roots; want new root and 2 roots",
			restarted.SigningRoot().Equal(newRoot), len(restarted.TrustBundle()))
	}

	if err := a.RemoveRoot(ca.Fingerprint(newRoot)); err == nil || !strings.Contains(err.Error(), "cannot be removed") {
		t.Errorf("removing the signing root = %v, want a refusal", err)
	}
	if err := a.RemoveRoot("00ff"); err == nil || !strings.Contains(err.Error(), "known roots") {
		t.Errorf("removing an unknown root = %v, want an error listing the known roots", err)
	}
	if err := a.RemoveRoot(ca.Fingerprint(oldRoot)); err != nil {
		t.Fatal(err)
	}
	if len(a.TrustBundle()) != 1 {
		t.Fatalf("trust bundle has %d roots after removal, want 1", len(a.TrustBundle()))
	}
	if err := verifyChain(t, oldLeaf.Chain[:1], a.TrustPool(), clk.Now()); err == nil {
		t.Error("a leaf of the removed root still verifies")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	if !bytes.Equal(onDisk, a.TrustBundlePEM()) {
		t.Error("root-cert.pem does not reflect the removal")
	}
}

func TestAddTrustedRoot(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, ca.Options{Clock: clk})
	extra := newTestRoot(t, "next root", clk.Now())
	if err := a.AddTrustedRoot(ca.EncodeCertPEM(extra.cert)); err != nil {
		t.Fatal(err)
	}
	if got := a.TrustBundle(); len(got) != 2 || !got[1].Equal(extra.cert) {
		t.Fatalf("bundle has %d roots, want the added root last", len(got))
	}
	inter := extra.newIntermediate(t, "i", clk.Now(), clk.Now().Add(time.Hour))
	if err := a.AddTrustedRoot(ca.EncodeCertPEM(inter.cert)); err == nil {
		t.Error("AddTrustedRoot accepted an intermediate")
	}
}

func TestIssuedLeafShape(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, ca.Options{Clock: clk})
	iss, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b"), TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l := iss.Leaf
	if l.IsCA {
		t.Error("leaf is a CA")
	}
	if got := l.NotBefore; !got.Equal(clk.Now().Add(-ca.DefaultClockSkew)) {
		t.Errorf("NotBefore = %v, want now - %v", got, ca.DefaultClockSkew)
	}
	if got := l.NotAfter; !got.Equal(clk.Now().Add(2 * time.Hour)) {
		t.Errorf("NotAfter = %v, want now + 2h", got)
	}
	if len(l.ExtKeyUsage) != 2 || l.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || l.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKUs = %v, want serverAuth and clientAuth", l.ExtKeyUsage)
	}
	if len(l.URIs) != 1 || l.URIs[0].String() != "spiffe://cluster.local/ns/a/sa/b" {
		t.Errorf("URI SANs = %v", l.URIs)
	}
	// A lifetime past the CA's own expiry is cut to it.
	long, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: l.URIs, TTL: 20 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !long.Leaf.NotAfter.Equal(a.SigningRoot().NotAfter) {
		t.Errorf("NotAfter = %v, want capped at the CA expiry %v", long.Leaf.NotAfter, a.SigningRoot().NotAfter)
	}
}

func TestChainVerifiesWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH; install it (apt-get install openssl) to run this check")
	}
	now := time.Now()
	root := newTestRoot(t, "corp root", now)
	inter := root.newIntermediate(t, "inter", now, now.Add(24*time.Hour))
	cases := map[string]map[string][]byte{
		"self-signed": nil,
		"intermediate": {
			ca.CACertFile: ca.EncodeCertPEM(inter.cert), ca.CAKeyFile: keyPEM(t, inter.key),
			ca.RootCertFile: ca.EncodeCertPEM(root.cert), ca.CertChainFile: ca.EncodeCertPEM(inter.cert, root.cert),
		},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, files)
			a := newAuthority(t, ca.Options{Dir: dir})
			iss, err := a.Sign(ca.LeafRequest{PublicKey: mustKey(t).Public(), URIs: spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b"), TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			leaf, untrusted, rootF := filepath.Join(out, "leaf.pem"), filepath.Join(out, "untrusted.pem"), filepath.Join(out, "root.pem")
			writeFiles(t, out, map[string][]byte{
				"leaf.pem":      ca.EncodeCertPEM(iss.Chain[0]),
				"untrusted.pem": ca.EncodeCertPEM(iss.Chain[1 : len(iss.Chain)-1]...),
				"root.pem":      a.TrustBundlePEM(),
			})
			args := []string{"verify", "-purpose", "sslclient", "-CAfile", rootF}
			if len(iss.Chain) > 2 {
				args = append(args, "-untrusted", untrusted)
			}
			b, err := exec.Command(openssl, append(args, leaf)...).CombinedOutput()
			if err != nil || !strings.Contains(string(b), ": OK") {
				t.Fatalf("openssl verify: %v\n%s", err, b)
			}
		})
	}
}

func TestSigningDuringRotationIsConsistent(t *testing.T) {
	clk := newClock()
	a := newAuthority(t, ca.Options{Clock: clk})
	pub := mustKey(t).Public()
	uris := spiffeURL(t, "spiffe://cluster.local/ns/a/sa/b")
	done := make(chan struct{})
	errs := make(chan error, 4)
	var issued [4][]*ca.Issued
	for w := range issued {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				iss, err := a.Sign(ca.LeafRequest{PublicKey: pub, URIs: uris, TTL: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				issued[w] = append(issued[w], iss)
			}
		}()
	}
	for range 3 {
		if _, err := a.RotateRoot(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range issued {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Every chain is internally consistent (never a leaf of one root with
	// another root) and verifies against the bundle, which holds all 4 roots.
	for _, list := range issued {
		for _, iss := range list {
			if err := verifyChain(t, iss.Chain, a.TrustPool(), clk.Now()); err != nil {
				t.Fatalf("chain issued during rotation: %v", err)
			}
			if err := iss.Leaf.CheckSignatureFrom(iss.Chain[len(iss.Chain)-1]); err != nil {
				t.Fatalf("leaf not signed by the root its chain ends with: %v", err)
			}
		}
	}
	if n := len(a.TrustBundle()); n != 4 {
		t.Errorf("bundle has %d roots, want 4", n)
	}
}
