// Package caclient talks to an Istio-compatible CA
// (istio.v1.auth.IstioCertificateService/CreateCertificate) over TLS, the way
// pilot-agent does: the CA is verified against the agent's trust bundle and
// expected server name, and the caller is authenticated with the projected
// service-account token (re-read on every call) or, for renewal, with its
// current workload certificate.
package caclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	pb "istio.io/api/security/v1alpha1"
)

// DefaultServerName is the name istiod's serving certificate carries.
const DefaultServerName = "istiod.istio-system.svc"

// Options configures a Client.
type Options struct {
	// Addr is the CA's host:port (CA_ADDR), e.g. istiod.istio-system.svc:15012.
	Addr string
	// ServerName is the name the CA's certificate must carry (ISTIOD_SAN).
	// Defaults to the host part of Addr.
	ServerName string
	// Roots returns the roots the CA's certificate must chain to. It is called
	// on every handshake so a rotated trust bundle is picked up without a
	// restart. Required.
	Roots func() *x509.CertPool
	// TokenPath is the projected service-account token file
	// (./var/run/secrets/tokens/istio-token). Read on every call.
	TokenPath string
	// ClusterID is sent as ClusterID metadata (default "Kubernetes").
	ClusterID string
	// ClientCertificate, if set, returns the current workload certificate to
	// present for renewal; nil from the function means none.
	ClientCertificate func() *tls.Certificate
	// DialOptions are appended to the client's own (tests, interceptors).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// Client is a CA client. It is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	conn    *grpc.ClientConn
	svc     pb.IstioCertificateServiceClient
	certFor *x509.Certificate // client certificate the current connection presents
}

// New creates a client. It does not connect until the first call.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("caclient: CA address is empty; set CA_ADDR to the CA's host:port, e.g. istiod.istio-system.svc:15012")
	}
	if opts.Roots == nil {
		return nil, errors.New("caclient: no roots to verify the CA with; configure a root certificate file (CA_ROOT_CA)")
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "Kubernetes"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ServerName == "" {
		opts.ServerName = hostOf(opts.Addr)
	}
	c := &Client{opts: opts, log: opts.Logger.With("scope", "caclient")}
	if err := c.dial(nil); err != nil {
		return nil, err
	}
	return c, nil
}

// dial (re)connects presenting cert, if any. A client certificate is only sent
// during the TLS handshake, so renewing with a newer certificate needs a new
// connection; that happens once per rotation.
func (c *Client) dial(cert *tls.Certificate) error {
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done in VerifyConnection against the roots of the
		// moment; crypto/tls would otherwise freeze RootCAs at dial time.
		InsecureSkipVerify: true, //nolint:gosec // replaced by verifyServer below
		VerifyConnection:   verifyServer(c.opts.Roots, c.opts.ServerName),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert != nil {
				return cert, nil
			}
			return &tls.Certificate{}, nil // none: the token authenticates
		},
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithPerRPCCredentials(&tokenCredentials{path: c.opts.TokenPath, clusterID: c.opts.ClusterID, allowNoToken: cert != nil}),
	}, c.opts.DialOptions...)
	conn, err := grpc.NewClient(c.opts.Addr, dial...)
	if err != nil {
		return fmt.Errorf("caclient: CA address %q: %w", c.opts.Addr, err)
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn, c.svc, c.certFor = conn, pb.NewIstioCertificateServiceClient(conn), nil
	if cert != nil {
		c.certFor = cert.Leaf
	}
	return nil
}

// service returns the stub to use, redialling if the certificate to present
// for renewal changed since the connection was made.
func (c *Client) service() (pb.IstioCertificateServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cert *tls.Certificate
	if c.opts.ClientCertificate != nil {
		cert = c.opts.ClientCertificate()
	}
	var leaf *x509.Certificate
	if cert != nil {
		leaf = cert.Leaf
	}
	if leaf != c.certFor {
		c.log.Debug("reconnecting to the CA to present a different client certificate")
		if err := c.dial(cert); err != nil {
			return nil, err
		}
	}
	return c.svc, nil
}

// Sign sends a PEM CSR and returns the certificate chain the CA answered with:
// leaf first, root last. Errors keep their gRPC status so callers can tell
// retryable failures from refusals.
func (c *Client) Sign(ctx context.Context, csrPEM []byte, ttl time.Duration) ([]string, error) {
	svc, err := c.service()
	if err != nil {
		return nil, err
	}
	resp, err := svc.CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(csrPEM),
		ValidityDuration: int64(ttl / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("CA %s: CreateCertificate: %w", c.opts.Addr, err)
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, fmt.Errorf("CA %s returned an empty certificate chain", c.opts.Addr)
	}
	return resp.GetCertChain(), nil
}

// Close releases the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.Close()
}

func verifyServer(roots func() *x509.CertPool, serverName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("CA presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			DNSName:       serverName,
			Roots:         roots(),
			Intermediates: inter,
		})
		if err != nil {
			return fmt.Errorf("CA certificate is not trusted for %q (check CA_ROOT_CA and ISTIOD_SAN): %w", serverName, err)
		}
		return nil
	}
}

func hostOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			h := addr[:i]
			if len(h) > 1 && h[0] == '[' {
				h = h[1 : len(h)-1]
			}
			return h
		}
	}
	return addr
}
