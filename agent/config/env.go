package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// EnvVar documents and applies one environment variable. The table is the
// single source for loading, for validation messages (Allowed) and for docs.
type EnvVar struct {
	Name    string
	Default string // as shown to users
	Allowed string // allowed values or range, quoted in error messages
	Help    string
	// MayHoldSecrets: the value can carry credentials (probe headers), so
	// errors show it redacted.
	MayHoldSecrets bool
	apply          func(c *Config, v string) error
}

// Metadata prefixes: ISTIO_META_FOO=bar becomes node metadata FOO: "bar";
// ISTIO_METAJSON_FOO={"a":1} becomes FOO: {"a":1}.
const (
	MetaPrefix     = "ISTIO_META_"
	MetaJSONPrefix = "ISTIO_METAJSON_"
	// ClusterIDMetaKey is the node metadata key that names the cluster.
	ClusterIDMetaKey = "CLUSTER_ID"
	DefaultClusterID = "Kubernetes"
)

// EnvVars lists every variable the agent reads, besides PROXY_CONFIG (a layer
// of its own) and the ISTIO_META_ prefixes.
var EnvVars = []EnvVar{
	{Name: "POD_NAME", Default: "the hostname", Allowed: "a pod name", Help: "Pod name, part of the node ID.",
		apply: func(c *Config, v string) error { c.PodName = v; return nil }},
	{Name: "POD_NAMESPACE", Default: "(required)", Allowed: "a namespace name", Help: "Pod namespace: node ID, SPIFFE identity and DNS domain.",
		apply: func(c *Config, v string) error { c.PodNamespace = v; return nil }},
	{Name: "INSTANCE_IP", Default: "the host's non-loopback IPs", Allowed: "IP addresses, comma-separated", Help: "Pod IP(s); the first one is in the node ID.",
		apply: applyIPs},
	{Name: "SERVICE_ACCOUNT", Default: "default", Allowed: "a service account name", Help: "Service account, part of the SPIFFE identity.",
		apply: func(c *Config, v string) error { c.ServiceAccount = v; return nil }},
	{Name: "TRUST_DOMAIN", Default: "mesh config trustDomain (cluster.local)", Allowed: "a DNS-like name without '/'", Help: "SPIFFE trust domain of the workload.",
		apply: func(c *Config, v string) error { c.TrustDomain = v; return nil }},
	{Name: "CA_ADDR", Default: "the discovery address", Allowed: "host:port", Help: "Address of the CA (IstioCertificateService).",
		apply: func(c *Config, v string) error { c.ControlPlane.CAAddress = v; return nil }},
	{Name: "PILOT_CERT_PROVIDER", Default: "istiod", Allowed: "istiod, custom, none", Help: "Who signs workload certificates and which root verifies istiod.",
		apply: applyCertProvider},
	{Name: "CA_ROOT_CA", Default: DefaultRootCAFile, Allowed: "a PEM file path", Help: "Root certificate that verifies the CA and istiod.",
		apply: func(c *Config, v string) error { c.ControlPlane.RootCAFile = v; return nil }},
	{Name: "ISTIOD_SAN", Default: "the discovery address host, or istiod.istio-system.svc when it is an IP", Allowed: "a DNS name", Help: "SAN expected in istiod's serving certificate.",
		apply: func(c *Config, v string) error { c.ControlPlane.IstiodSAN = v; return nil }},
	{Name: "SECRET_TTL", Default: "24h0m0s", Allowed: "a duration of at least 10s, e.g. 24h", Help: "Requested workload certificate lifetime.",
		apply: func(c *Config, v string) error { return parseDuration(v, &c.Secrets.TTL) }},
	{Name: "SECRET_GRACE_PERIOD_RATIO", Default: "0.5", Allowed: "a number greater than 0 and less than 1", Help: "Rotate the certificate when this fraction of its lifetime remains.",
		apply: func(c *Config, v string) error { return parseFloat(v, &c.Secrets.GracePeriodRatio) }},
	{Name: "WORKLOAD_RSA_KEY_SIZE", Default: "2048", Allowed: "2048, 3072, 4096", Help: "RSA key size of the workload key.",
		apply: func(c *Config, v string) error { return parseInt(v, &c.Secrets.RSAKeySize) }},
	{Name: "ECC_SIGNATURE_ALGORITHM", Default: "ECDSA", Allowed: "ECDSA, RSA (empty means RSA, as in Istio)", Help: "Workload key type: ECDSA (ECC_CURVE) or RSA (WORKLOAD_RSA_KEY_SIZE).",
		apply: func(c *Config, v string) error {
			if v == "" {
				v = "RSA" // Istio's meaning of an explicitly empty value
			}
			c.Secrets.ECCSignatureAlgorithm = v
			return nil
		}},
	{Name: "ECC_CURVE", Default: "P256", Allowed: "P256, P384", Help: "Curve of the ECDSA workload key.",
		apply: func(c *Config, v string) error { c.Secrets.ECCCurve = v; return nil }},
	{Name: "OUTPUT_CERTS", Default: "(empty: off)", Allowed: "a directory path", Help: "Also write key.pem, cert-chain.pem and root-cert.pem here (proxyless gRPC).",
		apply: func(c *Config, v string) error { c.Secrets.OutputCertsDir = v; return nil }},
	{Name: "FILE_MOUNTED_CERTS", Default: "false", Allowed: "true or false", Help: "Use certificates mounted under ./etc/certs instead of a CA.",
		apply: func(c *Config, v string) error { return parseBool(v, &c.Secrets.FileMountedCerts) }},
	{Name: "DISABLE_ENVOY", Default: "false", Allowed: "true or false", Help: "Proxyless gRPC: no Envoy; write the gRPC xDS bootstrap and certificates.",
		apply: func(c *Config, v string) error { return parseBool(v, &c.Envoy.Disabled) }},
	{Name: "GRPC_XDS_BOOTSTRAP", Default: DefaultGRPCXDSBootstrap, Allowed: "a file path", Help: "Where the gRPC xDS bootstrap is written.",
		apply: func(c *Config, v string) error { c.Paths.GRPCXDSBootstrap = v; return nil }},
	{Name: "EXIT_ON_ZERO_ACTIVE_CONNECTIONS", Default: "false", Allowed: "true or false", Help: "On shutdown, exit as soon as the inbound listeners have no active connections.",
		apply: func(c *Config, v string) error { return parseBool(v, &c.Envoy.ExitOnZeroActiveConnections) }},
	{Name: "MINIMUM_DRAIN_DURATION", Default: "5s", Allowed: "a duration of 0 or more, e.g. 5s", Help: "Shortest drain before exit when EXIT_ON_ZERO_ACTIVE_CONNECTIONS is on.",
		apply: func(c *Config, v string) error { return parseDuration(v, &c.Envoy.MinimumDrainDuration) }},
	{Name: "ISTIO_BOOTSTRAP_OVERRIDE", Default: "(empty)", Allowed: "a JSON or YAML file path", Help: "File merged over the generated Envoy bootstrap.",
		apply: func(c *Config, v string) error { c.Envoy.BootstrapOverride = v; return nil }},
	{Name: "ISTIO_KUBE_APP_PROBERS", Default: "(empty)", Allowed: `JSON {"/app-health/<container>/<livez|readyz|startupz>": {"httpGet"|"tcpSocket"|"grpc": {...}, "timeoutSeconds": N}}`, Help: "Application probes rewritten by injection, served on the status port.", MayHoldSecrets: true,
		apply: applyAppProbers},
	{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Default: "(empty)", Allowed: `JSON {"scrape": "true", "path": "/metrics", "port": "<1-65535>"}`, Help: "Application scrape target merged into /stats/prometheus.",
		apply: applyPrometheus},
	{Name: "KUBERNETES_SERVICE_HOST", Default: "(set by the kubelet)", Allowed: "any", Help: "Only its presence is used: it selects the Kubernetes platform defaults (no in-place Envoy restart).",
		apply: func(c *Config, v string) error { c.Platform = PlatformKubernetes; return nil }},
}

// envByName finds a table entry, for messages.
func envByName(name string) EnvVar {
	for _, e := range EnvVars {
		if e.Name == name {
			return e
		}
	}
	return EnvVar{Name: name}
}

func applyIPs(c *Config, v string) error {
	var ips, bad []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if net.ParseIP(s) == nil {
			bad = append(bad, strconv.Quote(s))
			continue
		}
		ips = append(ips, s)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s is not an IP address", strings.Join(bad, ", "))
	}
	c.InstanceIPs = ips
	return nil
}

func applyCertProvider(c *Config, v string) error {
	switch p := CertProvider(v); p {
	case CertProviderIstiod, CertProviderCustom, CertProviderNone:
		c.ControlPlane.CertProvider = p
		return nil
	case "kubernetes":
		return errors.New("the Kubernetes CSR API signer is not supported by meshlite")
	default:
		if strings.HasPrefix(v, "k8s.io/") {
			return errors.New("signers of the Kubernetes CSR API (k8s.io/*) are not supported by meshlite")
		}
		return errors.New("unknown certificate provider")
	}
}

func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("not a boolean")
	}
	*dst = b
	return nil
}

func parseDuration(v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("not a duration")
	}
	*dst = d
	return nil
}

func parseFloat(v string, dst *float64) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return errors.New("not a number")
	}
	*dst = f
	return nil
}

func parseInt(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return errors.New("not an integer")
	}
	*dst = n
	return nil
}
