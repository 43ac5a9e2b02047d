// Package testenvoy is an SDS client that behaves like Envoy for tests: it
// opens one StreamSecrets stream per secret name over the unix socket and ACKs
// (or NACKs) every response.
package testenvoy

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// NodeID is the node the fake Envoy announces.
const NodeID = "sidecar~10.0.0.1~app-0.default~default.svc.cluster.local"

// Envoy is one connection to the SDS socket.
type Envoy struct {
	tb   testing.TB
	conn *grpc.ClientConn
}

// Dial connects to the SDS unix socket; the connection closes with tb.
func Dial(tb testing.TB, socket string) *Envoy {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &Envoy{tb: tb, conn: conn}
}

// Stream is one SDS subscription to a single secret name.
type Stream struct {
	tb   testing.TB
	Name string
	s    secretservice.SecretDiscoveryService_StreamSecretsClient
	// Msgs carries every response, in order; closed when the stream ends.
	Msgs chan *discovery.DiscoveryResponse
}

// Open subscribes to name, as Envoy does for each SDS secret it needs.
func (e *Envoy) Open(name string) *Stream {
	e.tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.tb.Cleanup(cancel)
	s, err := secretservice.NewSecretDiscoveryServiceClient(e.conn).StreamSecrets(ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	st := &Stream{tb: e.tb, Name: name, s: s, Msgs: make(chan *discovery.DiscoveryResponse, 16)}
	st.Send("", "")
	go func() {
		defer close(st.Msgs)
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			st.Msgs <- r
		}
	}()
	return st
}

// Send sends a request: the initial one, an ACK (version and nonce of the
// response) or, with SendNACK, a rejection.
func (s *Stream) Send(version, nonce string) {
	if err := s.s.Send(s.request(version, nonce)); err != nil {
		s.tb.Fatal(err)
	}
}

// SendNACK rejects the response with nonce.
func (s *Stream) SendNACK(nonce, message string) {
	r := s.request("", nonce)
	r.ErrorDetail = status.New(codes.InvalidArgument, message).Proto()
	if err := s.s.Send(r); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *Stream) request(version, nonce string) *discovery.DiscoveryRequest {
	return &discovery.DiscoveryRequest{
		Node:    &corev3.Node{Id: NodeID},
		TypeUrl: resourcev3.SecretType, ResourceNames: []string{s.Name},
		VersionInfo: version, ResponseNonce: nonce,
	}
}

// Next waits for a push, ACKs it and returns the secret it carried.
func (s *Stream) Next() *tlsv3.Secret {
	s.tb.Helper()
	r := s.Recv()
	s.Send(r.VersionInfo, r.Nonce)
	return s.Decode(r)
}

// Recv waits for a push without answering it.
func (s *Stream) Recv() *discovery.DiscoveryResponse {
	s.tb.Helper()
	select {
	case r, ok := <-s.Msgs:
		if !ok {
			s.tb.Fatalf("the %s stream closed", s.Name)
		}
		return r
	case <-time.After(10 * time.Second):
		s.tb.Fatalf("no push on the %s stream", s.Name)
		return nil
	}
}

// Decode returns the one secret of r, checking it is the one subscribed to.
func (s *Stream) Decode(r *discovery.DiscoveryResponse) *tlsv3.Secret {
	s.tb.Helper()
	if len(r.Resources) != 1 {
		s.tb.Fatalf("%s push has %d resources, want 1", s.Name, len(r.Resources))
	}
	var sec tlsv3.Secret
	if err := r.Resources[0].UnmarshalTo(&sec); err != nil {
		s.tb.Fatal(err)
	}
	if sec.Name != s.Name {
		s.tb.Fatalf("stream for %s got %s", s.Name, sec.Name)
	}
	return &sec
}
