package xds

import (
	"fmt"
	"math"
	"sort"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushosts "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

const (
	faultFilterName = "envoy.filters.http.fault"
	// defaultRetryOn is Istio's retry policy when a route sets none.
	defaultRetryOn       = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultRetryAttempts = 2
)

// routeBuilder renders VirtualService HTTP routes for one service port.
type routeBuilder struct {
	ix    *index
	proxy *Proxy
	svc   *model.Service
	port  model.Port
	grpc  bool
}

// virtualHost is the virtual host `host:port` for one service port: the
// VirtualService's routes when one binds the host, else a default route.
func (rb *routeBuilder) virtualHost() *route.VirtualHost {
	host := rb.svc.Hostname
	names := append([]string{host}, shortNames(host, rb.proxy.Namespace)...)
	names = append(names, rb.svc.Addresses...)
	var domains []string
	for _, n := range names {
		domains = append(domains, n, hostPort(n, rb.port.Port))
	}
	vh := &route.VirtualHost{Name: hostPort(host, rb.port.Port), Domains: domains}
	if vs := rb.ix.virtualService(host, rb.proxy.Namespace, rb.svc); vs != nil {
		vh.Routes = rb.fromVirtualService(&vs.Spec, vs.Namespace)
	}
	if len(vh.Routes) == 0 {
		vh.Routes = []*route.Route{rb.defaultRoute()}
	}
	return vh
}

func (rb *routeBuilder) defaultRoute() *route.Route {
	c := ClusterName("outbound", rb.port.Port, "", rb.svc.Hostname)
	ra := &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: c}}
	rb.routeDefaults(ra, nil)
	rb.addHashPolicy(ra, rb.svc.Hostname, rb.svc.Namespace, "")
	return &route.Route{
		Name:   "default",
		Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: ra},
	}
}

// routeDefaults applies Istio's defaults that differ from Envoy's: no route
// timeout, and two retries on connection failures, unless the route overrides them.
func (rb *routeBuilder) routeDefaults(ra *route.RouteAction, h *networking.HTTPRoute) {
	timeout := h.GetTimeout()
	if rb.grpc {
		if timeout != nil {
			ra.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{MaxStreamDuration: timeout}
		}
	} else {
		if timeout == nil {
			timeout = durationpb.New(0)
		}
		ra.Timeout = timeout
	}
	ra.RetryPolicy = rb.retryPolicy(h.GetRetries(), h != nil)
}

func (rb *routeBuilder) retryPolicy(r *networking.HTTPRetry, explicit bool) *route.RetryPolicy {
	if r != nil && r.GetAttempts() == 0 {
		return nil // retries explicitly disabled
	}
	if rb.grpc && r == nil {
		return nil // proxyless gRPC keeps its own defaults unless the route asks
	}
	attempts := uint32(defaultRetryAttempts)
	retryOn := defaultRetryOn
	if r != nil {
		attempts = uint32(r.GetAttempts())
		if r.GetRetryOn() != "" {
			retryOn = r.GetRetryOn()
		}
	}
	rp := &route.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(attempts), PerTryTimeout: r.GetPerTryTimeout()}
	if !rb.grpc {
		rp.RetryHostPredicate = []*route.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &route.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushosts.PreviousHostsPredicate{})},
		}}
		rp.HostSelectionRetryMaxAttempts = 5
	}
	return rp
}

func (rb *routeBuilder) fromVirtualService(vs *networking.VirtualService, vsNS string) []*route.Route {
	var out []*route.Route
	for i, h := range vs.GetHttp() {
		matches := h.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			if m.GetPort() != 0 && m.GetPort() != rb.port.Port {
				continue
			}
			if sl := m.GetSourceLabels(); len(sl) > 0 && !labelsMatch(sl, rb.proxy.Labels) {
				continue
			}
			r := rb.route(h, m, vsNS)
			if r == nil {
				continue
			}
			r.Name = h.GetName()
			if r.Name == "" {
				r.Name = fmt.Sprintf("route-%d", i)
			}
			out = append(out, r)
		}
	}
	return out
}

func (rb *routeBuilder) route(h *networking.HTTPRoute, m *networking.HTTPMatchRequest, vsNS string) *route.Route {
	r := &route.Route{Match: rb.match(m)}
	switch {
	case h.GetRedirect() != nil:
		if rb.grpc {
			return nil // grpc-go cannot redirect
		}
		rd := h.GetRedirect()
		ra := &route.RedirectAction{HostRedirect: rd.GetAuthority()}
		if rd.GetUri() != "" {
			ra.PathRewriteSpecifier = &route.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
		}
		r.Action = &route.Route_Redirect{Redirect: ra}
		return r
	case h.GetDirectResponse() != nil:
		if rb.grpc {
			return nil
		}
		dr := h.GetDirectResponse()
		r.Action = &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{Status: dr.GetStatus()}}
		return r
	}
	ra := &route.RouteAction{}
	dests := h.GetRoute()
	if len(dests) == 0 {
		return nil
	}
	if len(dests) == 1 {
		ra.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: rb.destCluster(dests[0].GetDestination(), vsNS)}
	} else {
		wc := &route.WeightedCluster{}
		for _, d := range dests {
			if d.GetWeight() == 0 {
				continue
			}
			wc.Clusters = append(wc.Clusters, &route.WeightedCluster_ClusterWeight{
				Name:   rb.destCluster(d.GetDestination(), vsNS),
				Weight: wrapperspb.UInt32(uint32(d.GetWeight())),
			})
		}
		ra.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	rb.routeDefaults(ra, h)
	if rw := h.GetRewrite(); rw != nil {
		if rw.GetUri() != "" {
			// Envoy only prefix-rewrites prefix and path matches; a regex match
			// rewrites the whole matched path instead.
			if re, ok := r.Match.GetPathSpecifier().(*route.RouteMatch_SafeRegex); ok {
				ra.RegexRewrite = &matcher.RegexMatchAndSubstitute{Pattern: re.SafeRegex, Substitution: rw.GetUri()}
			} else {
				ra.PrefixRewrite = rw.GetUri()
			}
		}
		if rw.GetAuthority() != "" {
			ra.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
		}
	}
	if !rb.grpc {
		ra.RequestMirrorPolicies = rb.mirrors(h, vsNS)
	}
	d0 := dests[0].GetDestination()
	rb.addHashPolicy(ra, rb.ix.destHost(d0, vsNS), vsNS, d0.GetSubset())
	r.Action = &route.Route_Route{Route: ra}
	if f := h.GetFault(); f != nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{faultFilterName: mustAny(faultConfig(f))}
	}
	return r
}

func (ix *index) destHost(d *networking.Destination, vsNS string) string {
	return resolveHost(d.GetHost(), vsNS)
}

// destCluster names the cluster for a route destination. Without an explicit
// port, a single-port service uses its only port, else the port being routed.
func (rb *routeBuilder) destCluster(d *networking.Destination, vsNS string) string {
	host := rb.ix.destHost(d, vsNS)
	port := d.GetPort().GetNumber()
	if port == 0 {
		port = rb.port.Port
		if svc := rb.ix.services[host]; svc != nil && len(svc.Ports) == 1 {
			port = svc.Ports[0].Port
		}
	}
	return ClusterName("outbound", port, d.GetSubset(), host)
}

func (rb *routeBuilder) mirrors(h *networking.HTTPRoute, vsNS string) []*route.RouteAction_RequestMirrorPolicy {
	var out []*route.RouteAction_RequestMirrorPolicy
	add := func(d *networking.Destination, pct *networking.Percent) {
		p := &route.RouteAction_RequestMirrorPolicy{Cluster: rb.destCluster(d, vsNS)}
		if pct != nil {
			p.RuntimeFraction = &core.RuntimeFractionalPercent{DefaultValue: fraction(pct.GetValue())}
		}
		out = append(out, p)
	}
	if h.GetMirror() != nil {
		add(h.GetMirror(), h.GetMirrorPercentage())
	}
	for _, m := range h.GetMirrors() {
		add(m.GetDestination(), m.GetPercentage())
	}
	return out
}

func (rb *routeBuilder) addHashPolicy(ra *route.RouteAction, host, ns, subset string) {
	dr := rb.ix.destinationRule(host, rb.proxy.Namespace, ns)
	port := rb.port.Port
	ch := trafficPolicy(dr, subset, port).GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return
	}
	var hp *route.RouteAction_HashPolicy
	switch {
	case ch.GetHttpHeaderName() != "":
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_Header_{Header: &route.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()}}}
	case ch.GetHttpCookie() != nil && !rb.grpc:
		c := ch.GetHttpCookie()
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_Cookie_{Cookie: &route.RouteAction_HashPolicy_Cookie{Name: c.GetName(), Path: c.GetPath(), Ttl: c.GetTtl()}}}
	case ch.GetUseSourceIp() && !rb.grpc:
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &route.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case ch.GetHttpQueryParameterName() != "" && !rb.grpc:
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &route.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()}}}
	}
	if hp != nil {
		ra.HashPolicy = []*route.RouteAction_HashPolicy{hp}
	}
}

func (rb *routeBuilder) match(m *networking.HTTPMatchRequest) *route.RouteMatch {
	rm := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &route.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	names := make([]string, 0, len(m.GetHeaders()))
	for k := range m.GetHeaders() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetHeaders()[k], false))
	}
	without := make([]string, 0, len(m.GetWithoutHeaders()))
	for k := range m.GetWithoutHeaders() {
		without = append(without, k)
	}
	sort.Strings(without)
	for _, k := range without {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetWithoutHeaders()[k], true))
	}
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod(), false))
	}
	if m.GetAuthority() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.GetAuthority(), false))
	}
	if !rb.grpc {
		qp := make([]string, 0, len(m.GetQueryParams()))
		for k := range m.GetQueryParams() {
			qp = append(qp, k)
		}
		sort.Strings(qp)
		for _, k := range qp {
			if sm := stringMatcher(m.GetQueryParams()[k]); sm != nil {
				rm.QueryParameters = append(rm.QueryParameters, &route.QueryParameterMatcher{Name: k,
					QueryParameterMatchSpecifier: &route.QueryParameterMatcher_StringMatch{StringMatch: sm}})
			}
		}
	}
	return rm
}

func stringMatcher(s *networking.StringMatch) *matcher.StringMatcher {
	switch v := s.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

func headerMatcher(name string, s *networking.StringMatch, invert bool) *route.HeaderMatcher {
	hm := &route.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if sm := stringMatcher(s); sm != nil {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: sm}
	} else {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// fraction converts Istio's percentage (0-100, fractional) to Envoy's per-million fraction.
func fraction(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(pct * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

func percentOrAll(p *networking.Percent) *typev3.FractionalPercent {
	if p == nil {
		return fraction(100)
	}
	return fraction(p.GetValue())
}

func faultConfig(f *networking.HTTPFaultInjection) *fault.HTTPFault {
	out := &fault.HTTPFault{}
	if d := f.GetDelay(); d != nil {
		out.Delay = &faultcommon.FaultDelay{
			FaultDelaySecifier: &faultcommon.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
			Percentage:         percentOrAll(d.GetPercentage()),
		}
	}
	if a := f.GetAbort(); a != nil {
		fa := &fault.FaultAbort{Percentage: percentOrAll(a.GetPercentage())}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			fa.ErrorType = &fault.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			fa.ErrorType = &fault.FaultAbort_GrpcStatus{GrpcStatus: grpcCode(e.GrpcStatus)}
		}
		out.Abort = fa
	}
	return out
}

// grpcCode maps Istio's status name (e.g. UNAVAILABLE) to its number; unknown names become UNKNOWN.
func grpcCode(name string) uint32 {
	if strings.EqualFold(name, "CANCELLED") {
		return uint32(codes.Canceled)
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(strings.ReplaceAll(c.String(), "_", ""), strings.ReplaceAll(name, "_", "")) {
			return uint32(c)
		}
	}
	return uint32(codes.Unknown)
}
