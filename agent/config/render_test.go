package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update if intended):\n%s", path, diff)
	}
}

// secretsLayers has a secret in every place one can hide.
var secretsLayers = layers{
	mesh: `trustDomain: corp.example
defaultConfig:
  tracing:
    lightstep: {address: "ls:443", accessToken: "ls-secret"}
  proxyMetadata: {DB_PASSWORD: hunter2, PLAIN: visible}
`,
	env: map[string]string{
		"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "INSTANCE_IP": "10.1.2.3", "SERVICE_ACCOUNT": "web",
		"KUBERNETES_SERVICE_HOST": "10.96.0.1",
		"CA_ADDR":                 "ca.corp.example:15012",
		"ISTIO_META_API_TOKEN":    "meta-secret",
		"ISTIO_META_APP":          "web",
		"ISTIO_METAJSON_CREDS":    `{"nested":{"client_secret":"json-secret","user":"bob"}}`,
		"ISTIO_KUBE_APP_PROBERS":  `{"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":8080,"httpHeaders":[{"name":"Authorization","value":"Bearer probe-secret"},{"name":"X-Plain","value":"ok"}]}}}`,
		"PROXY_CONFIG":            "concurrency: 4",
	},
	annotations: annotation(ProxyConfigAnnotation, "drainDuration: 20s"),
	flags:       Flags{ProxyLogLevel: ptr("info")},
}

func TestYAMLGolden(t *testing.T) {
	c := secretsLayers.load(t)
	c.Paths.WorkDir = "/work" // the temp dir would change every run
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "effective-config.yaml", y)
}

func TestMaskedHidesSecretsAndKeepsTheOriginal(t *testing.T) {
	c := secretsLayers.load(t)
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ls-secret", "hunter2", "meta-secret", "json-secret", "probe-secret"} {
		if strings.Contains(string(y), secret) {
			t.Errorf("YAML leaks %q", secret)
		}
	}
	for _, visible := range []string{"visible", "bob", "X-Plain", "ls:443", "ca.corp.example:15012", "./var/run/secrets/tokens/istio-token"} {
		if !strings.Contains(string(y), visible) {
			t.Errorf("YAML lost non-secret %q", visible)
		}
	}
	// The agent runs from the original, which must be untouched.
	if got := c.Proxy.GetTracing().GetLightstep().GetAccessToken(); got != "ls-secret" {
		t.Errorf("Masked modified the original tracing token: %q", got)
	}
	if got := c.Proxy.GetProxyMetadata()["DB_PASSWORD"]; got != "hunter2" {
		t.Errorf("Masked modified the original proxyMetadata: %q", got)
	}
	if got := c.NodeMetadata["CREDS"].(map[string]any)["nested"].(map[string]any)["client_secret"]; got != "json-secret" {
		t.Errorf("Masked modified the original node metadata: %v", got)
	}
	if got := c.App.KubeAppProbers["/app-health/web/readyz"].HTTPGet.HTTPHeaders[0].Value; got != "Bearer probe-secret" {
		t.Errorf("Masked modified the original probe header: %q", got)
	}
}

func TestIsSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"access_token": true, "API_TOKEN": true, "DB_PASSWORD": true, "client_secret": true, "Authorization": true,
		"token_path": false, "credentialName": false, "CA_ROOT_CA": false, "APP": false, "tokenFile": false,
	} {
		if got := isSecretName(name); got != want {
			t.Errorf("isSecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://agent:pass@ca.example:443/x": "https://agent:xxxxx@ca.example:443/x",
		"https://agent@ca.example":            "https://agent@ca.example",
		"ca.example:15012":                    "ca.example:15012",
	} {
		if got := maskURL(in); got != want {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
	}
}
