package xdsproxy

import (
	"context"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// sotwSession forwards one state-of-the-world ADS stream. It remembers the
// last request per type so that a new upstream stream can be brought to
// the same subscriptions without the downstream noticing.
type sotwSession struct {
	*streamState
	p    *Proxy
	down discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	sub  map[string]*sotwType // guarded by streamState.mu
	// sentInSession counts requests sent on the current upstream stream;
	// the first one must carry the node.
	sentInSession int
}

type sotwType struct {
	last *discovery.DiscoveryRequest
	// upNames are the resource names last sent upstream on the current
	// upstream stream; responded is whether that stream answered this type.
	upNames   []string
	responded bool
}

func (s *sotwSession) typ(url string) *sotwType {
	t, ok := s.sub[url]
	if !ok {
		t = &sotwType{}
		s.sub[url] = t
	}
	return t
}

func (s *sotwSession) runUpstream(ctx context.Context, conn *grpc.ClientConn, reqs <-chan *discovery.DiscoveryRequest, downRecvErr <-chan error) (error, error) {
	return pumpUpstream[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse](ctx, s.p, conn, s, reqs, downRecvErr)
}

func (s *sotwSession) openUpstream(ctx context.Context, conn *grpc.ClientConn) (upstreamStream[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse], error) {
	return discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
}

func (s *sotwSession) sendDownstream(resp *discovery.DiscoveryResponse) error {
	return s.down.Send(resp)
}

func (s *sotwSession) forward(r *discovery.DiscoveryRequest) (*discovery.DiscoveryRequest, bool) {
	fwd := s.onRequest(r, true)
	return fwd, fwd != nil
}

func (s *sotwSession) observe(r *discovery.DiscoveryRequest) { s.onRequest(r, false) }

// onRequest records a downstream request and returns what to send upstream
// (nil for nothing).
func (s *sotwSession) onRequest(r *discovery.DiscoveryRequest, connected bool) *discovery.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil && r.GetNode() != nil {
		s.node = proto.Clone(r.GetNode()).(*core.Node)
	}
	ts := s.typeStatus(r.GetTypeUrl())
	ts.Requests++
	s.p.metrics.requests.WithLabelValues(shortType(r.GetTypeUrl())).Inc()
	if d := r.GetErrorDetail(); d != nil {
		ts.NACKs++
		ts.LastNACK = &NACK{Version: r.GetVersionInfo(), Nonce: r.GetResponseNonce(), Message: d.GetMessage(), Time: s.p.opts.Clock.Now()}
		s.p.metrics.nacks.WithLabelValues(shortType(r.GetTypeUrl())).Inc()
		s.p.log.Warn("downstream rejected xDS response (NACK)", "stream", s.id, "type", r.GetTypeUrl(),
			"nonce", r.GetResponseNonce(), "kept_version", r.GetVersionInfo(), "code", d.GetCode(), "detail", d.GetMessage())
		s.p.noteVerdict(s.streamState, r.GetTypeUrl(), ts.AckedNonce != "", false, d.GetMessage())
	} else if r.GetResponseNonce() != "" {
		ts.AckedVersion, ts.AckedNonce = r.GetVersionInfo(), r.GetResponseNonce()
		s.p.noteVerdict(s.streamState, r.GetTypeUrl(), true, true, "")
	}
	ts.Subscriptions = slices.Clone(r.GetResourceNames())

	t := s.typ(r.GetTypeUrl())
	t.last = r
	if !connected {
		return nil
	}
	switch {
	case r.GetResponseNonce() == "" || t.responded:
		// A fresh subscription, or an ACK/NACK of a response from this
		// upstream stream: forward as is.
	case !slices.Equal(r.GetResourceNames(), t.upNames):
		// The nonce belongs to a previous upstream stream, but the
		// subscription changed: forward it as a fresh request.
		r = proto.Clone(r).(*discovery.DiscoveryRequest)
		r.ResponseNonce, r.ErrorDetail = "", nil
	default:
		// An ACK of a previous upstream stream's response: the replay
		// already told the new stream what the downstream has.
		return nil
	}
	t.upNames = r.GetResourceNames()
	return s.withNode(r)
}

// withNode makes sure the first request on an upstream stream carries the
// node, which Envoy sends only once per downstream stream. Callers hold mu.
func (s *sotwSession) withNode(r *discovery.DiscoveryRequest) *discovery.DiscoveryRequest {
	s.sentInSession++
	if s.sentInSession == 1 && r.GetNode() == nil && s.node != nil {
		r = proto.Clone(r).(*discovery.DiscoveryRequest)
		r.Node = s.node
	}
	return r
}

// replay builds the requests that bring a new upstream stream to the
// downstream's subscriptions: per type, in the order the downstream first
// asked for them (CDS before EDS, LDS before RDS), the last resource names
// with the last ACKed version and no nonce, as Envoy itself does on
// reconnect.
func (s *sotwSession) replay() []*discovery.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sentInSession = 0
	var out []*discovery.DiscoveryRequest
	for _, url := range s.order {
		t := s.typ(url)
		t.responded = false
		t.upNames = nil
		if t.last == nil {
			continue
		}
		r := proto.Clone(t.last).(*discovery.DiscoveryRequest)
		r.ResponseNonce, r.ErrorDetail, r.Node = "", nil, nil
		r.VersionInfo = s.typeStatus(url).AckedVersion
		t.upNames = r.GetResourceNames()
		out = append(out, s.withNode(r))
	}
	return out
}

func (s *sotwSession) onResponse(resp *discovery.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.typeStatus(resp.GetTypeUrl())
	ts.Responses++
	ts.SentVersion, ts.SentNonce = resp.GetVersionInfo(), resp.GetNonce()
	s.typ(resp.GetTypeUrl()).responded = true
	s.p.metrics.responses.WithLabelValues(shortType(resp.GetTypeUrl())).Inc()
	s.responded = true
	s.lastErr = ""
	s.p.clearPermanent()
}
