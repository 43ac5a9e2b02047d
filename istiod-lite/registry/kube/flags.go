package kube

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
)

// Token authentication modes of --tokenAuth.
const (
	TokenAuthTokenReview = "tokenreview" // ask the API server (TokenReview), as istiod does
	TokenAuthJWKS        = "jwks"        // verify offline with the cluster issuer's JWKS
)

// Flags are the command-line settings of the Kubernetes integration, with
// Istio's names where Istio has them (--kubeconfig, --resync).
type Flags struct {
	Kubeconfig string
	Resync     time.Duration
	TokenAuth  string
}

// AddFlags registers the flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"),
		"Kubeconfig file of the cluster for --registries Kubernetes; empty uses the pod's service account (in-cluster)")
	fs.DurationVar(&f.Resync, "resync", DefaultResync, "Full resync period of the Kubernetes informers")
	fs.StringVar(&f.TokenAuth, "tokenAuth", TokenAuthTokenReview,
		"How service-account tokens are verified in Kubernetes: tokenreview (ask the API server; refuses tokens of deleted pods) or jwks (offline, with the issuer's keys)")
}

// Validate checks the values a user typed.
func (f *Flags) Validate() error {
	if f.Resync < 0 {
		return fmt.Errorf("--resync %s is negative; use a positive duration such as 60s", f.Resync)
	}
	switch f.TokenAuth {
	case TokenAuthTokenReview, TokenAuthJWKS:
	default:
		return fmt.Errorf("--tokenAuth %q is not supported; use %s or %s", f.TokenAuth, TokenAuthTokenReview, TokenAuthJWKS)
	}
	return nil
}

// Clients connects to the cluster named by --kubeconfig, or the one the pod
// runs in.
func (f *Flags) Clients() (*kubeclient.Clients, error) {
	var (
		cfg *rest.Config
		err error
	)
	if f.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading --kubeconfig %s: %w", f.Kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not running in a pod (%w); pass --kubeconfig", err)
		}
	}
	cfg.UserAgent = "istiod-lite"
	c, err := kubeclient.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return c, nil
}
