package config

import (
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Rules for the Kubernetes kinds, the subset of the API server's validation
// that matters for discovery.

func validateService(r *reporter, o *corev1.Service) {
	// setIdentity already reported names that are not even DNS-1123 subdomains.
	if errs := validation.IsDNS1035Label(o.Name); o.Name != "" && checkDNS1123Subdomain(o.Name) == "" && len(errs) > 0 {
		r.errorf(root("metadata").field("name"), "invalid Service name %q: %s", o.Name, errs[0])
	}
	ports := root("spec").field("ports")
	names := map[string]bool{}
	for i, p := range o.Spec.Ports {
		pp := ports.index(i)
		checkPort(r, pp.field("port"), int64(p.Port))
		if len(o.Spec.Ports) > 1 && p.Name == "" {
			r.errorf(pp.field("name"), "port name is required when a Service has more than one port")
		}
		if p.Name != "" {
			if msg := checkDNS1123Label(p.Name); msg != "" {
				r.errorf(pp.field("name"), "invalid port name %q: %s", p.Name, msg)
			} else if names[p.Name] {
				r.errorf(pp.field("name"), "duplicate port name %q", p.Name)
			}
			names[p.Name] = true
		}
		switch p.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			r.errorf(pp.field("protocol"), "unknown protocol %q; use TCP, UDP or SCTP (the application protocol goes in the port name prefix or appProtocol)", p.Protocol)
		}
		switch p.TargetPort.Type {
		case intstr.Int:
			if p.TargetPort.IntVal != 0 {
				checkPort(r, pp.field("targetPort"), int64(p.TargetPort.IntVal))
			}
		case intstr.String:
			if errs := validation.IsValidPortName(p.TargetPort.StrVal); len(errs) > 0 {
				r.errorf(pp.field("targetPort"), "invalid named target port %q: %s", p.TargetPort.StrVal, errs[0])
			}
		}
	}
	if ip := o.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		checkIP(r, root("spec").field("clusterIP"), ip)
	}
	checkLabels(r, root("spec").field("selector"), o.Spec.Selector)
}

func validateEndpoints(r *reporter, o *corev1.Endpoints) {
	for i, ss := range o.Subsets {
		p := root("subsets").index(i)
		for j, a := range ss.Addresses {
			checkIP(r, p.field("addresses").index(j).field("ip"), a.IP)
		}
		for j, a := range ss.NotReadyAddresses {
			checkIP(r, p.field("notReadyAddresses").index(j).field("ip"), a.IP)
		}
		for j, port := range ss.Ports {
			checkPort(r, p.field("ports").index(j).field("port"), int64(port.Port))
		}
	}
}

func validateEndpointSlice(r *reporter, o *discoveryv1.EndpointSlice) {
	if o.Labels[discoveryv1.LabelServiceName] == "" {
		r.errorf(root("metadata").field("labels"), "label %s is required to tie the slice to its Service", discoveryv1.LabelServiceName)
	}
	switch o.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		r.errorf(root("addressType"), "unknown addressType %q; use IPv4, IPv6 or FQDN", o.AddressType)
	}
	for i, ep := range o.Endpoints {
		p := root("endpoints").index(i)
		if len(ep.Addresses) == 0 {
			r.errorf(p.field("addresses"), "at least one address is required")
		}
		for j, a := range ep.Addresses {
			if o.AddressType == discoveryv1.AddressTypeFQDN {
				if msg := checkHost(a); msg != "" || strings.Contains(a, "*") {
					r.errorf(p.field("addresses").index(j), "%q is not a hostname", a)
				}
				continue
			}
			checkIP(r, p.field("addresses").index(j), a)
		}
	}
	for i, port := range o.Ports {
		if port.Port != nil {
			checkPort(r, root("ports").index(i).field("port"), int64(*port.Port))
		}
	}
}

// nonZero treats an explicit zero duration as unset, for fields where Istio
// documents zero as "disabled".
func nonZero(d *durationpb.Duration) *durationpb.Duration {
	if d == nil || (d.Seconds == 0 && d.Nanos == 0) {
		return nil
	}
	return d
}
