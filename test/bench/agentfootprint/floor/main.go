// Command floor is a reference point for the agent's memory, not part of
// meshlite: a process that links only the libraries a proxyless pilot-agent
// cannot do without (gRPC, the Envoy discovery and SDS protos through
// go-control-plane, Istio's CA protos, the Prometheus client) and does
// nothing with them but serve an empty gRPC server on a unix socket and an
// empty /metrics. agentfootprint -floor builds it like the agent (static,
// stripped) and reads its RSS after the same settle time: no agent built on
// these libraries can be smaller. It blocks until SIGTERM.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	securityapi "istio.io/api/security/v1alpha1"
)

// Keep the message types linked, as the agent's use of them does.
var linked = []any{&tlsv3.Secret{}, &discovery.DiscoveryRequest{}, &securityapi.IstioCertificateRequest{}}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floor SOCKET HTTP-ADDR")
		os.Exit(2)
	}
	_ = linked
	lis, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(g, secretv3.UnimplementedSecretDiscoveryServiceServer{})
	discovery.RegisterAggregatedDiscoveryServiceServer(g, discovery.UnimplementedAggregatedDiscoveryServiceServer{})
	go func() { _ = g.Serve(lis) }()
	hl, err := net.Listen("tcp", os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(hl, promhttp.Handler()) }()
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	g.Stop()
}
