package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

// BenchmarkSignParts splits one issuance into its CPU costs, without gRPC,
// to show where the CA spends time relative to one raw ecdsa.Sign.
func BenchmarkSignParts(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("meshlite"))
	b.Run("raw-ecdsa-sign", func(b *testing.B) {
		for b.Loop() {
			ecdsa.SignASN1(rand.Reader, key, digest[:])
		}
	})
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	b.Run("raw-ecdsa-verify", func(b *testing.B) {
		for b.Loop() {
			ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig)
		}
	})
	csr := csrPEM(b, mustKey(b), []string{sa})
	b.Run("parse-csr", func(b *testing.B) {
		for b.Loop() {
			if _, err := ca.ParseCSR(csr); err != nil {
				b.Fatal(err)
			}
		}
	})
	a, err := ca.New(ca.Options{Dir: b.TempDir(), Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	req := ca.LeafRequest{PublicKey: mustKey(b).Public(), URIs: spiffeURL(b, sa), TTL: time.Hour}
	b.Run("authority-sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.Sign(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
