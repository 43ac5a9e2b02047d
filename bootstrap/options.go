// Package bootstrap turns a workload's identity, paths and ports into the
// bootstrap files its data plane starts from: Envoy's v3 bootstrap (generated,
// rendered from a custom template, overridden, or supplied as-is) and the gRPC
// xDS bootstrap for proxyless applications. It also validates an Envoy
// bootstrap against Envoy's own protos so that a broken file is refused before
// Envoy is launched.
//
// Everything here is pure: callers read files and the environment and pass the
// contents in, which keeps the output reproducible and golden-testable.
package bootstrap

import "time"

// Proxy types, as the first segment of Istio's node ID.
const (
	Sidecar = "sidecar"
	Router  = "router"
)

// Istio's well-known ports. They are fixed in the compatibility contract, but
// kept as options so tests and unusual deployments can move them.
const (
	DefaultAdminPort      = 15000
	DefaultStatusPort     = 15020
	DefaultReadinessPort  = 15021
	DefaultPrometheusPort = 15090
)

// Options are the inputs of the Envoy bootstrap. The zero value of every field
// selects Istio's default; only the identity fields are required.
type Options struct {
	// ProxyType is Sidecar (default) or Router (gateways).
	ProxyType string
	// InstanceIPs are the workload's IPs; the first one is the node ID's IP and
	// decides IPv4 versus IPv6 loopback and wildcard addresses.
	InstanceIPs []string
	// PodName and Namespace identify the workload (POD_NAME, POD_NAMESPACE).
	PodName   string
	Namespace string
	// Domain is the node ID's DNS domain (--domain); default
	// "<namespace>.svc.cluster.local".
	Domain string

	// Node metadata inputs. See NodeMetadata for how they combine.
	ServiceAccount string
	ClusterID      string
	MeshID         string
	IstioVersion   string
	Labels         map[string]string // from the downward-API labels file
	Annotations    map[string]string // from the downward-API annotations file
	// Env is the process environment as "KEY=value" strings; ISTIO_META_* and
	// ISTIO_METAJSON_* entries become node metadata.
	Env []string
	// ExtraMetadata is merged last and wins over everything else.
	ExtraMetadata map[string]any

	// Ports; zero selects the Default* constants.
	AdminPort      int
	StatusPort     int
	ReadinessPort  int
	PrometheusPort int

	// XDSSocket is the absolute path of the agent's xDS proxy socket
	// (./etc/istio/proxy/XDS resolved against the working directory).
	XDSSocket string
	// SDSSocket is the absolute path of the agent's SDS socket.
	SDSSocket string
	// SotW selects state-of-the-world ADS; the default is delta ADS.
	SotW bool

	// ConnectTimeout of the static clusters; default 1s.
	ConnectTimeout time.Duration

	// Stats configures tag extraction and the inclusion matcher.
	Stats StatsOptions
	// Tracing is optional; nil (or a zero value) disables tracing.
	Tracing *Tracing
	// MaxDownstreamConnections caps the downstream connections of the whole
	// process through the overload manager; default 2147483647 as in Istio.
	MaxDownstreamConnections int64
	// Runtime holds static runtime values layered under the admin layer.
	Runtime map[string]any
}

// StatsOptions mirrors ProxyConfig.proxyStatsMatcher and extraStatTags.
type StatsOptions struct {
	InclusionPrefixes []string
	InclusionSuffixes []string
	InclusionRegexps  []string
	// ExtraStatTags are extra tag names extracted from stat names by regex
	// "_<tag>=(.*?)\." appearing in metric names, as Istio's extraStatTags.
	ExtraStatTags []string
}

// Tracing selects one tracer. Exactly one of Zipkin or OpenTelemetry is used;
// Zipkin wins if both are set.
type Tracing struct {
	Zipkin        *Zipkin
	OpenTelemetry *OpenTelemetry
}

// Zipkin is ProxyConfig.tracing.zipkin.
type Zipkin struct {
	// Address is host:port of the collector, e.g. "zipkin.istio-system:9411".
	Address string
}

// OpenTelemetry is an OTLP/gRPC collector.
type OpenTelemetry struct {
	// Address is host:port of the collector's OTLP gRPC endpoint.
	Address string
	// ServiceName defaults to the node's cluster name.
	ServiceName string
}
