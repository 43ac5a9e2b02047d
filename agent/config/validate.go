package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/meshlite/meshlite/sds/secret"
)

const maxConcurrency = 1024

// Envoy's --log-level values; "warn" is accepted as Istio accepts it.
var envoyLogLevels = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}

// SPIFFE trust domains: lowercase letters, digits, dots, dashes, underscores.
var trustDomainRE = regexp.MustCompile(`^[a-z0-9._-]+$`)

// Validate reports every problem in c at once, as Errors (nil when valid).
// Load calls it; call it again after changing a Config by hand.
func (c *Config) Validate() error { return c.validate().err() }

func (c *Config) validate() Errors {
	var es Errors
	if c.ProxyType != ProxyTypeSidecar && c.ProxyType != ProxyTypeRouter {
		es.add("proxy type", string(c.ProxyType), "unknown proxy type", "sidecar, router")
	}

	// Identity: node ID, SPIFFE ID, DNS domain.
	nsBad := true
	switch {
	case c.PodNamespace == "":
		es.add("POD_NAMESPACE", "", "is not set; the namespace is part of the node ID and the SPIFFE identity", "the pod's namespace, from the downward API field metadata.namespace")
	default:
		if !isDNS1123Label(c.PodNamespace) {
			es.add("POD_NAMESPACE", c.PodNamespace, "not a valid namespace name", "a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters")
		} else {
			nsBad = false
		}
	}
	if c.PodName == "" {
		es.add("POD_NAME", "", "is not set and the hostname is unknown", "the pod's name, from the downward API field metadata.name")
	} else if strings.ContainsAny(c.PodName, "~ /") {
		es.add("POD_NAME", c.PodName, "contains a character that breaks the node ID", "a pod name without '~', '/' or spaces")
	}
	if !isDNS1123Subdomain(c.ServiceAccount) {
		es.add("SERVICE_ACCOUNT", c.ServiceAccount, "not a valid service account name", "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'")
	}
	if !trustDomainRE.MatchString(c.TrustDomain) {
		es.add("TRUST_DOMAIN", c.TrustDomain, "not a valid SPIFFE trust domain", envByName("TRUST_DOMAIN").Allowed+": lowercase letters, digits, '.', '-', '_'")
	}
	if len(c.InstanceIPs) == 0 {
		es.add("INSTANCE_IP", "", "no instance IP: none was set and none was found on the host", envByName("INSTANCE_IP").Allowed)
	}
	for _, ip := range c.InstanceIPs {
		if net.ParseIP(ip) == nil {
			es.add("INSTANCE_IP", ip, "not an IP address", envByName("INSTANCE_IP").Allowed)
		}
	}
	derivedDomain := c.Domain == "" || c.Domain == c.PodNamespace+".svc."+DefaultClusterDomain
	switch {
	case nsBad && derivedDomain:
		// the domain comes from the namespace, which is already reported
	case c.Domain == "":
		es.add("--domain", "", "is empty", "a DNS domain such as <namespace>.svc.cluster.local")
	case !isDNS1123Subdomain(c.Domain):
		es.add("--domain", c.Domain, "not a valid DNS domain", "a DNS name such as default.svc.cluster.local")
	}
	if c.ClusterID == "" {
		es.add(MetaPrefix+ClusterIDMetaKey, "", "is empty", "a cluster name, e.g. Kubernetes")
	}

	// Control plane.
	checkHostPort(&es, "proxyConfig.discoveryAddress", c.DiscoveryAddress())
	if c.ControlPlane.CAAddress != c.DiscoveryAddress() { // else it was derived and is already reported
		checkHostPort(&es, "CA_ADDR", c.ControlPlane.CAAddress)
	}
	switch c.ControlPlane.CertProvider {
	case CertProviderIstiod, CertProviderCustom, CertProviderNone:
	default:
		es.add("PILOT_CERT_PROVIDER", string(c.ControlPlane.CertProvider), "unknown certificate provider", envByName("PILOT_CERT_PROVIDER").Allowed)
	}

	// Workload certificates.
	s := c.Secrets
	if s.TTL < secret.MinTTL {
		es.add("SECRET_TTL", s.TTL.String(), "is shorter than "+secret.MinTTL.String(), envByName("SECRET_TTL").Allowed)
	}
	if !(s.GracePeriodRatio > 0 && s.GracePeriodRatio < 1) {
		es.add("SECRET_GRACE_PERIOD_RATIO", strconv.FormatFloat(s.GracePeriodRatio, 'g', -1, 64), "out of range", envByName("SECRET_GRACE_PERIOD_RATIO").Allowed)
	}
	switch s.RSAKeySize {
	case 2048, 3072, 4096:
	default:
		es.add("WORKLOAD_RSA_KEY_SIZE", strconv.Itoa(s.RSAKeySize), "unsupported RSA key size", envByName("WORKLOAD_RSA_KEY_SIZE").Allowed)
	}
	switch s.ECCSignatureAlgorithm {
	case "ECDSA", "RSA":
	default:
		es.add("ECC_SIGNATURE_ALGORITHM", s.ECCSignatureAlgorithm, "unknown signature algorithm", envByName("ECC_SIGNATURE_ALGORITHM").Allowed)
	}
	switch s.ECCCurve {
	case "P256", "P384":
	default:
		es.add("ECC_CURVE", s.ECCCurve, "unknown curve", envByName("ECC_CURVE").Allowed)
	}

	// Envoy.
	if c.Envoy.MinimumDrainDuration < 0 {
		es.add("MINIMUM_DRAIN_DURATION", c.Envoy.MinimumDrainDuration.String(), "must not be negative", envByName("MINIMUM_DRAIN_DURATION").Allowed)
	}
	if !slices.Contains(envoyLogLevels, c.Envoy.LogLevel) {
		es.add("--proxyLogLevel", c.Envoy.LogLevel, "unknown Envoy log level", strings.Join(envoyLogLevels, ", "))
	}
	if err := checkComponentLevels(c.Envoy.ComponentLogLevel); err != "" {
		es.add("--proxyComponentLogLevel", c.Envoy.ComponentLogLevel, err, "<component>:<level>[,<component>:<level>...] with levels "+strings.Join(envoyLogLevels, ", "))
	}

	c.validateProxyConfig(&es)
	return es
}

func (c *Config) validateProxyConfig(es *Errors) {
	p := c.Proxy
	checkPort(es, "proxyConfig.statusPort", p.GetStatusPort())
	checkPort(es, "proxyConfig.proxyAdminPort", p.GetProxyAdminPort())
	if p.GetStatusPort() == p.GetProxyAdminPort() {
		es.add("proxyConfig.statusPort", strconv.Itoa(int(p.GetStatusPort())), "is the same port as proxyConfig.proxyAdminPort", "a port other than the Envoy admin port")
	}
	if n := p.GetConcurrency(); n != nil && (n.GetValue() < 0 || n.GetValue() > maxConcurrency) {
		es.add("proxyConfig.concurrency", strconv.Itoa(int(n.GetValue())), "out of range", fmt.Sprintf("0 (one per CPU) to %d", maxConcurrency))
	}
	if d := p.GetDrainDuration(); d != nil && d.AsDuration() <= 0 {
		es.add("proxyConfig.drainDuration", d.AsDuration().String(), "must be greater than 0", "a duration such as 45s")
	}
	if d := p.GetTerminationDrainDuration(); d != nil && d.AsDuration() < 0 {
		es.add("proxyConfig.terminationDrainDuration", d.AsDuration().String(), "must not be negative", "a duration such as 5s")
	}
	if p.GetConfigPath() == "" {
		es.add("proxyConfig.configPath", "", "is empty", "a directory for the generated Envoy bootstrap, e.g. ./etc/istio/proxy")
	}
	if p.GetBinaryPath() == "" && !c.Envoy.Disabled {
		es.add("proxyConfig.binaryPath", "", "is empty and Envoy is enabled", "the Envoy binary path, or DISABLE_ENVOY=true")
	}
	for i, re := range p.GetProxyStatsMatcher().GetInclusionRegexps() {
		if _, err := regexp.Compile(re); err != nil {
			es.add(fmt.Sprintf("proxyConfig.proxyStatsMatcher.inclusionRegexps[%d]", i), re, "not a valid regular expression: "+err.Error(), "an RE2 regular expression")
		}
	}
}

func checkPort(es *Errors, field string, port int32) {
	if port < 1 || port > 65535 {
		es.add(field, strconv.Itoa(int(port)), "out of range", "1-65535")
	}
}

func checkHostPort(es *Errors, field, addr string) {
	const allowed = "host:port with a port from 1 to 65535, e.g. istiod.istio-system.svc:15012"
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		es.add(field, addr, "not a host:port address", allowed)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		es.add(field, addr, "port out of range", allowed)
	}
}

// checkComponentLevels validates Envoy's --component-log-level syntax and
// returns the problem, or "".
func checkComponentLevels(s string) string {
	if s == "" {
		return ""
	}
	for _, part := range strings.Split(s, ",") {
		comp, level, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || comp == "" {
			return fmt.Sprintf("%q is not <component>:<level>", part)
		}
		if !slices.Contains(envoyLogLevels, level) {
			return fmt.Sprintf("component %s has unknown level %q", comp, level)
		}
	}
	return ""
}
