package ca_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

const sa = "spiffe://cluster.local/ns/default/sa/app"

func TestParseCSR(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good := csrPEM(t, mustKey(t), []string{sa})

	tests := []struct {
		name       string
		csr        string
		wantReason string
		wantMsg    string
	}{
		{"valid P-256", good, "", ""},
		{"valid P-384", csrPEM(t, p384, []string{sa}), "", ""},
		{"valid RSA 2048", csrPEM(t, rsa2048, []string{sa}), "", ""},
		{"empty", "", ca.ReasonMalformedCSR, "csr is empty"},
		{"not PEM", "hello", ca.ReasonMalformedCSR, "csr is not PEM"},
		{"wrong PEM type", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), ca.ReasonMalformedCSR, `type "CERTIFICATE"`},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 1, 2}})), ca.ReasonMalformedCSR, "cannot be parsed"},
		{"bad signature", tamperSignature(t, good), ca.ReasonBadSignature, "signature does not verify"},
		{"RSA 1024", csrPEM(t, rsa1024, []string{sa}), ca.ReasonWeakKey, "RSA 1024 bits"},
		{"P-521", csrPEM(t, p521, []string{sa}), ca.ReasonWeakKey, "curve P-521"},
		{"Ed25519", csrPEM(t, edKey, []string{sa}), ca.ReasonWeakKey, "Ed25519"},
		{"no SAN", csrPEM(t, mustKey(t), nil), ca.ReasonNoSAN, "no subject alternative name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.ParseCSR(tc.csr)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("ParseCSR: %v", err)
				}
				return
			}
			var re *ca.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ParseCSR error = %v, want a RequestError", err)
			}
			if re.Code != codes.InvalidArgument || re.Reason != tc.wantReason || !strings.Contains(re.Msg, tc.wantMsg) {
				t.Errorf("got %s/%s %q, want InvalidArgument/%s containing %q", re.Code, re.Reason, re.Msg, tc.wantReason, tc.wantMsg)
			}
		})
	}
}

// tamperSignature flips a bit in the last byte of the CSR, which is in its signature.
func tamperSignature(t *testing.T, csr string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(csr))
	der := append([]byte(nil), b.Bytes...)
	der[len(der)-1] ^= 0x01
	return string(pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: der}))
}
