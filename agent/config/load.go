package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// Flags are the command-line values. A nil field was not given on the command
// line and leaves the lower layers alone, so that a flag default never hides
// the mesh config or the environment.
type Flags struct {
	Domain                 *string // --domain
	ProxyLogLevel          *string // --proxyLogLevel
	ProxyComponentLogLevel *string // --proxyComponentLogLevel
	Concurrency            *int    // --concurrency
	TemplateFile           *string // --templateFile
	RestartEnvoy           *bool   // --restart-envoy
	Capture                *bool   // --capture
	DryRun                 bool    // --dry-run
}

// Options are the inputs of Load. Everything that touches the process (env,
// hostname, interfaces, working directory) is injectable so tests stay hermetic.
type Options struct {
	ProxyType ProxyType // sidecar when empty
	// WorkDir is what relative paths are resolved against; "." when empty.
	WorkDir string
	// MeshConfigFile is --meshConfig. Empty means DefaultMeshConfigPath, which
	// may be missing; a file named explicitly must exist.
	MeshConfigFile string
	// PodAnnotationsFile: empty means DefaultPodAnnotationsPath, which may be
	// missing; a file named explicitly must exist.
	PodAnnotationsFile string

	// LookupEnv reads one variable; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
	// Environ lists KEY=VALUE pairs, used for the ISTIO_META_ prefixes. When
	// nil it is os.Environ if LookupEnv is nil too, otherwise empty.
	Environ func() []string
	// Hostname is the POD_NAME fallback; os.Hostname when nil.
	Hostname func() (string, error)
	// HostIPs is the INSTANCE_IP fallback; the non-loopback interface addresses when nil.
	HostIPs func() []string

	Flags Flags
}

// MapEnv adapts a map to Options.LookupEnv and Options.Environ, for tests and
// for callers that build the environment themselves.
type MapEnv map[string]string

func (m MapEnv) Lookup(k string) (string, bool) { v, ok := m[k]; return v, ok }

func (m MapEnv) Environ() []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func (o Options) withDefaults() Options {
	if o.ProxyType == "" {
		o.ProxyType = ProxyTypeSidecar
	}
	if o.WorkDir == "" {
		o.WorkDir = "."
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
		if o.Environ == nil {
			o.Environ = os.Environ
		}
	}
	if o.Environ == nil {
		o.Environ = func() []string { return nil }
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if o.HostIPs == nil {
		o.HostIPs = nonLoopbackIPs
	}
	return o
}

// Load builds the Config from every layer and validates it. It reports every
// problem at once, as Errors. The Config is returned even with errors, so a
// caller can show what was understood.
func Load(opts Options) (*Config, error) {
	o := opts.withDefaults()
	var es Errors
	c := defaults(o)

	// Layer 1: the mesh config file. Its defaultConfig is the mesh-wide ProxyConfig.
	meshPath, explicit := o.MeshConfigFile, o.MeshConfigFile != ""
	if !explicit {
		meshPath = DefaultMeshConfigPath
	}
	c.Paths.MeshConfig = meshPath
	if data, ok := readLayerFile(c.Paths, meshPath, DefaultMeshConfigPath, explicit, "--meshConfig", &es); ok {
		if mc, err := ParseMeshConfig(data); err != nil {
			es.add("mesh config file "+meshPath, "", cleanProtoErr(err), "MeshConfig YAML (istio.io/api mesh.v1alpha1)")
		} else {
			merge(c.Mesh, mc)
			c.Sources = append(c.Sources, "mesh config file "+meshPath)
		}
	}
	c.Proxy = proto.Clone(c.Mesh.GetDefaultConfig()).(*meshconfig.ProxyConfig)
	c.TrustDomain = c.Mesh.GetTrustDomain()

	// Layer 2: PROXY_CONFIG.
	if v, ok := o.LookupEnv("PROXY_CONFIG"); ok && strings.TrimSpace(v) != "" {
		if pc, err := ParseProxyConfig([]byte(v)); err != nil {
			es.add("PROXY_CONFIG", "", cleanProtoErr(err), "ProxyConfig YAML or JSON (istio.io/api mesh.v1alpha1)")
		} else {
			merge(c.Proxy, pc)
			c.Sources = append(c.Sources, "env PROXY_CONFIG")
		}
	}

	// Layer 3: the pod annotations file (downward API).
	annPath, explicit := o.PodAnnotationsFile, o.PodAnnotationsFile != ""
	if !explicit {
		annPath = DefaultPodAnnotationsPath
	}
	c.Paths.PodAnnotations = annPath
	if data, ok := readLayerFile(c.Paths, annPath, DefaultPodAnnotationsPath, explicit, "pod annotations file", &es); ok {
		field := "pod annotations file " + annPath
		if anns, err := ParseAnnotations(data); err != nil {
			es.add(field, "", err.Error(), `Kubernetes downward API lines: key="value"`)
		} else if y, ok := anns[ProxyConfigAnnotation]; ok {
			if pc, err := ParseProxyConfig([]byte(y)); err != nil {
				es.add(field+": annotation "+ProxyConfigAnnotation, "", cleanProtoErr(err), "ProxyConfig YAML (istio.io/api mesh.v1alpha1)")
			} else {
				merge(c.Proxy, pc)
				c.Sources = append(c.Sources, field+" ("+ProxyConfigAnnotation+")")
			}
		}
	}

	// Layer 4: the environment. proxyConfig.proxyMetadata entries act as
	// environment variables that the real environment overrides.
	pm := c.Proxy.GetProxyMetadata()
	env := func(name string) (string, bool) {
		if v, ok := o.LookupEnv(name); ok && v != "" {
			return v, true
		}
		if v := pm[name]; v != "" {
			return v, true
		}
		return "", false
	}
	for _, e := range EnvVars {
		if v, ok := env(e.Name); ok {
			if err := e.apply(c, v); err != nil {
				shown := v
				if e.MayHoldSecrets {
					shown = Redacted // e.g. an Authorization header in a probe
				}
				es.add(e.Name, shown, err.Error(), e.Allowed)
			}
		}
	}
	environ := make([]string, 0, len(pm))
	for k, v := range pm {
		environ = append(environ, k+"="+v)
	}
	c.NodeMetadata = metadataFromEnv(append(environ, o.Environ()...), &es)
	c.ClusterID = DefaultClusterID
	if v, ok := c.NodeMetadata[ClusterIDMetaKey]; ok {
		if s, isString := v.(string); isString && s != "" {
			c.ClusterID = s
		} else {
			es.add(MetaJSONPrefix+ClusterIDMetaKey, fmt.Sprint(v), "the cluster ID must be a non-empty string", "a cluster name, e.g. Kubernetes")
		}
	}
	c.Sources = append(c.Sources, "environment")

	// Layer 5: flags.
	applyFlags(c, o.Flags, &es)

	derive(c, o)
	return c, append(es, c.validate()...).err()
}

func defaults(o Options) *Config {
	return &Config{
		ProxyType:      o.ProxyType,
		Platform:       PlatformVM, // KUBERNETES_SERVICE_HOST switches it
		ServiceAccount: "default",
		Mesh:           DefaultMeshConfig(),
		ControlPlane: ControlPlane{
			CertProvider: CertProviderIstiod,
			RootCAFile:   DefaultRootCAFile,
		},
		Secrets: Secrets{
			TTL:              24 * time.Hour,
			GracePeriodRatio: 0.5,
			RSAKeySize:       2048,
			// ECDSA P-256 by default (Istio defaults to RSA): smaller keys, and
			// far cheaper to sign and to generate at every rotation.
			ECCSignatureAlgorithm: "ECDSA",
			ECCCurve:              "P256",
		},
		Envoy: Envoy{
			LogLevel:             "warning",
			ComponentLogLevel:    "misc:error",
			MinimumDrainDuration: 5 * time.Second,
		},
		Paths: Paths{
			WorkDir:                o.WorkDir,
			XDSSocket:              DefaultXDSSocket,
			SDSSocket:              DefaultSDSSocket,
			WorkloadCredentialsDir: DefaultCredentialsDir,
			Token:                  DefaultTokenPath,
			FileMountedCertsDir:    DefaultCertsDir,
			GRPCXDSBootstrap:       DefaultGRPCXDSBootstrap,
		},
		Sources: []string{"defaults"},
	}
}

// readLayerFile reads an optional layer file: a missing default is fine, a
// missing explicitly named file is an error.
func readLayerFile(p Paths, path, defaultPath string, explicit bool, field string, es *Errors) ([]byte, bool) {
	data, err := os.ReadFile(p.Abs(path))
	switch {
	case err == nil:
		return data, true
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return nil, false
	case errors.Is(err, fs.ErrNotExist):
		es.add(field, path, "file does not exist", "an existing file, or omit it to use the default "+defaultPath)
	default:
		es.add(field, path, "cannot read: "+err.Error(), "")
	}
	return nil, false
}

func applyFlags(c *Config, f Flags, es *Errors) {
	if f.Domain != nil {
		c.Domain = *f.Domain
	}
	if f.ProxyLogLevel != nil {
		c.Envoy.LogLevel = *f.ProxyLogLevel
	}
	if f.ProxyComponentLogLevel != nil {
		c.Envoy.ComponentLogLevel = *f.ProxyComponentLogLevel
	}
	if f.Concurrency != nil {
		if n := *f.Concurrency; n < 0 || n > maxConcurrency {
			es.add("--concurrency", fmt.Sprint(n), "out of range", fmt.Sprintf("0 (one per CPU) to %d", maxConcurrency))
		} else {
			c.Proxy.Concurrency = wrapperspb.Int32(int32(n))
		}
	}
	if f.TemplateFile != nil {
		c.Proxy.ProxyBootstrapTemplatePath = *f.TemplateFile
	}
	if f.Capture != nil {
		c.Capture = *f.Capture
	}
	c.DryRun = f.DryRun
	if f.RestartEnvoy != nil {
		c.Envoy.RestartInPlace = *f.RestartEnvoy
	} else {
		// In a pod the kubelet restarts the container, as Istio relies on; on a
		// VM nobody would, so the agent restarts Envoy itself.
		c.Envoy.RestartInPlace = c.Platform == PlatformVM
	}
	if f != (Flags{DryRun: f.DryRun}) {
		c.Sources = append(c.Sources, "flags")
	}
}

// derive fills what defaults to other settings, once every layer is in.
func derive(c *Config, o Options) {
	if c.PodName == "" {
		if h, err := o.Hostname(); err == nil {
			c.PodName = h
		}
	}
	if len(c.InstanceIPs) == 0 {
		c.InstanceIPs = o.HostIPs()
	}
	if c.Domain == "" && c.PodNamespace != "" {
		c.Domain = c.PodNamespace + ".svc." + DefaultClusterDomain
	}
	if c.ControlPlane.CAAddress == "" {
		c.ControlPlane.CAAddress = c.DiscoveryAddress()
	}
	if c.ControlPlane.IstiodSAN == "" {
		// istiod's certificate names its service, not an IP; a discovery
		// address given by DNS name is expected in the certificate, as in Istio.
		c.ControlPlane.IstiodSAN = DefaultIstiodSAN
		if host, _, err := net.SplitHostPort(c.DiscoveryAddress()); err == nil && net.ParseIP(host) == nil && host != "" {
			c.ControlPlane.IstiodSAN = host
		}
	}
	c.Paths.EnvoyBootstrap = strings.TrimSuffix(c.Proxy.GetConfigPath(), "/") + "/" + EnvoyBootstrapFile
}

// protojson reports positions in the JSON we converted the YAML to, which
// would point users at the wrong line; drop them.
var protoPosRE = regexp.MustCompile(`\(line \d+:\d+\): `)

func cleanProtoErr(err error) string {
	return protoPosRE.ReplaceAllString(err.Error(), "")
}

func nonLoopbackIPs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var ips []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			ips = append(ips, n.IP.String())
		}
	}
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	return ips
}
