// Package sds wires the agent's certificate side for one workload: a
// certificate source (the CA-backed secret cache, or file-mounted certs), the
// SDS server Envoy reads them from, and the OUTPUT_CERTS writer proxyless gRPC
// applications read them from. The agent creates one Service and runs it.
package sds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/caclient"
	"github.com/meshlite/meshlite/sds/filecerts"
	"github.com/meshlite/meshlite/sds/output"
	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/server"
	"github.com/meshlite/meshlite/sds/spiffe"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"
)

// Root certificate files tried, in order, when Config.RootCAFile is empty.
var DefaultRootCAFiles = []string{"./var/run/secrets/istio/root-cert.pem", "./etc/certs/root-cert.pem"}

// Config is the agent's certificate configuration; each field names the Istio
// setting it comes from. Zero values take Istio's defaults.
type Config struct {
	Identity spiffe.Identity

	// FileMountedCerts (FILE_MOUNTED_CERTS) reads the key pair from
	// FileMountedCertsDir instead of asking the CA.
	FileMountedCerts    bool
	FileMountedCertsDir string // default: the first of filecerts.DefaultDirs holding a chain

	CAAddress    string // CA_ADDR
	CAServerName string // ISTIOD_SAN; default: host of CA_ADDR
	RootCAFile   string // CA_ROOT_CA; default: the first existing of DefaultRootCAFiles
	TokenPath    string // default ./var/run/secrets/tokens/istio-token
	ClusterID    string // ISTIO_META_CLUSTER_ID

	KeyAlgorithm string        // cache.KeyECDSA (default) or cache.KeyRSA
	RSAKeySize   int           // WORKLOAD_RSA_KEY_SIZE
	ECCCurve     string        // ECC_CURVE
	TTL          time.Duration // SECRET_TTL
	GraceRatio   float64       // SECRET_GRACE_PERIOD_RATIO

	// SDSSocket is the SDS server's socket; DisableSDS turns the server off
	// (proxyless mode has no Envoy to serve).
	SDSSocket  string
	DisableSDS bool
	// OutputCertsDir (OUTPUT_CERTS) also writes the files there.
	OutputCertsDir string

	Clock  clock.WithTicker
	Logger *slog.Logger
}

// Service runs the certificate side of the agent.
type Service struct {
	cfg    Config
	log    *slog.Logger
	src    secret.Source
	run    []func(context.Context) error
	cache  *cache.Cache
	client *caclient.Client
}

// New validates cfg and builds the pieces; nothing runs until Run.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("scope", "sds")}
	if cfg.FileMountedCerts {
		dir := cfg.FileMountedCertsDir
		if dir == "" {
			var err error
			if dir, err = filecerts.FindDir(); err != nil {
				return nil, err
			}
		}
		o := filecerts.InDir(dir)
		o.Logger = cfg.Logger
		fs, err := filecerts.New(o)
		if err != nil {
			return nil, err
		}
		s.src = fs
		s.run = append(s.run, fs.Run)
	} else {
		if err := s.newCA(); err != nil {
			return nil, err
		}
	}
	if !cfg.DisableSDS {
		srv, err := server.New(server.Options{SocketPath: cfg.SDSSocket, Source: s.src, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.run = append(s.run, srv.Run)
	}
	if cfg.OutputCertsDir != "" {
		w, err := output.New(output.Options{Dir: cfg.OutputCertsDir, Source: s.src, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		s.run = append(s.run, w.Run)
	}
	return s, nil
}

func (s *Service) newCA() error {
	cfg := s.cfg
	root := cfg.RootCAFile
	if root == "" {
		root = DefaultRootCAFiles[0]
		for _, f := range DefaultRootCAFiles {
			if _, err := os.Stat(f); err == nil {
				root = f
				break
			}
		}
	}
	tokenPath := cfg.TokenPath
	if tokenPath == "" {
		tokenPath = "./var/run/secrets/tokens/istio-token"
	}
	var c *cache.Cache
	cl, err := caclient.New(caclient.Options{
		Addr: cfg.CAAddress, ServerName: cfg.CAServerName, TokenPath: tokenPath, ClusterID: cfg.ClusterID,
		Roots:             func() *x509.CertPool { return c.Roots() },
		ClientCertificate: func() *tls.Certificate { return c.ClientCertificate() },
		Logger:            cfg.Logger,
	})
	if err != nil {
		return err
	}
	c, err = cache.New(cache.Options{
		Identity: cfg.Identity, CA: cl, RootCertFile: root,
		KeyAlgorithm: cfg.KeyAlgorithm, RSAKeySize: cfg.RSAKeySize, ECCCurve: cfg.ECCCurve,
		TTL: cfg.TTL, GraceRatio: cfg.GraceRatio, Clock: cfg.Clock, Logger: cfg.Logger,
	})
	if err != nil {
		_ = cl.Close()
		return err
	}
	s.cache, s.client, s.src = c, cl, c
	s.run = append(s.run, c.Run)
	return nil
}

// Run runs every piece until ctx is done or one fails (for example the SDS
// socket is owned by another live agent).
func (s *Service) Run(ctx context.Context) error {
	if s.client != nil {
		defer s.client.Close()
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range s.run {
		g.Go(func() error { return r(ctx) })
	}
	return g.Wait()
}

// Source gives the xDS proxy and status server access to certificates,
// roots, change notifications and status.
func (s *Service) Source() secret.Source { return s.src }

// Roots is the current trust bundle as a pool (empty before one is known),
// for dialling istiod; subscribe to secret.ResourceRoot to re-dial on change.
func (s *Service) Roots() *x509.CertPool {
	if b := s.src.Bundle(); b != nil {
		return b.Pool
	}
	return x509.NewCertPool()
}

// ErrNotReady is wrapped by Ready while the certificate is still on its way.
var ErrNotReady = errors.New("workload certificate not yet served")

// Ready reports nil once the certificate was served to Envoy (an ACK of
// `default`) or written to OUTPUT_CERTS. Otherwise the error says why; a
// cache.PermanentError inside means the agent should fail fast.
func (s *Service) Ready() error {
	st := s.src.Status()
	switch {
	case st.Permanent:
		return st.LastError
	case st.HasCert && !st.Expiry.IsZero() && !s.now().Before(st.Expiry):
		// Delivered once is not enough: an expired certificate fails every
		// new mTLS handshake, so readiness must say so until a renewal lands.
		return fmt.Errorf("workload certificate expired at %s and no renewal was obtained (last error: %v); new mTLS connections fail until the CA answers",
			st.Expiry.UTC().Format(time.RFC3339), st.LastError)
	case st.Delivered:
		return nil
	case st.LastError != nil:
		return fmt.Errorf("%w: %w", ErrNotReady, st.LastError)
	case !st.HasCert:
		return fmt.Errorf("%w: waiting for the CA or the mounted files", ErrNotReady)
	case s.cfg.DisableSDS && s.cfg.OutputCertsDir == "":
		return nil // nothing to deliver to
	default:
		return fmt.Errorf("%w: waiting for Envoy to fetch it over SDS (%s)", ErrNotReady, filepath.Clean(s.sdsSocket()))
	}
}

func (s *Service) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

func (s *Service) sdsSocket() string {
	if s.cfg.SDSSocket != "" {
		return s.cfg.SDSSocket
	}
	return server.DefaultSocketPath
}
