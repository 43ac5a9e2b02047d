package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient/kubeclienttest"
	"github.com/meshlite/meshlite/istiod-lite/model"
)

func ns(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: "1"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10",
			Selector:  map[string]string{"app": name},
			Ports:     []corev1.ServicePort{{Name: "grpc", Port: 7070}},
		},
	}
}

func slice(ns, svc, name string, ready bool, ips ...string) *discoveryv1.EndpointSlice {
	port, pname := int32(7070), "grpc"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port}},
	}
	for _, ip := range ips {
		r := ready
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &r}})
	}
	return s
}

func pod(ns, name, ip, sa string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{ServiceAccountName: sa},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func istioFake(objs ...any) *istiofake.Clientset {
	cs := istiofake.NewSimpleClientset()
	for _, o := range objs {
		switch v := o.(type) {
		case *networkingv1.VirtualService:
			_ = cs.Tracker().Add(v)
		case *networkingv1.DestinationRule:
			_ = cs.Tracker().Add(v)
		}
	}
	cs.Resources = []*metav1.APIResourceList{{
		GroupVersion: "networking.istio.io/v1",
		APIResources: []metav1.APIResource{{Name: "virtualservices"}, {Name: "destinationrules"}},
	}}
	return cs
}

func startRegistry(t *testing.T, opts Options) *Registry {
	t.Helper()
	opts.Debounce = 5 * time.Millisecond
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// waitSnapshot polls until check accepts the current snapshot.
func waitSnapshot(t *testing.T, r *Registry, check func(*model.Snapshot) error) *model.Snapshot {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last error = errors.New("no snapshot yet")
	for time.Now().Before(deadline) {
		if s := r.Current(); s != nil {
			if last = check(s); last == nil {
				return s
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("snapshot never matched: %v", last)
	return nil
}

func findService(s *model.Snapshot, host string) *model.Service {
	for _, svc := range s.Services {
		if svc.Hostname == host {
			return svc
		}
	}
	return nil
}

const greeterHost = "greeter.demo.svc.cluster.local"

func TestRegistryBuildsSnapshotFromInformers(t *testing.T) {
	kc := fake.NewClientset(
		ns("demo", nil),
		service("demo", "greeter"),
		slice("demo", "greeter", "greeter-abc", true, "10.1.0.1", "10.1.0.2"),
		pod("demo", "greeter-1", "10.1.0.1", "greeter", map[string]string{"app": "greeter", "version": "v1"}),
	)
	vs := &networkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: "demo", ResourceVersion: "1"},
		Spec: networking.VirtualService{Hosts: []string{greeterHost}, Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: greeterHost}}},
		}}},
	}
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, istioFake(vs))})
	snap := waitSnapshot(t, r, func(s *model.Snapshot) error {
		if len(s.VirtualServices) != 1 {
			return fmt.Errorf("%d VirtualServices", len(s.VirtualServices))
		}
		return nil
	})
	if !r.Ready() {
		t.Error("Ready() = false after the caches synced")
	}
	svc := findService(snap, greeterHost)
	if svc == nil {
		t.Fatalf("service %s missing from snapshot: %+v", greeterHost, snap.Services)
	}
	if len(svc.Endpoints) != 2 {
		t.Fatalf("endpoints = %+v, want 2", svc.Endpoints)
	}
	ep := svc.Endpoints[0]
	if ep.Address != "10.1.0.1" || ep.ServiceAccount != "greeter" || ep.Labels["version"] != "v1" || !ep.Healthy || ep.Ports["grpc"] != 7070 {
		t.Errorf("endpoint with pod = %+v; want the pod's labels and service account", ep)
	}
	if snap.Objects[0].Source.File != SourceKubernetes {
		t.Errorf("object source = %q, want %q", snap.Objects[0].Source.File, SourceKubernetes)
	}

	// Scaling: the slice gains an endpoint and one becomes unready.
	ctx := context.Background()
	s2 := slice("demo", "greeter", "greeter-abc", true, "10.1.0.1", "10.1.0.2", "10.1.0.3")
	f := false
	s2.Endpoints[1].Conditions.Ready = &f
	if _, err := kc.DiscoveryV1().EndpointSlices("demo").Update(ctx, s2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, r, func(s *model.Snapshot) error {
		svc := findService(s, greeterHost)
		if svc == nil || len(svc.Endpoints) != 3 || svc.Endpoints[1].Healthy {
			return fmt.Errorf("endpoints %+v", svc)
		}
		return nil
	})

	// Deleting the service removes it; the VirtualService stays.
	if err := kc.CoreV1().Services("demo").Delete(ctx, "greeter", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, r, func(s *model.Snapshot) error {
		if findService(s, greeterHost) != nil {
			return errors.New("service still present")
		}
		return nil
	})
}

func TestRegistrySkipsInvalidConfig(t *testing.T) {
	kc := fake.NewClientset(ns("demo", nil))
	bad := &networkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "demo", ResourceVersion: "1"},
		Spec: networking.VirtualService{Hosts: []string{greeterHost}, Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: greeterHost}, Weight: 300}},
		}}},
	}
	good := &networkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "good", Namespace: "demo", ResourceVersion: "1"},
		Spec:       networking.DestinationRule{Host: greeterHost},
	}
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, istioFake(bad, good))})
	snap := waitSnapshot(t, r, func(s *model.Snapshot) error { return nil })
	if len(snap.VirtualServices) != 0 || len(snap.DestinationRules) != 1 {
		t.Errorf("got %d VirtualServices and %d DestinationRules; want the invalid VirtualService skipped and the DestinationRule served",
			len(snap.VirtualServices), len(snap.DestinationRules))
	}
}

func TestRegistryDiscoverySelectors(t *testing.T) {
	kc := fake.NewClientset(
		ns("demo", map[string]string{"mesh": "on"}),
		ns("other", nil),
		service("demo", "greeter"),
		service("other", "hidden"),
	)
	mesh := &meshv1alpha1.MeshConfig{
		RootNamespace:      "istio-system",
		DiscoverySelectors: []*meshv1alpha1.LabelSelector{{MatchLabels: map[string]string{"mesh": "on"}}},
	}
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, nil), Mesh: mesh})
	snap := waitSnapshot(t, r, func(s *model.Snapshot) error { return nil })
	if findService(snap, greeterHost) == nil || findService(snap, "hidden.other.svc.cluster.local") != nil {
		t.Fatalf("services = %v; want only the selected namespace's", hosts(snap))
	}
	// Labelling the other namespace brings its services in.
	if _, err := kc.CoreV1().Namespaces().Update(context.Background(), ns("other", map[string]string{"mesh": "on"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, r, func(s *model.Snapshot) error {
		if findService(s, "hidden.other.svc.cluster.local") == nil {
			return fmt.Errorf("services %v", hosts(s))
		}
		return nil
	})
}

func TestNewRejectsBadSelector(t *testing.T) {
	mesh := &meshv1alpha1.MeshConfig{DiscoverySelectors: []*meshv1alpha1.LabelSelector{{
		MatchExpressions: []*meshv1alpha1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}},
	}}}
	if _, err := New(Options{Client: kubeclienttest.FromClientsets(fake.NewClientset(), nil), Mesh: mesh}); err == nil {
		t.Fatal("New accepted an invalid discoverySelectors operator")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New accepted no client")
	}
}

func TestBenignWatchError(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{apierrors.NewResourceExpired("too old"), true},
		{apierrors.NewGone("gone"), true},
		{errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
		{apierrors.NewForbidden(gr, "", errors.New("no")), false},
	} {
		if got := benignWatchError(tc.err); got != tc.want {
			t.Errorf("benignWatchError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func hosts(s *model.Snapshot) []string {
	var out []string
	for _, svc := range s.Services {
		out = append(out, svc.Hostname)
	}
	return out
}

func TestLostAPIServerKeepsSnapshotAndReportsNotReady(t *testing.T) {
	kc := fake.NewClientset(ns("demo", nil), service("demo", "greeter"))
	var down atomic.Bool
	kc.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, nil), Clock: clk, ProbeInterval: time.Second})
	before := waitSnapshot(t, r, func(*model.Snapshot) error { return nil })
	waitFor(t, "ready", r.Ready)

	down.Store(true)
	r.onWatchError("pods", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"))
	if r.Ready() || r.Current() != before || !strings.Contains(r.LastWatchError(), "connection refused") {
		t.Fatalf("after a watch failure: ready %v, snapshot kept %v, error %q; want not ready with the last snapshot", r.Ready(), r.Current() == before, r.LastWatchError())
	}
	clk.Step(time.Second) // the probe fails: still not ready
	clk.Step(time.Second)
	if r.Ready() {
		t.Fatal("ready again while the API server does not answer")
	}
	down.Store(false)
	waitFor(t, "ready after the API server answers", func() bool {
		clk.Step(time.Second)
		return r.Ready()
	})
	if r.LastWatchError() != "" {
		t.Errorf("LastWatchError = %q while ready", r.LastWatchError())
	}
	// An expired watch is routine and changes nothing.
	r.onWatchError("pods", apierrors.NewResourceExpired("too old resource version"))
	if !r.Ready() {
		t.Error("an expired watch made the registry not ready")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPublishRootCert(t *testing.T) {
	kc := fake.NewClientset(ns("demo", map[string]string{"mesh": "on"}), ns("other", nil), ns("istio-system", nil))
	mesh := &meshv1alpha1.MeshConfig{
		RootNamespace:      "istio-system",
		DiscoverySelectors: []*meshv1alpha1.LabelSelector{{MatchLabels: map[string]string{"mesh": "on"}}},
	}
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, nil), Mesh: mesh})
	waitFor(t, "synced", r.Ready)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bundle atomic.Value
	bundle.Store([]byte("ROOT-1"))
	rotated := make(chan struct{}, 1)
	go r.PublishRootCert(ctx, func() []byte { return bundle.Load().([]byte) }, func() <-chan struct{} { return rotated }, time.Hour)
	get := func(ns string) string {
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, RootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data[RootCertKey]
	}
	waitFor(t, "root cert published in the mesh namespaces", func() bool { return get("demo") == "ROOT-1" && get("istio-system") == "ROOT-1" })
	if get("other") != "" {
		t.Error("root cert published in a namespace outside discoverySelectors")
	}
	bundle.Store([]byte("ROOT-2"))
	rotated <- struct{}{}
	waitFor(t, "rotated root published", func() bool { return get("demo") == "ROOT-2" })
}

func TestMeshConfigMapSelectsNamespacesLive(t *testing.T) {
	kc := fake.NewClientset(
		ns("demo", map[string]string{"mesh": "on"}),
		ns("other", nil),
		service("demo", "greeter"),
		service("other", "hidden"),
	)
	r := startRegistry(t, Options{Client: kubeclienttest.FromClientsets(kc, nil)})
	waitSnapshot(t, r, func(s *model.Snapshot) error {
		if findService(s, "hidden.other.svc.cluster.local") == nil {
			return fmt.Errorf("services %v; want every namespace without selectors", hosts(s))
		}
		return nil
	})
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
		Data:       map[string]string{"mesh": "trustDomain: example.org\ndiscoverySelectors:\n- matchLabels: {mesh: \"on\"}\n"},
	}
	if _, err := kc.CoreV1().ConfigMaps("istio-system").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	snap := waitSnapshot(t, r, func(s *model.Snapshot) error {
		if findService(s, "hidden.other.svc.cluster.local") != nil || findService(s, greeterHost) == nil {
			return fmt.Errorf("services %v; want only the namespace the ConfigMap selects", hosts(s))
		}
		return nil
	})
	if snap.Mesh.GetTrustDomain() != "example.org" {
		t.Errorf("trust domain = %q, want the ConfigMap's", snap.Mesh.GetTrustDomain())
	}
	// A broken edit is ignored: the last valid mesh keeps applying. A new
	// service shows that a rebuild happened after the edit.
	cm.Data["mesh"] = "discoverySelectors:\n- matchExpressions: [{key: a, operator: Bogus}]\n"
	if _, err := kc.CoreV1().ConfigMaps("istio-system").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Services("demo").Create(context.Background(), service("demo", "later"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	snap = waitSnapshot(t, r, func(s *model.Snapshot) error {
		if findService(s, "later.demo.svc.cluster.local") == nil {
			return fmt.Errorf("services %v", hosts(s))
		}
		return nil
	})
	if findService(snap, "hidden.other.svc.cluster.local") != nil || snap.Mesh.GetTrustDomain() != "example.org" {
		t.Errorf("after an invalid ConfigMap edit: services %v, trust domain %q; want the last valid mesh config", hosts(snap), snap.Mesh.GetTrustDomain())
	}
}
