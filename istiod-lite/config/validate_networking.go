package config

import (
	"net/netip"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// Per-object rules for networking.istio.io kinds, following Istio's
// pkg/config/validation. Cross-object rules live in validate_set.go.

var spec = root("spec")

func validateVirtualService(r *reporter, o *networkingv1.VirtualService) {
	s := &o.Spec
	// A VirtualService without hosts is a delegate (included by another
	// VirtualService's delegate field); only those may omit hosts, and they
	// cannot bind gateways.
	if len(s.Hosts) == 0 && len(s.Gateways) > 0 {
		r.errorf(spec.field("hosts"), "at least one host is required")
	}
	appliesToMesh := len(s.Gateways) == 0
	for i, g := range s.Gateways {
		if g == "mesh" {
			appliesToMesh = true
			continue
		}
		name := g
		if ns, n, ok := strings.Cut(g, "/"); ok {
			if msg := checkDNS1123Label(ns); msg != "" {
				r.errorf(spec.field("gateways").index(i), "invalid gateway namespace %q: %s", ns, msg)
			}
			name = n
		}
		if msg := checkDNS1123Subdomain(name); msg != "" {
			r.errorf(spec.field("gateways").index(i), "invalid gateway name %q: %s; use mesh, <name> or <namespace>/<name>", name, msg)
		}
	}
	for i, h := range s.Hosts {
		p := spec.field("hosts").index(i)
		if msg := checkHost(h); msg != "" {
			r.errorf(p, "%s", msg)
		} else if h == "*" && appliesToMesh {
			r.errorf(p, "wildcard host * is not allowed for virtual services bound to the mesh gateway; list the hosts")
		}
	}
	checkExportTo(r, spec.field("exportTo"), s.ExportTo)
	for i, h := range s.Http {
		validateHTTPRoute(r, spec.field("http").index(i), h)
	}
	for i, t := range s.Tcp {
		p := spec.field("tcp").index(i)
		for j, m := range t.Match {
			if m.Port != 0 {
				checkPort(r, p.field("match").index(j).field("port"), int64(m.Port))
			}
			for k, sn := range m.DestinationSubnets {
				checkIPOrCIDR(r, p.field("match").index(j).field("destinationSubnets").index(k), sn)
			}
		}
		validateRouteDestinations(r, p.field("route"), t.Route)
	}
	for i, t := range s.Tls {
		p := spec.field("tls").index(i)
		if len(t.Match) == 0 {
			r.errorf(p.field("match"), "TLS routes must have at least one match")
		}
		for j, m := range t.Match {
			if len(m.SniHosts) == 0 {
				r.errorf(p.field("match").index(j).field("sniHosts"), "at least one SNI host is required")
			}
			for k, h := range m.SniHosts {
				if msg := checkHost(h); msg != "" {
					r.errorf(p.field("match").index(j).field("sniHosts").index(k), "%s", msg)
				}
			}
			if m.Port != 0 {
				checkPort(r, p.field("match").index(j).field("port"), int64(m.Port))
			}
		}
		validateRouteDestinations(r, p.field("route"), t.Route)
	}
	if len(s.Http) == 0 && len(s.Tcp) == 0 && len(s.Tls) == 0 {
		r.errorf(spec, "at least one of http, tcp or tls routes is required")
	}
}

func validateHTTPRoute(r *reporter, p fieldPath, h *networking.HTTPRoute) {
	actions := 0
	for _, set := range []bool{len(h.Route) > 0, h.Redirect != nil, h.DirectResponse != nil, h.Delegate != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions == 0:
		r.errorf(p, "one of route, redirect, directResponse or delegate is required")
	case actions > 1:
		r.errorf(p, "only one of route, redirect, directResponse or delegate may be set")
	}
	for i, m := range h.Match {
		mp := p.field("match").index(i)
		checkStringMatch(r, mp.field("uri"), m.Uri)
		checkStringMatch(r, mp.field("scheme"), m.Scheme)
		checkStringMatch(r, mp.field("method"), m.Method)
		checkStringMatch(r, mp.field("authority"), m.Authority)
		for _, k := range sortedKeys(m.Headers) {
			if k == "" {
				r.errorf(mp.field("headers").key(k), "header name must not be empty")
			}
			checkStringMatch(r, mp.field("headers").key(k), m.Headers[k])
		}
		for _, k := range sortedKeys(m.WithoutHeaders) {
			checkStringMatch(r, mp.field("withoutHeaders").key(k), m.WithoutHeaders[k])
		}
		for _, k := range sortedKeys(m.QueryParams) {
			checkStringMatch(r, mp.field("queryParams").key(k), m.QueryParams[k])
		}
		if m.Port != 0 {
			checkPort(r, mp.field("port"), int64(m.Port))
		}
		checkLabels(r, mp.field("sourceLabels"), m.SourceLabels)
	}
	validateHTTPRouteDestinations(r, p.field("route"), h.Route)
	// A zero timeout disables the route timeout in Istio and Envoy, so it is allowed.
	if h.Timeout != nil && (h.Timeout.CheckValid() != nil || h.Timeout.AsDuration() < 0) {
		r.errorf(p.field("timeout"), "timeout must not be negative")
	}
	if rt := h.Retries; rt != nil {
		rp := p.field("retries")
		if rt.Attempts < 0 {
			r.errorf(rp.field("attempts"), "attempts %d must not be negative", rt.Attempts)
		}
		checkDuration(r, rp.field("perTryTimeout"), rt.PerTryTimeout)
		if rt.RetryOn != "" {
			for _, on := range strings.Split(rt.RetryOn, ",") {
				on = strings.TrimSpace(on)
				if _, isCode := strconv.Atoi(on); isCode == nil || retryOnPolicies[on] {
					continue
				}
				r.errorf(rp.field("retryOn"), "unknown retry condition %q; use Envoy conditions such as 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, or gRPC ones such as cancelled, deadline-exceeded, unavailable, or an HTTP status code", on)
			}
		}
	}
	if f := h.Fault; f != nil {
		fp := p.field("fault")
		if f.Delay == nil && f.Abort == nil {
			r.errorf(fp, "fault must set delay or abort")
		}
		if d := f.Delay; d != nil {
			dp := fp.field("delay")
			if d.GetFixedDelay() == nil && d.GetExponentialDelay() == nil {
				r.errorf(dp.field("fixedDelay"), "fixedDelay is required")
			}
			checkDuration(r, dp.field("fixedDelay"), d.GetFixedDelay())
			if d.Percentage != nil {
				checkPercent(r, dp.field("percentage").field("value"), d.Percentage.Value)
			}
			if d.Percent < 0 || d.Percent > 100 {
				checkPercent(r, dp.field("percent"), float64(d.Percent))
			}
		}
		if a := f.Abort; a != nil {
			ap := fp.field("abort")
			switch a.ErrorType.(type) {
			case *networking.HTTPFaultInjection_Abort_HttpStatus:
				if st := a.GetHttpStatus(); st < 200 || st > 599 {
					r.errorf(ap.field("httpStatus"), "HTTP status %d is out of range; it must be between 200 and 599", st)
				}
			case nil:
				r.errorf(ap, "one of httpStatus, grpcStatus or http2Error is required")
			}
			if a.Percentage != nil {
				checkPercent(r, ap.field("percentage").field("value"), a.Percentage.Value)
			}
		}
	}
	if rw := h.Rewrite; rw != nil && rw.Uri != "" && rw.UriRegexRewrite != nil {
		r.errorf(p.field("rewrite"), "only one of uri and uriRegexRewrite may be set")
	}
	if rw := h.Rewrite; rw != nil && rw.UriRegexRewrite != nil {
		checkRegex(r, p.field("rewrite").field("uriRegexRewrite").field("match"), rw.UriRegexRewrite.Match)
	}
	if rd := h.Redirect; rd != nil && rd.RedirectCode != 0 && (rd.RedirectCode < 300 || rd.RedirectCode > 399) {
		r.errorf(p.field("redirect").field("redirectCode"), "redirect code %d is not a redirect; use a 3xx code such as 301 or 308", rd.RedirectCode)
	}
	if dr := h.DirectResponse; dr != nil && (dr.Status < 200 || dr.Status > 599) {
		r.errorf(p.field("directResponse").field("status"), "HTTP status %d is out of range; it must be between 200 and 599", dr.Status)
	}
	if h.Mirror != nil {
		validateDestination(r, p.field("mirror"), h.Mirror)
	}
	if h.MirrorPercentage != nil {
		checkPercent(r, p.field("mirrorPercentage").field("value"), h.MirrorPercentage.Value)
	}
	for i, m := range h.Mirrors {
		mp := p.field("mirrors").index(i)
		if m.Destination == nil {
			r.errorf(mp.field("destination"), "destination is required")
		} else {
			validateDestination(r, mp.field("destination"), m.Destination)
		}
		if m.Percentage != nil {
			checkPercent(r, mp.field("percentage").field("value"), m.Percentage.Value)
		}
	}
	if c := h.CorsPolicy; c != nil {
		for i, o := range c.AllowOrigins {
			checkStringMatch(r, p.field("corsPolicy").field("allowOrigins").index(i), o)
		}
	}
}

// Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions.
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"envoy-ratelimited": true, "retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	"retriable-headers": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

func checkStringMatch(r *reporter, p fieldPath, m *networking.StringMatch) {
	if m == nil {
		return
	}
	switch t := m.MatchType.(type) {
	case nil:
		r.errorf(p, "one of exact, prefix or regex is required")
	case *networking.StringMatch_Regex:
		checkRegex(r, p.field("regex"), t.Regex)
	}
}

// validateHTTPRouteDestinations: weights must sum to 100 when there are several
// destinations or any weight is set; a single destination without a weight gets 100.
func validateHTTPRouteDestinations(r *reporter, p fieldPath, ds []*networking.HTTPRouteDestination) {
	weights := make([]int32, len(ds))
	for i, d := range ds {
		weights[i] = d.Weight
		if d.Destination == nil {
			r.errorf(p.index(i).field("destination"), "destination is required")
			continue
		}
		validateDestination(r, p.index(i).field("destination"), d.Destination)
	}
	checkWeights(r, p, weights)
}

func validateRouteDestinations(r *reporter, p fieldPath, ds []*networking.RouteDestination) {
	if len(ds) == 0 {
		r.errorf(p, "at least one route destination is required")
	}
	weights := make([]int32, len(ds))
	for i, d := range ds {
		weights[i] = d.Weight
		if d.Destination == nil {
			r.errorf(p.index(i).field("destination"), "destination is required")
			continue
		}
		validateDestination(r, p.index(i).field("destination"), d.Destination)
	}
	checkWeights(r, p, weights)
}

func checkWeights(r *reporter, p fieldPath, weights []int32) {
	var total int64
	anySet := false
	for i, w := range weights {
		if w < 0 || w > 100 {
			r.errorf(p.index(i).field("weight"), "weight %d is out of range; it must be between 0 and 100", w)
		}
		if w != 0 {
			anySet = true
		}
		total += int64(w)
	}
	if len(weights) == 1 && !anySet {
		return // implicit 100
	}
	if len(weights) > 0 && total != 100 {
		r.errorf(p, "route weights sum to %d; they must sum to 100", total)
	}
}

func validateDestination(r *reporter, p fieldPath, d *networking.Destination) {
	if msg := checkHost(d.Host); msg != "" {
		r.errorf(p.field("host"), "%s", msg)
	} else if strings.Contains(d.Host, "*") {
		r.errorf(p.field("host"), "destination host %q must not be a wildcard", d.Host)
	}
	if d.Subset != "" {
		if msg := checkDNS1123Label(d.Subset); msg != "" {
			r.errorf(p.field("subset"), "invalid subset name %q: %s", d.Subset, msg)
		}
	}
	if d.Port != nil {
		checkPort(r, p.field("port").field("number"), int64(d.Port.Number))
	}
}

func validateDestinationRule(r *reporter, o *networkingv1.DestinationRule) {
	s := &o.Spec
	if msg := checkHost(s.Host); msg != "" {
		r.errorf(spec.field("host"), "%s", msg)
	}
	checkExportTo(r, spec.field("exportTo"), s.ExportTo)
	validateTrafficPolicy(r, spec.field("trafficPolicy"), s.TrafficPolicy)
	seen := map[string]int{}
	for i, ss := range s.Subsets {
		p := spec.field("subsets").index(i)
		if ss.Name == "" {
			r.errorf(p.field("name"), "subset name is required")
		} else if msg := checkDNS1123Label(ss.Name); msg != "" {
			r.errorf(p.field("name"), "invalid subset name %q: %s", ss.Name, msg)
		} else if prev, dup := seen[ss.Name]; dup {
			r.errorf(p.field("name"), "duplicate subset %q (also subsets[%d])", ss.Name, prev)
		} else {
			seen[ss.Name] = i
		}
		checkLabels(r, p.field("labels"), ss.Labels)
		validateTrafficPolicy(r, p.field("trafficPolicy"), ss.TrafficPolicy)
	}
}

func validateTrafficPolicy(r *reporter, p fieldPath, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	validateLoadBalancer(r, p.field("loadBalancer"), tp.LoadBalancer)
	validateConnectionPool(r, p.field("connectionPool"), tp.ConnectionPool)
	validateOutlierDetection(r, p.field("outlierDetection"), tp.OutlierDetection)
	validateClientTLS(r, p.field("tls"), tp.Tls)
	for i, pl := range tp.PortLevelSettings {
		pp := p.field("portLevelSettings").index(i)
		if pl.Port == nil {
			r.errorf(pp.field("port"), "port is required")
		} else {
			checkPort(r, pp.field("port").field("number"), int64(pl.Port.Number))
		}
		validateLoadBalancer(r, pp.field("loadBalancer"), pl.LoadBalancer)
		validateConnectionPool(r, pp.field("connectionPool"), pl.ConnectionPool)
		validateOutlierDetection(r, pp.field("outlierDetection"), pl.OutlierDetection)
		validateClientTLS(r, pp.field("tls"), pl.Tls)
	}
}

func validateLoadBalancer(r *reporter, p fieldPath, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.field("consistentHash")
		if ch.HashKey == nil {
			r.errorf(cp, "consistentHash needs a key: one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
		}
		if c := ch.GetHttpCookie(); c != nil {
			if c.Name == "" {
				r.errorf(cp.field("httpCookie").field("name"), "cookie name is required")
			}
			if c.Ttl != nil && (c.Ttl.CheckValid() != nil || c.Ttl.AsDuration() < 0) {
				r.errorf(cp.field("httpCookie").field("ttl"), "ttl must not be negative")
			}
		}
		if ch.GetHttpHeaderName() == "" && ch.GetHashKey() != nil {
			if _, ok := ch.HashKey.(*networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName); ok {
				r.errorf(cp.field("httpHeaderName"), "header name must not be empty")
			}
		}
	}
	checkDuration(r, p.field("warmupDurationSecs"), lb.WarmupDurationSecs)
}

func validateConnectionPool(r *reporter, p fieldPath, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if t := cp.Tcp; t != nil {
		tp := p.field("tcp")
		if t.MaxConnections < 0 {
			r.errorf(tp.field("maxConnections"), "maxConnections %d must not be negative", t.MaxConnections)
		}
		checkDuration(r, tp.field("connectTimeout"), t.ConnectTimeout)
		checkDuration(r, tp.field("maxConnectionDuration"), t.MaxConnectionDuration)
		checkDuration(r, tp.field("idleTimeout"), t.IdleTimeout)
		if k := t.TcpKeepalive; k != nil {
			checkDuration(r, tp.field("tcpKeepalive").field("time"), k.Time)
			checkDuration(r, tp.field("tcpKeepalive").field("interval"), k.Interval)
		}
	}
	if h := cp.Http; h != nil {
		hp := p.field("http")
		for name, v := range map[string]int32{
			"http1MaxPendingRequests":  h.Http1MaxPendingRequests,
			"http2MaxRequests":         h.Http2MaxRequests,
			"maxRequestsPerConnection": h.MaxRequestsPerConnection,
			"maxRetries":               h.MaxRetries,
			"maxConcurrentStreams":     h.MaxConcurrentStreams,
		} {
			if v < 0 {
				r.errorf(hp.field(name), "%s %d must not be negative", name, v)
			}
		}
		checkDuration(r, hp.field("idleTimeout"), h.IdleTimeout)
	}
}

func validateOutlierDetection(r *reporter, p fieldPath, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	checkDuration(r, p.field("interval"), od.Interval)
	checkDuration(r, p.field("baseEjectionTime"), od.BaseEjectionTime)
	if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
		checkPercent(r, p.field("maxEjectionPercent"), float64(od.MaxEjectionPercent))
	}
	if od.MinHealthPercent < 0 || od.MinHealthPercent > 100 {
		checkPercent(r, p.field("minHealthPercent"), float64(od.MinHealthPercent))
	}
	if od.ConsecutiveErrors < 0 {
		r.errorf(p.field("consecutiveErrors"), "consecutiveErrors %d must not be negative", od.ConsecutiveErrors)
	}
}

func validateClientTLS(r *reporter, p fieldPath, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	switch t.Mode {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if t.ClientCertificate != "" || t.PrivateKey != "" || t.CaCertificates != "" || t.CredentialName != "" {
			r.errorf(p, "ISTIO_MUTUAL uses the mesh certificates; remove clientCertificate, privateKey, caCertificates and credentialName")
		}
	case networking.ClientTLSSettings_MUTUAL:
		if t.CredentialName == "" && (t.ClientCertificate == "" || t.PrivateKey == "") {
			r.errorf(p, "MUTUAL requires clientCertificate and privateKey, or credentialName")
		}
	}
}

func validateServiceEntry(r *reporter, o *networkingv1.ServiceEntry) {
	s := &o.Spec
	if len(s.Hosts) == 0 {
		r.errorf(spec.field("hosts"), "at least one host is required")
	}
	for i, h := range s.Hosts {
		p := spec.field("hosts").index(i)
		if h == "*" {
			r.errorf(p, "host * is not allowed in a ServiceEntry; name the hosts")
		} else if msg := checkHost(h); msg != "" {
			r.errorf(p, "%s", msg)
		} else if strings.HasPrefix(h, "*") && s.Resolution == networking.ServiceEntry_DNS && len(s.Endpoints) == 0 {
			r.errorf(p, "wildcard host %q cannot be resolved with resolution DNS without endpoints; use resolution NONE", h)
		}
	}
	checkExportTo(r, spec.field("exportTo"), s.ExportTo)
	for i, a := range s.Addresses {
		checkIPOrCIDR(r, spec.field("addresses").index(i), a)
	}
	if len(s.Ports) == 0 {
		r.errorf(spec.field("ports"), "at least one port is required")
	}
	names, numbers := map[string]bool{}, map[uint32]bool{}
	for i, pt := range s.Ports {
		p := spec.field("ports").index(i)
		checkPort(r, p.field("number"), int64(pt.Number))
		if pt.TargetPort != 0 {
			checkPort(r, p.field("targetPort"), int64(pt.TargetPort))
		}
		if pt.Name == "" {
			r.errorf(p.field("name"), "port name is required")
		} else if names[pt.Name] {
			r.errorf(p.field("name"), "duplicate port name %q", pt.Name)
		}
		if numbers[pt.Number] {
			r.errorf(p.field("number"), "duplicate port number %d", pt.Number)
		}
		names[pt.Name], numbers[pt.Number] = true, true
		if pt.Protocol != "" && !validProtocols[strings.ToUpper(pt.Protocol)] {
			r.errorf(p.field("protocol"), "unknown protocol %q; use one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS, UDP", pt.Protocol)
		}
	}
	if s.WorkloadSelector != nil && len(s.Endpoints) > 0 {
		r.errorf(spec.field("workloadSelector"), "workloadSelector and endpoints are mutually exclusive")
	}
	for i, ep := range s.Endpoints {
		p := spec.field("endpoints").index(i)
		validateWorkloadSpec(r, p, ep, s.Resolution == networking.ServiceEntry_STATIC)
		for _, k := range sortedKeys(ep.Ports) {
			if !names[k] {
				r.errorf(p.field("ports").key(k), "port name %q is not declared in spec.ports", k)
			}
		}
	}
	if s.WorkloadSelector != nil {
		checkLabels(r, spec.field("workloadSelector").field("labels"), s.WorkloadSelector.Labels)
	}
}

// validProtocols are the protocol names Istio accepts on ports.
var validProtocols = map[string]bool{
	"HTTP": true, "HTTPS": true, "HTTP2": true, "GRPC": true, "GRPC-WEB": true, "TCP": true, "TLS": true,
	"MONGO": true, "MYSQL": true, "REDIS": true, "UDP": true, "HBONE": true,
}

func validateWorkloadEntry(r *reporter, o *networkingv1.WorkloadEntry) {
	if o.Spec.Address == "" {
		r.errorf(spec.field("address"), "address is required")
	}
	validateWorkloadSpec(r, spec, &o.Spec, false)
}

func validateWorkloadSpec(r *reporter, p fieldPath, w *networking.WorkloadEntry, mustBeIP bool) {
	switch {
	case w.Address == "":
	case strings.HasPrefix(w.Address, "unix://"):
	case mustBeIP:
		checkIP(r, p.field("address"), w.Address)
	default:
		if msg := checkHost(w.Address); msg != "" && !isIP(w.Address) {
			r.errorf(p.field("address"), "address %q is neither an IP address nor a hostname", w.Address)
		}
	}
	for _, k := range sortedKeys(w.Ports) {
		checkPort(r, p.field("ports").key(k), int64(w.Ports[k]))
	}
	checkLabels(r, p.field("labels"), w.Labels)
	if w.ServiceAccount != "" {
		if msg := checkDNS1123Subdomain(w.ServiceAccount); msg != "" {
			r.errorf(p.field("serviceAccount"), "invalid service account %q: %s", w.ServiceAccount, msg)
		}
	}
}

func validateGateway(r *reporter, o *networkingv1.Gateway) {
	s := &o.Spec
	if len(s.Servers) == 0 {
		r.errorf(spec.field("servers"), "at least one server is required")
	}
	for i, sv := range s.Servers {
		p := spec.field("servers").index(i)
		if sv.Port == nil {
			r.errorf(p.field("port"), "port is required")
		} else {
			checkPort(r, p.field("port").field("number"), int64(sv.Port.Number))
			proto := strings.ToUpper(sv.Port.Protocol)
			if !validProtocols[proto] {
				r.errorf(p.field("port").field("protocol"), "unknown protocol %q; use one of HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, MONGO", sv.Port.Protocol)
			}
			if (proto == "HTTPS" || proto == "TLS") && sv.Tls == nil {
				r.errorf(p.field("tls"), "server with protocol %s needs tls settings", proto)
			}
		}
		if len(sv.Hosts) == 0 {
			r.errorf(p.field("hosts"), "at least one host is required")
		}
		for j, h := range sv.Hosts {
			check := checkHost
			if strings.Contains(h, "/") {
				check = checkNamespacedHost
			}
			if msg := check(h); msg != "" {
				r.errorf(p.field("hosts").index(j), "%s", msg)
			}
		}
	}
}

func validateSidecar(r *reporter, o *networkingv1.Sidecar) {
	s := &o.Spec
	if s.WorkloadSelector != nil {
		checkLabels(r, spec.field("workloadSelector").field("labels"), s.WorkloadSelector.Labels)
	}
	for i, in := range s.Ingress {
		p := spec.field("ingress").index(i)
		if in.Port == nil {
			r.errorf(p.field("port"), "port is required")
		} else {
			checkPort(r, p.field("port").field("number"), int64(in.Port.Number))
		}
	}
	if len(s.Egress) == 0 && len(s.Ingress) == 0 && s.OutboundTrafficPolicy == nil && s.InboundConnectionPool == nil {
		r.errorf(spec, "empty Sidecar: set egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
	}
	for i, eg := range s.Egress {
		p := spec.field("egress").index(i)
		if eg.Port != nil {
			checkPort(r, p.field("port").field("number"), int64(eg.Port.Number))
		}
		if len(eg.Hosts) == 0 {
			r.errorf(p.field("hosts"), "at least one host is required")
		}
		for j, h := range eg.Hosts {
			if msg := checkNamespacedHost(h); msg != "" {
				r.errorf(p.field("hosts").index(j), "%s", msg)
			}
		}
	}
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkExportTo: "." (own namespace), "*" (all), "~" (none) or namespace names.
func checkExportTo(r *reporter, p fieldPath, exportTo []string) {
	for i, e := range exportTo {
		if e == "." || e == "*" || e == "~" {
			continue
		}
		if msg := checkDNS1123Label(e); msg != "" {
			r.errorf(p.index(i), "invalid exportTo %q: use \".\", \"*\", \"~\" or a namespace name", e)
		}
	}
}
