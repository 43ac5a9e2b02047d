package xds

import (
	"sort"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// subsetEndpoints filters a service's endpoints by a subset's labels.
func (ix *index) subsetEndpoints(svc *model.Service, labels map[string]string) []model.Endpoint {
	if len(labels) == 0 {
		return svc.Endpoints
	}
	var out []model.Endpoint
	for _, e := range svc.Endpoints {
		if labelsMatch(labels, e.Labels) {
			out = append(out, e)
		}
	}
	return out
}

// loadAssignment groups endpoints by locality. Unhealthy endpoints are sent
// with their status, so clients drop them without losing the locality.
// Locality weights are set because grpc-go ignores zero-weight localities.
func loadAssignment(name string, eps []model.Endpoint, port model.Port) *endpoint.ClusterLoadAssignment {
	byLocality := map[string]*endpoint.LocalityLbEndpoints{}
	var keys []string
	for _, e := range eps {
		loc := byLocality[e.Locality]
		if loc == nil {
			loc = &endpoint.LocalityLbEndpoints{Locality: parseLocality(e.Locality)}
			byLocality[e.Locality] = loc
			keys = append(keys, e.Locality)
		}
		w := e.Weight
		if w == 0 {
			w = 1
		}
		health := core.HealthStatus_HEALTHY
		if !e.Healthy {
			health = core.HealthStatus_UNHEALTHY
		}
		lbe := &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: socketAddress(e.Address, endpointPort(e, port)),
			}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(w),
		}
		if e.Labels[tlsModeLabel] == "istio" {
			lbe.Metadata = &core.Metadata{FilterMetadata: map[string]*structpb.Struct{transportSocketMatchKey: tlsModeMatch()}}
		}
		loc.LbEndpoints = append(loc.LbEndpoints, lbe)
		if loc.LoadBalancingWeight == nil {
			loc.LoadBalancingWeight = wrapperspb.UInt32(0)
		}
		loc.LoadBalancingWeight.Value += w
	}
	sort.Strings(keys)
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	for _, k := range keys {
		cla.Endpoints = append(cla.Endpoints, byLocality[k])
	}
	return cla
}

func parseLocality(s string) *core.Locality {
	if s == "" {
		return &core.Locality{}
	}
	parts := strings.SplitN(s, "/", 3)
	l := &core.Locality{Region: parts[0]}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

func socketAddress(addr string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
