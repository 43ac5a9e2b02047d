package cache

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
)

func curve(name string) (elliptic.Curve, error) {
	switch name {
	case "P256":
		return elliptic.P256(), nil
	case "P384":
		return elliptic.P384(), nil
	}
	return nil, fmt.Errorf("secret cache: ECC_CURVE=%q is not supported; use P256 or P384", name)
}

// newKeyAndCSR generates a fresh private key and a CSR whose only SAN is the
// workload's SPIFFE ID, which is what the CA authorizes.
func newKeyAndCSR(o *Options) (crypto.Signer, []byte, []byte, error) {
	var key crypto.Signer
	var err error
	if o.KeyAlgorithm == KeyRSA {
		key, err = rsa.GenerateKey(rand.Reader, o.RSAKeySize)
	} else {
		c, _ := curve(o.ECCCurve)
		key, err = ecdsa.GenerateKey(c, rand.Reader)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate %s key: %w", o.KeyAlgorithm, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		URIs: []*url.URL{o.Identity.URL()},
	}, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), nil
}
