package kubetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
	"github.com/meshlite/meshlite/istiod-lite/registry/kube"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/test/netns"
)

const (
	xdsNS   = "xds-demo"
	xdsHost = "greeter." + xdsNS + ".svc.cluster.local"
)

type backend struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (b *backend) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{ServerId: b.name}, nil
}

// startBackend serves a gRPC test service named name on ip:port (port 0
// picks one) inside ns.
func startBackend(t *testing.T, ns *netns.NS, name, ip string, port int) int {
	t.Helper()
	lis := ns.Listen(t, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)), nil)
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &backend{name: name})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startIstiod runs the Kubernetes registry (through cfg) and ADS on a
// plaintext loopback port, as `istiod-lite discovery --registries Kubernetes` would.
func startIstiod(t *testing.T, cfg *rest.Config) (*kube.Registry, string) {
	t.Helper()
	kc, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kube.New(kube.Options{Client: kc, Debounce: 20 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(reg, server.Options{Logger: quietLogger()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := s.NewGRPCServer(nil)
	done := make(chan struct{}, 3)
	go func() { _ = reg.Run(ctx); done <- struct{}{} }()
	go func() { _ = server.Serve(ctx, gs, lis, time.Second); done <- struct{}{} }()
	go func() { _ = s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; <-done })
	eventually(t, 30*time.Second, "registry synced", func() error {
		if !reg.Ready() || reg.Current() == nil {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	return reg, lis.Addr().String()
}

// dialXDS connects a grpc-go xDS client: its xDS stream goes to addr on the
// host's loopback, its data-plane connections are dialled inside ns, where
// the pods' addresses live.
func dialXDS(t *testing.T, ns *netns.NS, addr, target string) testpb.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "sidecar~10.0.9.9~client-1.%s~%s.svc.cluster.local", "metadata": {"GENERATOR": "grpc", "NAMESPACE": %q}},
  "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%%s"
}`, addr, xdsNS, xdsNS, xdsNS)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", a)
			return err
		})
		return c, err
	}
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// reached calls n times and counts the backends that answered.
func reached(c testpb.TestServiceClient, n int) (map[string]int, error) {
	out := map[string]int{}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return out, err
		}
		out[resp.GetServerId()]++
	}
	return out, nil
}

// waitBackends polls until n calls reach exactly the backends in want.
func waitBackends(t *testing.T, c testpb.TestServiceClient, what string, want ...string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() error {
		got, err := reached(c, 40)
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("reached %v, want %v", got, want)
		}
		for _, w := range want {
			if got[w] == 0 {
				return fmt.Errorf("reached %v, want %v", got, want)
			}
		}
		return nil
	})
}

func greeterSlice(port int, ips ...string) *discoveryv1.EndpointSlice {
	name, p, ready := "grpc", int32(port), true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "greeter-abcde", Namespace: xdsNS, Labels: map[string]string{discoveryv1.LabelServiceName: "greeter"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}

// runningPod creates a pod and sets the status a kubelet would report.
func runningPod(t *testing.T, ns, name, ip string, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{ServiceAccountName: "greeter", Containers: []corev1.Container{{Name: "app", Image: "greeter:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip == "" {
		return p
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	p, err = cluster.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServicesEndpointsAndRoutingReachGRPCClients: a Service, its
// EndpointSlice and pods created with client-go reach a grpc-go xDS client;
// scaling the slice is followed; a VirtualService applied as a CRD shifts
// traffic; losing the API server keeps the mesh serving and reports not-ready.
func TestServicesEndpointsAndRoutingReachGRPCClients(t *testing.T) {
	c := requireCluster(t)
	ctx := context.Background()
	namespace(t, xdsNS, nil, "greeter")

	// Two backends on distinct pod addresses and one port, as two pods of one
	// Deployment would be. The API server refuses loopback endpoints, so the
	// pods' addresses live in a network namespace of the test.
	netns.RequireRoot(t, "ip")
	pods := netns.New(t)
	pods.MustExec(t, "ip", "addr", "add", "10.77.0.2/32", "dev", "lo")
	pods.MustExec(t, "ip", "addr", "add", "10.77.0.3/32", "dev", "lo")
	port := startBackend(t, pods, "v1", "10.77.0.2", 0)
	startBackend(t, pods, "v2", "10.77.0.3", port)
	runningPod(t, xdsNS, "greeter-v1", "10.77.0.2", map[string]string{"app": "greeter", "version": "v1"})
	runningPod(t, xdsNS, "greeter-v2", "10.77.0.3", map[string]string{"app": "greeter", "version": "v2"})
	_, err := c.Client.CoreV1().Services(xdsNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "greeter"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 7070, TargetPort: intstr.FromInt(port)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slices := c.Client.DiscoveryV1().EndpointSlices(xdsNS)
	if _, err := slices.Create(ctx, greeterSlice(port, "10.77.0.2", "10.77.0.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// istiod-lite reaches the API server through a proxy the test can cut.
	proxy := newCutProxy(t, c.URL[len("https://"):])
	cfg := rest.CopyConfig(c.Config)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = 5 * time.Second
	reg, addr := startIstiod(t, cfg)
	client := dialXDS(t, pods, addr, "xds:///"+xdsHost+":7070")
	waitBackends(t, client, "both pods reached through the Service", "v1", "v2")

	// Scale down: the slice loses the v2 pod.
	s, err := slices.Get(ctx, "greeter-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints = greeterSlice(port, "10.77.0.2").Endpoints
	if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBackends(t, client, "scaled-down slice followed", "v1")
	// Scale up again.
	s, _ = slices.Get(ctx, "greeter-abcde", metav1.GetOptions{})
	s.Endpoints = greeterSlice(port, "10.77.0.2", "10.77.0.3").Endpoints
	if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBackends(t, client, "scaled-up slice followed", "v1", "v2")

	// A VirtualService and DestinationRule as CRDs: all traffic to v2. The
	// subsets select by pod labels, which only the pods carry.
	nw := istio.NetworkingV1()
	if _, err := nw.DestinationRules(xdsNS).Create(ctx, &networkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter"},
		Spec: networking.DestinationRule{Host: xdsHost, Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nw.VirtualServices(xdsNS).Create(ctx, &networkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter"},
		Spec: networking.VirtualService{Hosts: []string{xdsHost}, Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: xdsHost, Subset: "v2"}, Weight: 100}},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBackends(t, client, "VirtualService shifted all traffic to v2", "v2")

	// Lose the API server: not ready, same snapshot, clients keep working.
	before := reg.Current()
	proxy.Cut()
	eventually(t, 30*time.Second, "registry reports not ready without the API server", func() error {
		if reg.Ready() {
			return fmt.Errorf("still ready")
		}
		return nil
	})
	if reg.Current() != before {
		t.Errorf("snapshot changed while the API server was unreachable: %s -> %s", before.Version, reg.Current().Version)
	}
	if got, err := reached(client, 10); err != nil || got["v2"] != 10 {
		t.Errorf("without the API server: reached %v (err %v); want the last config still serving", got, err)
	}
	proxy.Restore()
	eventually(t, 30*time.Second, "registry ready again", func() error {
		if !reg.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	// Changes made while it was away are picked up.
	if err := nw.VirtualServices(xdsNS).Delete(ctx, "greeter", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBackends(t, client, "VirtualService deletion followed after reconnecting", "v1", "v2")
}
