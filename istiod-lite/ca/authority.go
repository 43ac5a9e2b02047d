package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/sds/spiffe"
)

// Defaults of Options.
const (
	DefaultRootTTL   = 10 * 365 * 24 * time.Hour
	DefaultClockSkew = 2 * time.Minute
)

// Options configure an Authority.
type Options struct {
	// Dir is --caDir: where the cacerts files are read from, or written to
	// when a self-signed root is generated on first start.
	Dir string
	// TrustDomain of issued SPIFFE IDs; default cluster.local. It is also the
	// Organization of a generated root, as in Istio.
	TrustDomain string
	// KeyType of generated roots; default ECDSA P-256.
	KeyType KeyType
	// RootTTL is the lifetime of generated roots; default 10 years.
	RootTTL time.Duration
	// ClockSkew backdates NotBefore of issued certificates so that peers whose
	// clocks lag a little accept them at once; default 2 minutes.
	ClockSkew time.Duration
	// ServingCertTTL is the lifetime of istiod-lite's own serving
	// certificate (ServerTLSConfig); default 24 hours.
	ServingCertTTL time.Duration
	Clock          clock.PassiveClock
	Logger         *slog.Logger
}

// Authority holds the CA key material and signs certificates with it. It is
// safe for concurrent use; rotations swap an immutable snapshot.
type Authority struct {
	opts Options
	log  *slog.Logger
	mu   sync.Mutex // serializes changes of key material and their writes
	cur  atomic.Pointer[snapshot]
}

type snapshot struct {
	m         *material
	pool      *x509.CertPool
	bundlePEM []byte
	changed   chan struct{} // closed when this snapshot is replaced
}

// New loads the CA from opts.Dir, generating a self-signed root there when the
// directory holds no cacerts files.
func New(opts Options) (*Authority, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: no --caDir given; set it to a directory for the CA key material")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = spiffe.DefaultTrustDomain
	}
	if opts.KeyType == "" {
		opts.KeyType = KeyECDSAP256
	}
	if _, err := ParseKeyType(string(opts.KeyType)); err != nil {
		return nil, err
	}
	if opts.RootTTL <= 0 {
		opts.RootTTL = DefaultRootTTL
	}
	if opts.ClockSkew <= 0 {
		opts.ClockSkew = DefaultClockSkew
	}
	if opts.ServingCertTTL <= 0 {
		opts.ServingCertTTL = DefaultServingCertTTL
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Authority{opts: opts, log: opts.Logger.With("scope", "ca")}
	m, created, err := loadOrCreate(opts.Dir, opts.KeyType, opts.TrustDomain, opts.RootTTL, opts.Clock.Now())
	if err != nil {
		return nil, err
	}
	a.install(m)
	if created {
		a.log.Info("generated self-signed root CA", "dir", opts.Dir, "keyType", opts.KeyType,
			"fingerprint", Fingerprint(m.root), "notAfter", m.root.NotAfter)
	} else {
		a.log.Info("loaded CA key material", "dir", opts.Dir, "signingSubject", m.cert.Subject.String(),
			"selfSigned", m.selfSigned(), "roots", len(m.roots), "notAfter", m.cert.NotAfter)
	}
	return a, nil
}

func (a *Authority) install(m *material) {
	pool := x509.NewCertPool()
	for _, r := range m.roots {
		pool.AddCert(r)
	}
	next := &snapshot{m: m, pool: pool, bundlePEM: EncodeCertPEM(m.roots...), changed: make(chan struct{})}
	if prev := a.cur.Swap(next); prev != nil {
		close(prev.changed)
	}
}

// TrustDomain is the trust domain of the SPIFFE IDs this CA issues.
func (a *Authority) TrustDomain() string { return a.opts.TrustDomain }

// TrustBundle is every root a workload must trust, in root-cert.pem order.
func (a *Authority) TrustBundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), a.cur.Load().m.roots...)
}

// TrustBundlePEM is TrustBundle as the content of root-cert.pem.
func (a *Authority) TrustBundlePEM() []byte { return a.cur.Load().bundlePEM }

// TrustPool is TrustBundle as a pool for certificate verification. Callers
// must not modify it.
func (a *Authority) TrustPool() *x509.CertPool { return a.cur.Load().pool }

// SigningRoot is the root that newly issued certificates chain to.
func (a *Authority) SigningRoot() *x509.Certificate { return a.cur.Load().m.root }

// Changed returns a channel closed at the next change of the key material or
// trust bundle, so that the xDS server can push ROOTCA again.
func (a *Authority) Changed() <-chan struct{} { return a.cur.Load().changed }

// Fingerprint is the lower-case hex SHA-256 of a certificate, the form
// RemoveRoot takes (openssl x509 -fingerprint -sha256 without colons).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// RotateRoot generates a new self-signed root, makes it the signing CA and
// adds it to the trust bundle, where the old roots stay until RemoveRoot. It
// refuses a plugged-in intermediate CA, whose operator owns its root: plug in
// the new files instead, after AddTrustedRoot of the new root.
func (a *Authority) RotateRoot() (*x509.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cur.Load().m
	if !old.selfSigned() {
		return nil, fmt.Errorf("ca: the signing CA in %s is a plugged-in intermediate (issuer %q); rotate its root by adding the new root with AddTrustedRoot "+
			"and then replacing %s, %s and %s", a.opts.Dir, old.cert.Issuer, CACertFile, CAKeyFile, CertChainFile)
	}
	kt := keyTypeOf(old.key.Public())
	m, err := newSelfSignedMaterial(kt, a.opts.TrustDomain, a.opts.RootTTL, a.opts.Clock.Now())
	if err != nil {
		return nil, err
	}
	m.roots = append([]*x509.Certificate{m.root}, old.roots...)
	if err := writeMaterial(a.opts.Dir, m, true); err != nil {
		return nil, err
	}
	a.install(m)
	a.log.Info("rotated root CA: new root signs, old roots stay trusted until removed",
		"newFingerprint", Fingerprint(m.root), "oldFingerprint", Fingerprint(old.root), "roots", len(m.roots))
	return m.root, nil
}

// AddTrustedRoot adds the roots in pemData to the trust bundle without
// changing the signing CA: the first step of rotating a plugged-in root.
func (a *Authority) AddTrustedRoot(pemData []byte) error {
	roots, err := ParseCertsPEM(pemData)
	if err != nil {
		return fmt.Errorf("ca: new root: %w", err)
	}
	if len(roots) == 0 {
		return errors.New("ca: new root: no CERTIFICATE PEM block found")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := *a.cur.Load().m
	cur.roots = append([]*x509.Certificate(nil), cur.roots...)
	for _, r := range roots {
		if !r.IsCA || r.CheckSignatureFrom(r) != nil {
			return fmt.Errorf("ca: new root (subject %q) is not a self-signed CA certificate", r.Subject)
		}
		if !containsCert(cur.roots, r) {
			cur.roots = append(cur.roots, r)
		}
	}
	if err := writeMaterial(a.opts.Dir, &cur, false); err != nil {
		return err
	}
	a.install(&cur)
	a.log.Info("added trusted roots", "roots", len(cur.roots))
	return nil
}

// RemoveRoot drops the root with this SHA-256 fingerprint from the trust
// bundle, ending a rotation. The root the signing CA chains to cannot be removed.
func (a *Authority) RemoveRoot(fingerprint string) error {
	fingerprint = strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := *a.cur.Load().m
	if Fingerprint(cur.root) == fingerprint {
		return fmt.Errorf("ca: root %s is the one the signing CA chains to and cannot be removed; rotate to a new root first", fingerprint)
	}
	var kept []*x509.Certificate
	for _, r := range cur.roots {
		if Fingerprint(r) != fingerprint {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(cur.roots) {
		known := make([]string, len(cur.roots))
		for i, r := range cur.roots {
			known[i] = Fingerprint(r)
		}
		return fmt.Errorf("ca: no root with SHA-256 fingerprint %s in the trust bundle; known roots: %s", fingerprint, strings.Join(known, ", "))
	}
	cur.roots = kept
	if err := writeMaterial(a.opts.Dir, &cur, false); err != nil {
		return err
	}
	a.install(&cur)
	a.log.Info("removed root from trust bundle", "fingerprint", fingerprint, "roots", len(kept))
	return nil
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func keyTypeOf(pub crypto.PublicKey) KeyType {
	for _, kt := range KeyTypes {
		if kt.matches(pub) {
			return kt
		}
	}
	return KeyECDSAP256
}

// LeafRequest is what to put in an issued certificate. The caller has
// already authorized every name in it.
type LeafRequest struct {
	PublicKey   crypto.PublicKey
	URIs        []*url.URL
	DNSNames    []string
	IPAddresses []net.IP
	TTL         time.Duration
}

// Issued is a signed certificate with the chain a client needs to present it.
type Issued struct {
	Leaf *x509.Certificate
	// Chain is the leaf, the signing CA, any intermediates and the root.
	Chain []*x509.Certificate
}

// ChainPEM renders Chain one PEM certificate per element, the shape of
// IstioCertificateResponse.cert_chain.
func (i *Issued) ChainPEM() []string {
	out := make([]string, len(i.Chain))
	for n, c := range i.Chain {
		out[n] = string(EncodeCertPEM(c))
	}
	return out
}

// Sign issues a workload certificate: serverAuth and clientAuth, NotBefore
// backdated by the clock skew, NotAfter capped at the signing CA's own expiry.
func (a *Authority) Sign(req LeafRequest) (*Issued, error) {
	if req.TTL <= 0 {
		return nil, fmt.Errorf("ca: certificate lifetime %s must be positive", req.TTL)
	}
	m := a.cur.Load().m
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := a.opts.Clock.Now()
	notAfter := now.Add(req.TTL)
	if notAfter.After(m.cert.NotAfter) {
		notAfter = m.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-a.opts.ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  req.URIs,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.cert, req.PublicKey, m.key)
	if err != nil {
		return nil, fmt.Errorf("ca: signing certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing issued certificate: %w", err)
	}
	return &Issued{Leaf: leaf, Chain: append([]*x509.Certificate{leaf}, m.chainToRoot()...)}, nil
}

// Reload re-reads the cacerts files, for an operator who replaced them (a
// plugged-in CA's rotation). On any error the current material stays in use.
func (a *Authority) Reload() (changed bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, err := readMaterial(a.opts.Dir, a.opts.Clock.Now())
	if err != nil {
		return false, err
	}
	cur := a.cur.Load().m
	if cur.cert.Equal(m.cert) && samePublicKey(cur.key.Public(), m.key.Public()) && sameCertList(cur.roots, m.roots) {
		return false, nil
	}
	a.install(m)
	a.log.Info("reloaded CA key material", "signingSubject", m.cert.Subject.String(), "signingRoot", Fingerprint(m.root), "roots", len(m.roots))
	return true, nil
}

func sameCertList(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
