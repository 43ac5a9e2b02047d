package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/bootstrap"
)

// Downward-API files Istio's injection mounts; both are optional.
const (
	podLabelsFile      = "./etc/istio/pod/labels"
	podAnnotationsFile = "./etc/istio/pod/annotations"
)

// BootstrapOptions maps the agent's config onto the bootstrap generator's
// inputs. Socket paths are made absolute: Envoy and gRPC apps resolve them
// against their own working directory, not the agent's.
func BootstrapOptions(c *config.Config, environ []string) (bootstrap.Options, error) {
	xds, err := filepath.Abs(c.Paths.Abs(c.Paths.XDSSocket))
	if err != nil {
		return bootstrap.Options{}, err
	}
	sdsSock, err := filepath.Abs(c.Paths.Abs(c.Paths.SDSSocket))
	if err != nil {
		return bootstrap.Options{}, err
	}
	labels, err := readDownwardAPI(c.Paths.Abs(podLabelsFile))
	if err != nil {
		return bootstrap.Options{}, err
	}
	annotations, err := readDownwardAPI(c.Paths.Abs(podAnnotationsFile))
	if err != nil {
		return bootstrap.Options{}, err
	}
	p := c.Proxy
	o := bootstrap.Options{
		ProxyType:      string(c.ProxyType),
		InstanceIPs:    c.InstanceIPs,
		PodName:        c.PodName,
		Namespace:      c.PodNamespace,
		Domain:         c.Domain,
		ServiceAccount: c.ServiceAccount,
		ClusterID:      c.ClusterID,
		MeshID:         c.Mesh.GetTrustDomain(),
		Labels:         labels,
		Annotations:    annotations,
		Env:            environ,
		AdminPort:      int(p.GetProxyAdminPort()),
		StatusPort:     int(p.GetStatusPort()),
		XDSSocket:      xds,
		SDSSocket:      sdsSock,
	}
	if m := p.GetProxyStatsMatcher(); m != nil {
		o.Stats = bootstrap.StatsOptions{
			InclusionPrefixes: m.GetInclusionPrefixes(),
			InclusionSuffixes: m.GetInclusionSuffixes(),
			InclusionRegexps:  m.GetInclusionRegexps(),
		}
	}
	o.Stats.ExtraStatTags = p.GetExtraStatTags()
	if t := p.GetTracing(); t != nil {
		switch {
		case t.GetZipkin() != nil:
			o.Tracing = &bootstrap.Tracing{Zipkin: &bootstrap.Zipkin{Address: t.GetZipkin().GetAddress()}}
		case t.GetOpenCensusAgent() != nil:
			o.Tracing = &bootstrap.Tracing{OpenTelemetry: &bootstrap.OpenTelemetry{Address: t.GetOpenCensusAgent().GetAddress()}}
		}
	}
	return o, nil
}

// RenderEnvoyBootstrap produces the validated bootstrap Envoy starts from,
// applying --templateFile, a custom config path and ISTIO_BOOTSTRAP_OVERRIDE.
func RenderEnvoyBootstrap(c *config.Config, environ []string) ([]byte, error) {
	o, err := BootstrapOptions(c, environ)
	if err != nil {
		return nil, err
	}
	var custom bootstrap.Custom
	if t := c.Proxy.GetProxyBootstrapTemplatePath(); t != "" {
		data, err := os.ReadFile(c.Paths.Abs(t))
		if err != nil {
			return nil, fmt.Errorf("read bootstrap template (--templateFile): %w", err)
		}
		custom.Template = string(data)
	}
	if f := c.Envoy.BootstrapOverride; f != "" {
		data, err := os.ReadFile(c.Paths.Abs(f))
		if err != nil {
			return nil, fmt.Errorf("read ISTIO_BOOTSTRAP_OVERRIDE: %w", err)
		}
		custom.Override = data
	}
	out, err := bootstrap.Generate(o, custom)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return out, nil
}

// RenderGRPCBootstrap produces the gRPC xDS bootstrap for proxyless apps.
func RenderGRPCBootstrap(c *config.Config, environ []string) ([]byte, error) {
	o, err := BootstrapOptions(c, environ)
	if err != nil {
		return nil, err
	}
	certDir, err := filepath.Abs(c.Paths.Abs(outputCertsDir(c)))
	if err != nil {
		return nil, err
	}
	return bootstrap.GRPC(bootstrap.GRPCOptions{Node: o, XDSSocket: o.XDSSocket, CertDir: certDir,
		RefreshInterval: certRefreshInterval(c.Secrets.TTL, c.Secrets.GracePeriodRatio)})
}

// certRefreshInterval is how often grpc-go re-reads OUTPUT_CERTS. A rotated
// certificate is written when GracePeriodRatio of its lifetime is left; the
// app must pick it up well before the old one expires, so it re-reads four
// times within that window (at most every 15 minutes, at least every second).
func certRefreshInterval(ttl time.Duration, graceRatio float64) time.Duration {
	d := time.Duration(float64(ttl) * graceRatio / 4)
	return min(max(d, time.Second), 15*time.Minute)
}

// outputCertsDir is OUTPUT_CERTS, or in proxyless mode (where the app needs
// the files) Istio's workload credentials directory when it is unset.
func outputCertsDir(c *config.Config) string {
	if c.Secrets.OutputCertsDir != "" || !c.Envoy.Disabled {
		return c.Secrets.OutputCertsDir
	}
	return c.Paths.WorkloadCredentialsDir
}

func readDownwardAPI(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := config.ParseAnnotations(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
