package cache_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/caclient"
	"github.com/meshlite/meshlite/sds/internal/testca"
	"github.com/meshlite/meshlite/sds/secret"
)

// BenchmarkStartToFirstCert measures an agent's time from starting the secret
// cache (new CA connection, TLS handshake, key generation, CSR, signing,
// verification) to holding its first certificate, against an in-process CA
// over real gRPC+TLS on loopback. Reported per key type as ms/first-cert.
func BenchmarkStartToFirstCert(b *testing.B) {
	for _, kt := range []struct {
		name string
		opts func(*cache.Options)
	}{
		{"ECDSA-P256", func(*cache.Options) {}},
		{"RSA-2048", func(o *cache.Options) { o.KeyAlgorithm = cache.KeyRSA }},
	} {
		b.Run(kt.name, func(b *testing.B) {
			ca := testca.New(b)
			dir := b.TempDir()
			tok := filepath.Join(dir, "istio-token")
			rootFile := filepath.Join(dir, "root-cert.pem")
			if err := os.WriteFile(tok, []byte("test-token"), 0o600); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(rootFile, ca.FirstRootPEM(), 0o644); err != nil {
				b.Fatal(err)
			}
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			b.ResetTimer()
			for b.Loop() {
				var c *cache.Cache
				cl, err := caclient.New(caclient.Options{
					Addr: ca.Addr(), ServerName: testca.ServerName, TokenPath: tok, Logger: quiet,
					Roots:             func() *x509.CertPool { return c.Roots() },
					ClientCertificate: func() *tls.Certificate { return c.ClientCertificate() },
				})
				if err != nil {
					b.Fatal(err)
				}
				o := cache.Options{Identity: testID, CA: cl, RootCertFile: rootFile, Logger: quiet}
				kt.opts(&o)
				c, err = cache.New(o)
				if err != nil {
					b.Fatal(err)
				}
				ch, unsub := c.Subscribe(secret.ResourceDefault)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = c.Run(ctx) }()
				<-ch
				cancel()
				<-done
				unsub()
				cl.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/first-cert")
		})
	}
}
