package xds

import (
	"math"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

const (
	defaultConnectTimeout = 10 * time.Second
	// tlsModeLabel marks endpoints whose sidecar accepts mesh mTLS; auto mTLS keys on it.
	tlsModeLabel             = "security.istio.io/tlsMode"
	transportSocketMatchKey  = "envoy.transport_socket_match"
	httpProtocolOptionsKey   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	rawBufferTransportSocket = "envoy.transport_sockets.raw_buffer"
)

func adsConfigSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

// outboundCluster is one upstream cluster with the endpoints it routes to.
type outboundCluster struct {
	name    string
	svc     *model.Service
	port    model.Port
	subset  string
	labels  map[string]string
	policy  *networking.TrafficPolicy
	cluster *cluster.Cluster
	cla     *endpoint.ClusterLoadAssignment // nil unless the cluster is EDS
}

// outboundClusters builds, per service port, the default cluster and one per
// DestinationRule subset, for Envoy (grpc=false) or proxyless gRPC.
func (ix *index) outboundClusters(proxyNS string, grpc bool) []*outboundCluster {
	var out []*outboundCluster
	for _, svc := range ix.snap.Services {
		if grpc && svc.Resolution != model.ResolutionStatic {
			continue // proxyless gRPC resolves only EDS clusters here
		}
		dr := ix.destinationRule(svc.Hostname, proxyNS, svc.Namespace)
		subsets := []string{""}
		for _, s := range dr.GetSubsets() {
			subsets = append(subsets, s.GetName())
		}
		for _, port := range svc.Ports {
			for _, subset := range subsets {
				labels, _ := subsetLabels(dr, subset)
				oc := &outboundCluster{
					name:   ClusterName("outbound", port.Port, subset, svc.Hostname),
					svc:    svc,
					port:   port,
					subset: subset,
					labels: labels,
					policy: trafficPolicy(dr, subset, port.Port),
				}
				ix.buildCluster(oc, grpc)
				out = append(out, oc)
			}
		}
	}
	return out
}

func (ix *index) buildCluster(oc *outboundCluster, grpc bool) {
	pol := oc.policy
	c := &cluster.Cluster{
		Name:           oc.name,
		ConnectTimeout: dur(defaultConnectTimeout),
		LbPolicy:       cluster.Cluster_ROUND_ROBIN,
	}
	if ct := pol.GetConnectionPool().GetTcp().GetConnectTimeout(); ct != nil && !grpc {
		c.ConnectTimeout = ct
	}
	eps := ix.subsetEndpoints(oc.svc, oc.labels)
	switch oc.svc.Resolution {
	case model.ResolutionDNS:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
		c.DnsLookupFamily = cluster.Cluster_V4_ONLY
		c.LoadAssignment = loadAssignment(oc.name, eps, oc.port)
	case model.ResolutionPassthrough:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
		c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
	default:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: oc.name}
		oc.cla = loadAssignment(oc.name, eps, oc.port)
	}
	if c.LbPolicy != cluster.Cluster_CLUSTER_PROVIDED {
		applyLB(c, pol.GetLoadBalancer(), grpc)
	}
	c.CircuitBreakers = circuitBreakers(pol.GetConnectionPool(), grpc)
	c.OutlierDetection = outlierDetection(pol.GetOutlierDetection())
	if !grpc && (oc.port.Protocol == model.ProtocolHTTP2 || oc.port.Protocol == model.ProtocolGRPC) {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
			}},
		})}
	}
	ix.applyUpstreamTLS(c, oc, eps, grpc)
	oc.cluster = c
}

func (ix *index) applyUpstreamTLS(c *cluster.Cluster, oc *outboundCluster, eps []model.Endpoint, grpc bool) {
	var ids []endpointIdentity
	for _, e := range eps {
		ids = append(ids, endpointIdentity{ns: e.Namespace, sa: e.ServiceAccount})
	}
	sans := ix.serviceSANs(ids)
	tls := oc.policy.GetTls()
	switch tls.GetMode() {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if grpc {
			c.TransportSocket = upstreamTLS(grpcCommonTLS(sans), "")
		} else {
			c.TransportSocket = upstreamTLS(envoyCommonTLS(sans, meshALPN), sni(oc.port.Port, oc.subset, oc.svc.Hostname))
		}
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if !grpc {
			c.TransportSocket = upstreamTLS(nil, tls.GetSni())
		}
	case networking.ClientTLSSettings_DISABLE:
	default:
		// Auto mTLS: send mesh mTLS only to endpoints whose sidecar is marked to
		// accept it, plaintext to the rest. Envoy only; grpc-go has no transport socket matches.
		if grpc || !ix.autoMTLS || oc.svc.MeshExternal || c.GetType() == cluster.Cluster_ORIGINAL_DST {
			return
		}
		mtls := upstreamTLS(envoyCommonTLS(sans, meshALPN), sni(oc.port.Port, oc.subset, oc.svc.Hostname))
		c.TransportSocketMatches = []*cluster.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: tlsModeMatch(), TransportSocket: mtls},
			{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawBuffer()},
		}
	}
}

func tlsModeMatch() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}}
}

func rawBuffer() *core.TransportSocket {
	return &core.TransportSocket{Name: rawBufferTransportSocket, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbuffer.RawBuffer{})}}
}

func applyLB(c *cluster.Cluster, lb *networking.LoadBalancerSettings, grpc bool) {
	if ch := lb.GetConsistentHash(); ch != nil {
		if ch.GetMaglev() != nil && !grpc { // grpc-go has only ring hash
			c.LbPolicy = cluster.Cluster_MAGLEV
			if t := ch.GetMaglev().GetTableSize(); t != 0 {
				c.LbConfig = &cluster.Cluster_MaglevLbConfig_{MaglevLbConfig: &cluster.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(t)}}
			}
			return
		}
		c.LbPolicy = cluster.Cluster_RING_HASH
		min := uint64(1024) // Istio's default
		//lint:ignore SA1019 the deprecated field is still what older configs set.
		if v := ch.GetMinimumRingSize(); v != 0 {
			min = v
		}
		if v := ch.GetRingHash().GetMinimumRingSize(); v != 0 {
			min = v
		}
		c.LbConfig = &cluster.Cluster_RingHashLbConfig_{RingHashLbConfig: &cluster.Cluster_RingHashLbConfig{
			MinimumRingSize: wrapperspb.UInt64(min),
			HashFunction:    cluster.Cluster_RingHashLbConfig_XX_HASH,
		}}
		return
	}
	switch lb.GetSimple() {
	//lint:ignore SA1019 LEAST_CONN is a deprecated alias users still write.
	case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
		c.LbPolicy = cluster.Cluster_LEAST_REQUEST
	case networking.LoadBalancerSettings_RANDOM:
		if !grpc { // grpc-go has no random policy; round robin is the closest it accepts
			c.LbPolicy = cluster.Cluster_RANDOM
		}
	default:
		c.LbPolicy = cluster.Cluster_ROUND_ROBIN
	}
}

// circuitBreakers maps the connection pool. Unset limits are effectively
// unlimited, as in Istio, rather than Envoy's small defaults.
func circuitBreakers(cp *networking.ConnectionPoolSettings, grpc bool) *cluster.CircuitBreakers {
	limit := func(v int32) *wrapperspb.UInt32Value {
		if v > 0 {
			return wrapperspb.UInt32(uint32(v))
		}
		return wrapperspb.UInt32(math.MaxUint32)
	}
	t := &cluster.CircuitBreakers_Thresholds{
		MaxRequests: limit(cp.GetHttp().GetHttp2MaxRequests()),
	}
	if !grpc {
		t.MaxConnections = limit(cp.GetTcp().GetMaxConnections())
		t.MaxPendingRequests = limit(cp.GetHttp().GetHttp1MaxPendingRequests())
		t.MaxRetries = limit(cp.GetHttp().GetMaxRetries())
	}
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{t}}
}

func outlierDetection(od *networking.OutlierDetection) *cluster.OutlierDetection {
	if od == nil {
		return nil
	}
	out := &cluster.OutlierDetection{
		Interval:         od.GetInterval(),
		BaseEjectionTime: od.GetBaseEjectionTime(),
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	if v := od.GetMaxEjectionPercent(); v != 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(v))
	}
	return out
}
