package xdsproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Proxy serves ADS (SotW and delta) on a unix socket and forwards each
// stream to the control plane.
type Proxy struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer

	opts    Options
	log     *slog.Logger
	metrics *metrics
	up      *upstream

	nextID atomic.Int64

	mu        sync.Mutex
	streams   map[int64]*streamState
	permanent error // last permanent rejection; nil once a response arrives
	untrusted error // istiod's certificate failed verification; nil once a response arrives
	// bootNACKs holds, per stream and type, Envoy's rejection of the first
	// listeners or clusters it was sent: it cannot start without them.
	bootNACKs map[bootKey]error
}

// New validates opts and returns a Proxy; nothing is listened on or dialled
// until Run.
func New(opts Options) (*Proxy, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Proxy{
		opts:      opts,
		log:       opts.Logger.With("scope", "xdsproxy"),
		metrics:   newMetrics(opts.Registerer),
		up:        &upstream{opts: opts},
		streams:   map[int64]*streamState{},
		bootNACKs: map[bootKey]error{},
	}, nil
}

// Listen creates the unix socket, replacing a stale one left by a previous
// agent, and restricts it to the agent's user (Envoy runs as the same user).
func (p *Proxy) Listen() (net.Listener, error) {
	path := p.opts.SocketPath
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for the xDS socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale xDS socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on the xDS socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("restrict the xDS socket %s to mode 0600: %w", path, err)
	}
	return lis, nil
}

// Run listens on the socket and serves until ctx is done. It also re-dials
// upstream whenever the trust bundle changes.
func (p *Proxy) Run(ctx context.Context) error {
	lis, err := p.Listen()
	if err != nil {
		return err
	}
	return p.Serve(ctx, lis)
}

// Serve serves ADS on lis until ctx is done.
func (p *Proxy) Serve(ctx context.Context, lis net.Listener) error {
	// Envoy's requests can list many resource names; do not cap them at
	// gRPC's 4 MiB default.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(math.MaxInt32))
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, p)
	defer p.up.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if !p.opts.Plaintext {
		wg.Add(1)
		go func() { defer wg.Done(); p.watchTrustBundle(ctx) }()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	p.log.Info("xDS proxy listening", "socket", p.opts.SocketPath, "upstream", p.opts.DiscoveryAddress, "san", p.opts.ServerName)

	select {
	case <-ctx.Done():
		// Stop, not GracefulStop: ADS streams never end on their own.
		srv.Stop()
		<-errc
		cancel()
		wg.Wait()
		return nil
	case err := <-errc:
		cancel()
		wg.Wait()
		return fmt.Errorf("xDS proxy on %s: %w", p.opts.SocketPath, err)
	}
}

func (p *Proxy) watchTrustBundle(ctx context.Context) {
	for {
		_, changed := p.opts.Certs.TrustBundle()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		if err := p.up.redial(); err != nil {
			p.log.Error("trust bundle changed but re-dialling the control plane failed; keeping the old connection", "err", err)
			continue
		}
		p.metrics.redials.Inc()
		p.log.Info("trust bundle changed: re-dialled the control plane with the new roots", "upstream", p.opts.DiscoveryAddress)
	}
}

// Health returns a non-nil error while the control plane permanently
// rejects the agent (Unauthenticated or PermissionDenied), or while Envoy
// rejects its first listeners or clusters, so readiness fails with the
// reason instead of the proxy retrying silently.
func (p *Proxy) Health() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.permanent != nil {
		return p.permanent
	}
	if p.untrusted != nil {
		return p.untrusted
	}
	keys := make([]bootKey, 0, len(p.bootNACKs))
	for k := range p.bootNACKs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b bootKey) int {
		return cmp.Or(cmp.Compare(a.stream, b.stream), cmp.Compare(a.typeURL, b.typeURL))
	})
	var errs []error
	for _, k := range keys {
		errs = append(errs, p.bootNACKs[k])
	}
	return errors.Join(errs...)
}

type bootKey struct {
	stream  int64
	typeURL string
}

// bootstrapCritical are the types without which Envoy serves nothing.
var bootstrapCritical = map[string]bool{
	"type.googleapis.com/envoy.config.listener.v3.Listener": true,
	"type.googleapis.com/envoy.config.cluster.v3.Cluster":   true,
}

// noteVerdict tracks NACKs of a bootstrap-critical type that Envoy never
// accepted a version of; an ACK or the stream's end clears it. Callers
// pass acked=true for an ACK, false for a NACK.
func (p *Proxy) noteVerdict(st *streamState, typeURL string, everAcked, acked bool, detail string) {
	if !bootstrapCritical[typeURL] {
		return
	}
	k := bootKey{st.id, typeURL}
	p.mu.Lock()
	defer p.mu.Unlock()
	if acked || everAcked {
		delete(p.bootNACKs, k)
		return
	}
	p.bootNACKs[k] = fmt.Errorf("envoy rejected its first %s from %s (stream %d): %s; fix the configuration the control plane generates (see /debug/syncz)",
		shortType(typeURL), p.opts.DiscoveryAddress, st.id, detail)
}

// StreamAggregatedResources implements SotW ADS.
func (p *Proxy) StreamAggregatedResources(down discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := p.openStream("sotw")
	defer p.closeStream(st)
	s := &sotwSession{streamState: st, p: p, down: down, sub: map[string]*sotwType{}}
	return serveStream(down.Context(), p, st, down.Recv, s)
}

// DeltaAggregatedResources implements incremental ADS.
func (p *Proxy) DeltaAggregatedResources(down discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := p.openStream("delta")
	defer p.closeStream(st)
	s := &deltaSession{streamState: st, p: p, down: down, sub: map[string]*deltaType{}}
	return serveStream(down.Context(), p, st, down.Recv, s)
}

// session is one downstream stream's protocol logic (SotW or delta).
type session[Req any] interface {
	// runUpstream opens one upstream stream on conn, replays the
	// subscriptions and pumps both directions. It returns downErr when
	// the downstream is gone (the stream must end) or upErr when the
	// upstream failed (the caller reconnects).
	runUpstream(ctx context.Context, conn *grpc.ClientConn, reqs <-chan Req, downRecvErr <-chan error) (downErr, upErr error)
	// observe records a downstream request that arrived while no upstream
	// stream was open; it will be replayed.
	observe(req Req)
}

// errDownstream marks an error sending to the downstream, seen on the
// upstream receive path.
type errDownstream struct{ err error }

func (e errDownstream) Error() string { return "send to downstream: " + e.err.Error() }

func serveStream[Req any](ctx context.Context, p *Proxy, st *streamState, recv func() (Req, error), s session[Req]) error {
	reqs := make(chan Req)
	downRecvErr := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				downRecvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()

	bo := &backoff.ExponentialBackOff{
		InitialInterval:     p.opts.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         p.opts.MaxBackoff,
	}
	bo.Reset()
	for {
		var downErr, upErr error
		conn, err := p.up.current()
		if err != nil {
			upErr = err
		} else {
			downErr, upErr = s.runUpstream(ctx, conn, reqs, downRecvErr)
		}
		if downErr != nil {
			return downstreamResult(downErr)
		}
		if ctx.Err() != nil {
			return nil
		}
		if st.everResponded() {
			// The upstream worked since the last failure: start over.
			bo.Reset()
			st.resetResponded()
		}
		delay := p.upstreamFailed(st, upErr, bo)
		timer := p.opts.Clock.NewTimer(delay)
	wait:
		for {
			select {
			case <-timer.C():
				break wait
			case r := <-reqs:
				s.observe(r)
			case err := <-downRecvErr:
				timer.Stop()
				return downstreamResult(err)
			case <-ctx.Done():
				timer.Stop()
				return nil
			}
		}
	}
}

func downstreamResult(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return nil
	}
	var d errDownstream
	if errors.As(err, &d) {
		err = d.err
	}
	return err
}

// upstreamFailed records an upstream failure and returns how long to wait
// before reconnecting.
func (p *Proxy) upstreamFailed(st *streamState, err error, bo *backoff.ExponentialBackOff) time.Duration {
	code := status.Code(err)
	p.metrics.upstreamFailures.WithLabelValues(code.String()).Inc()
	st.setUpstreamError(err)
	switch code {
	case codes.Unauthenticated, codes.PermissionDenied:
		p.metrics.permanentFailures.WithLabelValues(code.String()).Inc()
		perm := fmt.Errorf("control plane %s rejected the agent with %s: %s; check the workload token (%s), the workload certificate and the control plane's authentication policy (retrying every %v)",
			p.opts.DiscoveryAddress, code, status.Convert(err).Message(), tokenDesc(p.opts.TokenPath), p.opts.PermanentErrorBackoff)
		p.mu.Lock()
		p.permanent = perm
		p.mu.Unlock()
		p.log.Error("upstream xDS permanently rejected", "stream", st.id, "code", code.String(), "err", perm)
		return p.opts.PermanentErrorBackoff
	}
	if code == codes.Unavailable && isCertVerifyFailure(err) {
		// Not permanent (a new trust bundle re-dials at once), but readiness
		// must say why the workload is cut off from its control plane.
		p.mu.Lock()
		p.untrusted = fmt.Errorf("control plane %s presented a certificate this agent does not trust: %s; check the mesh root (CA_ROOT_CA) and the expected name (ISTIOD_SAN %s)",
			p.opts.DiscoveryAddress, status.Convert(err).Message(), p.opts.ServerName)
		p.mu.Unlock()
	}
	delay := bo.NextBackOff()
	p.log.Warn("upstream xDS stream failed; keeping the downstream stream open and reconnecting",
		"stream", st.id, "code", code.String(), "err", err, "retry_in", delay)
	return delay
}

func tokenDesc(path string) string {
	if path == "" {
		return "none configured"
	}
	return path
}

// clearPermanent is called on every upstream response: the control plane
// accepts the agent again.
func (p *Proxy) clearPermanent() {
	p.mu.Lock()
	p.permanent, p.untrusted = nil, nil
	p.mu.Unlock()
}

// isCertVerifyFailure recognises a TLS handshake that failed on istiod's
// certificate; gRPC reports it as Unavailable with the x509 error as text.
func isCertVerifyFailure(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "failed to verify certificate") || strings.Contains(msg, "x509: ")
}

func (p *Proxy) openStream(mode string) *streamState {
	st := &streamState{id: p.nextID.Add(1), mode: mode, types: map[string]*TypeStatus{}}
	p.mu.Lock()
	p.streams[st.id] = st
	p.mu.Unlock()
	p.metrics.streamsTotal.WithLabelValues(mode).Inc()
	p.metrics.streamsActive.WithLabelValues(mode).Inc()
	p.log.Debug("downstream ADS stream opened", "stream", st.id, "mode", mode)
	return st
}

func (p *Proxy) closeStream(st *streamState) {
	p.mu.Lock()
	delete(p.streams, st.id)
	for k := range p.bootNACKs {
		if k.stream == st.id {
			delete(p.bootNACKs, k)
		}
	}
	p.mu.Unlock()
	p.metrics.streamsActive.WithLabelValues(st.mode).Dec()
	p.log.Debug("downstream ADS stream closed", "stream", st.id, "mode", st.mode)
}
