package xds

import (
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// grpcClientListener is the API listener grpc-go resolves for
// xds:///<host>:<port>; its routes come by RDS under the same name, as Istio does.
func grpcClientListener(host string, port uint32) *listener.Listener {
	name := hostPort(host, port)
	m := &hcm.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource: adsConfigSource(), RouteConfigName: name,
		}},
		HttpFilters: []*hcm.HttpFilter{faultFilter(), routerFilter()},
	}
	return &listener.Listener{
		Name:        name,
		ApiListener: &listener.ApiListener{ApiListener: mustAny(m)},
	}
}

// grpcServerListener is what an xDS-enabled grpc-go server on ip:port asks
// for. grpc-go only accepts filter chains without transport_protocol, so
// PERMISSIVE cannot sniff TLS: it is served as plaintext, like Istio's grpc
// generator does; STRICT gets mTLS through the certificate provider.
func (ix *index) grpcServerListener(p *Proxy, ip string, in inboundPort) *listener.Listener {
	m := &hcm.HttpConnectionManager{
		StatPrefix: InboundClusterName(in.target),
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: InboundClusterName(in.target),
			VirtualHosts: []*route.VirtualHost{{
				Name:    "inbound|http|" + hostPort(in.svc.Hostname, in.port.Port),
				Domains: []string{"*"},
				Routes: []*route.Route{{
					Name:   "default",
					Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_NonForwardingAction{NonForwardingAction: &route.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: []*hcm.HttpFilter{routerFilter()},
	}
	fc := &listener.FilterChain{
		Name:    InboundClusterName(in.target),
		Filters: []*listener.Filter{networkFilter(hcmFilterName, m)},
	}
	if ix.mtlsMode(p.Namespace, p.Labels, in.target) == security.PeerAuthentication_MutualTLS_STRICT {
		common := grpcCommonTLS(nil)
		fc.TransportSocket = downstreamTLS(common)
	}
	return &listener.Listener{
		Name:         GRPCInboundListenerName(ip, in.target),
		Address:      socketAddress(ip, in.target),
		FilterChains: []*listener.FilterChain{fc},
	}
}

// grpcServices are the services proxyless clients can dial: those with EDS endpoints.
func grpcServices(s *model.Snapshot) []*model.Service {
	var out []*model.Service
	for _, svc := range s.Services {
		if svc.Resolution == model.ResolutionStatic {
			out = append(out, svc)
		}
	}
	return out
}
