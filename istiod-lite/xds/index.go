package xds

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// defaultRootNamespace holds mesh-wide policy unless meshConfig.rootNamespace says otherwise.
const defaultRootNamespace = "istio-system"

// index is a read-only view of one Snapshot with the lookups generation needs.
// It is built once per snapshot and shared by every proxy.
type index struct {
	snap        *model.Snapshot
	services    map[string]*model.Service
	vsByHost    map[string][]*networkingv1.VirtualService // hostname -> VirtualServices, in snapshot order
	drByHost    map[string][]*networkingv1.DestinationRule
	trustDomain string
	autoMTLS    bool
	rootNS      string
	byIP        map[string][]ipEndpoint // endpoint address -> the services it serves
}

type ipEndpoint struct {
	svc *model.Service
	ep  model.Endpoint
}

func newIndex(s *model.Snapshot) *index {
	ix := &index{
		snap:        s,
		services:    make(map[string]*model.Service, len(s.Services)),
		vsByHost:    map[string][]*networkingv1.VirtualService{},
		drByHost:    map[string][]*networkingv1.DestinationRule{},
		trustDomain: "cluster.local",
		autoMTLS:    true,
		rootNS:      defaultRootNamespace,
	}
	if ns := s.Mesh.GetRootNamespace(); ns != "" {
		ix.rootNS = ns
	}
	if td := s.Mesh.GetTrustDomain(); td != "" {
		ix.trustDomain = td
	}
	if v := s.Mesh.GetEnableAutoMtls(); v != nil {
		ix.autoMTLS = v.GetValue()
	}
	ix.byIP = map[string][]ipEndpoint{}
	for _, svc := range s.Services {
		ix.services[svc.Hostname] = svc
		for _, e := range svc.Endpoints {
			ix.byIP[e.Address] = append(ix.byIP[e.Address], ipEndpoint{svc, e})
		}
	}
	for _, vs := range s.VirtualServices {
		for _, h := range vs.Spec.GetHosts() {
			fq := resolveHost(h, vs.Namespace)
			ix.vsByHost[fq] = append(ix.vsByHost[fq], vs)
		}
	}
	for _, dr := range s.DestinationRules {
		fq := resolveHost(dr.Spec.GetHost(), dr.Namespace)
		ix.drByHost[fq] = append(ix.drByHost[fq], dr)
	}
	return ix
}

// resolveHost expands a short Kubernetes name relative to the namespace of the
// object that names it, as Istio does: "reviews" in namespace default becomes
// reviews.default.svc.cluster.local. Names with a dot are taken as FQDNs.
func resolveHost(h, ns string) string {
	if h == "" || h == "*" || strings.Contains(h, ".") {
		return h
	}
	return h + "." + ns + ".svc.cluster.local"
}

// virtualService returns the VirtualService routing host, preferring one in the
// proxy's namespace, then the service's, then any.
func (ix *index) virtualService(host, proxyNS string, svc *model.Service) *networkingv1.VirtualService {
	return pickByNamespace(ix.vsByHost[host], proxyNS, svc.Namespace, ix.rootNS)
}

// destinationRule follows Istio's lookup order: proxy namespace, service
// namespace, then the root namespace (or anything else).
func (ix *index) destinationRule(host, proxyNS, svcNS string) *networking.DestinationRule {
	dr := pickByNamespace(ix.drByHost[host], proxyNS, svcNS, ix.rootNS)
	if dr == nil {
		return nil
	}
	return &dr.Spec
}

type namespaced interface{ GetNamespace() string }

func pickByNamespace[T namespaced](list []T, first, second, root string) T {
	var zero T
	for _, ns := range []string{first, second, root} {
		for _, o := range list {
			if o.GetNamespace() == ns {
				return o
			}
		}
	}
	if len(list) > 0 {
		return list[0]
	}
	return zero
}

// mtlsMode is the effective PeerAuthentication mode for a workload and port:
// workload selector beats namespace beats mesh-wide (root namespace); port-level
// settings beat the policy's own mode; the default is PERMISSIVE.
func (ix *index) mtlsMode(ns string, labels map[string]string, port uint32) security.PeerAuthentication_MutualTLS_Mode {
	var mesh, nsWide, workload *security.PeerAuthentication
	for _, pa := range ix.snap.PeerAuthentications {
		spec := &pa.Spec
		sel := spec.GetSelector().GetMatchLabels()
		switch {
		case pa.Namespace == ns && len(sel) > 0 && labelsMatch(sel, labels):
			if workload == nil {
				workload = spec
			}
		case pa.Namespace == ns && len(sel) == 0:
			if nsWide == nil {
				nsWide = spec
			}
		case pa.Namespace == ix.rootNS && len(sel) == 0:
			if mesh == nil {
				mesh = spec
			}
		}
	}
	mode := security.PeerAuthentication_MutualTLS_PERMISSIVE
	for _, pa := range []*security.PeerAuthentication{mesh, nsWide, workload} {
		if pa == nil {
			continue
		}
		if m := pa.GetMtls().GetMode(); m != security.PeerAuthentication_MutualTLS_UNSET {
			mode = m
		}
		if pl, ok := pa.GetPortLevelMtls()[port]; ok && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
			mode = pl.GetMode()
		}
	}
	return mode
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// inboundPort is one port this proxy serves for one of its services.
type inboundPort struct {
	svc      *model.Service
	port     model.Port
	target   uint32 // the port the workload listens on
	endpoint model.Endpoint
}

// inbound lists the ports of the services whose endpoints are this proxy,
// deduplicated by target port (first service wins, sorted by hostname).
func (ix *index) inbound(p *Proxy) []inboundPort {
	seen := map[uint32]bool{}
	var out []inboundPort
	for _, ip := range p.IPAddresses {
		// byIP keeps snapshot order, which is sorted by hostname.
		for _, ie := range ix.byIP[ip] {
			for _, port := range ie.svc.Ports {
				t := endpointPort(ie.ep, port)
				if seen[t] {
					continue
				}
				seen[t] = true
				out = append(out, inboundPort{svc: ie.svc, port: port, target: t, endpoint: ie.ep})
			}
		}
	}
	return out
}

// endpointPort is the port traffic for service port p is sent to on ep.
func endpointPort(ep model.Endpoint, p model.Port) uint32 {
	if v, ok := ep.Ports[p.Name]; ok && v != 0 {
		return v
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Port
}
