package secret

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNoCertificate is ParseCertificates' error for data with no CERTIFICATE block.
var ErrNoCertificate = errors.New("no PEM CERTIFICATE block found")

// ParseCertificates reads every CERTIFICATE block of a PEM file.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// EncodeCertificates renders certificates as concatenated PEM blocks.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// NewWorkload checks that chainPEM and keyPEM belong together (the leaf's public
// key matches the private key) and builds the Workload. A half-written or
// mismatched pair is reported as an error.
func NewWorkload(chainPEM, keyPEM []byte) (*Workload, error) {
	chain, err := ParseCertificates(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate chain: %w", err)
	}
	pair, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key does not match certificate chain (or is unreadable): %w", err)
	}
	pair.Leaf = chain[0]
	return &Workload{
		CertChainPEM: bytes.Clone(chainPEM),
		KeyPEM:       bytes.Clone(keyPEM),
		Certificate:  pair,
		Leaf:         chain[0],
	}, nil
}

// NewBundle builds a trust bundle from root certificates, dropping duplicates
// and keeping the order given so the PEM is stable across reloads.
func NewBundle(roots ...*x509.Certificate) *Bundle {
	b := &Bundle{Pool: x509.NewCertPool()}
	seen := map[string]bool{}
	for _, r := range roots {
		if r == nil || seen[string(r.Raw)] {
			continue
		}
		seen[string(r.Raw)] = true
		b.Roots = append(b.Roots, r)
		b.Pool.AddCert(r)
	}
	b.PEM = EncodeCertificates(b.Roots)
	return b
}

// PublicKeyEqual reports whether a certificate carries the public half of key.
func PublicKeyEqual(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return pub.(equaler).Equal(key.Public())
	}
	return false
}
