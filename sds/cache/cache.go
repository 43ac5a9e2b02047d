// Package cache is the agent's secret cache: it generates the workload key and
// CSR, gets them signed by the CA with retries, verifies the answer, keeps the
// trust bundle (configured root file ∪ the CA's root), rotates before expiry
// and publishes changes to the SDS server, the OUTPUT_CERTS writer and the xDS
// proxy through secret.Source.
package cache

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/meshlite/meshlite/sds/internal/watch"
	"github.com/meshlite/meshlite/sds/secret"
	"k8s.io/utils/clock"
)

// Cache obtains and rotates the workload certificate. Create it with New and
// drive it with Run.
type Cache struct {
	secret.Hub
	opts    Options
	log     *slog.Logger
	refresh chan struct{}

	mu        sync.Mutex
	fileRoots []*x509.Certificate // from RootCertFile
	caRoot    *x509.Certificate   // ending the latest CA answer
	rotateAt  time.Time
}

var _ secret.Source = (*Cache)(nil)

// New validates opts and returns a cache that has not started yet.
func New(opts Options) (*Cache, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := &Cache{opts: opts, log: opts.Logger.With("scope", "sds"), refresh: make(chan struct{}, 1)}
	c.loadRootFile(true)
	return c, nil
}

// Refresh asks for a new certificate now, also after a permanent failure (for
// example once the token was fixed). It never starts a second CSR in flight.
func (c *Cache) Refresh() {
	select {
	case c.refresh <- struct{}{}:
	default:
	}
}

// RotateAt is when the current certificate will be replaced (zero before one).
func (c *Cache) RotateAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rotateAt
}

// Roots returns the trust bundle as a pool, for verifying the CA and istiod. It
// never returns nil, so a TLS handshake before the first root fails cleanly.
func (c *Cache) Roots() *x509.CertPool {
	if b := c.Bundle(); b != nil {
		return b.Pool
	}
	return x509.NewCertPool()
}

// ClientCertificate returns the current certificate while it is still valid,
// for the CA client to renew with; nil otherwise.
func (c *Cache) ClientCertificate() *tls.Certificate {
	w := c.Workload()
	if w == nil || !c.opts.Clock.Now().Before(w.NotAfter()) {
		return nil
	}
	return &w.Certificate
}

// Run obtains the first certificate and keeps it fresh until ctx is done.
// Only this goroutine talks to the CA, so there is never more than one CSR in
// flight.
func (c *Cache) Run(ctx context.Context) error {
	if c.opts.RootCertFile != "" {
		ctx, cancel := context.WithCancel(ctx)
		watching := make(chan struct{})
		defer func() { cancel(); <-watching }()
		go func() {
			defer close(watching)
			err := watch.Run(ctx, watch.Options{Paths: []string{c.opts.RootCertFile}, Poll: time.Minute, Logger: c.log},
				func() { c.loadRootFile(false) })
			if err != nil {
				c.log.Error("cannot watch root certificate file; root changes need an agent restart", "file", c.opts.RootCertFile, "err", err)
			}
		}()
	}
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     c.opts.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.opts.MaxBackoff,
	}
	bo.Reset()
	for {
		var timer clock.Timer
		err := c.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			bo.Reset()
			at := c.RotateAt()
			timer = c.opts.Clock.NewTimer(at.Sub(c.opts.Clock.Now()))
		case IsPermanent(err):
			c.log.Error("CA refused the certificate request; not retrying", "err", err)
			c.SetError(err, true)
		default:
			d := bo.NextBackOff()
			attrs := []any{"err", err, "retry_in", d}
			if w := c.Workload(); w != nil {
				attrs = append(attrs, "current_cert_expires", w.NotAfter())
			}
			c.log.Warn("cannot get a workload certificate; retrying", attrs...)
			c.SetError(err, false)
			timer = c.opts.Clock.NewTimer(d)
		}
		var wait <-chan time.Time // nil after a permanent failure: only Refresh resumes
		if timer != nil {
			wait = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-wait:
		case <-c.refresh:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// fetch makes one CSR round trip and, if the answer checks out, publishes it.
func (c *Cache) fetch(ctx context.Context) error {
	key, keyPEM, csrPEM, err := newKeyAndCSR(&c.opts)
	if err != nil {
		return &PermanentError{Err: err}
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	start := time.Now()
	chain, err := c.opts.CA.Sign(rctx, csrPEM, c.opts.TTL)
	if err != nil {
		return classify(err)
	}
	w, root, err := c.verify(chain, key, keyPEM)
	if err != nil {
		return fmt.Errorf("CA answer rejected: %w", err)
	}
	c.mu.Lock()
	c.caRoot = root
	ratioJitter := 0.0
	if c.opts.GraceRatioJitter > 0 {
		ratioJitter = (c.rand()*2 - 1) * c.opts.GraceRatioJitter
	}
	// CAs backdate NotBefore for clock skew (istiod-lite and Istio by 2m).
	// Measuring the lifetime from then would make a short SECRET_TTL due for
	// rotation on arrival, so it is measured from when the answer arrived.
	// Certificates carry whole seconds; so does this.
	from := w.Leaf.NotBefore
	if now := c.opts.Clock.Now().Truncate(time.Second); now.After(from) && now.Before(w.Leaf.NotAfter) {
		from = now
	}
	c.rotateAt = rotateAt(from, w.Leaf.NotAfter, c.opts.GraceRatio, ratioJitter)
	at := c.rotateAt
	// Publish the roots first: a peer may present a cert from the new root as
	// soon as our own new cert is out. Publishing under c.mu keeps a
	// concurrent root-file reload from overwriting a newer bundle.
	rootChanged := c.SetBundle(c.bundleLocked())
	c.mu.Unlock()
	c.SetWorkload(w)
	c.log.Info("workload certificate issued", "identity", c.opts.Identity.String(), "serial", w.Leaf.SerialNumber.String(),
		"expires", w.NotAfter(), "rotate_at", at, "root_changed", rootChanged, "took", time.Since(start))
	return nil
}

// verify checks the CA's answer before it is used: the leaf carries our key and
// identity and chains to the trust bundle (the configured roots plus the root
// the CA sent, which arrived over a connection verified with those roots).
func (c *Cache) verify(chainPEM []string, key crypto.Signer, keyPEM []byte) (*secret.Workload, *x509.Certificate, error) {
	var certs []*x509.Certificate
	for i, p := range chainPEM {
		cs, err := secret.ParseCertificates([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
		}
		certs = append(certs, cs...)
	}
	leaf := certs[0]
	if !secret.PublicKeyEqual(leaf, key) {
		return nil, nil, errors.New("the issued certificate is not for the key in our CSR")
	}
	want := c.opts.Identity.String()
	found := false
	for _, u := range leaf.URIs {
		found = found || u.String() == want
	}
	if !found {
		return nil, nil, fmt.Errorf("the issued certificate does not carry our identity %s (URIs %v)", want, leaf.URIs)
	}
	var root *x509.Certificate
	rest := certs[1:]
	if len(rest) > 0 {
		root, rest = rest[len(rest)-1], rest[:len(rest)-1]
	}
	c.mu.Lock()
	pool := secret.NewBundle(append(append([]*x509.Certificate{}, c.fileRoots...), root)...).Pool
	c.mu.Unlock()
	inter := x509.NewCertPool()
	for _, ic := range rest {
		inter.AddCert(ic)
	}
	if root != nil && !isSelfSigned(root) {
		// The CA ended the chain at an intermediate: keep it as an
		// intermediate so the leaf can still chain to a configured root.
		inter.AddCert(root)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: c.opts.Clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, nil, fmt.Errorf("the issued chain does not verify against the trust bundle: %w", err)
	}
	// The chain served to peers is leaf + intermediates; the root travels in ROOTCA.
	chainOut := append([]*x509.Certificate{leaf}, rest...)
	if root != nil && !isSelfSigned(root) {
		chainOut = append(chainOut, root)
	}
	w, err := secret.NewWorkload(secret.EncodeCertificates(chainOut), keyPEM)
	if err != nil {
		return nil, nil, err
	}
	return w, root, nil
}

func (c *Cache) rand() float64 {
	if c.opts.Rand != nil {
		return c.opts.Rand()
	}
	return rand.Float64()
}

// bundleLocked is the trust bundle: configured roots first, then the CA's.
func (c *Cache) bundleLocked() *secret.Bundle {
	roots := append([]*x509.Certificate{}, c.fileRoots...)
	roots = append(roots, c.caRoot)
	b := secret.NewBundle(roots...)
	if len(b.Roots) == 0 {
		return nil
	}
	return b
}

// loadRootFile re-reads the configured root file. A missing or broken file
// keeps the previous roots: a partial write must not drop trust.
func (c *Cache) loadRootFile(initial bool) {
	if c.opts.RootCertFile == "" {
		return
	}
	data, err := os.ReadFile(c.opts.RootCertFile)
	if err == nil {
		var roots []*x509.Certificate
		roots, err = secret.ParseCertificates(data)
		if err == nil {
			c.mu.Lock()
			c.fileRoots = roots
			b := c.bundleLocked()
			changed := c.SetBundle(b)
			c.mu.Unlock()
			if changed && !initial {
				c.log.Info("trust bundle changed: root certificate file reloaded", "file", c.opts.RootCertFile, "roots", len(b.Roots))
			}
			return
		}
	}
	c.log.Warn("cannot load root certificate file; keeping the previous roots", "file", c.opts.RootCertFile, "err", err)
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}
