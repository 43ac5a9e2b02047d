package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"
)

// IstiodSAN is the name agents verify istiod's serving certificate against
// (ISTIOD_SAN), and the first SAN of the certificate ServerTLSConfig serves.
const IstiodSAN = "istiod.istio-system.svc"

// DefaultServingCertTTL is the lifetime of istiod-lite's own serving cert,
// which is renewed at half of it.
const DefaultServingCertTTL = 24 * time.Hour

// ServerTLSConfig returns the TLS config of istiod-lite's :15012 server. Its
// certificate is issued by this CA for istiod.istio-system.svc and extraSANs
// (DNS names or IP addresses), renewed at half its lifetime and when the
// signing CA changes. Client certificates are requested but not required, and
// verified against the current trust bundle, so that an agent can renew with
// its workload certificate while first-time callers use a bearer token.
func (a *Authority) ServerTLSConfig(extraSANs ...string) (*tls.Config, error) {
	sc := &servingCert{a: a, dns: []string{IstiodSAN}}
	for _, s := range extraSANs {
		if ip := net.ParseIP(s); ip != nil {
			sc.ips = append(sc.ips, ip)
		} else if s != "" && s != IstiodSAN {
			sc.dns = append(sc.dns, s)
		}
	}
	if _, err := sc.get(); err != nil { // fail at startup, not at the first handshake
		return nil, err
	}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
		ClientAuth:     tls.VerifyClientCertIfGiven,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return sc.get() },
		Time:           a.opts.Clock.Now,
	}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = a.TrustPool() // the bundle of this moment, across rotations
		return c, nil
	}
	return cfg, nil
}

type servingCert struct {
	a   *Authority
	dns []string
	ips []net.IP

	mu      sync.Mutex
	cert    *tls.Certificate
	signer  *x509.Certificate // the CA cert that issued cert
	renewAt time.Time
}

func (s *servingCert) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.a.opts.Clock.Now()
	current := s.a.cur.Load().m.cert
	if s.cert != nil && now.Before(s.renewAt) && s.signer.Equal(current) {
		return s.cert, nil
	}
	cert, err := s.issue(now, current)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			s.a.log.Warn("renewing istiod serving certificate failed; serving the current one", "error", err, "notAfter", s.cert.Leaf.NotAfter)
			return s.cert, nil
		}
		return nil, err
	}
	return cert, nil
}

func (s *servingCert) issue(now time.Time, signer *x509.Certificate) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generating serving key: %w", err)
	}
	issued, err := s.a.Sign(LeafRequest{PublicKey: key.Public(), DNSNames: s.dns, IPAddresses: s.ips, TTL: s.a.opts.ServingCertTTL})
	if err != nil {
		return nil, fmt.Errorf("ca: issuing istiod serving certificate: %w", err)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: issued.Leaf}
	for _, c := range issued.Chain[:len(issued.Chain)-1] { // peers have the root
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	s.cert, s.signer = tc, signer
	s.renewAt = now.Add(issued.Leaf.NotAfter.Sub(now) / 2)
	s.a.log.Info("issued istiod serving certificate", "dns", s.dns, "ips", s.ips,
		"serial", fmt.Sprintf("%x", issued.Leaf.SerialNumber), "notAfter", issued.Leaf.NotAfter.UTC())
	return tc, nil
}
