// Package peerid reads the SPIFFE ID a peer proved in its mTLS handshake, so
// that each example workload can check who it is talking to.
package peerid

import (
	"errors"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNoTLS means the connection was not mTLS (plaintext fallback), so there is no identity.
var ErrNoTLS = errors.New("peer did not present a TLS certificate (is mTLS configured?)")

// FromPeer returns the first spiffe:// URI SAN of the peer's leaf certificate.
func FromPeer(p *peer.Peer) (string, error) {
	if p == nil || p.AuthInfo == nil {
		return "", ErrNoTLS
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", ErrNoTLS
	}
	for _, u := range info.State.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String(), nil
		}
	}
	return "", errors.New("peer certificate has no spiffe:// URI SAN")
}
