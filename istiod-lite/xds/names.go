package xds

import (
	"fmt"
	"strings"
)

// Names Istio gives to well-known clusters and listeners; tools and dashboards
// built for Istio key on them.
const (
	PassthroughCluster        = "PassthroughCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"
	BlackHoleCluster          = "BlackHoleCluster"
	SDSClusterName            = "sds-grpc" // defined by the agent's Envoy bootstrap
	OutboundListenerName      = "0.0.0.0_15001"
	InboundListenerName       = "0.0.0.0_15006"
	IdentitySecret            = "default"
	RootSecret                = "ROOTCA"
	// CertProviderInstance is the certificate-provider instance Istio's gRPC
	// bootstrap declares; proxyless TLS configs refer to it.
	CertProviderInstance = "default"
	// GRPCInboundListenerPrefix matches the server_listener_resource_name_template
	// of Istio's gRPC bootstrap.
	GRPCInboundListenerPrefix = "xds.istio.io/grpc/lds/inbound/"
)

// ClusterName builds Istio's subset key: outbound|80|v1|reviews.default.svc.cluster.local.
func ClusterName(direction string, port uint32, subset, host string) string {
	return fmt.Sprintf("%s|%d|%s|%s", direction, port, subset, host)
}

// InboundClusterName is Istio's name for the local-workload cluster of a port.
func InboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// GRPCInboundListenerName is the name grpc-go asks for when an xDS-enabled
// server listens on ip:port.
func GRPCInboundListenerName(ip string, port uint32) string {
	return fmt.Sprintf("%s%s:%d", GRPCInboundListenerPrefix, ip, port)
}

// hostPort joins a hostname and port the way gRPC targets and virtual host names do.
func hostPort(host string, port uint32) string { return fmt.Sprintf("%s:%d", host, port) }

// sni is what Istio sends as SNI on mTLS connections: outbound_.80_.v1_.reviews.default.svc.cluster.local.
func sni(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// shortNames returns the extra domains Kubernetes DNS would resolve for a
// service: name.ns and, from the same namespace, name.
func shortNames(host, proxyNS string) []string {
	name, rest, ok := strings.Cut(host, ".")
	if !ok {
		return nil
	}
	ns, rest, ok := strings.Cut(rest, ".")
	if !ok || !strings.HasPrefix(rest, "svc.") {
		return nil
	}
	out := []string{name + "." + ns, name + "." + ns + ".svc"}
	if ns == proxyNS {
		out = append(out, name)
	}
	return out
}
