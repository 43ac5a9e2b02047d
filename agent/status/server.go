// Package status is the agent's status server on :15020: the kubelet's
// readiness endpoint, rewritten application probes, the merged Prometheus
// endpoint, lifecycle endpoints and debug handlers. It is the only port the
// kubelet and Prometheus need to reach in a meshed pod.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAddr is Istio's status port.
const DefaultAddr = ":15020"

// Lifecycle is what the lifecycle endpoints drive; the agent's Envoy
// supervisor implements it.
type Lifecycle interface {
	// Drain starts draining the proxy without exiting.
	Drain()
	// Quit stops the proxy and the agent now.
	Quit()
}

// Options configures the status server. Only Addr has a default that binds
// anything; every other feature is off until configured.
type Options struct {
	// Addr is the listen address (default ":15020").
	Addr string
	// Ready lists the readiness conditions, all of which must hold.
	// Proxyless mode leaves out the Envoy ones.
	Ready []Check
	// Draining reports whether the agent is draining; readiness fails
	// once it returns true.
	Draining func() bool
	// Lifecycle backs POST /quitquitquit and /drain; nil answers 501.
	Lifecycle Lifecycle

	// AppProbers is ISTIO_KUBE_APP_PROBERS (JSON).
	AppProbers string
	// AppHost is where application probes are sent when the probe sets no
	// host (default 127.0.0.1).
	AppHost string

	// Metrics configures /stats/prometheus.
	Metrics MetricsOptions

	// Syncz returns the xDS proxy state for /debug/syncz; nil answers 404.
	Syncz func() any

	// Registerer receives the status server's own metrics (scrape
	// failures and drops); nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is the status server.
type Server struct {
	opts    Options
	log     *slog.Logger
	probers map[string]*prober
	merger  *merger
	mux     *http.ServeMux
}

// New validates opts (including the probe and annotation JSON) and builds
// the handlers.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.AppHost == "" {
		opts.AppHost = "127.0.0.1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("scope", "status")}
	probers, err := parseAppProbers(opts.AppProbers, opts.AppHost)
	if err != nil {
		return nil, err
	}
	s.probers = probers
	m, err := newMerger(opts.Metrics, opts.AppHost, opts.Registerer, s.log)
	if err != nil {
		return nil, err
	}
	s.merger = m

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", s.handleReady)
	mux.HandleFunc("/app-health/", s.handleAppProbe)
	mux.HandleFunc("GET /stats/prometheus", s.merger.ServeHTTP)
	mux.Handle("POST /quitquitquit", localOnly(http.HandlerFunc(s.handleQuit)))
	mux.Handle("POST /drain", localOnly(http.HandlerFunc(s.handleDrain)))
	mux.Handle("/debug/pprof/", localOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", localOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", localOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", localOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", localOnly(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET /debug/syncz", localOnly(http.HandlerFunc(s.handleSyncz)))
	s.mux = mux
	return s, nil
}

// ServeHTTP lets tests and the agent mount the server's routes directly.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run listens on Addr and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("status server: listen on %s: %w (is another agent or process using the port? set the status port to a free one)", s.opts.Addr, err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	s.log.Info("status server listening", "addr", lis.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("status server on %s: %w", lis.Addr(), err)
	}
}

func (s *Server) handleQuit(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Lifecycle == nil {
		http.Error(w, "no lifecycle is wired to this status server", http.StatusNotImplemented)
		return
	}
	s.log.Info("quit requested over /quitquitquit")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK\n"))
	// Answer first: Quit may stop this very server.
	go s.opts.Lifecycle.Quit()
}

func (s *Server) handleDrain(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Lifecycle == nil {
		http.Error(w, "no lifecycle is wired to this status server", http.StatusNotImplemented)
		return
	}
	s.log.Info("drain requested over /drain")
	s.opts.Lifecycle.Drain()
	_, _ = w.Write([]byte("OK\n"))
}

func (s *Server) handleSyncz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Syncz == nil {
		http.Error(w, "no xDS proxy in this agent", http.StatusNotFound)
		return
	}
	writeJSON(w, s.opts.Syncz())
}
