package config

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// Istio's defaults for the fields meshlite uses (mesh.DefaultProxyConfig).
const (
	DefaultDiscoveryAddress = "istiod.istio-system.svc:15012"
	DefaultStatusPort       = 15020
	DefaultAdminPort        = 15000
	DefaultConcurrency      = 2
	DefaultTrustDomain      = "cluster.local"
	DefaultClusterDomain    = "cluster.local"
)

// DefaultProxyConfig is the ProxyConfig before any file, env or annotation.
func DefaultProxyConfig() *meshconfig.ProxyConfig {
	return &meshconfig.ProxyConfig{
		ConfigPath:               "./etc/istio/proxy",
		BinaryPath:               "/usr/local/bin/envoy",
		ClusterName:              &meshconfig.ProxyConfig_ServiceCluster{ServiceCluster: "istio-proxy"},
		DrainDuration:            durationpb.New(45 * time.Second),
		TerminationDrainDuration: durationpb.New(5 * time.Second),
		DiscoveryAddress:         DefaultDiscoveryAddress,
		ProxyAdminPort:           DefaultAdminPort,
		ControlPlaneAuthPolicy:   meshconfig.AuthenticationPolicy_MUTUAL_TLS,
		StatNameLength:           189,
		StatusPort:               DefaultStatusPort,
		Concurrency:              wrapperspb.Int32(DefaultConcurrency),
	}
}

// DefaultMeshConfig is the mesh config before the mesh config file.
func DefaultMeshConfig() *meshconfig.MeshConfig {
	return &meshconfig.MeshConfig{
		TrustDomain:   DefaultTrustDomain,
		RootNamespace: "istio-system",
		DefaultConfig: DefaultProxyConfig(),
	}
}

// parseYAMLProto reads YAML or JSON into m, refusing fields the proto does not
// have so that a typo is reported instead of silently ignored.
func parseYAMLProto(data []byte, m proto.Message) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
		return nil // an empty document sets nothing
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, m); err != nil {
		// protojson prefixes its messages with "proto:"; users do not care.
		return fmt.Errorf("%s", strings.TrimSpace(strings.TrimPrefix(err.Error(), "proto:")))
	}
	return nil
}

// ParseProxyConfig reads ProxyConfig YAML or JSON (PROXY_CONFIG, the
// proxy.istio.io/config annotation, a mesh defaultConfig).
func ParseProxyConfig(data []byte) (*meshconfig.ProxyConfig, error) {
	pc := &meshconfig.ProxyConfig{}
	if err := parseYAMLProto(data, pc); err != nil {
		return nil, err
	}
	return pc, nil
}

// ParseMeshConfig reads MeshConfig YAML or JSON (the mesh config file).
func ParseMeshConfig(data []byte) (*meshconfig.MeshConfig, error) {
	mc := &meshconfig.MeshConfig{}
	if err := parseYAMLProto(data, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// merge overlays the fields set in src onto dst, as a later layer should:
// set scalars replace, nested messages merge field by field, maps merge per
// key (Istio merges proxyMetadata this way), and lists and well-known types
// (durations, wrappers) replace wholesale. proto.Merge would append lists and
// merge a Duration's seconds and nanos separately (45.5s over 10s = 10.5s).
func merge(dst, src proto.Message) {
	mergeMessage(dst.ProtoReflect(), proto.Clone(src).ProtoReflect())
}

func mergeMessage(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			dm := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				dm.Set(k, mv)
				return true
			})
		case fd.IsList():
			dst.Set(fd, v)
		case fd.Message() != nil && !isWellKnown(fd.Message()) && dst.Has(fd):
			mergeMessage(dst.Mutable(fd).Message(), v.Message())
		default:
			dst.Set(fd, v)
		}
		return true
	})
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// protoJSON renders a message for `check`: proto field names as users write
// them in YAML, durations as "45s".
func protoJSON(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{}.Marshal(m)
}
