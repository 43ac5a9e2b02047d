// Package discovery runs istiod-lite's discovery server (Istio's
// pilot-discovery role): registries, the ADS server, the CA and its serving
// certificate, the admission webhooks, and the debug HTTP server, in one run
// group. cmd/istiod-lite only parses flags into Options and calls Run.
package discovery

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/registry/file"
	"github.com/meshlite/meshlite/istiod-lite/registry/kube"
)

// Istio's defaults for pilot-discovery.
const (
	DefaultMeshConfig  = "./etc/istio/config/mesh"
	DefaultTrustDomain = "cluster.local"
)

// Registry names of --registries, as Istio spells them.
const (
	RegistryFile       = "File"
	RegistryKubernetes = "Kubernetes"
)

// Options are pilot-discovery's flags, so istiod's manifests and habits carry over.
type Options struct {
	GRPCAddr       string
	SecureGRPCAddr string
	HTTPAddr       string
	WebhookAddr    string
	ConfigDir      string
	MeshConfig     string
	TLSCertFile    string
	TLSKeyFile     string
	Debounce       time.Duration
	Config         config.Options
	CA             ca.Config
	TrustDomain    string
	ExtraSANs      []string
	Registries     []string
	Kube           kube.Flags
	ProxyImage     string

	// TLSConfig, when set, serves --secureGRPCAddr instead of the CA's own
	// serving certificate or --tlsCertFile/--tlsKeyFile (tests); Services are
	// registered on both gRPC servers next to ADS, SecureServices only on the
	// TLS one.
	TLSConfig      *tls.Config
	Services       []func(grpc.ServiceRegistrar)
	SecureServices []func(grpc.ServiceRegistrar)
}

// AddFlags registers the flags with Istio's pilot-discovery names.
func (o *Options) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.GRPCAddr, "grpcAddr", ":15010", "Plaintext gRPC (ADS) listen address; empty disables it")
	f.StringVar(&o.SecureGRPCAddr, "secureGRPCAddr", ":15012", "TLS gRPC listen address for ADS and the CA (IstioCertificateService), served with a certificate from the CA; empty disables it")
	f.StringVar(&o.HTTPAddr, "httpAddr", ":8080", "Debug HTTP listen address (/debug/syncz, /debug/configz, /debug/config_dump, /debug/registryz, /metrics, /ready); empty disables it")
	f.StringVar(&o.WebhookAddr, "webhookAddr", ":15017", "HTTPS listen address of the admission webhooks (/validate, /inject) with --registries Kubernetes; empty disables them")
	f.StringVar(&o.ConfigDir, "configDir", file.DefaultDir, "Directory of Istio-style YAML to serve, watched for changes (registry File)")
	f.StringVar(&o.MeshConfig, "meshConfig", DefaultMeshConfig, "Mesh config file (MeshConfig YAML, the istio ConfigMap's mesh key); the default path may be absent, a path given here must exist")
	f.StringVar(&o.TLSCertFile, "tlsCertFile", "", "PEM serving certificate for --secureGRPCAddr instead of one issued by the CA")
	f.StringVar(&o.TLSKeyFile, "tlsKeyFile", "", "PEM private key for --tlsCertFile")
	f.DurationVar(&o.Debounce, "debounce", 100*time.Millisecond, "How long the config directory must be quiet before a change is applied")
	f.StringVar(&o.Config.DefaultNamespace, "namespace", "default", "Namespace of objects that do not set metadata.namespace")
	f.StringVar(&o.Config.DomainSuffix, "domain", "cluster.local", "DNS domain suffix used to complete short hostnames")
	f.StringVar(&o.TrustDomain, "trustDomain", DefaultTrustDomain, "SPIFFE trust domain of the workload certificates the CA issues (default: the mesh config's trustDomain, else cluster.local)")
	f.StringSliceVar(&o.ExtraSANs, "tlsExtraSANs", splitNonEmpty(os.Getenv("ISTIOD_CUSTOM_HOST")),
		"DNS names or IPs to add to the serving certificate next to istiod.istio-system.svc (env ISTIOD_CUSTOM_HOST)")
	f.StringSliceVar(&o.Registries, "registries", []string{RegistryFile}, "Service registries, comma separated: File (the --configDir), Kubernetes (the API server), or both")
	f.StringVar(&o.ProxyImage, "proxyImage", "meshlite/proxyv2:latest", "Image the injection webhook gives the istio-init and istio-proxy containers")
	o.CA.AddFlags(f)
	o.Kube.AddFlags(f)
}

// Validate returns one message per bad flag.
func (o *Options) Validate() error {
	var errs []error
	for _, a := range []struct{ flag, addr string }{{"--grpcAddr", o.GRPCAddr}, {"--secureGRPCAddr", o.SecureGRPCAddr}, {"--httpAddr", o.HTTPAddr}, {"--webhookAddr", o.WebhookAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not a host:port listen address (for example :15010): %w", a.flag, a.addr, err))
		}
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tlsCertFile and --tlsKeyFile must be given together"))
	}
	if o.Debounce <= 0 {
		errs = append(errs, fmt.Errorf("--debounce %s must be positive (default 100ms)", o.Debounce))
	}
	if len(o.Registries) == 0 {
		errs = append(errs, errors.New("--registries is empty; use File, Kubernetes or both"))
	}
	for _, r := range o.Registries {
		if r != RegistryFile && r != RegistryKubernetes {
			errs = append(errs, fmt.Errorf("--registries: %q is not a registry; use File, Kubernetes or both", r))
		}
	}
	if o.uses(RegistryKubernetes) {
		if err := o.Kube.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *Options) uses(registry string) bool {
	for _, r := range o.Registries {
		if r == registry {
			return true
		}
	}
	return false
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
