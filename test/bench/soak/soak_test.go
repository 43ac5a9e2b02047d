package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"

	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlite/meshlite/istiod-lite/ca/jwtissuer"
)

// BenchmarkSoak is the `make bench` entry: a shortened soak (SOAK_DURATION,
// default 30s; SOAK_SIDECARS and SOAK_AGENTS override the 1000 and 200).
// It prints the figures one per line and fails on any error. The full soak
// is `go run ./test/bench/soak` (2 minutes).
func BenchmarkSoak(b *testing.B) {
	cfg := defaultConfig()
	cfg.Duration = 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil && d > 0 {
		cfg.Duration = d
	}
	if v, err := strconv.Atoi(os.Getenv("SOAK_SIDECARS")); err == nil && v > 0 {
		cfg.Sidecars = v
	}
	if v, err := strconv.Atoi(os.Getenv("SOAK_AGENTS")); err == nil && v >= 0 {
		cfg.Agents = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+5*time.Minute)
	defer cancel()
	var res *Result
	for i := 0; i < b.N; i++ {
		var err error
		if res, err = Run(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
	res.Print(os.Stdout)
	if len(res.Errors) > 0 {
		b.Fatalf("soak had %d errors", len(res.Errors))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(res.PushToAck, .99)), "push-p99-ms")
	b.ReportMetric(ms(percentile(res.CSRLatency, .99)), "csr-p99-ms")
	b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak-rss-MiB")
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A sidecar subscribes to endpoints only of EDS clusters, as Envoy does.
func TestEDSClusters(t *testing.T) {
	res := []*anypb.Any{
		anyOf(t, &cluster.Cluster{Name: "outbound|80||b", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS}}),
		anyOf(t, &cluster.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}}),
		anyOf(t, &cluster.Cluster{Name: "outbound|80||a", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS}}),
	}
	if got, want := edsClusters(res), []string{"outbound|80||a", "outbound|80||b"}; !slices.Equal(got, want) {
		t.Errorf("edsClusters = %v, want %v", got, want)
	}
}

// A sidecar subscribes to the route configs its HTTP connection managers name, once each.
func TestRouteNames(t *testing.T) {
	withRDS := func(name string) *listener.Filter {
		m := &hcm.HttpConnectionManager{RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{RouteConfigName: name}}}
		return &listener.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: anyOf(t, m)}}
	}
	res := []*anypb.Any{
		anyOf(t, &listener.Listener{Name: "0.0.0.0_8080", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{withRDS("8080")}}}}),
		anyOf(t, &listener.Listener{Name: "0.0.0.0_80", DefaultFilterChain: &listener.FilterChain{Filters: []*listener.Filter{withRDS("80")}}}),
		anyOf(t, &listener.Listener{Name: "other_8080", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{withRDS("8080")}}}}),
		anyOf(t, &listener.Listener{Name: "tcp", Address: &core.Address{}}),
	}
	if got, want := routeNames(res), []string{"80", "8080"}; !slices.Equal(got, want) {
		t.Errorf("routeNames = %v, want %v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := defaultConfig()
	if err := ok.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no sidecars":         func(c *Config) { c.Sidecars = 0 },
		"no shapes":           func(c *Config) { c.Shapes = 0 },
		"negative agents":     func(c *Config) { c.Agents = -1 },
		"interval > duration": func(c *Config) { c.Interval = 3 * time.Minute },
		"zero interval":       func(c *Config) { c.Interval = 0 },
	} {
		c := defaultConfig()
		mut(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Each agent's CSR asks for its own SPIFFE ID and its token file is private, as the CA expects.
func TestNewAgents(t *testing.T) {
	dir := t.TempDir()
	iss, err := jwtissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	keyPath, _, err := iss.WriteDir(filepath.Join(dir, "jwt"))
	if err != nil {
		t.Fatal(err)
	}
	agents, err := newAgents(filepath.Join(dir, "agents"), keyPath, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range agents {
		block, _ := pem.Decode(a.csr)
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("spiffe://cluster.local/ns/demo/sa/agent-%d", i)
		if len(csr.URIs) != 1 || csr.URIs[0].String() != want || a.spiffeID != want {
			t.Errorf("agent %d: CSR URIs %v, ID %s; want %s", i, csr.URIs, a.spiffeID, want)
		}
		fi, err := os.Stat(a.tokenPath)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("agent %d: token file %v, %v; want mode 0600", i, fi, err)
		}
	}
}

func TestServerErrors(t *testing.T) {
	log := []byte("time=1 level=INFO msg=ok\ntime=2 level=ERROR msg=\"cannot set snapshot\"\ntime=3 level=WARN msg=w\n")
	if got := serverErrors(log); len(got) != 1 || !strings.Contains(got[0], "cannot set snapshot") {
		t.Errorf("serverErrors = %q, want the one ERROR line", got)
	}
}
