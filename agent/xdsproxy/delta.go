package xdsproxy

import (
	"context"
	"maps"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// maxPendingDeltas bounds the responses remembered until the downstream
// ACKs or NACKs them; Envoy answers every nonce, so this only matters for
// a misbehaving client.
const maxPendingDeltas = 64

// deltaSession forwards one incremental ADS stream. It tracks, per type,
// the subscriptions and the resource versions the downstream accepted, so
// a new upstream stream starts with subscribe + initial_resource_versions
// and only sends what changed.
type deltaSession struct {
	*streamState
	p             *Proxy
	down          discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	sub           map[string]*deltaType // guarded by streamState.mu
	sentInSession int
}

type deltaType struct {
	wildcard  bool
	names     map[string]struct{}
	accepted  map[string]string // resource name → version the downstream holds
	pending   map[string]pendingDelta
	responded bool // on the current upstream stream
}

type pendingDelta struct {
	version string
	updated map[string]string
	removed []string
}

func (s *deltaSession) runUpstream(ctx context.Context, conn *grpc.ClientConn, reqs <-chan *discovery.DeltaDiscoveryRequest, downRecvErr <-chan error) (error, error) {
	return pumpUpstream[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse](ctx, s.p, conn, s, reqs, downRecvErr)
}

func (s *deltaSession) openUpstream(ctx context.Context, conn *grpc.ClientConn) (upstreamStream[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse], error) {
	return discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
}

func (s *deltaSession) sendDownstream(resp *discovery.DeltaDiscoveryResponse) error {
	return s.down.Send(resp)
}

func (s *deltaSession) forward(r *discovery.DeltaDiscoveryRequest) (*discovery.DeltaDiscoveryRequest, bool) {
	fwd := s.onRequest(r, true)
	return fwd, fwd != nil
}

func (s *deltaSession) observe(r *discovery.DeltaDiscoveryRequest) { s.onRequest(r, false) }

func (s *deltaSession) onRequest(r *discovery.DeltaDiscoveryRequest, connected bool) *discovery.DeltaDiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil && r.GetNode() != nil {
		s.node = proto.Clone(r.GetNode()).(*core.Node)
	}
	url := r.GetTypeUrl()
	t, seen := s.sub[url]
	if !seen {
		t = &deltaType{names: map[string]struct{}{}, accepted: map[string]string{}, pending: map[string]pendingDelta{}}
		s.sub[url] = t
		// An empty first subscription is the legacy wildcard.
		t.wildcard = len(r.GetResourceNamesSubscribe()) == 0
		maps.Copy(t.accepted, r.GetInitialResourceVersions())
	}
	for _, n := range r.GetResourceNamesSubscribe() {
		if n == "*" {
			t.wildcard = true
		} else {
			t.names[n] = struct{}{}
		}
	}
	for _, n := range r.GetResourceNamesUnsubscribe() {
		if n == "*" {
			t.wildcard = false
		} else {
			delete(t.names, n)
			delete(t.accepted, n)
		}
	}

	ts := s.typeStatus(url)
	ts.Requests++
	ts.Subscriptions = t.subscriptions()
	s.p.metrics.requests.WithLabelValues(shortType(url)).Inc()
	nonce := r.GetResponseNonce()
	pd, known := t.pending[nonce]
	delete(t.pending, nonce)
	if d := r.GetErrorDetail(); d != nil {
		ts.NACKs++
		ts.LastNACK = &NACK{Version: pd.version, Nonce: nonce, Message: d.GetMessage(), Time: s.p.opts.Clock.Now()}
		s.p.metrics.nacks.WithLabelValues(shortType(url)).Inc()
		s.p.log.Warn("downstream rejected delta xDS response (NACK)", "stream", s.id, "type", url,
			"nonce", nonce, "code", d.GetCode(), "detail", d.GetMessage())
		s.p.noteVerdict(s.streamState, url, ts.AckedNonce != "", false, d.GetMessage())
	} else if nonce != "" {
		ts.AckedNonce = nonce
		s.p.noteVerdict(s.streamState, url, true, true, "")
		if known {
			ts.AckedVersion = pd.version
			maps.Copy(t.accepted, pd.updated)
			for _, n := range pd.removed {
				delete(t.accepted, n)
			}
		}
	}

	if !connected {
		return nil
	}
	changes := len(r.GetResourceNamesSubscribe())+len(r.GetResourceNamesUnsubscribe()) > 0
	switch {
	case nonce == "" || t.responded:
	case changes:
		// Stale nonce from a previous upstream stream, but the
		// subscription changed: forward the change alone.
		r = &discovery.DeltaDiscoveryRequest{
			TypeUrl:                  url,
			ResourceNamesSubscribe:   r.GetResourceNamesSubscribe(),
			ResourceNamesUnsubscribe: r.GetResourceNamesUnsubscribe(),
		}
	default:
		return nil
	}
	return s.withNode(r)
}

func (t *deltaType) subscriptions() []string {
	out := slices.Sorted(maps.Keys(t.names))
	if t.wildcard {
		out = append([]string{"*"}, out...)
	}
	return out
}

func (s *deltaSession) withNode(r *discovery.DeltaDiscoveryRequest) *discovery.DeltaDiscoveryRequest {
	s.sentInSession++
	if s.sentInSession == 1 && r.GetNode() == nil && s.node != nil {
		r = proto.Clone(r).(*discovery.DeltaDiscoveryRequest)
		r.Node = s.node
	}
	return r
}

// replay builds, per type in first-subscription order, a request that
// re-creates the subscriptions and tells the new upstream stream which
// resource versions the downstream already has, so only differences flow.
func (s *deltaSession) replay() []*discovery.DeltaDiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sentInSession = 0
	var out []*discovery.DeltaDiscoveryRequest
	for _, url := range s.order {
		t, ok := s.sub[url]
		if !ok {
			continue
		}
		t.responded = false
		clear(t.pending)
		subs := t.subscriptions()
		if t.wildcard && len(t.names) == 0 {
			subs = nil // legacy wildcard: understood by every server
		}
		out = append(out, s.withNode(&discovery.DeltaDiscoveryRequest{
			TypeUrl:                 url,
			ResourceNamesSubscribe:  subs,
			InitialResourceVersions: maps.Clone(t.accepted),
		}))
	}
	return out
}

func (s *deltaSession) onResponse(resp *discovery.DeltaDiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	url := resp.GetTypeUrl()
	ts := s.typeStatus(url)
	ts.Responses++
	ts.SentVersion, ts.SentNonce = resp.GetSystemVersionInfo(), resp.GetNonce()
	s.p.metrics.responses.WithLabelValues(shortType(url)).Inc()
	s.responded = true
	s.lastErr = ""
	s.p.clearPermanent()

	t, ok := s.sub[url]
	if !ok {
		// A type the server pushes without a subscription (rare); track
		// it so it is replayed like any other.
		t = &deltaType{names: map[string]struct{}{}, accepted: map[string]string{}, pending: map[string]pendingDelta{}}
		s.sub[url] = t
	}
	t.responded = true
	if len(t.pending) >= maxPendingDeltas {
		clear(t.pending)
	}
	pd := pendingDelta{version: resp.GetSystemVersionInfo(), updated: map[string]string{}, removed: resp.GetRemovedResources()}
	for _, res := range resp.GetResources() {
		pd.updated[res.GetName()] = res.GetVersion()
	}
	t.pending[resp.GetNonce()] = pd
}
