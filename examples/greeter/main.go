// Command greeter is the demo's server workload: a proxyless gRPC server
// (grpc-go's xDS server) that answers grpc.testing.TestService/UnaryCall with
// its version, and the caller's SPIFFE ID as it saw it over mTLS.
//
// It is configured the way an Istio proxyless app is: GRPC_XDS_BOOTSTRAP
// names the bootstrap the agent wrote, and TLS comes from the xDS server's
// listener config with the agent's certificate files.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/meshlite/meshlite/examples/internal/peerid"
)

type server struct {
	testpb.UnimplementedTestServiceServer
	version     string
	allowedPeer string
}

func (s *server) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	p, _ := peer.FromContext(ctx)
	id, err := peerid.FromPeer(p)
	if s.allowedPeer != "" {
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "greeter: %v", err)
		}
		if id != s.allowedPeer {
			return nil, status.Errorf(codes.PermissionDenied, "greeter: caller %s is not %s", id, s.allowedPeer)
		}
	}
	return &testpb.SimpleResponse{ServerId: "greeter-" + s.version, Hostname: s.version, Username: id}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.11:7070", "address to serve on; must match the workload's endpoint in the mesh config")
	version := flag.String("version", "v1", "version label reported to callers")
	useXDS := flag.Bool("xds", os.Getenv("GRPC_XDS_BOOTSTRAP") != "", "serve with grpc-go's xDS server (needs GRPC_XDS_BOOTSTRAP)")
	allowedPeer := flag.String("allowed-peer", "", "if set, refuse callers whose SPIFFE ID differs (e.g. spiffe://cluster.local/ns/demo/sa/client)")
	flag.Parse()

	if err := run(*addr, *version, *useXDS, *allowedPeer); err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

func run(addr, version string, useXDS bool, allowedPeer string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("app", "greeter", "version", version)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	var srv interface {
		grpc.ServiceRegistrar
		Serve(net.Listener) error
		GracefulStop()
	}
	if useXDS {
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			return fmt.Errorf("xDS server credentials: %w", err)
		}
		xs, err := xds.NewGRPCServer(grpc.Creds(creds), xds.ServingModeCallback(func(a net.Addr, args xds.ServingModeChangeArgs) {
			log.Info("serving mode changed", "addr", a.String(), "mode", args.Mode.String(), "err", args.Err)
		}))
		if err != nil {
			return fmt.Errorf("xDS server (is GRPC_XDS_BOOTSTRAP set and valid?): %w", err)
		}
		srv = xs
	} else {
		srv = grpc.NewServer()
	}
	testpb.RegisterTestServiceServer(srv, &server{version: version, allowedPeer: allowedPeer})
	healthpb.RegisterHealthServer(srv, health.NewServer())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.GracefulStop() }()
	log.Info("serving", "addr", lis.Addr().String(), "xds", useXDS)
	return srv.Serve(lis)
}
