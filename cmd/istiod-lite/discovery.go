package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	runtimedebug "runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/cmd/internal/cli"
	"github.com/meshlite/meshlite/istiod-lite/ca"
	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/debug"
	"github.com/meshlite/meshlite/istiod-lite/registry/file"
	"github.com/meshlite/meshlite/istiod-lite/server"
)

func init() { register(newDiscoveryCmd) }

// Istio's defaults for pilot-discovery.
const (
	defaultMeshConfig  = "./etc/istio/config/mesh"
	defaultTrustDomain = "cluster.local"
)

// discoveryOptions are pilot-discovery's flag names, so istiod's manifests and habits carry over.
type discoveryOptions struct {
	grpcAddr       string
	secureGRPCAddr string
	httpAddr       string
	configDir      string
	meshConfig     string
	tlsCertFile    string
	tlsKeyFile     string
	debounce       time.Duration
	config         config.Options
	ca             ca.Config
	trustDomain    string
	extraSANs      []string

	// tlsConfig, when set, serves --secureGRPCAddr instead of the CA's own
	// serving certificate or --tlsCertFile/--tlsKeyFile (tests); services are
	// registered on both gRPC servers next to ADS, secureServices (the CA:
	// bearer tokens must not cross plaintext) only on the TLS one.
	tlsConfig      *tls.Config
	services       []func(grpc.ServiceRegistrar)
	secureServices []func(grpc.ServiceRegistrar)
}

func newDiscoveryCmd() *cobra.Command {
	o := &discoveryOptions{}
	cmd := &cobra.Command{
		Use:   "discovery",
		Short: "Serve xDS (ADS, SotW and delta) to sidecars and proxyless gRPC, from a watched config directory",
		Long: `discovery is istiod-lite's pilot-discovery: it loads Istio-style YAML from --configDir,
validates every change as a whole (a bad change is rejected and the last good config
keeps serving), and serves per-proxy xDS on --grpcAddr (plaintext) and --secureGRPCAddr
(TLS), with debug pages and /metrics on --httpAddr. SIGTERM or SIGINT stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDiscovery(ctx, o, slog.Default())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.grpcAddr, "grpcAddr", ":15010", "Plaintext gRPC (ADS) listen address; empty disables it")
	f.StringVar(&o.secureGRPCAddr, "secureGRPCAddr", ":15012", "TLS gRPC listen address for ADS and the CA (IstioCertificateService), served with a certificate from the CA; empty disables it")
	f.StringVar(&o.httpAddr, "httpAddr", ":8080", "Debug HTTP listen address (/debug/syncz, /debug/configz, /debug/config_dump, /debug/registryz, /metrics, /ready); empty disables it")
	f.StringVar(&o.configDir, "configDir", file.DefaultDir, "Directory of Istio-style YAML to serve, watched for changes")
	f.StringVar(&o.meshConfig, "meshConfig", defaultMeshConfig, "Mesh config file (MeshConfig YAML, the istio ConfigMap's mesh key); the default path may be absent, a path given here must exist")
	f.StringVar(&o.tlsCertFile, "tlsCertFile", "", "PEM serving certificate for --secureGRPCAddr instead of one issued by the CA")
	f.StringVar(&o.tlsKeyFile, "tlsKeyFile", "", "PEM private key for --tlsCertFile")
	f.DurationVar(&o.debounce, "debounce", 100*time.Millisecond, "How long the config directory must be quiet before a change is applied")
	f.StringVar(&o.config.DefaultNamespace, "namespace", "default", "Namespace of objects that do not set metadata.namespace")
	f.StringVar(&o.config.DomainSuffix, "domain", "cluster.local", "DNS domain suffix used to complete short hostnames")
	f.StringVar(&o.trustDomain, "trustDomain", defaultTrustDomain, "SPIFFE trust domain of the workload certificates the CA issues (default: the mesh config's trustDomain, else cluster.local)")
	f.StringSliceVar(&o.extraSANs, "tlsExtraSANs", splitNonEmpty(os.Getenv("ISTIOD_CUSTOM_HOST")),
		"DNS names or IPs to add to the serving certificate next to istiod.istio-system.svc (env ISTIOD_CUSTOM_HOST)")
	o.ca.AddFlags(f)
	return cmd
}

func (o *discoveryOptions) validate() error {
	for _, a := range []struct{ flag, addr string }{{"--grpcAddr", o.grpcAddr}, {"--secureGRPCAddr", o.secureGRPCAddr}, {"--httpAddr", o.httpAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q is not a host:port listen address (for example :15010): %w", a.flag, a.addr, err)
		}
	}
	if (o.tlsCertFile == "") != (o.tlsKeyFile == "") {
		return errors.New("--tlsCertFile and --tlsKeyFile must be given together")
	}
	if o.debounce <= 0 {
		return fmt.Errorf("--debounce %s must be positive (default 100ms)", o.debounce)
	}
	return nil
}

// runDiscovery runs every part in one group: the first to fail stops the rest.
func runDiscovery(ctx context.Context, o *discoveryOptions, log *slog.Logger) error {
	if err := o.validate(); err != nil {
		return cli.WithExitCode(2, err)
	}
	mesh, err := config.LoadMeshConfigFile(o.meshConfig, o.meshConfig == defaultMeshConfig)
	if err != nil {
		return cli.WithExitCode(2, err)
	}
	o.config.Mesh = mesh
	if td := mesh.GetTrustDomain(); td != "" && o.trustDomain == defaultTrustDomain {
		o.trustDomain = td
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tlsConfig := o.tlsConfig
	if o.secureGRPCAddr != "" {
		// The CA (Citadel role) signs workload certificates on the TLS port and
		// issues istiod-lite's own serving certificate.
		o.ca.TrustDomain = o.trustDomain
		authority, caSrv, err := o.ca.Build(metrics, clock.RealClock{}, log)
		if err != nil {
			return cli.WithExitCode(2, err)
		}
		o.secureServices = append(o.secureServices, caSrv.Register)
		switch {
		case tlsConfig != nil:
		case o.tlsCertFile != "":
			cert, err := tls.LoadX509KeyPair(o.tlsCertFile, o.tlsKeyFile)
			if err != nil {
				return cli.WithExitCode(2, fmt.Errorf("loading --tlsCertFile %s / --tlsKeyFile %s: %w", o.tlsCertFile, o.tlsKeyFile, err))
			}
			tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		default:
			if tlsConfig, err = authority.ServerTLSConfig(o.extraSANs...); err != nil {
				return fmt.Errorf("serving certificate from the CA: %w", err)
			}
		}
		log.Info("CA ready", "caDir", o.ca.CADir, "trustDomain", o.trustDomain, "root", o.ca.CADir+"/root-cert.pem")
	}

	// The live heap is small (tens of MiB for a thousand proxies) but every push
	// makes short-lived garbage; Go's default GOGC=100 lets the heap double
	// before collecting. 50 keeps RSS about a third lower for little CPU.
	if os.Getenv("GOGC") == "" {
		runtimedebug.SetGCPercent(50)
	}
	reg, err := file.New(file.Options{Dir: o.configDir, Debounce: o.debounce, Config: o.config, Logger: log, Registerer: metrics})
	if err != nil {
		return err
	}
	srv := server.New(reg, server.Options{Logger: log, Metrics: metrics})

	// Bind every port before starting anything, so a busy port fails fast.
	type grpcListener struct {
		name string
		lis  net.Listener
		tls  *tls.Config
	}
	var grpcs []grpcListener
	var httpLis net.Listener
	closeAll := func() {
		for _, g := range grpcs {
			g.lis.Close()
		}
		if httpLis != nil {
			httpLis.Close()
		}
	}
	for _, g := range []struct {
		flag, addr string
		tls        *tls.Config
	}{{"--grpcAddr", o.grpcAddr, nil}, {"--secureGRPCAddr", o.secureGRPCAddr, tlsConfig}} {
		if g.addr == "" {
			continue
		}
		lis, err := net.Listen("tcp", g.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: %w", g.flag, err)
		}
		grpcs = append(grpcs, grpcListener{g.flag, lis, g.tls})
	}
	if o.httpAddr != "" {
		if httpLis, err = net.Listen("tcp", o.httpAddr); err != nil {
			closeAll()
			return fmt.Errorf("--httpAddr: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	for _, gl := range grpcs {
		gs := srv.NewGRPCServer(gl.tls)
		for _, register := range o.services {
			register(gs)
		}
		if gl.tls != nil {
			for _, register := range o.secureServices {
				register(gs)
			}
		}
		log.Info("serving xDS", "flag", gl.name, "addr", gl.lis.Addr().String(), "tls", gl.tls != nil)
		g.Go(func() error { return server.Serve(gctx, gs, gl.lis, 5*time.Second) })
	}
	if httpLis != nil {
		hs := &http.Server{
			Handler:           debug.Handler(srv, debug.Options{Logger: log, Gatherer: metrics, RegistryStatus: func() any { return registryStatus(reg.Status()) }}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		log.Info("serving debug HTTP", "addr", httpLis.Addr().String())
		g.Go(func() error {
			if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("--httpAddr %s: %w", httpLis.Addr(), err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	err = g.Wait()
	if err != nil {
		return err
	}
	log.Info("istiod-lite discovery stopped")
	return nil
}

// registryStatus makes file.Status JSON-friendly (an error marshals as {}).
func registryStatus(st file.Status) any {
	out := struct {
		Dir           string    `json:"dir"`
		Version       string    `json:"version"`
		LastLoad      time.Time `json:"lastLoad"`
		LastError     string    `json:"lastError,omitempty"`
		LastErrorTime time.Time `json:"lastErrorTime,omitempty"`
		Rejections    uint64    `json:"rejections"`
	}{Dir: st.Dir, Version: st.Version, LastLoad: st.LastLoad, LastErrorTime: st.LastErrorTime, Rejections: st.Rejections}
	if st.LastError != nil {
		out.LastError = st.LastError.Error()
	}
	return out
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
