// Package agent wires one workload's pilot-agent: the certificate side (sds),
// the xDS proxy, the status server, and either the Envoy child process or,
// in proxyless mode, the gRPC xDS bootstrap. Everything runs in one group:
// the first fatal error stops the rest, and SIGTERM is a clean exit.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/agent/config"
	"github.com/meshlite/meshlite/agent/envoy"
	"github.com/meshlite/meshlite/agent/status"
	"github.com/meshlite/meshlite/agent/xdsproxy"
	"github.com/meshlite/meshlite/iptables"
	"github.com/meshlite/meshlite/sds"
	"github.com/meshlite/meshlite/sds/cache"
	"github.com/meshlite/meshlite/sds/output"
)

// Options are what the caller supplies beyond the Config.
type Options struct {
	// Environ is the process environment (ISTIO_META_* become node metadata);
	// os.Environ when nil.
	Environ []string
	Logger  *slog.Logger
	Clock   clock.WithTicker
	// Capture, when set (--capture, VMs), is installed before anything starts
	// and removed when the agent exits; in a pod istio-init installs it.
	Capture *iptables.CaptureConfig
}

// Agent is one workload's agent, built from a validated Config.
type Agent struct {
	cfg   *config.Config
	opts  Options
	log   *slog.Logger
	reg   *prometheus.Registry
	certs *sds.Service
	proxy *xdsproxy.Proxy
	// proxyCerts is what the xDS proxy dials istiod with (nil in plaintext mode).
	proxyCerts xdsproxy.CertSource
	status     *status.Server
	envoy      *envoy.Supervisor // nil in proxyless mode
	grpcBS     []byte            // proxyless bootstrap, written at Run
	envoyBS    []byte            // Envoy bootstrap, written at Run
}

// New builds every component, and renders, validates and writes the bootstrap
// (the Envoy supervisor checks the file before it will launch); nothing runs
// until Run. A config or bootstrap error is returned here, before anything starts.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger.With("scope", "agent"), reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	certs, err := sds.New(a.sdsConfig())
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	a.certs = certs

	if cfg.Envoy.Disabled {
		if a.grpcBS, err = RenderGRPCBootstrap(cfg, opts.Environ); err != nil {
			return nil, fmt.Errorf("gRPC xDS bootstrap: %w", err)
		}
	} else {
		if a.envoyBS, err = RenderEnvoyBootstrap(cfg, opts.Environ); err != nil {
			return nil, err
		}
		if err := a.writeBootstraps(); err != nil {
			return nil, err
		}
		if a.envoy, err = envoy.New(a.envoyOptions()); err != nil {
			return nil, err
		}
	}

	px := xdsproxy.Options{
		SocketPath:       cfg.Paths.Abs(cfg.Paths.XDSSocket),
		DiscoveryAddress: cfg.DiscoveryAddress(),
		ServerName:       cfg.ControlPlane.IstiodSAN,
		TokenPath:        cfg.Paths.Abs(cfg.Paths.Token),
		ClusterID:        cfg.ClusterID,
		Registerer:       a.reg,
		Logger:           opts.Logger,
	}
	if cfg.ControlPlane.CertProvider == config.CertProviderNone {
		px.Plaintext = true
	} else {
		cs := newCertSource(certs.Source())
		a.proxyCerts, px.Certs = cs, cs
	}
	if a.proxy, err = xdsproxy.New(px); err != nil {
		return nil, fmt.Errorf("xDS proxy: %w", err)
	}

	if a.status, err = status.New(a.statusOptions()); err != nil {
		return nil, fmt.Errorf("status server: %w", err)
	}
	if a.grpcBS != nil {
		if err := a.writeBootstraps(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Agent) sdsConfig() sds.Config {
	c := a.cfg
	alg := cache.KeyRSA
	if c.Secrets.ECCSignatureAlgorithm == "ECDSA" {
		alg = cache.KeyECDSA
	}
	return sds.Config{
		Identity:            c.Identity(),
		FileMountedCerts:    c.Secrets.FileMountedCerts || c.ControlPlane.CertProvider == config.CertProviderCustom,
		FileMountedCertsDir: c.Paths.Abs(c.Paths.FileMountedCertsDir),
		CAAddress:           c.ControlPlane.CAAddress,
		CAServerName:        c.ControlPlane.IstiodSAN,
		RootCAFile:          c.Paths.Abs(c.ControlPlane.RootCAFile),
		TokenPath:           c.Paths.Abs(c.Paths.Token),
		ClusterID:           c.ClusterID,
		KeyAlgorithm:        alg,
		RSAKeySize:          c.Secrets.RSAKeySize,
		ECCCurve:            c.Secrets.ECCCurve,
		TTL:                 c.Secrets.TTL,
		GraceRatio:          c.Secrets.GracePeriodRatio,
		SDSSocket:           c.Paths.Abs(c.Paths.SDSSocket),
		DisableSDS:          c.Envoy.Disabled,
		OutputCertsDir:      c.Paths.Abs(outputCertsDir(c)),
		Clock:               a.opts.Clock,
		Logger:              a.opts.Logger,
	}
}

func (a *Agent) envoyOptions() envoy.Options {
	c, p := a.cfg, a.cfg.Proxy
	logLevel := c.Envoy.LogLevel
	if c.Envoy.ComponentLogLevel != "" {
		logLevel += "," + c.Envoy.ComponentLogLevel
	}
	return envoy.Options{
		BinaryPath:                  p.GetBinaryPath(),
		ConfigPath:                  c.Paths.Abs(c.Paths.EnvoyBootstrap),
		ProxyType:                   string(c.ProxyType),
		DrainDuration:               p.GetDrainDuration().AsDuration(),
		LogLevel:                    logLevel,
		Concurrency:                 int(p.GetConcurrency().GetValue()),
		IPv6:                        isIPv6(c.PrimaryIP()),
		AdminAddress:                "127.0.0.1:" + strconv.Itoa(int(p.GetProxyAdminPort())),
		TerminationDrainDuration:    p.GetTerminationDrainDuration().AsDuration(),
		ExitOnZeroActiveConnections: c.Envoy.ExitOnZeroActiveConnections,
		MinimumDrainDuration:        c.Envoy.MinimumDrainDuration,
		Restart:                     c.Envoy.RestartInPlace,
		Clock:                       a.opts.Clock,
		Logger:                      a.opts.Logger,
	}
}

func (a *Agent) statusOptions() status.Options {
	c := a.cfg
	o := status.Options{
		Addr:       ":" + strconv.Itoa(int(c.Proxy.GetStatusPort())),
		Syncz:      func() any { return a.proxy.SyncStatus() },
		Registerer: a.reg,
		Logger:     a.opts.Logger,
		Metrics:    status.MetricsOptions{Gatherer: a.reg},
	}
	if len(c.App.KubeAppProbers) > 0 {
		b, _ := json.Marshal(c.App.KubeAppProbers) // re-encoding what config already parsed and validated
		o.AppProbers = string(b)
	}
	if c.App.Prometheus != nil {
		b, _ := json.Marshal(c.App.Prometheus)
		o.Metrics.AppAnnotations = string(b)
	}
	// The secret cache's own error says why the certificate is missing (CA
	// unreachable, token refused), which is what an operator needs to see.
	o.Ready = append(o.Ready, status.Condition("workload-cert", a.certs.Ready), status.XDSProxy(a.proxy))
	if a.envoy != nil {
		admin := a.envoy.Admin()
		adm := status.EnvoyAdminFunc(func(ctx context.Context) (string, bool, bool, error) {
			r, err := admin.Readiness(ctx)
			return r.State, r.CDSReceived, r.LDSReceived, err
		})
		o.Ready = append([]status.Check{status.EnvoyLive(adm), status.EnvoyConfigReceived(adm)}, o.Ready...)
		o.Lifecycle = a.envoy
		o.Draining = func() bool { return a.envoy.State() >= envoy.StateDraining }
		o.Metrics.EnvoyURL = status.DefaultEnvoyStatsURL
	}
	return o
}

// Run writes the bootstrap, starts every component and blocks until ctx is
// cancelled or one fails. signals (SIGTERM, SIGINT) start Envoy's drain; in
// proxyless mode the first one exits.
func (a *Agent) Run(ctx context.Context, signals <-chan os.Signal) error {
	if a.opts.Capture != nil {
		if _, err := iptables.Install(ctx, *a.opts.Capture, iptables.WithLogger(a.opts.Logger)); err != nil {
			return fmt.Errorf("install traffic capture (--capture): %w", err)
		}
		defer func() {
			// ctx is done by now; cleanup must still run.
			if _, err := iptables.Cleanup(context.WithoutCancel(ctx), *a.opts.Capture, iptables.WithLogger(a.opts.Logger)); err != nil {
				a.log.Error("removing traffic capture failed; run `pilot-agent istio-iptables --cleanup-only`", "err", err)
			}
		}()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(ctx)
	if cs, ok := a.proxyCerts.(*certSource); ok {
		go cs.watch(gctx.Done()) // a new root re-dials istiod with it
	}
	g.Go(func() error { return a.certs.Run(gctx) })
	g.Go(func() error { return a.proxy.Run(gctx) })
	g.Go(func() error { return a.status.Run(gctx) })
	if a.envoy != nil {
		g.Go(func() error {
			err := a.envoy.Run(gctx)
			cancel(errEnvoyExited) // Envoy gone: the agent has nothing left to serve
			return err
		})
		go a.envoy.ForwardSignals(signals)
	} else {
		g.Go(func() error {
			select {
			case sig := <-signals:
				a.log.Info("signal received, exiting", "signal", sig)
				cancel(errSignal)
			case <-gctx.Done():
			}
			return nil
		})
	}
	err := g.Wait()
	if cause := context.Cause(ctx); err == nil || errors.Is(err, context.Canceled) {
		if cause == nil || errors.Is(cause, errSignal) || errors.Is(cause, errEnvoyExited) || errors.Is(cause, context.Canceled) {
			return nil
		}
		return cause
	}
	return err
}

var (
	errSignal      = errors.New("signal received")
	errEnvoyExited = errors.New("envoy exited")
)

func (a *Agent) writeBootstraps() error {
	c := a.cfg
	write := func(path string, data []byte) error {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		return output.WriteFileAtomic(path, data, 0o644)
	}
	if a.grpcBS != nil {
		path := c.Paths.Abs(c.Paths.GRPCXDSBootstrap)
		if err := write(path, a.grpcBS); err != nil {
			return fmt.Errorf("write the gRPC xDS bootstrap (GRPC_XDS_BOOTSTRAP): %w", err)
		}
		a.log.Info("wrote gRPC xDS bootstrap", "path", path)
	}
	if a.envoyBS != nil {
		path := c.Paths.Abs(c.Paths.EnvoyBootstrap)
		if err := write(path, a.envoyBS); err != nil {
			return fmt.Errorf("write the Envoy bootstrap: %w", err)
		}
		a.log.Info("wrote Envoy bootstrap", "path", path)
	}
	return nil
}

func isIPv6(ip string) bool {
	parsed := net.ParseIP(ip)
	return parsed != nil && parsed.To4() == nil
}
