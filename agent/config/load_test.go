package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// layers is one test's inputs: files in a fresh working dir, env and flags.
type layers struct {
	mesh        string // ./etc/istio/config/mesh, written when non-empty
	annotations string // ./etc/istio/pod/annotations, written when non-empty
	env         map[string]string
	flags       Flags
	opts        func(*Options)
}

// baseEnv is the minimum a valid sidecar needs.
var baseEnv = map[string]string{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "INSTANCE_IP": "10.1.2.3"}

func (l layers) options(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	write := func(rel, data string) {
		if data == "" {
			return
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(DefaultMeshConfigPath, l.mesh)
	write(DefaultPodAnnotationsPath, l.annotations)
	env := MapEnv{}
	for k, v := range baseEnv {
		env[k] = v
	}
	for k, v := range l.env {
		env[k] = v
	}
	o := Options{
		WorkDir:   dir,
		LookupEnv: env.Lookup,
		Environ:   env.Environ,
		Hostname:  func() (string, error) { return "host-name", nil },
		HostIPs:   func() []string { return []string{"192.0.2.7"} },
		Flags:     l.flags,
	}
	if l.opts != nil {
		l.opts(&o)
	}
	return o
}

func (l layers) load(t *testing.T) *Config {
	t.Helper()
	c, err := Load(l.options(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// annotation renders a downward API line the way the kubelet writes it.
func annotation(key, value string) string { return key + "=" + quote(value) + "\n" }

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func TestLayering(t *testing.T) {
	tests := []struct {
		name string
		in   layers
		get  func(*Config) any
		want any
	}{
		{"discoveryAddress default", layers{},
			func(c *Config) any { return c.DiscoveryAddress() }, "istiod.istio-system.svc:15012"},
		{"mesh defaultConfig overrides default", layers{mesh: "defaultConfig:\n  discoveryAddress: mesh:15012\n"},
			func(c *Config) any { return c.DiscoveryAddress() }, "mesh:15012"},
		{"PROXY_CONFIG overrides mesh", layers{
			mesh: "defaultConfig:\n  discoveryAddress: mesh:15012\n",
			env:  map[string]string{"PROXY_CONFIG": `{"discoveryAddress":"env:15012"}`}},
			func(c *Config) any { return c.DiscoveryAddress() }, "env:15012"},
		{"annotation overrides PROXY_CONFIG", layers{
			mesh:        "defaultConfig:\n  discoveryAddress: mesh:15012\n",
			env:         map[string]string{"PROXY_CONFIG": "discoveryAddress: env:15012"},
			annotations: annotation("other", "x") + annotation(ProxyConfigAnnotation, "discoveryAddress: ann:15012\n")},
			func(c *Config) any { return c.DiscoveryAddress() }, "ann:15012"},
		{"CA_ADDR defaults to the effective discovery address", layers{
			annotations: annotation(ProxyConfigAnnotation, "discoveryAddress: ann:15012")},
			func(c *Config) any { return []string{c.ControlPlane.CAAddress, c.ControlPlane.IstiodSAN} }, []string{"ann:15012", "ann"}},
		{"CA_ADDR and ISTIOD_SAN env win", layers{env: map[string]string{"CA_ADDR": "ca:15443", "ISTIOD_SAN": "istiod.example"}},
			func(c *Config) any { return []string{c.ControlPlane.CAAddress, c.ControlPlane.IstiodSAN} }, []string{"ca:15443", "istiod.example"}},

		{"concurrency default", layers{},
			func(c *Config) any { return c.Proxy.GetConcurrency().GetValue() }, int32(2)},
		{"concurrency from mesh", layers{mesh: "defaultConfig: {concurrency: 3}"},
			func(c *Config) any { return c.Proxy.GetConcurrency().GetValue() }, int32(3)},
		{"concurrency from PROXY_CONFIG over mesh", layers{mesh: "defaultConfig: {concurrency: 3}", env: map[string]string{"PROXY_CONFIG": "concurrency: 4"}},
			func(c *Config) any { return c.Proxy.GetConcurrency().GetValue() }, int32(4)},
		{"concurrency 0 from annotation over PROXY_CONFIG (wrapper, so zero counts)", layers{
			env:         map[string]string{"PROXY_CONFIG": "concurrency: 4"},
			annotations: annotation(ProxyConfigAnnotation, "concurrency: 0")},
			func(c *Config) any { return c.Proxy.GetConcurrency().GetValue() }, int32(0)},
		{"--concurrency over annotation", layers{
			annotations: annotation(ProxyConfigAnnotation, "concurrency: 5"), flags: Flags{Concurrency: ptr(6)}},
			func(c *Config) any { return c.Proxy.GetConcurrency().GetValue() }, int32(6)},

		{"trust domain default", layers{},
			func(c *Config) any { return c.Identity().String() }, "spiffe://cluster.local/ns/shop/sa/default"},
		{"trust domain from mesh", layers{mesh: "trustDomain: corp.example"},
			func(c *Config) any { return c.TrustDomain }, "corp.example"},
		{"TRUST_DOMAIN env over mesh", layers{mesh: "trustDomain: corp.example", env: map[string]string{"TRUST_DOMAIN": "env.example", "SERVICE_ACCOUNT": "web"}},
			func(c *Config) any { return c.Identity().String() }, "spiffe://env.example/ns/shop/sa/web"},

		{"durations replace, never add up", layers{
			mesh:        "defaultConfig: {drainDuration: 45.5s}",
			annotations: annotation(ProxyConfigAnnotation, "drainDuration: 10s")},
			func(c *Config) any { return c.Proxy.GetDrainDuration().AsDuration() }, 10 * time.Second},
		{"lists replace, never append", layers{
			mesh:        "defaultConfig:\n  proxyStatsMatcher: {inclusionPrefixes: [a, b], inclusionSuffixes: [s]}\n",
			annotations: annotation(ProxyConfigAnnotation, "proxyStatsMatcher: {inclusionPrefixes: [c]}")},
			func(c *Config) any {
				m := c.Proxy.GetProxyStatsMatcher()
				return [][]string{m.GetInclusionPrefixes(), m.GetInclusionSuffixes()}
			}, [][]string{{"c"}, {"s"}}},
		{"proxyMetadata merges per key across layers", layers{
			mesh:        "defaultConfig: {proxyMetadata: {A: mesh, B: mesh}}",
			env:         map[string]string{"PROXY_CONFIG": "proxyMetadata: {B: env, C: env}"},
			annotations: annotation(ProxyConfigAnnotation, "proxyMetadata: {C: ann}")},
			func(c *Config) any { return c.Proxy.GetProxyMetadata() }, map[string]string{"A": "mesh", "B": "env", "C": "ann"}},
		{"unset fields of a later layer keep earlier values", layers{
			mesh:        "defaultConfig: {statusPort: 15999, binaryPath: /opt/envoy}",
			annotations: annotation(ProxyConfigAnnotation, "binaryPath: /bin/envoy")},
			func(c *Config) any { return []any{c.Proxy.GetStatusPort(), c.Proxy.GetBinaryPath()} }, []any{int32(15999), "/bin/envoy"}},

		{"proxyMetadata acts as env", layers{annotations: annotation(ProxyConfigAnnotation, "proxyMetadata: {PILOT_CERT_PROVIDER: custom, ISTIO_META_DNS_CAPTURE: \"true\"}")},
			func(c *Config) any { return []any{c.ControlPlane.CertProvider, c.NodeMetadata["DNS_CAPTURE"]} }, []any{CertProviderCustom, "true"}},
		{"real env overrides proxyMetadata", layers{
			annotations: annotation(ProxyConfigAnnotation, "proxyMetadata: {PILOT_CERT_PROVIDER: custom, ISTIO_META_DNS_CAPTURE: \"true\"}"),
			env:         map[string]string{"PILOT_CERT_PROVIDER": "none", "ISTIO_META_DNS_CAPTURE": "false"}},
			func(c *Config) any { return []any{c.ControlPlane.CertProvider, c.NodeMetadata["DNS_CAPTURE"]} }, []any{CertProviderNone, "false"}},
		{"empty env value means unset", layers{env: map[string]string{"SECRET_TTL": "", "PILOT_CERT_PROVIDER": ""}},
			func(c *Config) any { return []any{c.Secrets.TTL, c.ControlPlane.CertProvider} }, []any{24 * time.Hour, CertProviderIstiod}},

		{"domain derived from namespace", layers{},
			func(c *Config) any { return c.NodeID() }, "sidecar~10.1.2.3~web-1.shop~shop.svc.cluster.local"},
		{"--domain overrides the derived domain", layers{flags: Flags{Domain: ptr("shop.svc.corp")}},
			func(c *Config) any { return c.Domain }, "shop.svc.corp"},
		{"router node ID", layers{opts: func(o *Options) { o.ProxyType = ProxyTypeRouter }},
			func(c *Config) any { return c.NodeID() }, "router~10.1.2.3~web-1.shop~shop.svc.cluster.local"},
		{"POD_NAME and INSTANCE_IP fall back to host", layers{env: map[string]string{"POD_NAME": "", "INSTANCE_IP": ""}},
			func(c *Config) any { return c.NodeID() }, "sidecar~192.0.2.7~host-name.shop~shop.svc.cluster.local"},
		{"INSTANCE_IP list, first is primary", layers{env: map[string]string{"INSTANCE_IP": "10.0.0.9, fd00::9"}},
			func(c *Config) any { return c.InstanceIPs }, []string{"10.0.0.9", "fd00::9"}},

		{"VM restarts Envoy in place by default", layers{},
			func(c *Config) any { return []any{c.Platform, c.Envoy.RestartInPlace} }, []any{PlatformVM, true}},
		{"pod exits instead", layers{env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}},
			func(c *Config) any { return []any{c.Platform, c.Envoy.RestartInPlace} }, []any{PlatformKubernetes, false}},
		{"--restart-envoy overrides the platform default", layers{env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, flags: Flags{RestartEnvoy: ptr(true)}},
			func(c *Config) any { return c.Envoy.RestartInPlace }, true},
		{"--restart-envoy=false on a VM", layers{flags: Flags{RestartEnvoy: ptr(false)}},
			func(c *Config) any { return c.Envoy.RestartInPlace }, false},
		{"other flags", layers{flags: Flags{ProxyLogLevel: ptr("debug"), ProxyComponentLogLevel: ptr("upstream:debug"), TemplateFile: ptr("/t.json"), Capture: ptr(true), DryRun: true}},
			func(c *Config) any {
				return []any{c.Envoy.LogLevel, c.Envoy.ComponentLogLevel, c.Proxy.GetProxyBootstrapTemplatePath(), c.Capture, c.DryRun}
			}, []any{"debug", "upstream:debug", "/t.json", true, true}},
		{"configPath moves the Envoy bootstrap", layers{mesh: "defaultConfig: {configPath: /var/lib/istio/envoy}"},
			func(c *Config) any { return c.Paths.EnvoyBootstrap }, "/var/lib/istio/envoy/envoy-rev.json"},
		{"env vars", layers{env: map[string]string{
			"SECRET_TTL": "12h", "SECRET_GRACE_PERIOD_RATIO": "0.25", "WORKLOAD_RSA_KEY_SIZE": "4096", "ECC_SIGNATURE_ALGORITHM": "ECDSA",
			"ECC_CURVE": "P384", "OUTPUT_CERTS": "/certs", "FILE_MOUNTED_CERTS": "true", "DISABLE_ENVOY": "1", "GRPC_XDS_BOOTSTRAP": "/b.json",
			"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true", "MINIMUM_DRAIN_DURATION": "9s", "ISTIO_BOOTSTRAP_OVERRIDE": "/o.yaml", "CA_ROOT_CA": "/root.pem"}},
			func(c *Config) any {
				return []any{c.Secrets, c.Envoy.Disabled, c.Paths.GRPCXDSBootstrap, c.Envoy.ExitOnZeroActiveConnections, c.Envoy.MinimumDrainDuration, c.Envoy.BootstrapOverride, c.ControlPlane.RootCAFile}
			}, []any{Secrets{TTL: 12 * time.Hour, GracePeriodRatio: 0.25, RSAKeySize: 4096, ECCSignatureAlgorithm: "ECDSA", ECCCurve: "P384", OutputCertsDir: "/certs", FileMountedCerts: true},
				true, "/b.json", true, 9 * time.Second, "/o.yaml", "/root.pem"}},
		{"node metadata and cluster ID", layers{env: map[string]string{"ISTIO_META_CLUSTER_ID": "east", "ISTIO_META_APP": "web", "ISTIO_METAJSON_LABELS": `{"app":"web"}`, "ISTIO_META_LABELS": "shadowed"}},
			func(c *Config) any { return []any{c.ClusterID, c.NodeMetadata} },
			[]any{"east", map[string]any{"CLUSTER_ID": "east", "APP": "web", "LABELS": map[string]any{"app": "web"}}}},
		{"app probers and prometheus", layers{env: map[string]string{
			"ISTIO_KUBE_APP_PROBERS":       `{"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":8080},"timeoutSeconds":2}}`,
			"ISTIO_PROMETHEUS_ANNOTATIONS": `{"scrape":"true","path":"/metrics","port":"9090"}`}},
			func(c *Config) any {
				p := c.App.KubeAppProbers["/app-health/web/livez"]
				return []any{p.HTTPGet.Path, int(p.HTTPGet.Port), p.TimeoutSeconds, *c.App.Prometheus}
			}, []any{"/healthz", 8080, int32(2), PrometheusScrape{Scrape: "true", Path: "/metrics", Port: "9090"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.load(t)
			if diff := cmp.Diff(tt.want, tt.get(c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSources(t *testing.T) {
	c := layers{
		mesh:        "trustDomain: x.example",
		env:         map[string]string{"PROXY_CONFIG": "concurrency: 1"},
		annotations: annotation(ProxyConfigAnnotation, "concurrency: 2"),
		flags:       Flags{Concurrency: ptr(3)},
	}.load(t)
	want := []string{"defaults", "mesh config file " + DefaultMeshConfigPath, "env PROXY_CONFIG",
		"pod annotations file " + DefaultPodAnnotationsPath + " (" + ProxyConfigAnnotation + ")", "environment", "flags"}
	if diff := cmp.Diff(want, c.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

func TestMeshConfigFile(t *testing.T) {
	t.Run("explicit file elsewhere", func(t *testing.T) {
		l := layers{opts: func(o *Options) {
			p := filepath.Join(o.WorkDir, "custom-mesh.yaml")
			if err := os.WriteFile(p, []byte("trustDomain: custom.example\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			o.MeshConfigFile = p
		}}
		if c := l.load(t); c.TrustDomain != "custom.example" || c.Paths.MeshConfig == DefaultMeshConfigPath {
			t.Errorf("trust domain %q from %q", c.TrustDomain, c.Paths.MeshConfig)
		}
	})
	t.Run("relative explicit file resolves against WorkDir", func(t *testing.T) {
		l := layers{mesh: "trustDomain: rel.example", opts: func(o *Options) { o.MeshConfigFile = DefaultMeshConfigPath }}
		if c := l.load(t); c.TrustDomain != "rel.example" {
			t.Errorf("trust domain %q", c.TrustDomain)
		}
	})
	t.Run("missing default file is fine", func(t *testing.T) {
		layers{}.load(t)
	})
}

func TestLoadReturnsConfigWithErrors(t *testing.T) {
	c, err := Load(layers{env: map[string]string{"SECRET_TTL": "soon"}}.options(t))
	if err == nil || c == nil {
		t.Fatalf("want a Config and an error, got %v, %v", c, err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "SECRET_TTL" {
		t.Fatalf("errors.As(*FieldError) = %v", fe)
	}
	if c.PodNamespace != "shop" {
		t.Errorf("the rest of the config should still be loaded, got namespace %q", c.PodNamespace)
	}
}

func TestValidateAfterEdit(t *testing.T) {
	c := layers{}.load(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Secrets.RSAKeySize = 1024
	c.ProxyType = "gateway"
	err := c.Validate()
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
}

func TestParseAnnotations(t *testing.T) {
	got, err := ParseAnnotations([]byte("a=\"1\"\n\nproxy.istio.io/config=\"concurrency: 2\\nstatusPort: 1\"\nq=\"with \\\"quotes\\\"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "1", ProxyConfigAnnotation: "concurrency: 2\nstatusPort: 1", "q": `with "quotes"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"novalue\n", "a=unquoted\n", "=\"x\"\n"} {
		if _, err := ParseAnnotations([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseAnnotations(%q) = %v, want an error naming line 1", bad, err)
		}
	}
}

// TestDocsListEveryEnvVar keeps docs/configuration.md in step with the table
// the loader uses.
func TestDocsListEveryEnvVar(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	for _, e := range append(EnvVars, EnvVar{Name: "PROXY_CONFIG"}, EnvVar{Name: "ISTIO_META_"}, EnvVar{Name: "ISTIO_METAJSON_"}) {
		if !strings.Contains(string(doc), "`"+e.Name) {
			t.Errorf("docs/configuration.md does not document %s", e.Name)
		}
	}
}

// BenchmarkLoad: a full load with every layer present (agent startup cost).
func BenchmarkLoad(b *testing.B) {
	dir := b.TempDir()
	for rel, data := range map[string]string{
		DefaultMeshConfigPath:     "trustDomain: cluster.local\ndefaultConfig: {drainDuration: 30s, proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}}\n",
		DefaultPodAnnotationsPath: annotation(ProxyConfigAnnotation, "concurrency: 1\nholdApplicationUntilProxyStarts: true"),
	} {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	env := MapEnv{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "INSTANCE_IP": "10.1.2.3", "PROXY_CONFIG": "drainDuration: 20s", "ISTIO_META_APP": "web"}
	o := Options{WorkDir: dir, LookupEnv: env.Lookup, Environ: env.Environ}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Load(o); err != nil {
			b.Fatal(err)
		}
	}
}
