package config

import (
	"strconv"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

func validatePeerAuthentication(r *reporter, o *securityv1.PeerAuthentication) {
	s := &o.Spec
	if s.Selector != nil {
		checkLabels(r, spec.field("selector").field("matchLabels"), s.Selector.MatchLabels)
	}
	if len(s.PortLevelMtls) > 0 && (s.Selector == nil || len(s.Selector.MatchLabels) == 0) {
		r.errorf(spec.field("portLevelMtls"), "portLevelMtls applies to a workload's ports, so it needs a selector")
	}
	for port := range s.PortLevelMtls {
		p := spec.field("portLevelMtls").key(strconv.FormatUint(uint64(port), 10))
		checkPort(r, p, int64(port))
		if s.PortLevelMtls[port] == nil {
			r.errorf(p, "mtls settings are required")
		}
	}
}

func validateAuthorizationPolicy(r *reporter, o *securityv1.AuthorizationPolicy) {
	s := &o.Spec
	if s.Selector != nil {
		checkLabels(r, spec.field("selector").field("matchLabels"), s.Selector.MatchLabels)
	}
	switch {
	case s.Action == security.AuthorizationPolicy_CUSTOM && s.GetProvider() == nil:
		r.errorf(spec.field("provider"), "action CUSTOM needs a provider")
	case s.Action != security.AuthorizationPolicy_CUSTOM && s.GetProvider() != nil:
		r.errorf(spec.field("provider"), "provider is only allowed with action CUSTOM")
	}
	for i, rule := range s.Rules {
		p := spec.field("rules").index(i)
		if rule == nil {
			r.errorf(p, "rule must not be empty")
			continue
		}
		for j, f := range rule.From {
			fp := p.field("from").index(j).field("source")
			if f.Source == nil {
				r.errorf(fp, "source is required")
				continue
			}
			for k, b := range f.Source.IpBlocks {
				checkIPOrCIDR(r, fp.field("ipBlocks").index(k), b)
			}
			for k, b := range f.Source.NotIpBlocks {
				checkIPOrCIDR(r, fp.field("notIpBlocks").index(k), b)
			}
			for k, b := range f.Source.RemoteIpBlocks {
				checkIPOrCIDR(r, fp.field("remoteIpBlocks").index(k), b)
			}
		}
		for j, t := range rule.To {
			tp := p.field("to").index(j).field("operation")
			if t.Operation == nil {
				r.errorf(tp, "operation is required")
				continue
			}
			for k, port := range t.Operation.Ports {
				n, err := strconv.Atoi(port)
				if err != nil {
					r.errorf(tp.field("ports").index(k), "port %q is not a number", port)
					continue
				}
				checkPort(r, tp.field("ports").index(k), int64(n))
			}
		}
		for j, c := range rule.When {
			cp := p.field("when").index(j)
			if strings.TrimSpace(c.Key) == "" {
				r.errorf(cp.field("key"), "condition key is required, e.g. request.headers[x-token] or source.ip")
			}
			if len(c.Values) == 0 && len(c.NotValues) == 0 {
				r.errorf(cp, "condition needs values or notValues")
			}
		}
	}
}

func validateMeshConfig(r *reporter, m *meshv1alpha1.MeshConfig) { validateMesh(r, spec, m) }

// validateMesh checks a MeshConfig found at base (spec, or data[mesh] of the istio ConfigMap).
func validateMesh(r *reporter, spec fieldPath, m *meshv1alpha1.MeshConfig) {
	if m.TrustDomain != "" {
		if msg := checkDNS1123Subdomain(m.TrustDomain); msg != "" {
			r.errorf(spec.field("trustDomain"), "invalid trust domain %q: %s", m.TrustDomain, msg)
		}
	}
	if m.RootNamespace != "" {
		if msg := checkDNS1123Label(m.RootNamespace); msg != "" {
			r.errorf(spec.field("rootNamespace"), "invalid root namespace %q: %s", m.RootNamespace, msg)
		}
	}
	checkDuration(r, spec.field("connectTimeout"), m.ConnectTimeout)
	checkDuration(r, spec.field("protocolDetectionTimeout"), nonZero(m.ProtocolDetectionTimeout))
	if m.ProxyListenPort != 0 {
		checkPort(r, spec.field("proxyListenPort"), int64(m.ProxyListenPort))
	}
	if m.ProxyInboundListenPort != 0 {
		checkPort(r, spec.field("proxyInboundListenPort"), int64(m.ProxyInboundListenPort))
	}
}
