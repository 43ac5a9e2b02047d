// Package jwtissuer mints Kubernetes-style service account tokens for the
// demo, tests and VM bootstrap, where no Kubernetes API server issues them.
// The CA's authn.JWT verifies them against the JWKS written next to the key.
// This is development tooling beyond Istio, not a production token issuer.
package jwtissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults shared by `istiod-lite token create` and the CA's --jwtIssuer and
// --jwtAudience, so that the dev tooling works with the CA out of the box.
const (
	DefaultIssuer   = "https://kubernetes.default.svc.cluster.local"
	DefaultAudience = "istio-ca"
)

// File names written by WriteDir.
const (
	KeyFile  = "signing-key.pem"
	JWKSFile = "jwks.json"
)

// Issuer signs tokens with one private key, named by its JWK thumbprint.
type Issuer struct {
	key crypto.Signer
	alg jose.SignatureAlgorithm
	kid string
}

// Generate creates a signing key for alg: ES256 (default) or RS256.
func Generate(alg string) (*Issuer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case "", string(jose.ES256):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case string(jose.RS256):
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("jwtissuer: algorithm %q is not supported; use ES256 or RS256", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: generating key: %w", err)
	}
	return New(key)
}

// New wraps an existing ECDSA P-256 or RSA key.
func New(key crypto.Signer) (*Issuer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("jwtissuer: ECDSA curve %s is not supported; use P-256 (ES256)", k.Curve.Params().Name)
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("jwtissuer: key type %T is not supported; use ECDSA P-256 or RSA", key)
	}
	pub := jose.JSONWebKey{Key: key.Public()}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: computing key ID: %w", err)
	}
	return &Issuer{key: key, alg: alg, kid: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// Load reads a PKCS#8 PEM signing key, as written by WriteDir.
func Load(path string) (*Issuer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: reading signing key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("jwtissuer: %s holds no PKCS#8 PRIVATE KEY PEM block; create one with `istiod-lite token keygen`", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("jwtissuer: %s: key of type %T cannot sign", path, k)
	}
	return New(s)
}

// KeyID is the kid header of minted tokens.
func (i *Issuer) KeyID() string { return i.kid }

// JWKS renders the public key as a JSON Web Key Set, for --jwksFile.
func (i *Issuer) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: i.key.Public(), KeyID: i.kid, Algorithm: string(i.alg), Use: "sig"}}}
	return json.MarshalIndent(set, "", "  ")
}

// WriteDir writes the private key (0600) and jwks.json into dir.
func (i *Issuer) WriteDir(dir string) (keyPath, jwksPath string, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		return "", "", fmt.Errorf("jwtissuer: encoding key: %w", err)
	}
	jwks, err := i.JWKS()
	if err != nil {
		return "", "", fmt.Errorf("jwtissuer: encoding JWKS: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("jwtissuer: creating %s: %w", dir, err)
	}
	keyPath, jwksPath = filepath.Join(dir, KeyFile), filepath.Join(dir, JWKSFile)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("jwtissuer: writing key: %w", err)
	}
	if err := os.WriteFile(jwksPath, append(jwks, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("jwtissuer: writing JWKS: %w", err)
	}
	return keyPath, jwksPath, nil
}

// Claims describe one service account token.
type Claims struct {
	Issuer         string
	Audiences      []string
	Namespace      string
	ServiceAccount string
	TTL            time.Duration
	// Now is the issue time; zero means time.Now().
	Now time.Time
}

// Mint signs a token shaped like a Kubernetes projected service account
// token: sub system:serviceaccount:<ns>:<sa> plus the kubernetes.io claim.
func (i *Issuer) Mint(c Claims) (string, error) {
	switch {
	case c.Issuer == "":
		return "", errors.New("jwtissuer: issuer is empty; it must equal the CA's --jwtIssuer")
	case len(c.Audiences) == 0:
		return "", errors.New("jwtissuer: no audience; it must include the CA's --jwtAudience, e.g. istio-ca")
	case c.Namespace == "" || c.ServiceAccount == "":
		return "", errors.New("jwtissuer: namespace and service account are both required")
	case c.TTL <= 0:
		return "", fmt.Errorf("jwtissuer: ttl %s must be positive", c.TTL)
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: i.alg, Key: i.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), i.kid))
	if err != nil {
		return "", fmt.Errorf("jwtissuer: %w", err)
	}
	std := jwt.Claims{
		Issuer:    c.Issuer,
		Subject:   "system:serviceaccount:" + c.Namespace + ":" + c.ServiceAccount,
		Audience:  jwt.Audience(c.Audiences),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(c.TTL)),
	}
	k8s := map[string]any{"kubernetes.io": map[string]any{
		"namespace":      c.Namespace,
		"serviceaccount": map[string]string{"name": c.ServiceAccount},
	}}
	tok, err := jwt.Signed(sig).Claims(std).Claims(k8s).Serialize()
	if err != nil {
		return "", fmt.Errorf("jwtissuer: signing token: %w", err)
	}
	return tok, nil
}
