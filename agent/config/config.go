// Package config builds the one Config that pilot-agent runs from. It layers,
// later wins: built-in defaults, the mesh config file, the PROXY_CONFIG env, the
// pod annotations file (proxy.istio.io/config), the environment, and flags.
// Names (env vars, flags, file paths, ProxyConfig fields) are Istio's, so an
// Istio sidecar injection template drives meshlite unchanged.
package config

import (
	"path/filepath"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/meshlite/meshlite/bootstrap"
	"github.com/meshlite/meshlite/sds/spiffe"
)

// ProxyType is the role named by `pilot-agent proxy <type>`.
type ProxyType string

const (
	ProxyTypeSidecar ProxyType = "sidecar"
	ProxyTypeRouter  ProxyType = "router"
)

// Platform says where the agent runs; it picks defaults that differ between a
// pod (the kubelet restarts us) and a VM (nobody does).
type Platform string

const (
	PlatformKubernetes Platform = "kubernetes"
	PlatformVM         Platform = "vm"
)

// CertProvider is PILOT_CERT_PROVIDER: who signs the workload certificate and
// which root verifies istiod.
type CertProvider string

const (
	// CertProviderIstiod: the CA at CA_ADDR signs the CSR; istiod's root is CA_ROOT_CA.
	CertProviderIstiod CertProvider = "istiod"
	// CertProviderCustom: certificates are provisioned by the user under ./etc/certs.
	CertProviderCustom CertProvider = "custom"
	// CertProviderNone: no certificate for the control plane connection (plaintext xDS, dev only).
	CertProviderNone CertProvider = "none"
)

// Config is everything the agent needs for one workload, after every layer.
type Config struct {
	ProxyType ProxyType
	Platform  Platform

	PodName        string
	PodNamespace   string
	InstanceIPs    []string // first is the primary IP used in the node ID
	ServiceAccount string
	TrustDomain    string
	Domain         string // DNS domain, <ns>.svc.cluster.local in a pod
	ClusterID      string // ISTIO_META_CLUSTER_ID, sent as ClusterID metadata to the CA

	// Mesh is the mesh config (defaults + file); Mesh.DefaultConfig is the
	// proxy config as the mesh sets it, before PROXY_CONFIG and annotations.
	Mesh *meshconfig.MeshConfig
	// Proxy is the effective proxy config after every layer.
	Proxy *meshconfig.ProxyConfig

	ControlPlane ControlPlane
	Secrets      Secrets
	Envoy        Envoy
	App          App
	// NodeMetadata holds ISTIO_META_* (string values) and ISTIO_METAJSON_*
	// (decoded JSON values), keyed by the name after the prefix.
	NodeMetadata map[string]any
	Paths        Paths

	// Capture makes the agent install traffic capture itself (VMs); in a pod the
	// istio-init container does it.
	Capture bool
	// DryRun: render and validate everything, start nothing.
	DryRun bool

	// Sources lists the layers that contributed, in order, for `check`.
	Sources []string
}

// ControlPlane is how the agent reaches istiod(-lite) for xDS and certificates.
type ControlPlane struct {
	CAAddress    string       // CA_ADDR; defaults to the discovery address
	CertProvider CertProvider // PILOT_CERT_PROVIDER
	RootCAFile   string       // CA_ROOT_CA: PEM root that verifies istiod
	IstiodSAN    string       // ISTIOD_SAN: expected SAN of istiod's certificate
}

// Secrets configures the workload key, its certificate and their rotation.
type Secrets struct {
	TTL                   time.Duration // SECRET_TTL: requested certificate lifetime
	GracePeriodRatio      float64       // SECRET_GRACE_PERIOD_RATIO: rotate when this fraction of the lifetime is left
	RSAKeySize            int           // WORKLOAD_RSA_KEY_SIZE
	ECCSignatureAlgorithm string        // ECC_SIGNATURE_ALGORITHM: "ECDSA" (default) or "RSA"
	ECCCurve              string        // ECC_CURVE: P256 or P384, used when ECDSA
	OutputCertsDir        string        // OUTPUT_CERTS: also write key/cert/root here ("" = off)
	FileMountedCerts      bool          // FILE_MOUNTED_CERTS: use ./etc/certs, never call a CA
}

// Envoy configures the Envoy child process (or its absence).
type Envoy struct {
	Disabled                    bool          // DISABLE_ENVOY: proxyless gRPC mode
	RestartInPlace              bool          // --restart-envoy: restart with backoff instead of exiting (VM default)
	LogLevel                    string        // --proxyLogLevel
	ComponentLogLevel           string        // --proxyComponentLogLevel
	BootstrapOverride           string        // ISTIO_BOOTSTRAP_OVERRIDE: JSON/YAML merged over the bootstrap
	ExitOnZeroActiveConnections bool          // EXIT_ON_ZERO_ACTIVE_CONNECTIONS
	MinimumDrainDuration        time.Duration // MINIMUM_DRAIN_DURATION
}

// App is what the agent knows about the application container.
type App struct {
	// KubeAppProbers is ISTIO_KUBE_APP_PROBERS: the rewritten kubelet probes,
	// keyed by the status-port path (/app-health/<container>/livez).
	KubeAppProbers map[string]AppProber
	// Prometheus is ISTIO_PROMETHEUS_ANNOTATIONS: the application's own scrape
	// target, merged into /stats/prometheus. Nil when unset.
	Prometheus *PrometheusScrape
}

// Paths are the files and sockets the agent reads and writes. Relative paths
// are relative to WorkDir, as Istio's are to the proxy container's root.
type Paths struct {
	WorkDir                string `json:"workDir"`
	MeshConfig             string `json:"meshConfig"`             // --meshConfig
	PodAnnotations         string `json:"podAnnotations"`         // downward API annotations
	XDSSocket              string `json:"xdsSocket"`              // the agent's xDS proxy, Envoy's ADS cluster
	EnvoyBootstrap         string `json:"envoyBootstrap"`         // <proxyConfig.configPath>/envoy-rev.json
	SDSSocket              string `json:"sdsSocket"`              // the workload SDS server
	WorkloadCredentialsDir string `json:"workloadCredentialsDir"` // file-based workload credentials (Istio's workload-spiffe-credentials)
	Token                  string `json:"token"`                  // projected service account token sent to the CA
	FileMountedCertsDir    string `json:"fileMountedCertsDir"`    // cert-chain.pem, key.pem, root-cert.pem when FILE_MOUNTED_CERTS or provider custom
	GRPCXDSBootstrap       string `json:"grpcXDSBootstrap"`       // GRPC_XDS_BOOTSTRAP
}

// Abs resolves p against WorkDir when it is relative.
func (p Paths) Abs(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(p.WorkDir, path)
}

// Well-known paths, relative to the working directory (DESIGN.md §3).
const (
	DefaultMeshConfigPath     = "./etc/istio/config/mesh"
	DefaultPodAnnotationsPath = "./etc/istio/pod/annotations"
	DefaultXDSSocket          = "./etc/istio/proxy/XDS"
	DefaultSDSSocket          = "./var/run/secrets/workload-spiffe-uds/socket"
	DefaultCredentialsDir     = "./var/run/secrets/workload-spiffe-credentials"
	DefaultTokenPath          = "./var/run/secrets/tokens/istio-token"
	DefaultCertsDir           = "./etc/certs"
	DefaultGRPCXDSBootstrap   = "./etc/istio/proxy/grpc-bootstrap.json"
	DefaultRootCAFile         = "./var/run/secrets/istio/root-cert.pem"
	EnvoyBootstrapFile        = "envoy-rev.json"

	// DefaultIstiodSAN is the name in istiod's serving certificate.
	DefaultIstiodSAN = "istiod.istio-system.svc"

	// ProxyConfigAnnotation is the pod annotation holding ProxyConfig YAML.
	ProxyConfigAnnotation = "proxy.istio.io/config"
)

// DiscoveryAddress is the effective xDS server address (proxyConfig.discoveryAddress).
func (c *Config) DiscoveryAddress() string { return c.Proxy.GetDiscoveryAddress() }

// PrimaryIP is the IP in the node ID.
func (c *Config) PrimaryIP() string {
	if len(c.InstanceIPs) == 0 {
		return ""
	}
	return c.InstanceIPs[0]
}

// NodeID is Istio's xDS node ID: <type>~<ip>~<pod>.<ns>~<domain>.
func (c *Config) NodeID() string {
	return bootstrap.NodeID(string(c.ProxyType), c.PrimaryIP(), c.PodName, c.PodNamespace, c.Domain)
}

// Identity is the workload's SPIFFE identity, the SAN the CSR asks for.
func (c *Config) Identity() spiffe.Identity {
	return spiffe.Identity{TrustDomain: c.TrustDomain, Namespace: c.PodNamespace, ServiceAccount: c.ServiceAccount}
}
