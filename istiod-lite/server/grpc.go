package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// NewGRPCServer returns a gRPC server with ADS (and the per-type xDS services)
// registered. Callers may register more services (the CA) before serving it.
// tlsConfig nil means plaintext. There is no connection rate limit: a fleet
// reconnecting at once is admitted at once.
func (s *Server) NewGRPCServer(tlsConfig *tls.Config, opts ...grpc.ServerOption) *grpc.Server {
	base := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.MaxRecvMsgSize(16 << 20),
		// A push to a thousand proxies has all their (pooled) buffers in
		// flight at once: 8 KiB rather than 32 KiB saves tens of MiB of RSS
		// per thousand proxies; xDS messages are small, larger ones just take
		// more than one write.
		grpc.WriteBufferSize(8 << 10),
		// xDS connections are idle between pushes: return each write buffer
		// to the pool after a flush instead of holding one per connection
		// (about 8 MiB per thousand proxies at rest).
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(8 << 10),
		// Static flow-control windows turn off gRPC's BDP estimation, which
		// answers the first data a client sends after each ping round trip
		// with a new PING: with xDS that is every ACK, so each push cost every
		// connection an extra write and read (the ping and its ack) on both
		// ends. BDP growth only helps peers that send bulk data to the server,
		// and xDS requests are small; 1 MiB leaves room for large ones.
		grpc.StaticStreamWindowSize(1 << 20),
		grpc.StaticConnWindowSize(1 << 20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
	if tlsConfig != nil {
		base = append(base, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	gs := grpc.NewServer(append(base, opts...)...)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, s.xds)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	return gs
}

// Serve runs gs on lis until ctx ends, then stops it gracefully (bounded by
// grace, after which open streams are cut: xDS streams never end on their own).
func Serve(ctx context.Context, gs *grpc.Server, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server on %s stopped: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		gs.Stop()
	}
	return nil
}
