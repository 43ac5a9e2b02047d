// Package xds turns a model.Snapshot into the Envoy or proxyless-gRPC
// resources one connected proxy should receive. It is pure: no network, no
// state beyond per-snapshot memoisation, so it is tested with golden files.
package xds

import (
	"fmt"
	"net/netip"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// NodeType is the first field of an Istio node ID.
type NodeType string

const (
	SidecarProxy NodeType = "sidecar"
	Router       NodeType = "router"
)

// GeneratorGRPC is the GENERATOR metadata value Istio's grpc-agent sets for
// proxyless gRPC clients.
const GeneratorGRPC = "grpc"

// Proxy is what generation needs to know about one connected client, parsed
// from its node ID and metadata.
type Proxy struct {
	ID             string
	Type           NodeType
	IPAddresses    []string // first is the primary; INSTANCE_IPS wins over the node ID's IP
	PodName        string
	Namespace      string
	DNSDomain      string
	ServiceAccount string
	Labels         map[string]string
	Generator      string // "" for Envoy, "grpc" for proxyless gRPC
}

// IsGRPC reports whether the proxy is a proxyless gRPC application.
func (p *Proxy) IsGRPC() bool { return p.Generator == GeneratorGRPC }

// ParseNode parses Istio's node ID `<type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`
// and the metadata keys NAMESPACE, SERVICE_ACCOUNT, LABELS, INSTANCE_IPS and GENERATOR.
func ParseNode(n *core.Node) (*Proxy, error) {
	if n == nil || n.GetId() == "" {
		return nil, fmt.Errorf("node ID is empty: the client must send Istio's node ID <type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local in its first request")
	}
	parts := strings.Split(n.GetId(), "~")
	if len(parts) != 4 {
		return nil, fmt.Errorf("node ID %q has %d '~'-separated fields, want 4 (<type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local)", n.GetId(), len(parts))
	}
	p := &Proxy{ID: n.GetId(), Type: NodeType(parts[0]), DNSDomain: parts[3]}
	switch p.Type {
	case SidecarProxy, Router:
	default:
		return nil, fmt.Errorf("node ID %q has type %q, want sidecar or router", n.GetId(), parts[0])
	}
	if ip := parts[1]; ip != "" {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("node ID %q: IP field %q is not an IP address: %w", n.GetId(), ip, err)
		}
		p.IPAddresses = []string{ip}
	}
	pod, ns, _ := strings.Cut(parts[2], ".")
	p.PodName = pod
	p.Namespace = ns
	if ns == "" {
		p.Namespace, _, _ = strings.Cut(p.DNSDomain, ".")
	}

	md := n.GetMetadata().GetFields()
	if v := md["NAMESPACE"].GetStringValue(); v != "" {
		p.Namespace = v
	}
	p.ServiceAccount = md["SERVICE_ACCOUNT"].GetStringValue()
	p.Generator = md["GENERATOR"].GetStringValue()
	if ips := md["INSTANCE_IPS"].GetStringValue(); ips != "" {
		var list []string
		for _, ip := range strings.Split(ips, ",") {
			ip = strings.TrimSpace(ip)
			if ip == "" {
				continue
			}
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("node %q: metadata INSTANCE_IPS entry %q is not an IP address: %w", n.GetId(), ip, err)
			}
			list = append(list, ip)
		}
		if len(list) > 0 {
			p.IPAddresses = list
		}
	}
	if l := md["LABELS"]; l != nil {
		p.Labels = labelsFromStruct(l)
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("node %q has no namespace: set it in the node ID (<pod>.<ns>) or metadata NAMESPACE", n.GetId())
	}
	return p, nil
}

func labelsFromStruct(v *structpb.Value) map[string]string {
	fields := v.GetStructValue().GetFields()
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]string, len(fields))
	for k, f := range fields {
		out[k] = f.GetStringValue()
	}
	return out
}
