package xdsproxy

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// grpcResources is the smallest config grpc-go's xDS client accepts for
// target xds:///svc: an API listener with an inline route to an EDS cluster.
func grpcResources(t *testing.T, backend int) map[resource.Type][]types.Resource {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	hcm := &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "svc-route",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "svc",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "svc-cluster"},
					}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})},
		}},
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {&listenerv3.Listener{
			Name:        "svc",
			ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)},
		}},
		resource.ClusterType: {&clusterv3.Cluster{
			Name:                 "svc-cluster",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
			LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		}},
		resource.EndpointType: {&endpointv3.ClusterLoadAssignment{
			ClusterName: "svc-cluster",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{Region: "local"},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address:       "127.0.0.1",
							PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(backend)},
						}}},
					}},
				}},
			}},
		}},
	}
}

func (cp *controlPlane) setSnapshot(version string, res map[resource.Type][]types.Resource) {
	cp.t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		cp.t.Fatal(err)
	}
}

// healthBackend is a gRPC server answering health checks; the test tells
// backends apart by the peer address of each call.
func healthBackend(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().(*net.TCPAddr).Port
}

// TestGRPCXDSClientThroughProxy drives the proxy with grpc-go's real xDS
// client: it resolves xds:///svc through the unix socket, keeps working
// while the control plane is down, and follows new endpoints after the
// control plane comes back — on the same ADS stream.
func TestGRPCXDSClientThroughProxy(t *testing.T) {
	e := newEnv(t)
	backendA, backendB := healthBackend(t), healthBackend(t)
	e.cp.setSnapshot("1", grpcResources(t, backendA))

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": "unix://%s", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q}
	}`, e.socket, nodeID)
	builder, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///svc", grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	callPort := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var p peer.Peer
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			return 0, err
		}
		return p.Addr.(*net.TCPAddr).Port, nil
	}

	if got, err := callPort(); err != nil || got != backendA {
		t.Fatalf("first call: port %d err %v, want backend A (%d)", got, err, backendA)
	}

	e.cp.stop()
	eventually(t, "proxy to notice the control plane is gone", func() bool {
		s := e.proxy.SyncStatus()
		return len(s.Streams) == 1 && !s.Streams[0].UpstreamConnected
	})
	if got, err := callPort(); err != nil || got != backendA {
		t.Fatalf("call while the control plane is down: port %d err %v, want the last config (backend A)", got, err)
	}

	e.cp.start()
	e.cp.setSnapshot("2", grpcResources(t, backendB))
	eventually(t, "client to follow the new endpoint", func() bool {
		got, err := callPort()
		return err == nil && got == backendB
	})
	if got := value(t, e.proxy.metrics.streamsTotal.WithLabelValues("sotw")); got != 1 {
		t.Errorf("downstream streams = %v, want 1: the control-plane restart must be invisible to the client", got)
	}
	// Every type the client subscribed to was replayed and ACKed. The client
	// ACKs after it applies a response, so the new endpoint can be in use
	// before the proxy has seen the ACKs.
	eventually(t, "every type ACKed at version 2", func() bool {
		for _, ts := range e.proxy.SyncStatus().Streams[0].Types {
			if ts.AckedVersion != "2" {
				return false
			}
		}
		return true
	})
}
