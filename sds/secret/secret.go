// Package secret holds what every certificate source of the agent shares: the
// workload key pair and trust bundle types, the SDS resource names, and the
// publish/subscribe hub through which the SDS server, the OUTPUT_CERTS writer and
// the xDS proxy learn that something changed.
package secret

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// MinTTL is the shortest SECRET_TTL accepted: short enough for rotation
// tests and demos (30s), long enough that a CSR round trip and the apps'
// certificate file reloads fit in the grace period.
const MinTTL = 10 * time.Second

// SDS resource names Istio's Envoy bootstrap and clusters ask for.
const (
	// ResourceDefault is the workload key and certificate chain.
	ResourceDefault = "default"
	// ResourceRoot is the trust bundle used to validate peers.
	ResourceRoot = "ROOTCA"
)

// Workload is one immutable workload key pair.
type Workload struct {
	// CertChainPEM is leaf first, then intermediates (no root).
	CertChainPEM []byte
	KeyPEM       []byte
	Certificate  tls.Certificate
	Leaf         *x509.Certificate
}

// NotAfter is when the leaf stops being valid.
func (w *Workload) NotAfter() time.Time { return w.Leaf.NotAfter }

// Equal reports whether two workloads carry the same bytes, so sources can skip
// pushes that change nothing.
func (w *Workload) Equal(o *Workload) bool {
	if w == nil || o == nil {
		return w == o
	}
	return bytes.Equal(w.CertChainPEM, o.CertChainPEM) && bytes.Equal(w.KeyPEM, o.KeyPEM)
}

// Bundle is one immutable trust bundle: the roots a peer (or the CA, or istiod)
// may chain to.
type Bundle struct {
	PEM   []byte
	Roots []*x509.Certificate
	Pool  *x509.CertPool
}

// Equal reports whether two bundles hold the same roots.
func (b *Bundle) Equal(o *Bundle) bool {
	if b == nil || o == nil {
		return b == o
	}
	return bytes.Equal(b.PEM, o.PEM)
}

// Source is what consumers of workload certificates need, whichever way the
// certificates are obtained (CA signing or files mounted into the pod).
type Source interface {
	// Workload returns the current key pair, or nil before the first one exists.
	Workload() *Workload
	// Bundle returns the current trust bundle, or nil before one is known.
	Bundle() *Bundle
	// Subscribe returns a channel that receives a value (coalesced, never
	// blocking the source) whenever the named resource changes. The caller
	// re-reads Workload or Bundle on each signal.
	Subscribe(resource string) (<-chan struct{}, func())
	// Status reports readiness and failure information.
	Status() Status
	// MarkDelivered records that the current certificate reached its consumer
	// (served over SDS and ACKed, or written to OUTPUT_CERTS).
	MarkDelivered(how string)
}
