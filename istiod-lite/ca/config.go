package ca

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

// Config is what istiod-lite's CA flags set; Build turns it into a running CA.
type Config struct {
	CADir              string
	KeyType            string
	TrustDomain        string
	MaxWorkloadCertTTL time.Duration
	WorkloadCertTTL    time.Duration
	JWKSFile           string
	JWTIssuer          string
	JWTAudiences       []string
}

// AddFlags registers the CA flags. TTL defaults honour Istio's
// MAX_WORKLOAD_CERT_TTL and DEFAULT_WORKLOAD_CERT_TTL environment variables.
// The trust domain is not a flag here: it comes from the mesh config.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CADir, "caDir", "./etc/cacerts",
		"CA key material in Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); a self-signed root is generated there when it is empty")
	fs.StringVar(&c.KeyType, "caKeyType", string(KeyECDSAP256), "key type of a generated root: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096")
	fs.DurationVar(&c.MaxWorkloadCertTTL, "maxWorkloadCertTTL", envDuration("MAX_WORKLOAD_CERT_TTL", DefaultMaxWorkloadCertTTL),
		"longest workload certificate lifetime a CSR may request; longer requests are refused (env MAX_WORKLOAD_CERT_TTL)")
	fs.DurationVar(&c.WorkloadCertTTL, "workloadCertTTL", envDuration("DEFAULT_WORKLOAD_CERT_TTL", DefaultWorkloadCertTTL),
		"workload certificate lifetime when a CSR requests none (env DEFAULT_WORKLOAD_CERT_TTL)")
	fs.StringVar(&c.JWKSFile, "jwksFile", "", "JWKS of the service account token issuer; empty accepts only renewals with a client certificate")
	fs.StringVar(&c.JWTIssuer, "jwtIssuer", jwtissuer.DefaultIssuer, "iss claim required in bearer tokens")
	fs.StringSliceVar(&c.JWTAudiences, "jwtAudience", []string{jwtissuer.DefaultAudience}, "audience required in bearer tokens (one of, repeatable)")
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		slog.Default().With("scope", "ca").Warn("ignoring unparsable environment variable", "name", name, "value", v, "default", def)
	}
	return def
}

// Validate reports the first flag whose value cannot work.
func (c Config) Validate() error {
	if c.CADir == "" {
		return errors.New("--caDir is empty: set a directory for the CA key material")
	}
	if _, err := ParseKeyType(c.KeyType); err != nil && c.KeyType != "" {
		return fmt.Errorf("--caKeyType: %w", err)
	}
	if c.MaxWorkloadCertTTL <= 0 {
		return fmt.Errorf("--maxWorkloadCertTTL %s must be positive", c.MaxWorkloadCertTTL)
	}
	if c.WorkloadCertTTL <= 0 || c.WorkloadCertTTL > c.MaxWorkloadCertTTL {
		return fmt.Errorf("--workloadCertTTL %s must be positive and at most --maxWorkloadCertTTL %s", c.WorkloadCertTTL, c.MaxWorkloadCertTTL)
	}
	if c.JWKSFile != "" && (c.JWTIssuer == "" || len(c.JWTAudiences) == 0) {
		return errors.New("--jwksFile needs --jwtIssuer and --jwtAudience")
	}
	return nil
}

// Build loads or creates the CA key material and returns the Authority and
// its CreateCertificate service, authenticating callers with extra (for
// example Kubernetes TokenReview) first, then by bearer token (when a JWKS is
// configured), then by a client certificate from this CA.
func (c Config) Build(reg prometheus.Registerer, clk clock.PassiveClock, logger *slog.Logger, extra ...authn.Authenticator) (*Authority, *Server, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	kt := KeyECDSAP256
	if c.KeyType != "" {
		kt, _ = ParseKeyType(c.KeyType)
	}
	a, err := New(Options{Dir: c.CADir, KeyType: kt, TrustDomain: c.TrustDomain, Clock: clk, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	chain := authn.Chain(append([]authn.Authenticator(nil), extra...))
	if c.JWKSFile != "" {
		j, err := authn.NewJWT(authn.JWTOptions{JWKSFile: c.JWKSFile, Issuer: c.JWTIssuer, Audiences: c.JWTAudiences,
			TrustDomain: a.TrustDomain(), Clock: clk, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		chain = append(chain, j)
	} else if len(extra) == 0 {
		logger.With("scope", "ca").Warn("no --jwksFile: the CA accepts only renewals with a client certificate it issued; first certificates cannot be obtained")
	}
	chain = append(chain, &authn.ClientCert{Roots: a.TrustPool, TrustDomain: a.TrustDomain(), Clock: clk})
	s, err := NewServer(a, ServerOptions{Authenticator: chain, MaxWorkloadCertTTL: c.MaxWorkloadCertTTL,
		WorkloadCertTTL: c.WorkloadCertTTL, Registerer: reg, Clock: clk, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return a, s, nil
}
