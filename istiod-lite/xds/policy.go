package xds

import (
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// trafficPolicy is the effective DestinationRule policy for one port and
// subset: the rule's policy, then its port-level settings, then the subset's
// policy (and its port-level settings), each overriding the fields it sets.
func trafficPolicy(dr *networking.DestinationRule, subset string, port uint32) *networking.TrafficPolicy {
	if dr == nil {
		return nil
	}
	out := applyPortLevel(mergePolicy(nil, dr.GetTrafficPolicy()), dr.GetTrafficPolicy(), port)
	for _, s := range dr.GetSubsets() {
		if s.GetName() == subset {
			out = applyPortLevel(mergePolicy(out, s.GetTrafficPolicy()), s.GetTrafficPolicy(), port)
		}
	}
	return out
}

func mergePolicy(base, over *networking.TrafficPolicy) *networking.TrafficPolicy {
	out := &networking.TrafficPolicy{}
	if base != nil {
		out = proto.Clone(base).(*networking.TrafficPolicy)
	}
	if over == nil {
		return out
	}
	if over.GetLoadBalancer() != nil {
		out.LoadBalancer = over.GetLoadBalancer()
	}
	if over.GetConnectionPool() != nil {
		out.ConnectionPool = over.GetConnectionPool()
	}
	if over.GetOutlierDetection() != nil {
		out.OutlierDetection = over.GetOutlierDetection()
	}
	if over.GetTls() != nil {
		out.Tls = over.GetTls()
	}
	out.PortLevelSettings = nil
	return out
}

func applyPortLevel(out, src *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	for _, pl := range src.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() != port {
			continue
		}
		if pl.GetLoadBalancer() != nil {
			out.LoadBalancer = pl.GetLoadBalancer()
		}
		if pl.GetConnectionPool() != nil {
			out.ConnectionPool = pl.GetConnectionPool()
		}
		if pl.GetOutlierDetection() != nil {
			out.OutlierDetection = pl.GetOutlierDetection()
		}
		if pl.GetTls() != nil {
			out.Tls = pl.GetTls()
		}
	}
	return out
}

// subsetLabels returns the labels selecting a subset's endpoints, and whether the subset exists.
func subsetLabels(dr *networking.DestinationRule, subset string) (map[string]string, bool) {
	if subset == "" {
		return nil, true
	}
	for _, s := range dr.GetSubsets() {
		if s.GetName() == subset {
			return s.GetLabels(), true
		}
	}
	return nil, false
}
