package server

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/meshlite/meshlite/sds/secret"
)

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// workloadSecret is the `default` resource: Envoy's tls_certificate.
func workloadSecret(w *secret.Workload) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: secret.ResourceDefault,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(w.CertChainPEM),
			PrivateKey:       inline(w.KeyPEM),
		}},
	}
}

// rootSecret is the `ROOTCA` resource: a validation context trusting the bundle.
func rootSecret(b *secret.Bundle) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: secret.ResourceRoot,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(b.PEM),
		}},
	}
}
