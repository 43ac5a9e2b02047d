package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

const (
	greeterHost   = "greeter.demo.svc.cluster.local"
	greeterTarget = "xds:///greeter.demo.svc.cluster.local:7070"
	clientNodeID  = "sidecar~10.0.9.9~client-1.demo~demo.svc.cluster.local"
)

// backend is a plain gRPC server that answers UnaryCall with its name.
type backend struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (b *backend) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{ServerId: b.name}, nil
}

func startBackend(t *testing.T, name string) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &backend{name: name})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

// startServer serves ADS for reg on an ephemeral plaintext port.
func startServer(t *testing.T, reg model.Registry) (*Server, string) {
	t.Helper()
	s := New(reg, quiet)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := s.NewGRPCServer(nil)
	done := make(chan struct{}, 2)
	go func() { _ = Serve(ctx, gs, lis, time.Second); done <- struct{}{} }()
	go func() { _ = s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return s, lis.Addr().String()
}

// grpcBootstrap is the bootstrap Istio's agent writes for proxyless gRPC.
func grpcBootstrap(addr, nodeID string) []byte {
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "demo"}},
  "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%%s"
}`, addr, nodeID))
}

func dialXDS(t *testing.T, addr, nodeID string) testpb.TestServiceClient {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(grpcBootstrap(addr, nodeID))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(greeterTarget, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func greeterService(eps ...model.Endpoint) *model.Service {
	return &model.Service{
		Hostname: greeterHost, Name: "greeter", Namespace: "demo", Resolution: model.ResolutionStatic,
		Ports:     []model.Port{{Name: "grpc", Port: 7070, Protocol: model.ProtocolGRPC}},
		Endpoints: eps,
	}
}

func localEndpoint(port uint32, version string) model.Endpoint {
	return model.Endpoint{
		Address: "127.0.0.1", Ports: map[string]uint32{"grpc": port}, Healthy: true,
		Labels: map[string]string{"app": "greeter", "version": version}, Namespace: "demo", ServiceAccount: "greeter",
	}
}

func mustYAML[T any](t *testing.T, y string) *T {
	t.Helper()
	o := new(T)
	if err := yaml.Unmarshal([]byte(y), o); err != nil {
		t.Fatal(err)
	}
	return o
}

const weightedVS = `
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  http:
  - route:
    - destination: {host: greeter.demo.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: greeter.demo.svc.cluster.local, subset: v2}
      weight: 20
`

const subsetsDR = `
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func call(ctx context.Context, t *testing.T, c testpb.TestServiceClient) string {
	t.Helper()
	id, err := tryCall(ctx, c)
	if err != nil {
		t.Fatalf("RPC to %s failed: %v", greeterTarget, err)
	}
	return id
}

func tryCall(ctx context.Context, c testpb.TestServiceClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
	return resp.GetServerId(), err
}

// TestProxylessGRPCClient drives a real grpc-go xDS client: weighted routing
// between two backends, then an endpoint change followed without a restart.
func TestProxylessGRPCClient(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	reg := newStaticRegistry(&model.Snapshot{
		Version:          "1",
		Services:         []*model.Service{greeterService(localEndpoint(a, "v1"), localEndpoint(b, "v2"))},
		VirtualServices:  []*networkingv1.VirtualService{mustYAML[networkingv1.VirtualService](t, weightedVS)},
		DestinationRules: []*networkingv1.DestinationRule{mustYAML[networkingv1.DestinationRule](t, subsetsDR)},
	})
	s, addr := startServer(t, reg)
	client := dialXDS(t, addr, clientNodeID)
	ctx := context.Background()

	const n = 500
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[call(ctx, t, client)]++
	}
	if got := counts["a"]; got < 375 || got > 425 {
		t.Errorf("80/20 VirtualService: backend a got %d of %d RPCs, want 400±25 (counts %v)", got, n, counts)
	}

	// Drop backend a's endpoint and the routing rules: the client must follow.
	reg.Set(&model.Snapshot{Version: "2", Services: []*model.Service{greeterService(localEndpoint(b, "v2"))}})
	deadline := time.Now().Add(15 * time.Second)
	// grpc-go may fail an RPC that races its own switch to a newly referenced
	// cluster ("unknown cluster selected"); applications retry those.
	var lastErr error
	for streak := 0; streak < 20; {
		if time.Now().After(deadline) {
			t.Fatalf("client still reaches backend a 15s after its endpoint was removed (last error: %v)", lastErr)
		}
		id, err := tryCall(ctx, client)
		if err != nil {
			lastErr = err
			streak = 0
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if id == "b" {
			streak++
		} else {
			streak = 0
		}
	}

	// Every type the client was sent is ACKed, and nothing was NACKed.
	waitFor(t, func() error {
		ps := s.Proxies()
		if len(ps) != 1 || ps[0].ID != clientNodeID {
			return fmt.Errorf("proxies = %+v, want only %s", ps, clientNodeID)
		}
		for typ, ts := range ps[0].Types {
			if ts.Sent == "" || ts.Sent != ts.Acked || ts.LastNack != nil {
				return fmt.Errorf("type %s: %+v, want sent == acked and no NACK", typ, ts)
			}
		}
		if len(ps[0].Types) != 4 {
			return fmt.Errorf("types %v, want lds, rds, cds, eds", ps[0].Types)
		}
		return nil
	})
}

// TestProxylessGRPCServer checks grpc-go's xDS server accepts the inbound
// listener istiod-lite generates for it and starts serving.
func TestProxylessGRPCServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(lis.Addr().(*net.TCPAddr).Port)
	reg := newStaticRegistry(&model.Snapshot{Version: "1", Services: []*model.Service{greeterService(localEndpoint(port, "v1"))}})
	_, addr := startServer(t, reg)

	serving := make(chan error, 4)
	nodeID := "sidecar~127.0.0.1~greeter-0.demo~demo.svc.cluster.local"
	gs, err := xds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		xds.BootstrapContentsForTesting(grpcBootstrap(addr, nodeID)),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == 1 { // connectivity.ServingModeServing
				serving <- nil
			} else if args.Err != nil {
				serving <- args.Err
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	testpb.RegisterTestServiceServer(gs, &backend{name: "xds-server"})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	select {
	case err := <-serving:
		if err != nil {
			t.Fatalf("xDS server rejected its inbound listener: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("xDS server did not enter serving mode within 15s")
	}
	if got := call(context.Background(), t, dialXDS(t, addr, clientNodeID)); got != "xds-server" {
		t.Fatalf("RPC answered by %q, want xds-server", got)
	}
}

func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
