package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/meshlite/meshlite/sds/secret"
)

// KeyType names the algorithm and size of a CA key.
type KeyType string

// Key types the CA can generate. ECDSA P-256 is the default, as in Istio.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// KeyTypes lists every accepted KeyType, for flag help and error messages.
var KeyTypes = []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA3072, KeyRSA4096}

// ParseKeyType reads a key type name such as "ecdsa-p256" or "rsa-2048".
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes {
		if strings.EqualFold(s, string(k)) {
			return k, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, k := range KeyTypes {
		names[i] = string(k)
	}
	return "", fmt.Errorf("ca: key type %q is not supported; use one of %s", s, strings.Join(names, ", "))
}

// Generate creates a new private key of this type.
func (k KeyType) Generate() (crypto.Signer, error) {
	switch k {
	case "", KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case KeyRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	_, err := ParseKeyType(string(k))
	return nil, err
}

// EncodePrivateKeyPEM renders a key as PKCS#8 PEM, which every key type shares.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads the first private key in PEM data, in the PKCS#8,
// SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") forms that cacerts
// files produced by Istio's tooling and openssl use.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM block of type PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY found")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" that openssl writes before the key
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key of type %T cannot sign", k)
		}
		if err := checkCAKey(s.Public()); err != nil {
			return nil, err
		}
		return s, nil
	}
}

// checkCAKey refuses CA keys weaker than what the CA accepts from workloads.
func checkCAKey(pub crypto.PublicKey) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s is not supported; use P-256 or P-384", p.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak; use at least 2048 bits", p.N.BitLen())
		}
	default:
		return fmt.Errorf("key type %T is not supported; use ECDSA P-256/P-384 or RSA 2048+", pub)
	}
	return nil
}

// samePublicKey reports whether two public keys are equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// EncodeCertPEM renders certificates as concatenated PEM blocks.
func EncodeCertPEM(certs ...*x509.Certificate) []byte { return secret.EncodeCertificates(certs) }

// ParseCertsPEM reads every CERTIFICATE block in data, ignoring other blocks;
// data without one gives no certificates and no error (an optional file).
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	certs, err := secret.ParseCertificates(data)
	if errors.Is(err, secret.ErrNoCertificate) {
		return nil, nil
	}
	return certs, err
}

func (k KeyType) matches(pub crypto.PublicKey) bool {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return (k == KeyECDSAP256 && p.Curve == elliptic.P256()) || (k == KeyECDSAP384 && p.Curve == elliptic.P384())
	case *rsa.PublicKey:
		return string(k) == fmt.Sprintf("rsa-%d", p.N.BitLen())
	}
	return false
}
