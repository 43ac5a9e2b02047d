package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"google.golang.org/grpc/codes"
)

// Reasons a request is denied; the values label the denied-requests metric.
const (
	ReasonUnauthenticated = "unauthenticated"
	ReasonMalformedCSR    = "malformed_csr"
	ReasonBadSignature    = "bad_signature"
	ReasonWeakKey         = "weak_key"
	ReasonNoSAN           = "no_san"
	ReasonTTL             = "invalid_ttl"
	ReasonForbiddenSAN    = "forbidden_san"
	ReasonSignError       = "sign_error"
)

// RequestError is a refusal with the gRPC code and metric reason it maps to.
type RequestError struct {
	Code   codes.Code
	Reason string
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

func invalid(reason, format string, args ...any) *RequestError {
	return &RequestError{Code: codes.InvalidArgument, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// maxRSABits bounds the work a caller can make the CA do on one request.
const maxRSABits = 8192

// ParseCSR decodes a PEM certificate request and checks what the CA needs
// before it can sign: one well-formed request, a valid self-signature, an
// acceptable key and at least one SAN.
func ParseCSR(csrPEM string) (*x509.CertificateRequest, error) {
	if csrPEM == "" {
		return nil, invalid(ReasonMalformedCSR, "csr is empty: send a PEM CERTIFICATE REQUEST")
	}
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return nil, invalid(ReasonMalformedCSR, "csr is not PEM: expected a -----BEGIN CERTIFICATE REQUEST----- block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, invalid(ReasonMalformedCSR, "csr PEM block has type %q, want CERTIFICATE REQUEST", block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalid(ReasonMalformedCSR, "csr cannot be parsed: %v", err)
	}
	if err := checkWorkloadKey(csr); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalid(ReasonBadSignature, "csr signature does not verify with its own public key (%v): sign the CSR with the key it carries", err)
	}
	if len(csr.URIs)+len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) == 0 {
		return nil, invalid(ReasonNoSAN, "csr has no subject alternative name: add the workload's SPIFFE ID spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> as a URI SAN")
	}
	return csr, nil
}

func checkWorkloadKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return invalid(ReasonWeakKey, "csr key uses ECDSA curve %s, which is not supported: use P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > maxRSABits {
			return invalid(ReasonWeakKey, "csr key is RSA %d bits: use between 2048 and %d bits", n, maxRSABits)
		}
	case ed25519.PublicKey:
		return invalid(ReasonWeakKey, "csr key is Ed25519, which is not supported: use ECDSA P-256/P-384 or RSA 2048+")
	default:
		return invalid(ReasonWeakKey, "csr key algorithm %s is not supported: use ECDSA P-256/P-384 or RSA 2048+", csr.PublicKeyAlgorithm)
	}
	return nil
}
