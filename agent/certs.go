package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/meshlite/meshlite/sds/secret"
)

// certSource adapts the secret cache to what the xDS proxy dials istiod with:
// the current workload certificate on every handshake, and the trust bundle
// with a channel closed when a new root arrives (the proxy then re-dials).
type certSource struct {
	src secret.Source

	mu      sync.Mutex
	changed chan struct{}
}

func newCertSource(src secret.Source) *certSource {
	return &certSource{src: src, changed: make(chan struct{})}
}

// watch turns the source's ROOTCA notifications into closed channels until stop.
func (c *certSource) watch(stop <-chan struct{}) {
	ch, cancel := c.src.Subscribe(secret.ResourceRoot)
	defer cancel()
	for {
		select {
		case <-stop:
			return
		case <-ch:
			c.mu.Lock()
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
	}
}

var errNoCert = errors.New("no workload certificate yet: the secret cache has not obtained one from the CA")

func (c *certSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	w := c.src.Workload()
	if w == nil {
		return nil, errNoCert
	}
	return &w.Certificate, nil
}

func (c *certSource) TrustBundle() (*x509.CertPool, <-chan struct{}) {
	c.mu.Lock()
	ch := c.changed
	c.mu.Unlock()
	if b := c.src.Bundle(); b != nil {
		return b.Pool, ch
	}
	return x509.NewCertPool(), ch
}
