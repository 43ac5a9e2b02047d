package xds

import (
	"fmt"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"
)

const (
	routerFilterName    = "envoy.filters.http.router"
	hcmFilterName       = "envoy.filters.network.http_connection_manager"
	tcpProxyName        = "envoy.filters.network.tcp_proxy"
	outboundCapturePort = 15001
	inboundCapturePort  = 15006
)

func routerFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: routerFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}}
}

// faultFilter is always present so that a route's fault override takes effect.
func faultFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: faultFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&fault.HTTPFault{})}}
}

func networkFilter(name string, cfg proto.Message) *listener.Filter {
	return &listener.Filter{Name: name, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

func tcpProxy(statPrefix, clusterName string) *listener.Filter {
	return networkFilter(tcpProxyName, &tcpproxy.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: clusterName}})
}

func listenerFilter(name string, cfg proto.Message) *listener.ListenerFilter {
	return &listener.ListenerFilter{Name: name, ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// passthroughClusters are Istio's fixed clusters for traffic the mesh does not know.
func passthroughClusters() []*cluster.Cluster {
	od := func(name string) *cluster.Cluster {
		return &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
			LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
			ConnectTimeout:       dur(defaultConnectTimeout),
		}
	}
	in := od(InboundPassthroughCluster)
	in.UpstreamBindConfig = &core.BindConfig{SourceAddress: &core.SocketAddress{Address: "127.0.0.6", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 0}}}
	return []*cluster.Cluster{
		od(PassthroughCluster),
		in,
		{Name: BlackHoleCluster, ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}, ConnectTimeout: dur(defaultConnectTimeout)},
	}
}

// virtualOutbound is where iptables sends all outbound traffic: original
// destination hands it to the per-port listeners, and unknown traffic passes through.
func virtualOutbound() *listener.Listener {
	return &listener.Listener{
		Name:             OutboundListenerName,
		Address:          socketAddress("0.0.0.0", outboundCapturePort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: core.TrafficDirection_OUTBOUND,
		FilterChains: []*listener.FilterChain{{
			Name:    "PassthroughFilterChain",
			Filters: []*listener.Filter{tcpProxy(PassthroughCluster, PassthroughCluster)},
		}},
	}
}

// outboundHTTPListener is 0.0.0.0_<port>: not bound, reached through
// virtualOutbound, routing by Host header with route config "<port>".
func outboundHTTPListener(port uint32) *listener.Listener {
	m := &hcm.HttpConnectionManager{
		StatPrefix: fmt.Sprintf("outbound_0.0.0.0_%d", port),
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: adsConfigSource(), RouteConfigName: fmt.Sprint(port),
		}},
		HttpFilters: []*hcm.HttpFilter{faultFilter(), routerFilter()},
	}
	return &listener.Listener{
		Name:             fmt.Sprintf("0.0.0.0_%d", port),
		Address:          socketAddress("0.0.0.0", port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: core.TrafficDirection_OUTBOUND,
		FilterChains:     []*listener.FilterChain{{Filters: []*listener.Filter{networkFilter(hcmFilterName, m)}}},
	}
}

// outboundTCPListener is <vip>_<port> for a TCP service port.
func outboundTCPListener(vip string, port uint32, clusterName string) *listener.Listener {
	return &listener.Listener{
		Name:             fmt.Sprintf("%s_%d", vip, port),
		Address:          socketAddress(vip, port),
		BindToPort:       wrapperspb.Bool(false),
		TrafficDirection: core.TrafficDirection_OUTBOUND,
		FilterChains:     []*listener.FilterChain{{Filters: []*listener.Filter{tcpProxy(clusterName, clusterName)}}},
	}
}

// passthroughRouteHost sends HTTP to unknown hosts through unchanged, as Istio's ALLOW_ANY does.
func passthroughRouteHost() *route.VirtualHost {
	return &route.VirtualHost{
		Name:    "allow_any",
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:   "allow_any",
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: PassthroughCluster}, Timeout: durationpb.New(0)}},
		}},
	}
}

// istioALPN is what mesh clients offer on mTLS; a PERMISSIVE port terminates
// only those connections and passes other TLS through to the workload.
var istioALPN = []string{"istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"}

// virtualInbound is where iptables sends inbound traffic; one set of filter
// chains per port the workload serves, in the shape its PeerAuthentication
// mode requires. STRICT never lets plaintext reach the workload: not on a
// declared port, and not through the passthrough for undeclared ports.
func (ix *index) virtualInbound(p *Proxy, ports []inboundPort) *listener.Listener {
	l := &listener.Listener{
		Name:             InboundListenerName,
		Address:          socketAddress("0.0.0.0", inboundCapturePort),
		TrafficDirection: core.TrafficDirection_INBOUND,
		ListenerFilters: []*listener.ListenerFilter{
			listenerFilter("envoy.filters.listener.original_dst", &originaldst.OriginalDst{}),
			listenerFilter("envoy.filters.listener.tls_inspector", &tlsinspector.TlsInspector{}),
		},
	}
	for _, ip := range ports {
		mode := ix.mtlsMode(p.Namespace, p.Labels, ip.target)
		var alpn []string
		if ip.port.Protocol.IsHTTP() {
			alpn = []string{"h2", "http/1.1"}
		}
		name := InboundClusterName(ip.target)
		chain := func(suffix, transport string, appProtocols []string, f *listener.Filter, ts *core.TransportSocket) *listener.FilterChain {
			return &listener.FilterChain{
				Name: name + "-" + suffix,
				FilterChainMatch: &listener.FilterChainMatch{
					DestinationPort: wrapperspb.UInt32(ip.target), TransportProtocol: transport, ApplicationProtocols: appProtocols,
				},
				Filters:         []*listener.Filter{f},
				TransportSocket: ts,
			}
		}
		mtls := downstreamTLS(envoyCommonTLS(nil, alpn))
		switch mode {
		case security.PeerAuthentication_MutualTLS_STRICT:
			l.FilterChains = append(l.FilterChains,
				chain("mtls", "tls", nil, inboundFilter(ip), mtls),
				chain("plaintext-rejected", "raw_buffer", nil, tcpProxy(name, BlackHoleCluster), nil))
		case security.PeerAuthentication_MutualTLS_DISABLE:
			l.FilterChains = append(l.FilterChains, chain("plaintext", "", nil, inboundFilter(ip), nil))
		default:
			l.FilterChains = append(l.FilterChains,
				chain("mtls", "tls", istioALPN, inboundFilter(ip), mtls),
				chain("tls-passthrough", "tls", nil, tcpProxy(name, name), nil),
				chain("plaintext", "raw_buffer", nil, inboundFilter(ip), nil))
		}
	}
	// Ports the workload's services do not declare.
	if ix.mtlsMode(p.Namespace, p.Labels, 0) == security.PeerAuthentication_MutualTLS_STRICT {
		l.FilterChains = append(l.FilterChains, &listener.FilterChain{
			Name:             "InboundPassthroughFilterChain-mtls",
			FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "tls"},
			Filters:          []*listener.Filter{tcpProxy(InboundPassthroughCluster, InboundPassthroughCluster)},
			TransportSocket:  downstreamTLS(envoyCommonTLS(nil, nil)),
		})
		l.DefaultFilterChain = &listener.FilterChain{
			Name:    "InboundPassthroughFilterChain-plaintext-rejected",
			Filters: []*listener.Filter{tcpProxy(BlackHoleCluster, BlackHoleCluster)},
		}
	} else {
		l.DefaultFilterChain = &listener.FilterChain{
			Name:    "InboundPassthroughFilterChain",
			Filters: []*listener.Filter{tcpProxy(InboundPassthroughCluster, InboundPassthroughCluster)},
		}
	}
	return l
}

func inboundFilter(ip inboundPort) *listener.Filter {
	name := InboundClusterName(ip.target)
	if !ip.port.Protocol.IsHTTP() {
		return tcpProxy(name, name)
	}
	m := &hcm.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: name,
			VirtualHosts: []*route.VirtualHost{{
				Name:    fmt.Sprintf("inbound|http|%d", ip.target),
				Domains: []string{"*"},
				Routes: []*route.Route{{
					Name:   "default",
					Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: name}, Timeout: durationpb.New(0)}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{routerFilter()},
	}
	return networkFilter(hcmFilterName, m)
}

// inboundCluster forwards to the workload at the original destination, from
// 127.0.0.6 so that iptables does not capture it again (as Istio does).
func inboundCluster(port uint32) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 InboundClusterName(port),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       dur(defaultConnectTimeout),
		UpstreamBindConfig:   &core.BindConfig{SourceAddress: &core.SocketAddress{Address: "127.0.0.6", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 0}}},
	}
}
