// Package server serves per-proxy xDS over go-control-plane's ADS (state of
// the world and delta), regenerating proxies' config when the registry changes
// and tracking what each proxy was sent and accepted.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/model"
	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// Options configure a Server. Zero values are usable.
type Options struct {
	Logger *slog.Logger
	// Metrics is where the server's metrics are registered; nil skips registration.
	Metrics prometheus.Registerer
	Clock   clock.PassiveClock
}

// Server owns the snapshot cache and the per-proxy state.
type Server struct {
	log   *slog.Logger
	reg   model.Registry
	cache cachev3.SnapshotCache
	xds   serverv3.Server
	clock clock.PassiveClock
	m     *metrics

	// pushMu serialises generation + SetSnapshot between pushes and new
	// connections, so that a proxy never ends up with an older generation.
	pushMu sync.Mutex
	gen    *xds.Generator // guarded by pushMu
	// snaps shares cache snapshots among proxies given the same resources by
	// gen and subscribed to the same names. Replaced under pushMu and mu with
	// gen; read and filled under mu.
	snaps *snapshots

	mu          sync.Mutex
	proxies     map[string]*proxy
	streams     map[int64]string            // stream ID -> node ID
	deltaNonces map[int64]map[string]string // stream ID -> nonce -> version, to know what a delta ACK accepts
}

// New builds a server for the registry. Call Run to follow registry changes
// and Register to serve it on a gRPC server.
func New(reg model.Registry, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	log := opts.Logger.With("scope", "ads")
	s := &Server{
		log:         log,
		reg:         reg,
		clock:       opts.Clock,
		m:           newMetrics(opts.Metrics),
		proxies:     map[string]*proxy{},
		streams:     map[int64]string{},
		deltaNonces: map[int64]map[string]string{},
	}
	// ads=false: in ADS mode the simple cache never answers a request that
	// does not name every resource of the type, which proxyless gRPC clients
	// (asking for one listener) would wait on forever. Ordering across types is
	// still safe: clients request RDS/EDS only after receiving LDS/CDS.
	s.cache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, gcpLogger{log})
	// Ordered ADS serves each ADS stream from one reused response channel
	// instead of go-control-plane's default reflect.Select over a fresh
	// channel per request: per ACK that saves a channel, a select-case
	// rebuild and their garbage, which adds up over a thousand streams a push.
	s.xds = serverv3.NewServer(context.Background(), s.cache, s.callbacks(), sotwv3.WithOrderedADS())
	return s
}

// XDS returns the go-control-plane server, for registering on gRPC servers.
func (s *Server) XDS() serverv3.Server { return s.xds }

// Snapshot returns the registry's current snapshot (nil before the first).
func (s *Server) Snapshot() *model.Snapshot { return s.reg.Current() }

// Ready reports whether the registry has synced.
func (s *Server) Ready() bool { return s.reg.Ready() }

// Run recomputes every connected proxy's config each time the registry
// changes, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	s.push()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.reg.Changes():
			s.push()
		}
	}
}

// push regenerates every proxy from the current snapshot and sets only the
// snapshots whose content changed.
func (s *Server) push() int {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	start := time.Now()
	s.gen = xds.NewGenerator(s.reg.Current())
	s.mu.Lock()
	s.snaps = newSnapshots()
	ids := make([]string, 0, len(s.proxies))
	for id := range s.proxies {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	// Proxies are independent: spread them over the CPUs, so the last proxy
	// of a large push does not wait for every other one to be set first.
	var changed atomic.Int64
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(ids))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ids); i += workers {
				if s.update(ids[i]) {
					changed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	s.m.genTime.Observe(time.Since(start).Seconds())
	s.log.Debug("pushed config", "version", s.gen.Snapshot().Version, "proxies", len(ids), "changed", changed.Load(), "took", time.Since(start))
	return int(changed.Load())
}

// update generates one proxy's resources and sets its cache snapshot if any
// type's version changed. The caller holds pushMu; several updates may run
// at once for different proxies. It reports whether it set one.
func (s *Server) update(id string) bool {
	s.mu.Lock()
	p, ok := s.proxies[id]
	s.mu.Unlock()
	if !ok {
		return false
	}
	if s.gen == nil {
		s.gen = xds.NewGenerator(s.reg.Current())
		s.mu.Lock()
		s.snaps = newSnapshots()
		s.mu.Unlock()
	}
	if s.reg.Current() == nil {
		// Before the registry's first load, leave the proxy's watches open
		// rather than answer with an empty config it would act on.
		return false
	}
	p.setMu.Lock()
	defer p.setMu.Unlock()
	res := s.gen.Generate(p.p)
	now := s.clock.Now()
	s.mu.Lock()
	same := true
	for i, t := range xds.TypeURLs {
		if v := res.Version(t); p.byType[i].version != v {
			same = false
			p.byType[i].version = v
			p.byType[i].setAt = now
		}
	}
	var snap *cachev3.Snapshot
	if !same {
		p.res = res
		snap = s.snaps.forProxy(p)
	}
	s.mu.Unlock()
	if same {
		return false
	}
	s.setSnapshot(id, p, snap)
	return true
}

// subscribe records the names a request asks for. When they add to what the
// proxy's snapshot holds, the snapshot is set again, before the cache opens
// the request's watch (go-control-plane calls back first), so the cache
// answers the new names at once.
func (s *Server) subscribe(streamID int64, typeURL string, names []string, all bool) {
	i := typeIndex(typeURL)
	if i < 0 {
		return
	}
	s.mu.Lock()
	id := s.streams[streamID]
	p := s.proxies[id]
	s.mu.Unlock()
	if p == nil {
		return
	}
	// setMu orders this against a push's update of the same proxy: whichever
	// sets last has read the latest resources and subscriptions.
	p.setMu.Lock()
	defer p.setMu.Unlock()
	s.mu.Lock()
	var snap *cachev3.Snapshot
	var known []xds.Resource
	if p.res != nil {
		known = p.res.ByType[typeURL]
	}
	if p.byType[i].sub.add(names, all, known) {
		p.subKeySet = false
		if p.res != nil && s.snaps != nil {
			snap = s.snaps.forProxy(p)
		}
	}
	s.mu.Unlock()
	if snap != nil {
		s.setSnapshot(id, p, snap)
	}
}

// setSnapshot gives the cache a proxy's snapshot. The caller holds p.setMu.
func (s *Server) setSnapshot(id string, p *proxy, snap *cachev3.Snapshot) {
	if err := s.cache.SetSnapshot(context.Background(), id, snap); err != nil {
		s.log.Error("cannot set snapshot", "proxy", id, "err", err)
		return
	}
	// A proxy that disconnected while this ran must not keep a snapshot.
	s.mu.Lock()
	gone := s.proxies[id] != p
	s.mu.Unlock()
	if gone {
		s.cache.ClearSnapshot(id)
	}
}

// connect registers a stream's node; the first stream of a node gets its
// snapshot before the cache creates the stream's first watch.
func (s *Server) connect(streamID int64, n *core.Node) error {
	s.mu.Lock()
	if _, ok := s.streams[streamID]; ok {
		s.mu.Unlock()
		return nil
	}
	pp, err := xds.ParseNode(n)
	if err != nil {
		s.mu.Unlock()
		s.log.Warn("rejecting xDS stream", "err", err)
		return status.Errorf(codes.InvalidArgument, "istiod-lite cannot serve this client: %v", err)
	}
	s.streams[streamID] = pp.ID
	p, ok := s.proxies[pp.ID]
	if ok {
		p.streams++
		s.mu.Unlock()
		return nil
	}
	p = &proxy{p: pp, connected: s.clock.Now(), streams: 1}
	s.proxies[pp.ID] = p
	s.m.connected.Set(float64(len(s.proxies)))
	s.mu.Unlock()
	s.log.Info("proxy connected", "proxy", pp.ID, "generator", pp.Generator)

	s.pushMu.Lock()
	s.update(pp.ID)
	s.pushMu.Unlock()
	return nil
}

func (s *Server) disconnect(streamID int64) {
	s.mu.Lock()
	id, ok := s.streams[streamID]
	delete(s.streams, streamID)
	delete(s.deltaNonces, streamID)
	if !ok {
		s.mu.Unlock()
		return
	}
	p := s.proxies[id]
	p.streams--
	gone := p.streams <= 0
	if gone {
		delete(s.proxies, id)
		s.m.connected.Set(float64(len(s.proxies)))
	}
	s.mu.Unlock()
	if gone {
		s.cache.ClearSnapshot(id)
		s.log.Info("proxy disconnected", "proxy", id)
	}
}

// ack records an ACK (errDetail nil) or NACK of version for a type.
func (s *Server) ack(streamID int64, typeURL, version, nonce, errDetail string, nack bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.streams[streamID]
	if !ok {
		return
	}
	p := s.proxies[id]
	ts := p.status(typeURL)
	if nack {
		ts.LastNack = &Nack{Version: version, Nonce: nonce, Message: errDetail, Time: s.clock.Now()}
		s.m.rejects.WithLabelValues(ShortType(typeURL)).Inc() // rare: not worth a cached child
		s.log.Warn("proxy rejected config (NACK)", "proxy", id, "type", ShortType(typeURL), "nonce", nonce, "error", errDetail)
		return
	}
	ts.Acked = version
	if i := typeIndex(typeURL); i >= 0 {
		if st := &p.byType[i]; !st.setAt.IsZero() && st.version == version {
			s.m.ackLatency(typeURL).Observe(s.clock.Since(st.setAt).Seconds())
			st.setAt = time.Time{}
		}
	}
}

func (s *Server) sent(streamID int64, typeURL, version, nonce string, delta bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.sent(typeURL).Inc()
	id, ok := s.streams[streamID]
	if !ok {
		return
	}
	s.proxies[id].status(typeURL).Sent = version
	if delta {
		n := s.deltaNonces[streamID]
		if n == nil {
			n = map[string]string{}
			s.deltaNonces[streamID] = n
		}
		n[typeURL] = nonce + "\x00" + version
	}
}

// deltaVersion returns the version a delta ACK with this nonce accepts.
func (s *Server) deltaVersion(streamID int64, typeURL, nonce string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.deltaNonces[streamID][typeURL]
	n, ver, _ := cut(v)
	if n != nonce {
		return ""
	}
	return ver
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamClosedFunc:      func(id int64, _ *core.Node) { s.disconnect(id) },
		DeltaStreamClosedFunc: func(id int64, _ *core.Node) { s.disconnect(id) },
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			if err := s.connect(id, req.GetNode()); err != nil {
				return err
			}
			s.subscribe(id, req.GetTypeUrl(), req.GetResourceNames(), len(req.GetResourceNames()) == 0)
			if req.GetResponseNonce() != "" {
				s.ack(id, req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			s.sent(id, req.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), false)
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			if err := s.connect(id, req.GetNode()); err != nil {
				return err
			}
			// Delta subscriptions come and go by name; a delta stream simply
			// gets every resource of the type into its snapshot.
			s.subscribe(id, req.GetTypeUrl(), nil, true)
			if req.GetResponseNonce() != "" {
				v := s.deltaVersion(id, req.GetTypeUrl(), req.GetResponseNonce())
				s.ack(id, req.GetTypeUrl(), v, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
			}
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			s.sent(id, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), true)
		},
		FetchRequestFunc: func(context.Context, *discovery.DiscoveryRequest) error {
			return errors.New("REST/fetch xDS is not served: use ADS over gRPC")
		},
	}
}

// gcpLogger routes go-control-plane's logs to slog; its debug output is very chatty.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) Debugf(f string, a ...any) {}
func (g gcpLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gcpLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gcpLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }

var _ gcplog.Logger = gcpLogger{}
