// Package xdsproxy is the agent's xDS proxy: Envoy (or a proxyless gRPC
// application) speaks ADS to a unix socket in the pod, and every downstream
// stream is forwarded over one mTLS upstream stream to the control plane.
// Keeping the pod's only control-plane connection inside the agent lets it
// hold the workload certificate and token, survive control-plane restarts
// without Envoy noticing, and report permanent rejections to readiness.
package xdsproxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"k8s.io/utils/clock"
)

// Istio's defaults, kept so that a meshlite agent is a drop-in replacement.
const (
	DefaultSocketPath       = "./etc/istio/proxy/XDS"
	DefaultDiscoveryAddress = "istiod.istio-system.svc:15012"
	DefaultServerName       = "istiod.istio-system.svc"
)

// CertSource is the part of the secret cache the proxy needs: the workload
// certificate presented upstream and the trust bundle that verifies istiod.
type CertSource interface {
	// GetClientCertificate returns the current workload certificate; it is
	// called on every TLS handshake so a rotated certificate is picked up.
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// TrustBundle returns the current roots and a channel that is closed
	// when they are replaced. The proxy re-dials upstream when it closes.
	TrustBundle() (*x509.CertPool, <-chan struct{})
}

// Options configures a Proxy. Zero values take Istio's defaults.
type Options struct {
	// SocketPath is the unix socket Envoy connects to (ISTIO's ./etc/istio/proxy/XDS).
	SocketPath string
	// DiscoveryAddress is the control plane's host:port (discoveryAddress).
	DiscoveryAddress string
	// ServerName is the SAN expected in the control plane's certificate (ISTIOD_SAN).
	ServerName string
	// Certs supplies the workload certificate and trust bundle. Required
	// unless Plaintext is set.
	Certs CertSource
	// Plaintext dials the control plane without TLS (istiod's :15010 dev port).
	Plaintext bool
	// TokenPath is the JWT sent as "authorization: Bearer" on every upstream
	// RPC. It is re-read per RPC so a rotated projected token is used. Empty
	// sends no token.
	TokenPath string
	// ClusterID is sent as "ClusterID" metadata, as Istio does.
	ClusterID string

	// InitialBackoff and MaxBackoff bound the reconnect delay (with jitter).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// PermanentErrorBackoff is the slow retry interval once the control
	// plane answered Unauthenticated or PermissionDenied.
	PermanentErrorBackoff time.Duration

	// Registerer receives the proxy's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Clock      clock.Clock
	// DialOptions are appended to the upstream dial options (tests).
	DialOptions []grpc.DialOption
}

func (o *Options) setDefaults() error {
	if o.SocketPath == "" {
		o.SocketPath = DefaultSocketPath
	}
	if o.DiscoveryAddress == "" {
		o.DiscoveryAddress = DefaultDiscoveryAddress
	}
	if o.ServerName == "" {
		o.ServerName = DefaultServerName
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 15 * time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		return fmt.Errorf("xds proxy: MaxBackoff %v is shorter than InitialBackoff %v: raise MaxBackoff", o.MaxBackoff, o.InitialBackoff)
	}
	if o.PermanentErrorBackoff <= 0 {
		o.PermanentErrorBackoff = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Certs == nil && !o.Plaintext {
		return fmt.Errorf("xds proxy: no certificate source for the mTLS connection to %s: pass Options.Certs (the secret cache), or set Plaintext to use an insecure port", o.DiscoveryAddress)
	}
	return nil
}
