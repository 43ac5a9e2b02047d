package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of Istio's cacerts layout (the `cacerts` secret and --caDir).
const (
	CACertFile    = "ca-cert.pem"    // the signing certificate
	CAKeyFile     = "ca-key.pem"     // its private key (0600)
	RootCertFile  = "root-cert.pem"  // the trust bundle: every root workloads must trust
	CertChainFile = "cert-chain.pem" // ca-cert.pem followed by its intermediates, optionally the root
)

// material is one consistent set of CA key material, never mutated after it is
// built so that a signer can use it without locks while a rotation replaces it.
type material struct {
	key           crypto.Signer
	cert          *x509.Certificate   // signs workload certificates
	intermediates []*x509.Certificate // between cert and root, leaf-most first
	root          *x509.Certificate   // the root cert chains to
	roots         []*x509.Certificate // the trust bundle, root-cert.pem order
}

func (m *material) selfSigned() bool { return m.cert.Equal(m.root) }

// chainToRoot is what a CA response carries after the leaf: the signing
// certificate, its intermediates and the root, as Istio returns them.
func (m *material) chainToRoot() []*x509.Certificate {
	if m.selfSigned() {
		return []*x509.Certificate{m.root}
	}
	out := append([]*x509.Certificate{m.cert}, m.intermediates...)
	return append(out, m.root)
}

// loadOrCreate reads the cacerts files in dir, or generates a self-signed root
// there when none of them exists. It never overwrites existing key material.
func loadOrCreate(dir string, kt KeyType, org string, rootTTL time.Duration, now time.Time) (m *material, created bool, err error) {
	present := map[string]bool{}
	for _, f := range []string{CACertFile, CAKeyFile, RootCertFile, CertChainFile} {
		_, err := os.Stat(filepath.Join(dir, f))
		switch {
		case err == nil:
			present[f] = true
		case !errors.Is(err, fs.ErrNotExist):
			return nil, false, fmt.Errorf("ca: checking %s: %w", filepath.Join(dir, f), err)
		}
	}
	if len(present) == 0 {
		m, err := newSelfSignedMaterial(kt, org, rootTTL, now)
		if err != nil {
			return nil, false, err
		}
		if err := writeMaterial(dir, m, true); err != nil {
			return nil, false, err
		}
		return m, true, nil
	}
	for _, f := range []string{CACertFile, CAKeyFile, RootCertFile} {
		if !present[f] {
			return nil, false, fmt.Errorf("ca: %s is missing from %s while other cacerts files are present; "+
				"a plugged-in CA needs %s, %s and %s (%s optional), or empty the directory to let istiod-lite generate a self-signed root",
				f, dir, CACertFile, CAKeyFile, RootCertFile, CertChainFile)
		}
	}
	m, err = readMaterial(dir, now)
	return m, false, err
}

func readMaterial(dir string, now time.Time) (*material, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("ca: reading %s: %w", filepath.Join(dir, name), err)
		}
		return b, nil
	}
	keyPEM, err := read(CAKeyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(CACertFile)
	if err != nil {
		return nil, err
	}
	rootPEM, err := read(RootCertFile)
	if err != nil {
		return nil, err
	}
	var chainPEM []byte
	if b, err := os.ReadFile(filepath.Join(dir, CertChainFile)); err == nil {
		chainPEM = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: reading %s: %w", filepath.Join(dir, CertChainFile), err)
	}
	return parseMaterial(dir, keyPEM, certPEM, rootPEM, chainPEM, now)
}

// parseMaterial checks that the files agree with each other, naming the file
// at fault so that an operator plugging in their own CA knows what to fix.
func parseMaterial(dir string, keyPEM, certPEM, rootPEM, chainPEM []byte, now time.Time) (*material, error) {
	p := func(name string) string { return filepath.Join(dir, name) }
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", p(CAKeyFile), err)
	}
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", p(CACertFile), err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca: %s holds no CERTIFICATE PEM block", p(CACertFile))
	}
	cert := certs[0]
	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("ca: %s does not match the public key of %s (subject %q); put the key that belongs to this certificate in %s",
			p(CAKeyFile), p(CACertFile), cert.Subject, CAKeyFile)
	}
	if !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("ca: %s (subject %q) is not a CA certificate: it needs basicConstraints CA:TRUE and keyUsage keyCertSign",
			p(CACertFile), cert.Subject)
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("ca: %s (subject %q) is valid from %s to %s, not at %s; plug in a current CA certificate",
			p(CACertFile), cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	roots, err := ParseCertsPEM(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", p(RootCertFile), err)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("ca: %s holds no CERTIFICATE PEM block", p(RootCertFile))
	}
	rootPool := x509.NewCertPool()
	for i, r := range roots {
		if !r.IsCA || r.CheckSignatureFrom(r) != nil {
			return nil, fmt.Errorf("ca: certificate %d of %s (subject %q) is not a self-signed CA certificate; %s must hold only roots",
				i+1, p(RootCertFile), r.Subject, RootCertFile)
		}
		rootPool.AddCert(r)
	}
	chain, err := ParseCertsPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", p(CertChainFile), err)
	}
	if len(chain) > 0 && !chain[0].Equal(cert) {
		return nil, fmt.Errorf("ca: %s must start with the certificate in %s, but starts with subject %q",
			p(CertChainFile), p(CACertFile), chain[0].Subject)
	}
	interPool := x509.NewCertPool()
	for _, c := range chain[min(1, len(chain)):] {
		interPool.AddCert(c)
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: interPool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("ca: %s does not chain to a root in %s through the intermediates in %s: %w; "+
			"check that root-cert.pem holds the root that issued this CA", p(CACertFile), p(RootCertFile), p(CertChainFile), err)
	}
	best := chains[0]
	for _, c := range chains[1:] {
		if len(c) < len(best) {
			best = c
		}
	}
	m := &material{key: key, cert: cert, root: best[len(best)-1], roots: roots}
	if len(best) > 2 {
		m.intermediates = best[1 : len(best)-1]
	}
	return m, nil
}

func newSelfSignedMaterial(kt KeyType, org string, ttl time.Duration, now time.Time) (*material, error) {
	key, err := kt.Generate()
	if err != nil {
		return nil, fmt.Errorf("ca: generating %s root key: %w", kt, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{org}, CommonName: "meshlite root CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: self-signing root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing generated root: %w", err)
	}
	return &material{key: key, cert: cert, root: cert, roots: []*x509.Certificate{cert}}, nil
}

// randomSerial returns a positive 128-bit serial number, as RFC 5280 and the
// CA/B baseline ask for unpredictable serials.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("ca: generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// writeMaterial persists m in the cacerts layout. Each file is replaced
// atomically; the trust bundle goes first so that a crash part-way never
// leaves a signing certificate whose root is not trusted. When withKey is
// false only the trust bundle is written (a root was added or removed).
func writeMaterial(dir string, m *material, withKey bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: creating --caDir %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, RootCertFile), EncodeCertPEM(m.roots...), 0o644); err != nil {
		return err
	}
	if !withKey {
		return nil
	}
	keyPEM, err := EncodePrivateKeyPEM(m.key)
	if err != nil {
		return err
	}
	chain := append([]*x509.Certificate{m.cert}, m.intermediates...)
	if !m.selfSigned() {
		chain = append(chain, m.root)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAKeyFile, keyPEM, 0o600},
		{CACertFile, EncodeCertPEM(m.cert), 0o644},
		{CertChainFile, EncodeCertPEM(chain...), 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ca: writing %s: %w", path, err)
	}
	return nil
}
