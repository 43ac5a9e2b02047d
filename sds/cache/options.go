package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshlite/meshlite/sds/secret"
	"github.com/meshlite/meshlite/sds/spiffe"
	"k8s.io/utils/clock"
)

// Signer sends a CSR to a CA and returns the chain it answered with, leaf
// first and root last. *caclient.Client implements it. Errors should carry the
// CA's gRPC status so the cache can tell retryable failures from refusals.
type Signer interface {
	Sign(ctx context.Context, csrPEM []byte, ttl time.Duration) ([]string, error)
}

// Key algorithms for the workload key.
const (
	KeyECDSA = "ECDSA"
	KeyRSA   = "RSA"
)

// MinTTL is the shortest SECRET_TTL accepted (see secret.MinTTL).
const MinTTL = secret.MinTTL

// Options configures a Cache. Zero values take Istio's defaults.
type Options struct {
	// Identity is the SPIFFE ID requested in the CSR. Required.
	Identity spiffe.Identity
	// CA signs the CSRs. Required.
	CA Signer

	// KeyAlgorithm is KeyECDSA (default) or KeyRSA.
	KeyAlgorithm string
	// RSAKeySize is the RSA modulus size (WORKLOAD_RSA_KEY_SIZE, default 2048).
	RSAKeySize int
	// ECCCurve is P256 (default) or P384 (ECC_CURVE).
	ECCCurve string

	// TTL is the lifetime requested from the CA (SECRET_TTL, default 24h).
	TTL time.Duration
	// GraceRatio: rotate when this fraction of the lifetime is left
	// (SECRET_GRACE_PERIOD_RATIO, default 0.5).
	GraceRatio float64
	// GraceRatioJitter spreads rotations of many workloads: the ratio used is
	// GraceRatio ± up to this much (default 0.01; negative disables).
	GraceRatioJitter float64

	// RootCertFile is the configured root of trust (CA_ROOT_CA, or
	// ./var/run/secrets/istio/root-cert.pem, or ./etc/certs/root-cert.pem).
	// It is watched; the trust bundle is its roots plus the CA's own root.
	RootCertFile string

	// InitialBackoff and MaxBackoff bound the exponential, jittered retry
	// delay after retryable CA failures (defaults 1s and 30s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// RequestTimeout bounds one CSR round trip (default 30s).
	RequestTimeout time.Duration

	// Clock drives rotation and retries; tests inject a fake one.
	Clock clock.WithTicker
	// Rand returns a float in [0,1); it drives jitter (tests pin it).
	Rand   func() float64
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	if o.CA == nil {
		return errors.New("secret cache: no CA client configured; set CA_ADDR or use FILE_MOUNTED_CERTS=true")
	}
	if err := o.Identity.Validate(); err != nil {
		return fmt.Errorf("secret cache: workload identity %q: %w; check TRUST_DOMAIN, POD_NAMESPACE and SERVICE_ACCOUNT", o.Identity.String(), err)
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = KeyECDSA
	}
	switch o.KeyAlgorithm {
	case KeyECDSA:
		if o.ECCCurve == "" {
			o.ECCCurve = "P256"
		}
		if _, err := curve(o.ECCCurve); err != nil {
			return err
		}
	case KeyRSA:
		if o.RSAKeySize == 0 {
			o.RSAKeySize = 2048
		}
		if o.RSAKeySize < 2048 || o.RSAKeySize > 8192 {
			return fmt.Errorf("secret cache: WORKLOAD_RSA_KEY_SIZE=%d is out of range; use 2048 to 8192 (2048, 3072 or 4096 are usual)", o.RSAKeySize)
		}
	default:
		return fmt.Errorf("secret cache: key algorithm %q is not supported; use %s or %s", o.KeyAlgorithm, KeyECDSA, KeyRSA)
	}
	if o.TTL == 0 {
		o.TTL = 24 * time.Hour
	}
	if o.TTL < MinTTL {
		return fmt.Errorf("secret cache: SECRET_TTL=%s is too short; use at least %s (Istio's default is 24h)", o.TTL, MinTTL)
	}
	if o.GraceRatio == 0 {
		o.GraceRatio = 0.5
	}
	if o.GraceRatio <= 0 || o.GraceRatio >= 1 {
		return fmt.Errorf("secret cache: SECRET_GRACE_PERIOD_RATIO=%g is out of range; use a value between 0 and 1, e.g. 0.5", o.GraceRatio)
	}
	if o.GraceRatioJitter == 0 {
		o.GraceRatioJitter = 0.01
	}
	if o.GraceRatioJitter < 0 {
		o.GraceRatioJitter = 0
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
