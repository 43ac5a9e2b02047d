package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// TypeURLs lists the resource types generation produces, in the order a
// client should apply them.
var TypeURLs = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// Resource is one generated xDS resource with a hash of its content.
type Resource struct {
	Name    string
	Message proto.Message
	Hash    string
	// Wire is Message in deterministic wire format, made once while hashing:
	// the server sends these bytes to every proxy that shares the resource
	// rather than marshalling the message again per stream. Read-only.
	Wire []byte
}

// Resources is everything one proxy is sent, by type URL, sorted by name.
// Proxies of the same shape share one Resources value: treat it as read-only.
type Resources struct {
	ByType   map[string][]Resource
	versions map[string]string
}

// Version is a content hash of one type's resources: equal content gives an
// equal version, so an unchanged type is not pushed again.
func (r *Resources) Version(typeURL string) string {
	if v, ok := r.versions[typeURL]; ok {
		return v
	}
	return versionOf(r.ByType[typeURL])
}

func versionOf(list []Resource) string {
	h := sha256.New()
	for _, res := range list {
		fmt.Fprintf(h, "%s\x00%s\x00", res.Name, res.Hash)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (r *Resources) seal() {
	r.versions = make(map[string]string, len(r.ByType))
	for t, list := range r.ByType {
		r.versions[t] = versionOf(list)
	}
}

// Generator produces resources for proxies from one Snapshot. Proxy-independent
// parts are built once and shared, so a push to N similar proxies costs about
// one generation plus N small per-proxy parts.
type Generator struct {
	ix *index

	mu     sync.Mutex
	shared map[string]*sharedOutbound
	memo   map[string]*Resources // by proxy shape and inbound signature
}

// NewGenerator indexes a snapshot. It must not be modified afterwards (the registry contract).
func NewGenerator(s *model.Snapshot) *Generator {
	if s == nil {
		s = &model.Snapshot{}
	}
	return &Generator{ix: newIndex(s), shared: map[string]*sharedOutbound{}, memo: map[string]*Resources{}}
}

// Snapshot returns the snapshot the generator was built from.
func (g *Generator) Snapshot() *model.Snapshot { return g.ix.snap }

// sharedOutbound is what every proxy of one shape (generator, namespace, labels) receives for outbound traffic.
type sharedOutbound struct {
	clusters  []Resource
	endpoints []Resource
	listeners []Resource
	routes    []Resource
}

// Generate returns the resources for one proxy. Proxies that differ only in
// what does not reach their config (pod name, or IP when they serve nothing)
// get the same *Resources, so a push to a thousand clients of one shape
// generates and hashes once.
func (g *Generator) Generate(p *Proxy) *Resources {
	in := g.ix.inbound(p)
	key := memoKey(p, in)
	g.mu.Lock()
	r, ok := g.memo[key]
	g.mu.Unlock()
	if ok {
		return r
	}
	r = g.generate(p, in)
	g.mu.Lock()
	if prev, ok := g.memo[key]; ok {
		r = prev
	} else {
		g.memo[key] = r
	}
	g.mu.Unlock()
	return r
}

// memoKey captures every proxy input generation reads: the shape (type,
// generator, namespace, labels) and the ports it serves; gRPC inbound
// listener names also carry the proxy's IPs.
func memoKey(p *Proxy, in []inboundPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%v|%s|%s", p.Type, p.IsGRPC(), p.Namespace, labelKey(p.Labels))
	if len(in) == 0 {
		return b.String()
	}
	if p.IsGRPC() {
		fmt.Fprintf(&b, "|%s", strings.Join(p.IPAddresses, ","))
	}
	for _, ip := range in {
		fmt.Fprintf(&b, "|%s/%s/%d", ip.svc.Hostname, ip.port.Name, ip.target)
	}
	return b.String()
}

func (g *Generator) generate(p *Proxy, in []inboundPort) *Resources {
	so := g.outbound(p)
	r := &Resources{ByType: map[string][]Resource{
		resourcev3.ClusterType:  append([]Resource(nil), so.clusters...),
		resourcev3.EndpointType: so.endpoints,
		resourcev3.ListenerType: append([]Resource(nil), so.listeners...),
		resourcev3.RouteType:    so.routes,
	}}
	if p.IsGRPC() {
		for _, ip := range p.IPAddresses {
			for _, port := range in {
				l := g.ix.grpcServerListener(p, ip, port)
				r.ByType[resourcev3.ListenerType] = append(r.ByType[resourcev3.ListenerType], newResource(l.Name, l))
			}
		}
	} else {
		l := g.ix.virtualInbound(p, in)
		r.ByType[resourcev3.ListenerType] = append(r.ByType[resourcev3.ListenerType], newResource(l.Name, l))
		for _, port := range in {
			c := inboundCluster(port.target)
			r.ByType[resourcev3.ClusterType] = append(r.ByType[resourcev3.ClusterType], newResource(c.Name, c))
		}
	}
	for _, t := range TypeURLs {
		sortResources(r.ByType[t])
	}
	r.seal()
	return r
}

func (g *Generator) outbound(p *Proxy) *sharedOutbound {
	key := fmt.Sprintf("%v|%s|%s", p.IsGRPC(), p.Namespace, labelKey(p.Labels))
	g.mu.Lock()
	defer g.mu.Unlock()
	if so, ok := g.shared[key]; ok {
		return so
	}
	var so *sharedOutbound
	if p.IsGRPC() {
		so = g.grpcOutbound(p)
	} else {
		so = g.sidecarOutbound(p)
	}
	g.shared[key] = so
	return so
}

func labelKey(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s string
	for _, k := range keys {
		s += k + "=" + l[k] + ","
	}
	return s
}

func (g *Generator) clustersAndEndpoints(p *Proxy, grpc bool) (clusters, endpoints []Resource) {
	for _, oc := range g.ix.outboundClusters(p.Namespace, grpc) {
		clusters = append(clusters, newResource(oc.name, oc.cluster))
		if oc.cla != nil {
			endpoints = append(endpoints, newResource(oc.name, oc.cla))
		}
	}
	return clusters, endpoints
}

func (g *Generator) sidecarOutbound(p *Proxy) *sharedOutbound {
	so := &sharedOutbound{}
	so.clusters, so.endpoints = g.clustersAndEndpoints(p, false)
	for _, c := range passthroughClusters() {
		so.clusters = append(so.clusters, newResource(c.Name, c))
	}
	vo := virtualOutbound()
	so.listeners = append(so.listeners, newResource(vo.Name, vo))

	// One route config per HTTP port, holding a virtual host per service on
	// that port; one TCP listener per service address and TCP port.
	httpPorts := map[uint32][]*route.VirtualHost{}
	tcpListeners := map[string]*listener.Listener{}
	for _, svc := range g.ix.snap.Services {
		for _, port := range svc.Ports {
			if port.Protocol.IsHTTP() {
				rb := &routeBuilder{ix: g.ix, proxy: p, svc: svc, port: port}
				httpPorts[port.Port] = append(httpPorts[port.Port], rb.virtualHost())
				continue
			}
			for _, vip := range svc.Addresses {
				l := outboundTCPListener(vip, port.Port, ClusterName("outbound", port.Port, "", svc.Hostname))
				if _, dup := tcpListeners[l.Name]; !dup {
					tcpListeners[l.Name] = l
				}
			}
		}
	}
	for port, vhosts := range httpPorts {
		l := outboundHTTPListener(port)
		so.listeners = append(so.listeners, newResource(l.Name, l))
		rc := &route.RouteConfiguration{
			Name:             fmt.Sprint(port),
			VirtualHosts:     append(vhosts, passthroughRouteHost()),
			ValidateClusters: nil,
		}
		so.routes = append(so.routes, newResource(rc.Name, rc))
	}
	for name, l := range tcpListeners {
		so.listeners = append(so.listeners, newResource(name, l))
	}
	sortResources(so.clusters)
	sortResources(so.endpoints)
	sortResources(so.listeners)
	sortResources(so.routes)
	return so
}

func (g *Generator) grpcOutbound(p *Proxy) *sharedOutbound {
	so := &sharedOutbound{}
	so.clusters, so.endpoints = g.clustersAndEndpoints(p, true)
	for _, svc := range grpcServices(g.ix.snap) {
		for _, port := range svc.Ports {
			l := grpcClientListener(svc.Hostname, port.Port)
			so.listeners = append(so.listeners, newResource(l.Name, l))
			rb := &routeBuilder{ix: g.ix, proxy: p, svc: svc, port: port, grpc: true}
			rc := &route.RouteConfiguration{Name: l.Name, VirtualHosts: []*route.VirtualHost{rb.virtualHost()}}
			so.routes = append(so.routes, newResource(rc.Name, rc))
		}
	}
	sortResources(so.clusters)
	sortResources(so.endpoints)
	sortResources(so.listeners)
	sortResources(so.routes)
	return so
}

func newResource(name string, m proto.Message) Resource {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %s: %v", name, err)) // generated types always marshal
	}
	sum := sha256.Sum256(b)
	return Resource{Name: name, Message: m, Hash: hex.EncodeToString(sum[:12]), Wire: b}
}

func sortResources(r []Resource) {
	sort.Slice(r, func(i, j int) bool { return r[i].Name < r[j].Name })
}
