package config

import (
	"errors"
	"testing"
)

// TestValidationMessages pins the message for each bad setting: one bad input,
// exactly one message, naming the setting, the value and what is allowed.
func TestValidationMessages(t *testing.T) {
	env := func(kv ...string) layers {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return layers{env: m}
	}
	pc := func(yaml string) layers { return env("PROXY_CONFIG", yaml) }
	tests := []struct {
		name string
		in   layers
		want string
	}{
		{"POD_NAMESPACE missing", env("POD_NAMESPACE", ""),
			`POD_NAMESPACE: is not set; the namespace is part of the node ID and the SPIFFE identity (allowed: the pod's namespace, from the downward API field metadata.namespace)`},
		{"POD_NAMESPACE invalid", env("POD_NAMESPACE", "Shop_1"),
			`POD_NAMESPACE="Shop_1": not a valid namespace name (allowed: a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters)`},
		{"POD_NAME breaks node ID", env("POD_NAME", "a~b"),
			`POD_NAME="a~b": contains a character that breaks the node ID (allowed: a pod name without '~', '/' or spaces)`},
		{"INSTANCE_IP", env("INSTANCE_IP", "10.0.0.300,fe80::1"),
			`INSTANCE_IP="10.0.0.300,fe80::1": "10.0.0.300" is not an IP address (allowed: IP addresses, comma-separated)`},
		{"SERVICE_ACCOUNT", env("SERVICE_ACCOUNT", "Bad_SA"),
			`SERVICE_ACCOUNT="Bad_SA": not a valid service account name (allowed: a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')`},
		{"TRUST_DOMAIN", env("TRUST_DOMAIN", "Bad/TD"),
			`TRUST_DOMAIN="Bad/TD": not a valid SPIFFE trust domain (allowed: a DNS-like name without '/': lowercase letters, digits, '.', '-', '_')`},
		{"CA_ADDR", env("CA_ADDR", "ca"),
			`CA_ADDR="ca": not a host:port address (allowed: host:port with a port from 1 to 65535, e.g. istiod.istio-system.svc:15012)`},
		{"PILOT_CERT_PROVIDER unknown", env("PILOT_CERT_PROVIDER", "foo"),
			`PILOT_CERT_PROVIDER="foo": unknown certificate provider (allowed: istiod, custom, none)`},
		{"PILOT_CERT_PROVIDER kubernetes", env("PILOT_CERT_PROVIDER", "kubernetes"),
			`PILOT_CERT_PROVIDER="kubernetes": the Kubernetes CSR API signer is not supported by meshlite (allowed: istiod, custom, none)`},
		{"PILOT_CERT_PROVIDER k8s.io signer", env("PILOT_CERT_PROVIDER", "k8s.io/my-signer"),
			`PILOT_CERT_PROVIDER="k8s.io/my-signer": signers of the Kubernetes CSR API (k8s.io/*) are not supported by meshlite (allowed: istiod, custom, none)`},
		{"SECRET_TTL syntax", env("SECRET_TTL", "soon"),
			`SECRET_TTL="soon": not a duration (allowed: a duration of at least 10s, e.g. 24h)`},
		{"SECRET_TTL too short", env("SECRET_TTL", "5s"),
			`SECRET_TTL="5s": is shorter than 10s (allowed: a duration of at least 10s, e.g. 24h)`},
		{"SECRET_GRACE_PERIOD_RATIO syntax", env("SECRET_GRACE_PERIOD_RATIO", "half"),
			`SECRET_GRACE_PERIOD_RATIO="half": not a number (allowed: a number greater than 0 and less than 1)`},
		{"SECRET_GRACE_PERIOD_RATIO range", env("SECRET_GRACE_PERIOD_RATIO", "1.5"),
			`SECRET_GRACE_PERIOD_RATIO="1.5": out of range (allowed: a number greater than 0 and less than 1)`},
		{"SECRET_GRACE_PERIOD_RATIO zero", env("SECRET_GRACE_PERIOD_RATIO", "0"),
			`SECRET_GRACE_PERIOD_RATIO="0": out of range (allowed: a number greater than 0 and less than 1)`},
		{"WORKLOAD_RSA_KEY_SIZE syntax", env("WORKLOAD_RSA_KEY_SIZE", "big"),
			`WORKLOAD_RSA_KEY_SIZE="big": not an integer (allowed: 2048, 3072, 4096)`},
		{"WORKLOAD_RSA_KEY_SIZE value", env("WORKLOAD_RSA_KEY_SIZE", "1024"),
			`WORKLOAD_RSA_KEY_SIZE="1024": unsupported RSA key size (allowed: 2048, 3072, 4096)`},
		{"ECC_SIGNATURE_ALGORITHM", env("ECC_SIGNATURE_ALGORITHM", "DSA"),
			`ECC_SIGNATURE_ALGORITHM="DSA": unknown signature algorithm (allowed: ECDSA, RSA (empty means RSA, as in Istio))`},
		{"ECC_CURVE", env("ECC_CURVE", "P999"),
			`ECC_CURVE="P999": unknown curve (allowed: P256, P384)`},
		{"FILE_MOUNTED_CERTS", env("FILE_MOUNTED_CERTS", "maybe"),
			`FILE_MOUNTED_CERTS="maybe": not a boolean (allowed: true or false)`},
		{"DISABLE_ENVOY", env("DISABLE_ENVOY", "yes"),
			`DISABLE_ENVOY="yes": not a boolean (allowed: true or false)`},
		{"EXIT_ON_ZERO_ACTIVE_CONNECTIONS", env("EXIT_ON_ZERO_ACTIVE_CONNECTIONS", "on"),
			`EXIT_ON_ZERO_ACTIVE_CONNECTIONS="on": not a boolean (allowed: true or false)`},
		{"MINIMUM_DRAIN_DURATION syntax", env("MINIMUM_DRAIN_DURATION", "5"),
			`MINIMUM_DRAIN_DURATION="5": not a duration (allowed: a duration of 0 or more, e.g. 5s)`},
		{"MINIMUM_DRAIN_DURATION negative", env("MINIMUM_DRAIN_DURATION", "-1s"),
			`MINIMUM_DRAIN_DURATION="-1s": must not be negative (allowed: a duration of 0 or more, e.g. 5s)`},
		{"ISTIO_KUBE_APP_PROBERS path", env("ISTIO_KUBE_APP_PROBERS", `{"/foo":{"httpGet":{"port":80}}}`),
			`ISTIO_KUBE_APP_PROBERS="<redacted>": /foo: path must start with /app-health/ (allowed: JSON {"/app-health/<container>/<livez|readyz|startupz>": {"httpGet"|"tcpSocket"|"grpc": {...}, "timeoutSeconds": N}})`},
		{"ISTIO_KUBE_APP_PROBERS two actions", env("ISTIO_KUBE_APP_PROBERS", `{"/app-health/a/livez":{"httpGet":{"port":80},"tcpSocket":{"port":80}}}`),
			`ISTIO_KUBE_APP_PROBERS="<redacted>": /app-health/a/livez: has 2 of httpGet, tcpSocket, grpc; exactly one is required (allowed: JSON {"/app-health/<container>/<livez|readyz|startupz>": {"httpGet"|"tcpSocket"|"grpc": {...}, "timeoutSeconds": N}})`},
		{"ISTIO_KUBE_APP_PROBERS port", env("ISTIO_KUBE_APP_PROBERS", `{"/app-health/a/livez":{"grpc":{"port":0}}}`),
			`ISTIO_KUBE_APP_PROBERS="<redacted>": /app-health/a/livez: port must be a number from 1 to 65535 (named ports are resolved by injection) (allowed: JSON {"/app-health/<container>/<livez|readyz|startupz>": {"httpGet"|"tcpSocket"|"grpc": {...}, "timeoutSeconds": N}})`},
		{"ISTIO_KUBE_APP_PROBERS unknown field", env("ISTIO_KUBE_APP_PROBERS", `{"/app-health/a/livez":{"exec":{}}}`),
			`ISTIO_KUBE_APP_PROBERS="<redacted>": not valid JSON for this variable: json: unknown field "exec" (allowed: JSON {"/app-health/<container>/<livez|readyz|startupz>": {"httpGet"|"tcpSocket"|"grpc": {...}, "timeoutSeconds": N}})`},
		{"ISTIO_PROMETHEUS_ANNOTATIONS scrape", env("ISTIO_PROMETHEUS_ANNOTATIONS", `{"scrape":"yes"}`),
			`ISTIO_PROMETHEUS_ANNOTATIONS="{\"scrape\":\"yes\"}": scrape "yes" is not true or false (allowed: JSON {"scrape": "true", "path": "/metrics", "port": "<1-65535>"})`},
		{"ISTIO_PROMETHEUS_ANNOTATIONS port", env("ISTIO_PROMETHEUS_ANNOTATIONS", `{"port":"http"}`),
			`ISTIO_PROMETHEUS_ANNOTATIONS="{\"port\":\"http\"}": port "http" is not a number from 1 to 65535 (allowed: JSON {"scrape": "true", "path": "/metrics", "port": "<1-65535>"})`},
		{"ISTIO_METAJSON_", env("ISTIO_METAJSON_LABELS", "{"),
			`ISTIO_METAJSON_LABELS="{": not valid JSON (allowed: any JSON value, e.g. {"key":"value"})`},
		{"cluster ID not a string", env("ISTIO_METAJSON_CLUSTER_ID", "42"),
			`ISTIO_METAJSON_CLUSTER_ID="42": the cluster ID must be a non-empty string (allowed: a cluster name, e.g. Kubernetes)`},
		{"PROXY_CONFIG unknown field", pc("statusPorts: 1"),
			`PROXY_CONFIG: unknown field "statusPorts" (allowed: ProxyConfig YAML or JSON (istio.io/api mesh.v1alpha1))`},
		{"PROXY_CONFIG bad enum", pc("interceptionMode: SIDEWAYS"),
			`PROXY_CONFIG: invalid value for enum field interceptionMode: "SIDEWAYS" (allowed: ProxyConfig YAML or JSON (istio.io/api mesh.v1alpha1))`},
		{"discoveryAddress", pc("discoveryAddress: istiod:99999"),
			`proxyConfig.discoveryAddress="istiod:99999": port out of range (allowed: host:port with a port from 1 to 65535, e.g. istiod.istio-system.svc:15012)`},
		{"statusPort range", pc("statusPort: 70000"),
			`proxyConfig.statusPort="70000": out of range (allowed: 1-65535)`},
		{"proxyAdminPort range", pc("proxyAdminPort: -1"),
			`proxyConfig.proxyAdminPort="-1": out of range (allowed: 1-65535)`},
		{"statusPort clash", pc("statusPort: 15000"),
			`proxyConfig.statusPort="15000": is the same port as proxyConfig.proxyAdminPort (allowed: a port other than the Envoy admin port)`},
		{"concurrency", pc("concurrency: -1"),
			`proxyConfig.concurrency="-1": out of range (allowed: 0 (one per CPU) to 1024)`},
		{"drainDuration", pc("drainDuration: 0s"),
			`proxyConfig.drainDuration="0s": must be greater than 0 (allowed: a duration such as 45s)`},
		{"terminationDrainDuration", pc("terminationDrainDuration: -5s"),
			`proxyConfig.terminationDrainDuration="-5s": must not be negative (allowed: a duration such as 5s)`},
		{"stats regexp", pc("proxyStatsMatcher: {inclusionRegexps: ['(']}"),
			"proxyConfig.proxyStatsMatcher.inclusionRegexps[0]=\"(\": not a valid regular expression: error parsing regexp: missing closing ): `(` (allowed: an RE2 regular expression)"},
		{"--concurrency", layers{flags: Flags{Concurrency: ptr(-3)}},
			`--concurrency="-3": out of range (allowed: 0 (one per CPU) to 1024)`},
		{"--domain", layers{flags: Flags{Domain: ptr("Not A Domain")}},
			`--domain="Not A Domain": not a valid DNS domain (allowed: a DNS name such as default.svc.cluster.local)`},
		{"--proxyLogLevel", layers{flags: Flags{ProxyLogLevel: ptr("loud")}},
			`--proxyLogLevel="loud": unknown Envoy log level (allowed: trace, debug, info, warning, warn, error, critical, off)`},
		{"--proxyComponentLogLevel level", layers{flags: Flags{ProxyComponentLogLevel: ptr("upstream:loud")}},
			`--proxyComponentLogLevel="upstream:loud": component upstream has unknown level "loud" (allowed: <component>:<level>[,<component>:<level>...] with levels trace, debug, info, warning, warn, error, critical, off)`},
		{"--proxyComponentLogLevel syntax", layers{flags: Flags{ProxyComponentLogLevel: ptr("misc")}},
			`--proxyComponentLogLevel="misc": "misc" is not <component>:<level> (allowed: <component>:<level>[,<component>:<level>...] with levels trace, debug, info, warning, warn, error, critical, off)`},
		{"proxy type", layers{opts: func(o *Options) { o.ProxyType = "gateway" }},
			`proxy type="gateway": unknown proxy type (allowed: sidecar, router)`},
		{"mesh config unknown field", layers{mesh: "defaultConfig: {bogus: 1}\n"},
			`mesh config file ./etc/istio/config/mesh: unknown field "bogus" (allowed: MeshConfig YAML (istio.io/api mesh.v1alpha1))`},
		{"mesh config bad YAML", layers{mesh: ":\n- x"},
			`mesh config file ./etc/istio/config/mesh: not valid YAML: yaml: did not find expected key (allowed: MeshConfig YAML (istio.io/api mesh.v1alpha1))`},
		{"explicit mesh config missing", layers{opts: func(o *Options) { o.MeshConfigFile = "/nonexistent/mesh" }},
			`--meshConfig="/nonexistent/mesh": file does not exist (allowed: an existing file, or omit it to use the default ./etc/istio/config/mesh)`},
		{"annotation unknown field", layers{annotations: annotation(ProxyConfigAnnotation, "statusPorts: 1")},
			`pod annotations file ./etc/istio/pod/annotations: annotation proxy.istio.io/config: unknown field "statusPorts" (allowed: ProxyConfig YAML (istio.io/api mesh.v1alpha1))`},
		{"annotations file syntax", layers{annotations: "garbage\n"},
			`pod annotations file ./etc/istio/pod/annotations: line 1: want key="value", got "garbage" (allowed: Kubernetes downward API lines: key="value")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.in.options(t))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("want Errors, got %v", err)
			}
			if len(es) != 1 || es[0].Error() != tt.want {
				t.Errorf("got %d problem(s):\n%v\nwant exactly:\n  - %s", len(es), err, tt.want)
			}
		})
	}
}

// TestEveryProblemAtOnce: a config with many mistakes reports all of them.
func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Load(layers{
		env:  map[string]string{"PILOT_CERT_PROVIDER": "foo", "ECC_CURVE": "P999", "SECRET_TTL": "soon", "POD_NAMESPACE": ""},
		mesh: "defaultConfig: {statusPort: 0x}", flags: Flags{ProxyLogLevel: ptr("loud")},
	}.options(t))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	fields := map[string]bool{}
	for _, e := range es {
		var fe *FieldError
		if errors.As(e, &fe) {
			fields[fe.Field] = true
		}
	}
	for _, f := range []string{"PILOT_CERT_PROVIDER", "ECC_CURVE", "SECRET_TTL", "POD_NAMESPACE", "--proxyLogLevel", "mesh config file ./etc/istio/config/mesh"} {
		if !fields[f] {
			t.Errorf("no problem reported for %s in:\n%v", f, err)
		}
	}
}
