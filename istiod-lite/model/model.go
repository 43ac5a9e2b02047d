// Package model is the contract between istiod-lite's registries (which read
// configuration and publish it) and xDS generation (which reads it). A Snapshot
// is immutable once published: registries build a new one on every accepted
// change, so generators never see a half-applied config.
package model

import (
	"context"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Protocol is the application protocol of a service port, chosen from the port
// name prefix or appProtocol as Istio does (http-, http2-, grpc-, tcp-, tls-, https-, ...).
type Protocol string

const (
	ProtocolHTTP        Protocol = "HTTP"
	ProtocolHTTP2       Protocol = "HTTP2"
	ProtocolGRPC        Protocol = "GRPC"
	ProtocolHTTPS       Protocol = "HTTPS"
	ProtocolTCP         Protocol = "TCP"
	ProtocolTLS         Protocol = "TLS"
	ProtocolUnsupported Protocol = "UnsupportedProtocol" // sniffed in Istio; treated as TCP here
)

// IsHTTP reports whether the protocol gets an HTTP connection manager and routes.
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// Resolution says how a service's endpoints are found.
type Resolution string

const (
	ResolutionStatic      Resolution = "STATIC"      // endpoints listed (Endpoints, EndpointSlice, WorkloadEntry, SE endpoints)
	ResolutionDNS         Resolution = "DNS"         // ServiceEntry resolution DNS
	ResolutionPassthrough Resolution = "PASSTHROUGH" // ServiceEntry resolution NONE
)

// Port is one port of a service.
type Port struct {
	Name       string
	Port       uint32
	TargetPort uint32 // 0 when the endpoint port is taken from Endpoint.Ports
	Protocol   Protocol
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Address        string
	Ports          map[string]uint32 // service port name -> endpoint port
	Labels         map[string]string // used for DestinationRule subsets
	Namespace      string
	ServiceAccount string // used for SAN verification of upstream mTLS
	Healthy        bool
	Locality       string // region/zone/subzone
	Weight         uint32
}

// Service is one mesh service: a Kubernetes Service with its endpoints, or a ServiceEntry host.
type Service struct {
	Hostname     string // FQDN, e.g. reviews.default.svc.cluster.local
	Name         string
	Namespace    string
	Addresses    []string // cluster IPs or ServiceEntry addresses; may be empty
	Ports        []Port
	Endpoints    []Endpoint
	MeshExternal bool
	Resolution   Resolution
	Labels       map[string]string
}

// Source locates an object in its origin, so that errors and /debug/configz can point at it.
type Source struct {
	File     string // file path, or "kubernetes" for the API server
	Document int    // 0-based YAML document index within File
	Line     int    // 1-based line of the document start, when known
}

// Object is any config object the snapshot carries, with where it came from.
type Object struct {
	Kind      string // e.g. VirtualService
	Name      string
	Namespace string
	Source    Source
}

// Snapshot is one complete, validated view of the mesh.
type Snapshot struct {
	// Version is a hash of the content: equal content gives an equal version.
	Version string

	// Services sorted by Hostname; endpoints merged from Endpoints, EndpointSlices and WorkloadEntries.
	Services []*Service

	VirtualServices       []*networkingv1.VirtualService
	DestinationRules      []*networkingv1.DestinationRule
	Gateways              []*networkingv1.Gateway
	Sidecars              []*networkingv1.Sidecar
	ServiceEntries        []*networkingv1.ServiceEntry
	WorkloadEntries       []*networkingv1.WorkloadEntry
	PeerAuthentications   []*securityv1.PeerAuthentication
	AuthorizationPolicies []*securityv1.AuthorizationPolicy

	Mesh *meshv1alpha1.MeshConfig

	// Objects lists every accepted object with its source, for debug output.
	Objects []Object
}

// Registry publishes Snapshots. Implementations: registry/file (a watched
// directory of YAML) and, later, registry/kube. xDS generation depends only on this.
type Registry interface {
	// Run watches the source until ctx ends. It returns an error only when it cannot start.
	Run(ctx context.Context) error
	// Current returns the last good snapshot, or nil before the first one.
	Current() *Snapshot
	// Changes is signalled (non-blocking, coalescing) each time Current changes.
	Changes() <-chan struct{}
	// Ready reports whether the registry has a synced view of its source.
	Ready() bool
}
