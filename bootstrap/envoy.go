package bootstrap

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Names of the static clusters and listeners; Istio's, so that dashboards and
// istioctl keep working.
const (
	ClusterXDS        = "xds-grpc"
	ClusterSDS        = "sds-grpc"
	ClusterPrometheus = "prometheus_stats"
	ClusterAgent      = "agent"
	ClusterZipkin     = "zipkin"
	ClusterOTel       = "opentelemetry_collector"
)

// The agent's sockets, relative to its working directory as in Istio. Callers
// resolve them (filepath.Abs) before passing them in, so that Envoy and
// proxyless apps find them whatever their own working directory.
const (
	DefaultXDSSocket = "./etc/istio/proxy/XDS"
	DefaultSDSSocket = "./var/run/secrets/workload-spiffe-uds/socket"
)

// Envoy generates the default Envoy v3 bootstrap for o as indented JSON.
func Envoy(o Options) ([]byte, error) {
	b, err := EnvoyProto(o)
	if err != nil {
		return nil, err
	}
	return Marshal(b)
}

// EnvoyProto is Envoy as a proto, for callers that want to adjust it.
func EnvoyProto(o Options) (*bootstrapv3.Bootstrap, error) {
	o = o.withDefaults()
	node, err := BuildNode(o)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct{ name, path, def string }{
		{"xDS", o.XDSSocket, DefaultXDSSocket},
		{"SDS", o.SDSSocket, DefaultSDSSocket},
	} {
		if !filepath.IsAbs(p.path) {
			return nil, fmt.Errorf("%s socket path %q must be absolute: resolve %s against the agent's working directory", p.name, p.path, p.def)
		}
	}
	md, err := structpb.NewStruct(node.Metadata)
	if err != nil {
		return nil, fmt.Errorf("node metadata cannot be encoded: %w", err)
	}
	loopback, wildcard := "127.0.0.1", "0.0.0.0"
	ipVersion := clusterv3.Cluster_V4_ONLY
	if o.IPv6() {
		loopback, wildcard = "::1", "::"
		ipVersion = clusterv3.Cluster_AUTO
	}
	connectTimeout := o.ConnectTimeout
	if connectTimeout == 0 {
		connectTimeout = time.Second
	}

	apiType := corev3.ApiConfigSource_DELTA_GRPC
	if o.SotW {
		apiType = corev3.ApiConfigSource_GRPC
	}
	adsSource := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
		InitialFetchTimeout:   durationpb.New(0),
	}

	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{
			Id:       node.ID,
			Cluster:  node.Cluster,
			Metadata: md,
		},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(loopback, o.AdminPort),
		},
		StatsConfig: statsConfig(o.Stats),
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			LdsConfig: adsSource,
			CdsConfig: adsSource,
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   apiType,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterXDS}},
				}},
			},
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{
				staticCluster(ClusterPrometheus, connectTimeout, loopback, o.AdminPort),
				staticCluster(ClusterAgent, connectTimeout, loopback, o.StatusPort),
				pipeCluster(ClusterSDS, connectTimeout, o.SDSSocket),
				pipeCluster(ClusterXDS, connectTimeout, o.XDSSocket),
			},
			Listeners: []*listenerv3.Listener{
				httpListener("prometheus_stats_listener", "stats", wildcard, o.PrometheusPort, "/stats/prometheus", ClusterPrometheus),
				httpListener("readiness_listener", "agent", wildcard, o.ReadinessPort, "/healthz/ready", ClusterAgent),
			},
		},
		OverloadManager: &overloadv3.OverloadManager{
			ResourceMonitors: []*overloadv3.ResourceMonitor{{
				Name: "envoy.resource_monitors.global_downstream_max_connections",
				ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: mustAny(&downstreamv3.DownstreamConnectionsConfig{
					MaxActiveDownstreamConnections: o.MaxDownstreamConnections,
				})},
			}},
		},
	}
	rt, err := layeredRuntime(o.Runtime)
	if err != nil {
		return nil, err
	}
	b.LayeredRuntime = rt

	if t := o.Tracing; t != nil {
		cluster, tracing, err := tracingConfig(t, node.Cluster, connectTimeout, ipVersion)
		if err != nil {
			return nil, err
		}
		if cluster != nil {
			b.StaticResources.Clusters = append(b.StaticResources.Clusters, cluster)
			b.Tracing = tracing
		}
	}
	return b, nil
}

func socketAddress(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

func endpoints(name string, addr *corev3.Address) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
			}},
		}},
	}
}

func staticCluster(name string, timeout time.Duration, host string, port int) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(timeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment:       endpoints(name, socketAddress(host, port)),
	}
}

// http2Options makes a cluster speak HTTP/2, which gRPC (xDS, SDS) needs.
func http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		}),
	}
}

func pipeCluster(name string, timeout time.Duration, path string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                durationpb.New(timeout),
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		TypedExtensionProtocolOptions: http2Options(),
		// The control-plane connection must never be starved by circuit
		// breakers sized for application traffic.
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(100000),
			MaxPendingRequests: wrapperspb.UInt32(100000),
			MaxRequests:        wrapperspb.UInt32(100000),
		}}},
		LoadAssignment: endpoints(name, &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}),
	}
}

func httpListener(name, statPrefix, host string, port int, prefix, cluster string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "backend",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
					}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(host, port),
		// Probes and scrapes must get through even when the global
		// connection limit is reached; that is when they matter most.
		IgnoreGlobalConnLimit: true,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}

// defaultStatTags are the tag extractors Istio adds so that stat names keep
// their structure in Prometheus.
var defaultStatTags = []struct{ name, regex string }{
	{"cluster_name", `^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)`},
	{"tcp_prefix", `^tcp\.((.*?)\.)\w+?$`},
	{"response_code", `(response_code=\.=(.+?);\.;)|_rq(_(\d{3}))$`},
	{"response_code_class", `_rq(_(\dxx))$`},
	{"http_conn_manager_listener_prefix", `^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`},
	{"http_conn_manager_prefix", `^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`},
	{"listener_address", `^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`},
	{"mongo_prefix", `^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$`},
}

// defaultInclusion keeps what the agent and dashboards need; in particular
// downstream_cx_active, which exit-on-zero-connections polls.
var (
	defaultInclusionPrefixes = []string{"cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm", "component"}
	defaultInclusionSuffixes = []string{"rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active"}
)

func statsConfig(s StatsOptions) *metricsv3.StatsConfig {
	cfg := &metricsv3.StatsConfig{UseAllDefaultTags: wrapperspb.Bool(false)}
	for _, t := range defaultStatTags {
		cfg.StatsTags = append(cfg.StatsTags, &metricsv3.TagSpecifier{
			TagName:  t.name,
			TagValue: &metricsv3.TagSpecifier_Regex{Regex: t.regex},
		})
	}
	for _, tag := range s.ExtraStatTags {
		cfg.StatsTags = append(cfg.StatsTags, &metricsv3.TagSpecifier{
			TagName:  tag,
			TagValue: &metricsv3.TagSpecifier_Regex{Regex: fmt.Sprintf(`_%s=(.*?)\.`, tag)},
		})
	}
	var patterns []*matcherv3.StringMatcher
	for _, p := range append(append([]string{}, defaultInclusionPrefixes...), s.InclusionPrefixes...) {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}})
	}
	for _, p := range append(append([]string{}, defaultInclusionSuffixes...), s.InclusionSuffixes...) {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: p}})
	}
	for _, p := range s.InclusionRegexps {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p}}})
	}
	cfg.StatsMatcher = &metricsv3.StatsMatcher{StatsMatcher: &metricsv3.StatsMatcher_InclusionList{
		InclusionList: &matcherv3.ListStringMatcher{Patterns: patterns},
	}}
	return cfg
}

// layeredRuntime is a static layer (Istio's defaults plus the caller's values)
// under an admin layer, so `/runtime_modify` still works for debugging.
func layeredRuntime(values map[string]any) (*bootstrapv3.LayeredRuntime, error) {
	static := map[string]any{
		"re2.max_program_size.error_level":                         float64(32768),
		"envoy.reloadable_features.http_reject_path_with_fragment": false,
	}
	for k, v := range values {
		static[k] = v
	}
	st, err := structpb.NewStruct(static)
	if err != nil {
		return nil, fmt.Errorf("runtime values cannot be encoded: %w", err)
	}
	return &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{
		{Name: "global config", LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: st}},
		{Name: "admin", LayerSpecifier: &bootstrapv3.RuntimeLayer_AdminLayer_{AdminLayer: &bootstrapv3.RuntimeLayer_AdminLayer{}}},
	}}, nil
}

func dnsCluster(name, address string, timeout time.Duration, ipVersion clusterv3.Cluster_DnsLookupFamily, h2 bool) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("tracing collector address %q is not host:port: %w", address, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("tracing collector address %q has an invalid port: use 1-65535", address)
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(timeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		DnsLookupFamily:      ipVersion,
		LoadAssignment:       endpoints(name, socketAddress(host, port)),
	}
	if h2 {
		c.TypedExtensionProtocolOptions = http2Options()
	}
	return c, nil
}

func tracingConfig(t *Tracing, serviceName string, timeout time.Duration, ipVersion clusterv3.Cluster_DnsLookupFamily) (*clusterv3.Cluster, *tracev3.Tracing, error) {
	switch {
	case t.Zipkin != nil:
		c, err := dnsCluster(ClusterZipkin, t.Zipkin.Address, timeout, ipVersion, false)
		if err != nil {
			return nil, nil, err
		}
		return c, &tracev3.Tracing{Http: &tracev3.Tracing_Http{
			Name: "envoy.tracers.zipkin",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
				CollectorCluster:         ClusterZipkin,
				CollectorEndpoint:        "/api/v2/spans",
				CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
				TraceId_128Bit:           true,
				SharedSpanContext:        wrapperspb.Bool(false),
			})},
		}}, nil
	case t.OpenTelemetry != nil:
		c, err := dnsCluster(ClusterOTel, t.OpenTelemetry.Address, timeout, ipVersion, true)
		if err != nil {
			return nil, nil, err
		}
		name := t.OpenTelemetry.ServiceName
		if name == "" {
			name = serviceName
		}
		return c, &tracev3.Tracing{Http: &tracev3.Tracing_Http{
			Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
				GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterOTel}}},
				ServiceName: name,
			})},
		}}, nil
	}
	return nil, nil, nil
}

// mustAny packs a message we built ourselves; failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: packing %T: %v", m, err))
	}
	return a
}
