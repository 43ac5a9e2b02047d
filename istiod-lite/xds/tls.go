package xds

import (
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlite/meshlite/sds/spiffe"
)

const tlsTransportSocket = "envoy.transport_sockets.tls"

// Istio's ALPN on mesh mTLS, which lets an inbound PERMISSIVE listener tell mesh traffic from other TLS.
var meshALPN = []string{"istio-peer-exchange", "istio"}

// sdsConfig points Envoy at the agent's SDS server through the bootstrap's sds-grpc cluster.
func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{
		Name: name,
		SdsConfig: &core.ConfigSource{
			ResourceApiVersion:  core.ApiVersion_V3,
			InitialFetchTimeout: durationpb.New(0),
			ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
				ApiType:                   core.ApiConfigSource_GRPC,
				SetNodeOnFirstMessageOnly: true,
				TransportApiVersion:       core.ApiVersion_V3,
				GrpcServices: []*core.GrpcService{{
					TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: SDSClusterName}},
				}},
			}},
		},
	}
}

// typedSANMatchers match SPIFFE URI SANs, as Envoy prefers.
func typedSANMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(sans))
	for _, s := range sans {
		out = append(out, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}},
		})
	}
	return out
}

// sanMatchers is the untyped form: deprecated in Envoy, but the only one grpc-go reads.
func sanMatchers(sans []string) []*matcher.StringMatcher {
	out := make([]*matcher.StringMatcher, 0, len(sans))
	for _, s := range sans {
		out = append(out, &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}})
	}
	return out
}

// envoyCommonTLS is the SDS-based context Envoy sidecars use for mesh mTLS.
func envoyCommonTLS(sans []string, alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(IdentitySecret)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: typedSANMatchers(sans)},
				ValidationContextSdsSecretConfig: sdsConfig(RootSecret),
			},
		},
		AlpnProtocols: alpn,
	}
}

// grpcCommonTLS is the certificate-provider context proxyless gRPC accepts:
// grpc-go rejects SDS fields, and resolves instance "default" from its bootstrap.
func grpcCommonTLS(sans []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance, CertificateName: IdentitySecret},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: CertProviderInstance, CertificateName: RootSecret},
				//lint:ignore SA1019 grpc-go (v1.85) reads only match_subject_alt_names.
				MatchSubjectAltNames: sanMatchers(sans),
			},
		},
	}
}

func transportSocket(m proto.Message) *core.TransportSocket {
	return &core.TransportSocket{Name: tlsTransportSocket, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}

func upstreamTLS(common *tlsv3.CommonTlsContext, serverName string) *core.TransportSocket {
	return transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: serverName})
}

func downstreamTLS(common *tlsv3.CommonTlsContext) *core.TransportSocket {
	return transportSocket(&tlsv3.DownstreamTlsContext{CommonTlsContext: common, RequireClientCertificate: wrapperspb.Bool(true)})
}

// serviceSANs are the SPIFFE identities of a service's endpoints, which upstream mTLS verifies.
func (ix *index) serviceSANs(eps []endpointIdentity) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range eps {
		if e.sa == "" {
			continue
		}
		id := spiffe.Identity{TrustDomain: ix.trustDomain, Namespace: e.ns, ServiceAccount: e.sa}.String()
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

type endpointIdentity struct{ ns, sa string }

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
