package authn

import (
	"context"
	"crypto/x509"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/sds/spiffe"
)

// ClientCert authenticates a caller by the TLS client certificate it
// presented, as an agent does when it renews with its current workload cert.
type ClientCert struct {
	// Roots returns the current trust bundle. It is read on every request so
	// that a root added or removed by rotation applies at once.
	Roots func() *x509.CertPool
	// TrustDomain, if set, is the only trust domain accepted.
	TrustDomain string
	Clock       clock.PassiveClock
}

// Authenticate implements Authenticator.
func (a *ClientCert) Authenticate(ctx context.Context) (spiffe.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffe.Identity{}, ErrNoCredentials
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffe.Identity{}, ErrNoCredentials
	}
	leaf := ti.State.PeerCertificates[0]
	now := clock.PassiveClock(clock.RealClock{})
	if a.Clock != nil {
		now = a.Clock
	}
	inter := x509.NewCertPool()
	for _, c := range ti.State.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	// Verified again here, not only in the handshake, so that a root
	// removed since the connection was made stops authenticating at once.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.Roots(), Intermediates: inter, CurrentTime: now.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return spiffe.Identity{}, fmt.Errorf("client certificate (serial %x) is not a valid client certificate from this CA: %w", leaf.SerialNumber, err)
	}
	if len(leaf.URIs) != 1 {
		return spiffe.Identity{}, fmt.Errorf("client certificate (serial %x) has %d URI SANs, want exactly one SPIFFE ID", leaf.SerialNumber, len(leaf.URIs))
	}
	id, err := spiffe.Parse(leaf.URIs[0].String())
	if err != nil {
		return spiffe.Identity{}, fmt.Errorf("client certificate (serial %x): %w", leaf.SerialNumber, err)
	}
	if a.TrustDomain != "" && id.TrustDomain != a.TrustDomain {
		return spiffe.Identity{}, fmt.Errorf("client certificate identity %s is in trust domain %q, want %q", id, id.TrustDomain, a.TrustDomain)
	}
	return id, nil
}
