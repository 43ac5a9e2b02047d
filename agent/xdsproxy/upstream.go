package xdsproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// upstream owns the single client connection to the control plane. Every
// downstream stream opens its own upstream stream on it; replacing the
// connection (trust-bundle change) ends those streams, and they reconnect
// through the normal replay path.
type upstream struct {
	opts Options

	mu   sync.Mutex
	conn *grpc.ClientConn
}

func (u *upstream) current() (*grpc.ClientConn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		return u.conn, nil
	}
	conn, err := u.dial()
	if err != nil {
		return nil, err
	}
	u.conn = conn
	return conn, nil
}

// redial replaces the connection so that the next handshake uses the
// current trust bundle; the old connection is closed, which ends its
// streams with codes.Canceled.
func (u *upstream) redial() error {
	conn, err := u.dial()
	if err != nil {
		return err
	}
	u.mu.Lock()
	old := u.conn
	u.conn = conn
	u.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		_ = u.conn.Close()
		u.conn = nil
	}
}

func (u *upstream) dial() (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if u.opts.Plaintext {
		creds = insecure.NewCredentials()
	} else {
		roots, _ := u.opts.Certs.TrustBundle()
		if roots == nil {
			return nil, fmt.Errorf("no trust bundle yet to verify %s (expected SAN %q): the secret cache has not loaded a root certificate; check CA_ROOT_CA or ./var/run/secrets/istio/root-cert.pem", u.opts.DiscoveryAddress, u.opts.ServerName)
		}
		creds = credentials.NewTLS(&tls.Config{
			MinVersion:           tls.VersionTLS12,
			ServerName:           u.opts.ServerName,
			RootCAs:              roots,
			GetClientCertificate: u.opts.Certs.GetClientCertificate,
		})
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A mesh's CDS/EDS responses easily exceed gRPC's 4 MiB default.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// gRPC's own redial backoff (up to 120s by default) stacks on the
		// streams' backoff: after a long control-plane outage, streams kept
		// failing fast on a channel still waiting to redial. Cap it the same.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay: u.opts.InitialBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: u.opts.MaxBackoff,
			},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithPerRPCCredentials(&callCreds{
			tokenPath: u.opts.TokenPath,
			clusterID: u.opts.ClusterID,
			secure:    !u.opts.Plaintext,
		}),
	}
	dopts = append(dopts, u.opts.DialOptions...)
	conn, err := grpc.NewClient(u.opts.DiscoveryAddress, dopts...)
	if err != nil {
		return nil, fmt.Errorf("dial control plane %q: %w", u.opts.DiscoveryAddress, err)
	}
	return conn, nil
}

// callCreds attaches the JWT and ClusterID to every upstream RPC. The token
// file is read per call because Kubernetes rotates projected tokens in place.
type callCreds struct {
	tokenPath string
	clusterID string
	secure    bool
}

func (c *callCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := map[string]string{}
	if c.clusterID != "" {
		md["ClusterID"] = c.clusterID
	}
	if c.tokenPath != "" {
		b, err := os.ReadFile(c.tokenPath)
		if err != nil {
			return nil, fmt.Errorf("read the workload token for istiod from %s: %w (is the projected istio-token volume mounted?)", c.tokenPath, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("workload token file %s is empty: wait for the kubelet to write it or fix the istio-token volume", c.tokenPath)
		}
		md["authorization"] = "Bearer " + tok
	}
	return md, nil
}

func (c *callCreds) RequireTransportSecurity() bool { return c.secure }
