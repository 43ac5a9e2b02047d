package xds

import (
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Test fixtures: objects are written as the YAML users write, so a golden
// file reads next to the config that produced it.

func vs(t testing.TB, y string) *networkingv1.VirtualService {
	t.Helper()
	o := &networkingv1.VirtualService{}
	if err := yaml.Unmarshal([]byte(y), o); err != nil {
		t.Fatalf("VirtualService fixture: %v", err)
	}
	return o
}

func dr(t testing.TB, y string) *networkingv1.DestinationRule {
	t.Helper()
	o := &networkingv1.DestinationRule{}
	if err := yaml.Unmarshal([]byte(y), o); err != nil {
		t.Fatalf("DestinationRule fixture: %v", err)
	}
	return o
}

func pa(t testing.TB, y string) *securityv1.PeerAuthentication {
	t.Helper()
	o := &securityv1.PeerAuthentication{}
	if err := yaml.Unmarshal([]byte(y), o); err != nil {
		t.Fatalf("PeerAuthentication fixture: %v", err)
	}
	return o
}

func ep(ip, version, sa string) model.Endpoint {
	return model.Endpoint{
		Address:        ip,
		Labels:         map[string]string{"app": "x", "version": version, "security.istio.io/tlsMode": "istio"},
		Namespace:      "default",
		ServiceAccount: sa,
		Healthy:        true,
		Locality:       "us-east1/us-east1-b",
	}
}

// bookinfo is a small mesh: reviews (HTTP, two versions), ratings (TCP), and
// the proxy under test is the productpage pod at 10.0.0.1.
func bookinfo() []*model.Service {
	return []*model.Service{
		{
			Hostname: "productpage.default.svc.cluster.local", Name: "productpage", Namespace: "default",
			Addresses: []string{"10.96.0.10"}, Resolution: model.ResolutionStatic,
			Ports:     []model.Port{{Name: "http", Port: 9080, Protocol: model.ProtocolHTTP}},
			Endpoints: []model.Endpoint{ep("10.0.0.1", "v1", "bookinfo-productpage")},
		},
		{
			Hostname: "ratings.default.svc.cluster.local", Name: "ratings", Namespace: "default",
			Addresses: []string{"10.96.0.12"}, Resolution: model.ResolutionStatic,
			Ports:     []model.Port{{Name: "tcp-db", Port: 3306, TargetPort: 3307, Protocol: model.ProtocolTCP}},
			Endpoints: []model.Endpoint{ep("10.0.0.4", "v1", "bookinfo-ratings")},
		},
		{
			Hostname: "reviews.default.svc.cluster.local", Name: "reviews", Namespace: "default",
			Addresses: []string{"10.96.0.11"}, Resolution: model.ResolutionStatic,
			Ports:     []model.Port{{Name: "http", Port: 9080, Protocol: model.ProtocolHTTP}},
			Endpoints: []model.Endpoint{ep("10.0.0.2", "v1", "bookinfo-reviews"), ep("10.0.0.3", "v2", "bookinfo-reviews")},
		},
	}
}

// greeter is a proxyless gRPC mesh: the greeter service on 7070 with two
// versions, and the client pod at 10.0.1.9 which also serves greeter v1.
func greeter() []*model.Service {
	g1 := ep("10.0.1.1", "v1", "greeter")
	g2 := ep("10.0.1.2", "v2", "greeter")
	self := ep("10.0.1.9", "v1", "greeter")
	for _, e := range []*model.Endpoint{&g1, &g2, &self} {
		e.Namespace = "demo"
	}
	return []*model.Service{{
		Hostname: "greeter.demo.svc.cluster.local", Name: "greeter", Namespace: "demo",
		Addresses: []string{"10.96.1.1"}, Resolution: model.ResolutionStatic,
		Ports:     []model.Port{{Name: "grpc", Port: 7070, Protocol: model.ProtocolGRPC}},
		Endpoints: []model.Endpoint{g1, g2, self},
	}}
}

const reviewsDR = `
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 3s}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRetries: 3}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
`

const reviewsVS = `
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /reviews}
    - uri: {regex: "^/api/v[0-9]+/reviews$"}
    rewrite: {uri: /v2/reviews, authority: reviews-v2}
    route:
    - destination: {host: reviews, subset: v2}
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 10}}
      abort: {httpStatus: 503, percentage: {value: 0.5}}
  - name: exact
    match:
    - uri: {exact: /health}
    route:
    - destination: {host: reviews, subset: v1}
    retries: {attempts: 0}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,reset"}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25}
`

const greeterDR = `
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
`

const greeterVS = `
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  http:
  - name: canary
    match:
    - headers: {x-canary: {exact: "true"}}
    route:
    - destination: {host: greeter.demo.svc.cluster.local, subset: v2}
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}
  - name: split
    route:
    - destination: {host: greeter.demo.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: greeter.demo.svc.cluster.local, subset: v2}
      weight: 20
    timeout: 3s
    retries: {attempts: 2, retryOn: "unavailable,cancelled"}
`
