package bootstrap

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// base is a realistic sidecar: what the agent passes in a pod.
func base() Options {
	return Options{
		InstanceIPs:    []string{"10.1.2.3"},
		PodName:        "reviews-v1-7d9f8",
		Namespace:      "bookinfo",
		ServiceAccount: "bookinfo-reviews",
		ClusterID:      "Kubernetes",
		MeshID:         "cluster.local",
		IstioVersion:   "1.31.1",
		Labels:         map[string]string{"app": "reviews", "version": "v1"},
		Annotations:    map[string]string{"sidecar.istio.io/status": `{"initContainers":["istio-init"]}`},
		Env: []string{
			"ISTIO_META_APP_CONTAINERS=reviews",
			`ISTIO_METAJSON_LABELS={"security.istio.io/tlsMode":"istio"}`,
			"PATH=/usr/bin",
		},
		XDSSocket: "/var/lib/meshlite/etc/istio/proxy/XDS",
		SDSSocket: "/var/lib/meshlite/var/run/secrets/workload-spiffe-uds/socket",
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got; run with -update if intended):\n%s", path, diff)
	}
}

func TestEnvoyGolden(t *testing.T) {
	template, err := os.ReadFile("testdata/custom.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	override, err := os.ReadFile("testdata/override.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(*Options)
		custom Custom
	}{
		{name: "sidecar"},
		{name: "router", mutate: func(o *Options) {
			o.ProxyType = Router
			o.PodName = "istio-ingressgateway-5d8f"
			o.Namespace = "istio-system"
			o.Labels = map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
			o.SotW = true
		}},
		{name: "tracing_zipkin", mutate: func(o *Options) {
			o.Tracing = &Tracing{Zipkin: &Zipkin{Address: "zipkin.istio-system:9411"}}
		}},
		{name: "tracing_opentelemetry", mutate: func(o *Options) {
			o.Tracing = &Tracing{OpenTelemetry: &OpenTelemetry{Address: "otel-collector.observability:4317"}}
		}},
		{name: "stats_and_runtime", mutate: func(o *Options) {
			o.Stats = StatsOptions{
				InclusionPrefixes: []string{"upstream_rq"},
				InclusionSuffixes: []string{"upstream_cx_total"},
				InclusionRegexps:  []string{`.*outlier_detection.*`},
				ExtraStatTags:     []string{"destination_port"},
			}
			o.Runtime = map[string]any{"overload.premature_reset_total_stream_count": float64(500)}
			o.MaxDownstreamConnections = 100000
		}},
		{name: "ipv6", mutate: func(o *Options) { o.InstanceIPs = []string{"fd00:10::3", "10.1.2.3"} }},
		{name: "custom_template", custom: Custom{Template: string(template)}},
		{name: "override", custom: Custom{Override: override}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			if tc.mutate != nil {
				tc.mutate(&o)
			}
			got, err := Generate(o, tc.custom)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			// Every golden must be a bootstrap Envoy accepts.
			if _, err := Validate(got); err != nil {
				t.Fatalf("generated bootstrap is invalid: %v", err)
			}
			golden(t, tc.name, got)
		})
	}
}

// The goldens on disk, not only freshly generated output, must validate: a
// hand-edited golden that Envoy would reject must fail the build.
func TestGoldensValidate(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.golden")
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "grpc") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Validate(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestEnvoyStructure(t *testing.T) {
	o := base()
	b, err := EnvoyProto(o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.GetNode().GetId(), "sidecar~10.1.2.3~reviews-v1-7d9f8.bookinfo~bookinfo.svc.cluster.local"; got != want {
		t.Errorf("node id = %q, want %q", got, want)
	}
	if got := b.GetNode().GetCluster(); got != "reviews.bookinfo" {
		t.Errorf("cluster = %q", got)
	}
	if got := b.GetDynamicResources().GetAdsConfig().GetApiType().String(); got != "DELTA_GRPC" {
		t.Errorf("ADS api type = %s, want delta by default", got)
	}
	o.SotW = true
	b, _ = EnvoyProto(o)
	if got := b.GetDynamicResources().GetAdsConfig().GetApiType().String(); got != "GRPC" {
		t.Errorf("ADS api type = %s with SotW", got)
	}
	if got := b.GetAdmin().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 15000 {
		t.Errorf("admin = %v", got)
	}
}

func TestNodeMetadata(t *testing.T) {
	md, err := NodeMetadata(base())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"NAMESPACE":       "bookinfo",
		"SERVICE_ACCOUNT": "bookinfo-reviews",
		"CLUSTER_ID":      "Kubernetes",
		"MESH_ID":         "cluster.local",
		"ISTIO_VERSION":   "1.31.1",
		"NAME":            "reviews-v1-7d9f8",
		"POD_NAME":        "reviews-v1-7d9f8",
		"INSTANCE_IPS":    "10.1.2.3",
		"APP_CONTAINERS":  "reviews",
		"WORKLOAD_NAME":   "reviews",
		"LABELS": map[string]any{
			"app": "reviews", "version": "v1", "security.istio.io/tlsMode": "istio",
		},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, md[k]); diff != "" {
			t.Errorf("metadata %s (-want +got):\n%s", k, diff)
		}
	}
	if _, ok := md["PATH"]; ok {
		t.Error("non-ISTIO_META env leaked into metadata")
	}
}

func TestNodeMetadataBadJSON(t *testing.T) {
	o := base()
	o.Env = []string{"ISTIO_METAJSON_LABELS={not json"}
	_, err := NodeMetadata(o)
	if err == nil || !strings.Contains(err.Error(), "ISTIO_METAJSON_LABELS") {
		t.Fatalf("want error naming the env var, got %v", err)
	}
}

func TestAppName(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"app": "a", "app.kubernetes.io/name": "b"}, "a"},
		{map[string]string{"app.kubernetes.io/name": "b"}, "b"},
		{nil, "pod-1"},
	} {
		if got := AppName(tc.labels, "pod-1"); got != tc.want {
			t.Errorf("AppName(%v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no ip", func(o *Options) { o.InstanceIPs = nil }, "INSTANCE_IP"},
		{"bad ip", func(o *Options) { o.InstanceIPs = []string{"10.1"} }, `"10.1"`},
		{"no pod", func(o *Options) { o.PodName = "" }, "POD_NAME"},
		{"bad type", func(o *Options) { o.ProxyType = "waypoint" }, `"waypoint"`},
		{"relative xds socket", func(o *Options) { o.XDSSocket = DefaultXDSSocket }, "must be absolute"},
		{"bad zipkin", func(o *Options) { o.Tracing = &Tracing{Zipkin: &Zipkin{Address: "zipkin"}} }, "host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.mutate(&o)
			_, err := Envoy(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %s", err, tc.want)
			}
		})
	}
}

func TestMergeOverrideSemantics(t *testing.T) {
	def, err := Envoy(base())
	if err != nil {
		t.Fatal(err)
	}
	override, _ := os.ReadFile("testdata/override.yaml")
	merged, err := Merge(def, override)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Validate(merged)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GetAdmin().GetAddress().GetSocketAddress(); got.GetPortValue() != 15100 || got.GetAddress() != "127.0.0.1" {
		t.Errorf("admin after override = %v: scalar must be replaced, siblings kept", got)
	}
	var names []string
	for _, c := range b.GetStaticResources().GetClusters() {
		names = append(names, c.GetName())
	}
	if diff := cmp.Diff([]string{"prometheus_stats", "agent", "sds-grpc", "xds-grpc", "extra"}, names); diff != "" {
		t.Errorf("clusters must be appended as Envoy does (-want +got):\n%s", diff)
	}
}

func TestCustomConfigAsIs(t *testing.T) {
	def, _ := Envoy(base())
	got, err := Generate(Options{}, Custom{Config: def})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(def) {
		t.Error("a custom config must be used byte for byte")
	}
	_, err = Generate(Options{}, Custom{Config: []byte(`{"admin": {"adress": {}}}`)})
	if err == nil || !strings.Contains(err.Error(), "admin.adress") {
		t.Fatalf("custom config must still be validated, got %v", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	if _, err := Render("{{ .Nope }}", base()); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := Render("{{ if }}", base()); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("bad syntax: %v", err)
	}
	if _, err := Render("not json", base()); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("not json: %v", err)
	}
}

func TestValidateReportsFieldPaths(t *testing.T) {
	def, err := Envoy(base())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(doc map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(def, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc)
		out, _ := json.Marshal(doc)
		return out
	}
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				v = v.(map[string]any)[k]
			case int:
				v = v.([]any)[k]
			}
		}
		return v
	}
	for _, tc := range []struct {
		name     string
		data     []byte
		wantPath string
		wantWhy  string
	}{
		{
			name:     "unknown top-level field",
			data:     []byte(`{"admin": {}, "statsconfig": {}}`),
			wantPath: "statsconfig",
			wantWhy:  "unknown field",
		},
		{
			name: "unknown field inside typed_config",
			data: edit(func(d map[string]any) {
				hcm := get(d, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)
				hcm["stat_prefx"] = "x"
			}),
			wantPath: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx",
			wantWhy:  "unknown field",
		},
		{
			name: "bad enum",
			data: edit(func(d map[string]any) {
				get(d, "static_resources", "clusters", 0).(map[string]any)["type"] = "STATICK"
			}),
			wantPath: "static_resources.clusters[0].type",
			wantWhy:  "STATICK",
		},
		{
			name: "empty cluster name fails PGV",
			data: edit(func(d map[string]any) {
				get(d, "static_resources", "clusters", 1).(map[string]any)["name"] = ""
			}),
			wantPath: "static_resources.clusters[1]",
			wantWhy:  "",
		},
		{
			name: "PGV rule inside typed_config (empty stat_prefix)",
			data: edit(func(d map[string]any) {
				get(d, "static_resources", "listeners", 1, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)["stat_prefix"] = ""
			}),
			wantPath: "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.stat_prefix",
			wantWhy:  "length",
		},
		{
			name: "PGV rule on a port",
			data: edit(func(d map[string]any) {
				get(d, "admin", "address", "socket_address").(map[string]any)["port_value"] = 70000
			}),
			wantPath: "admin.address.socket_address.port_value",
			wantWhy:  "65535",
		},
		{
			name: "unknown extension type",
			data: edit(func(d map[string]any) {
				get(d, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config").(map[string]any)["@type"] = "type.googleapis.com/acme.Unknown"
			}),
			wantPath: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.@type",
			wantWhy:  "acme.Unknown",
		},
		{
			name: "string where a number belongs",
			data: edit(func(d map[string]any) {
				get(d, "admin", "address", "socket_address").(map[string]any)["port_value"] = "fifteen-thousand"
			}),
			wantPath: "admin.address.socket_address.port_value",
			wantWhy:  "not a number",
		},
		{
			name:    "not JSON",
			data:    []byte(`{"admin": `),
			wantWhy: "not valid JSON",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate(tc.data)
			var ve *ValidationError
			if !asValidation(err, &ve) {
				t.Fatalf("want *ValidationError, got %v", err)
			}
			found := false
			for _, is := range ve.Issues {
				if strings.HasPrefix(is.Path, tc.wantPath) && strings.Contains(is.Reason, tc.wantWhy) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no issue at %q mentioning %q in: %v", tc.wantPath, tc.wantWhy, err)
			}
			t.Logf("user sees: %v", err)
		})
	}
}

func asValidation(err error, out **ValidationError) bool {
	ve, ok := err.(*ValidationError)
	if ok {
		*out = ve
	}
	return ok
}
