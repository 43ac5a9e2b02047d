package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	runtimedebug "runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/debug"
	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/registry/aggregate"
	"github.com/meshlite/meshlite/istiod-lite/registry/file"
	"github.com/meshlite/meshlite/istiod-lite/registry/kube"
	"github.com/meshlite/meshlite/istiod-lite/server"
	"github.com/meshlite/meshlite/istiod-lite/webhook"
)

// ConfigError marks a failure caused by what the user gave (a flag, a file):
// the command exits 2 for it, as for a bad flag.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Run serves until ctx ends; the first part to fail stops the rest.
func Run(ctx context.Context, o *Options, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return &ConfigError{err}
	}
	mesh, err := config.LoadMeshConfigFile(o.MeshConfig, o.MeshConfig == DefaultMeshConfig)
	if err != nil {
		return &ConfigError{err}
	}
	o.Config.Mesh = mesh
	if td := mesh.GetTrustDomain(); td != "" && o.TrustDomain == DefaultTrustDomain {
		o.TrustDomain = td
	}

	// The live heap is small (tens of MiB for a thousand proxies) but every push
	// makes short-lived garbage; Go's default GOGC=100 lets the heap double
	// before collecting. 50 keeps RSS about a third lower for little CPU.
	if os.Getenv("GOGC") == "" {
		runtimedebug.SetGCPercent(50)
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Startup may fail after some parts started; cancelling stops them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	reg, k, err := o.registries(gctx, g, metrics, log)
	if err != nil {
		return err
	}

	var authority *ca.Authority
	tlsConfig := o.TLSConfig
	if o.SecureGRPCAddr != "" {
		if authority, tlsConfig, err = o.certificateAuthority(gctx, g, k, metrics, log); err != nil {
			return err
		}
	}
	srv := server.New(reg, server.Options{Logger: log, Metrics: metrics})

	// Bind every port before starting anything, so a busy port fails fast.
	ls := &listeners{}
	defer ls.closeOnError()
	for _, l := range []struct {
		flag, addr string
		tls        *tls.Config
	}{{"--grpcAddr", o.GRPCAddr, nil}, {"--secureGRPCAddr", o.SecureGRPCAddr, tlsConfig}} {
		if l.addr == "" {
			continue
		}
		if err := ls.grpc(l.flag, l.addr, l.tls); err != nil {
			return err
		}
	}
	httpLis, err := ls.listen("--httpAddr", o.HTTPAddr)
	if err != nil {
		return err
	}
	var webhookLis net.Listener
	if k != nil && authority != nil && o.WebhookAddr != "" {
		if webhookLis, err = ls.listen("--webhookAddr", o.WebhookAddr); err != nil {
			return err
		}
	}
	ls.ok = true

	g.Go(func() error { return srv.Run(gctx) })
	for _, gl := range ls.grpcs {
		gs := srv.NewGRPCServer(gl.tls)
		for _, register := range o.Services {
			register(gs)
		}
		if gl.tls != nil {
			for _, register := range o.SecureServices {
				register(gs)
			}
		}
		log.Info("serving xDS", "flag", gl.name, "addr", gl.lis.Addr().String(), "tls", gl.tls != nil)
		g.Go(func() error { return server.Serve(gctx, gs, gl.lis, 5*time.Second) })
	}
	if httpLis != nil {
		h := debug.Handler(srv, debug.Options{Logger: log, Gatherer: metrics, RegistryStatus: registryStatus(reg)})
		log.Info("serving debug HTTP", "addr", httpLis.Addr().String())
		serveHTTP(gctx, g, "--httpAddr", httpLis, h, nil)
	}
	if webhookLis != nil {
		if err := o.webhooks(gctx, g, webhookLis, authority, k, log); err != nil {
			return err
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("istiod-lite discovery stopped")
	return nil
}

// kubeClients is the Kubernetes side, when --registries names it.
type kubeClients struct {
	client *kubeclient.Clients
	reg    *kube.Registry
}

// registries builds and starts the registries --registries names.
func (o *Options) registries(ctx context.Context, g *errgroup.Group, metrics prometheus.Registerer, log *slog.Logger) (model.Registry, *kubeClients, error) {
	var members []model.Registry
	var k *kubeClients
	if o.uses(RegistryKubernetes) {
		kube.RouteKlog(log)
		kc, err := o.Kube.Clients()
		if err != nil {
			return nil, nil, &ConfigError{err}
		}
		kreg, err := kube.New(kube.Options{Client: kc, Mesh: o.Config.Mesh, Resync: o.Kube.Resync, Config: o.Config, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		k = &kubeClients{client: kc, reg: kreg}
		members = append(members, kreg)
	}
	if o.uses(RegistryFile) {
		freg, err := file.New(file.Options{Dir: o.ConfigDir, Debounce: o.Debounce, Config: o.Config, Logger: log, Registerer: metrics})
		if err != nil {
			return nil, nil, err
		}
		members = append(members, freg)
	}
	var reg model.Registry = members[0]
	if len(members) > 1 {
		agg, err := aggregate.New(members...)
		if err != nil {
			return nil, nil, err
		}
		reg = agg
	}
	g.Go(func() error { return reg.Run(ctx) })
	return reg, k, nil
}

// certificateAuthority builds the CA (Citadel role), which signs workload
// certificates on the TLS port and issues istiod-lite's serving certificate.
func (o *Options) certificateAuthority(ctx context.Context, g *errgroup.Group, k *kubeClients, metrics prometheus.Registerer, log *slog.Logger) (*ca.Authority, *tls.Config, error) {
	o.CA.TrustDomain = o.TrustDomain
	var extra []authn.Authenticator
	if k != nil {
		switch o.Kube.TokenAuth {
		case kube.TokenAuthTokenReview:
			tr, err := authn.NewTokenReview(authn.TokenReviewOptions{Client: k.client, TrustDomain: o.TrustDomain,
				Pods: authn.PodListerChecker(k.reg.PodLister())})
			if err != nil {
				return nil, nil, err
			}
			extra = append(extra, tr)
		case kube.TokenAuthJWKS:
			if o.CA.JWKSFile == "" {
				dir, err := os.MkdirTemp("", "istiod-lite-jwks-")
				if err != nil {
					return nil, nil, err
				}
				file, issuer, err := authn.FetchIssuerJWKS(ctx, k.client.REST, dir)
				if err != nil {
					return nil, nil, err
				}
				o.CA.JWKSFile, o.CA.JWTIssuer = file, issuer
				g.Go(func() error {
					authn.KeepIssuerJWKS(ctx, k.client.REST, dir, 10*time.Minute, clock.RealClock{}, log)
					return nil
				})
			}
		}
	}
	authority, caSrv, err := o.CA.Build(metrics, clock.RealClock{}, log, extra...)
	if err != nil {
		return nil, nil, &ConfigError{err}
	}
	// Bearer tokens must never cross the plaintext port: the CA is TLS-only.
	o.SecureServices = append(o.SecureServices, caSrv.Register)
	if k != nil {
		g.Go(func() error {
			k.reg.PublishRootCert(ctx, authority.TrustBundlePEM, authority.Changed, time.Minute)
			return nil
		})
	}
	log.Info("CA ready", "caDir", o.CA.CADir, "trustDomain", o.TrustDomain, "root", o.CA.CADir+"/root-cert.pem")
	switch {
	case o.TLSConfig != nil:
		return authority, o.TLSConfig, nil
	case o.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, nil, &ConfigError{fmt.Errorf("loading --tlsCertFile %s / --tlsKeyFile %s: %w", o.TLSCertFile, o.TLSKeyFile, err)}
		}
		return authority, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	tc, err := authority.ServerTLSConfig(o.ExtraSANs...)
	if err != nil {
		return nil, nil, fmt.Errorf("serving certificate from the CA: %w", err)
	}
	return authority, tc, nil
}

// webhooks serves /validate and /inject over TLS from the CA, and keeps the
// webhook configurations' caBundle equal to the CA's trust bundle.
func (o *Options) webhooks(ctx context.Context, g *errgroup.Group, lis net.Listener, authority *ca.Authority, k *kubeClients, log *slog.Logger) error {
	in, err := webhook.NewInjector(webhook.InjectorOptions{ProxyImage: o.ProxyImage, DomainSuffix: o.Config.DomainSuffix,
		TrustDomain: o.TrustDomain, Logger: log})
	if err != nil {
		return &ConfigError{err}
	}
	tc, err := authority.ServerTLSConfig(o.ExtraSANs...)
	if err != nil {
		return err
	}
	log.Info("serving admission webhooks", "addr", lis.Addr().String())
	serveHTTP(ctx, g, "--webhookAddr", lis, webhook.Handler(&webhook.Validator{Config: o.Config, Logger: log}, in), tc)
	g.Go(func() error {
		for {
			if err := webhook.PatchCABundle(ctx, k.client, authority.TrustBundlePEM(), webhook.ValidatingConfigName, webhook.MutatingConfigName); err != nil {
				log.Warn("could not patch the webhook configurations' caBundle; retrying", "scope", "webhook", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-authority.Changed():
			case <-time.After(time.Minute): // configurations recreated by a re-apply
			}
		}
	})
	return nil
}

func serveHTTP(ctx context.Context, g *errgroup.Group, flag string, lis net.Listener, h http.Handler, tc *tls.Config) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tc}
	g.Go(func() error {
		var err error
		if tc != nil {
			err = hs.ServeTLS(lis, "", "")
		} else {
			err = hs.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s %s: %w", flag, lis.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
}

// registryStatus is /debug/registryz's view of the file registry (which
// reports its last reload and rejections), or nil for others.
func registryStatus(reg model.Registry) func() any {
	if fr, ok := reg.(*file.Registry); ok {
		return func() any { return fr.Status() }
	}
	return nil
}

type grpcListener struct {
	name string
	lis  net.Listener
	tls  *tls.Config
}

// listeners binds ports up front and closes them all if startup fails.
type listeners struct {
	grpcs []grpcListener
	other []net.Listener
	ok    bool
}

func (l *listeners) grpc(flag, addr string, tc *tls.Config) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	l.grpcs = append(l.grpcs, grpcListener{flag, lis, tc})
	return nil
}

func (l *listeners) listen(flag, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	l.other = append(l.other, lis)
	return lis, nil
}

func (l *listeners) closeOnError() {
	if l.ok {
		return
	}
	for _, g := range l.grpcs {
		g.lis.Close()
	}
	for _, o := range l.other {
		o.Close()
	}
}
