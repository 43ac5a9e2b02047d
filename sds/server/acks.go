package server

import (
	"context"
	"log/slog"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/meshlite/meshlite/sds/secret"
)

// ackTracker matches Envoy's ACKs and NACKs to the responses they answer, so
// the agent can report "certificate served" only once Envoy accepted it.
type ackTracker struct {
	src secret.Source
	log *slog.Logger

	mu   sync.Mutex
	sent map[int64]map[string][]string // stream → nonce → resource names
	node map[int64]string
}

func newACKTracker(src secret.Source, log *slog.Logger) *ackTracker {
	return &ackTracker{src: src, log: log, sent: map[int64]map[string][]string{}, node: map[int64]string{}}
}

func (a *ackTracker) callbacks() serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			a.log.Debug("SDS stream opened", "stream", id, "type", typeURL)
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			a.mu.Lock()
			node := a.node[id]
			delete(a.sent, id)
			delete(a.node, id)
			a.mu.Unlock()
			a.log.Debug("SDS stream closed", "stream", id, "node", node)
		},
		StreamRequestFunc:  a.onRequest,
		StreamResponseFunc: a.onResponse,
	}
}

func (a *ackTracker) onResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	names := make([]string, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		var s tlsv3.Secret
		if r.UnmarshalTo(&s) == nil {
			names = append(names, s.GetName())
		}
	}
	a.mu.Lock()
	if a.sent[id] == nil {
		a.sent[id] = map[string][]string{}
	}
	a.sent[id][resp.GetNonce()] = names
	a.mu.Unlock()
	a.log.Debug("SDS push", "stream", id, "resources", names, "version", resp.GetVersionInfo())
}

func (a *ackTracker) onRequest(id int64, req *discovery.DiscoveryRequest) error {
	a.mu.Lock()
	if n := req.GetNode().GetId(); n != "" {
		a.node[id] = n
	}
	node := a.node[id]
	names, known := a.sent[id][req.GetResponseNonce()]
	delete(a.sent[id], req.GetResponseNonce())
	a.mu.Unlock()
	if req.GetResponseNonce() == "" || !known {
		return nil
	}
	if d := req.GetErrorDetail(); d != nil {
		a.log.Warn("Envoy rejected secrets (NACK)", "node", node, "resources", names, "error", d.GetMessage())
		return nil
	}
	for _, n := range names {
		if n == secret.ResourceDefault {
			a.src.MarkDelivered("sds")
			a.log.Debug("workload certificate accepted by Envoy", "node", node, "version", req.GetVersionInfo())
		}
	}
	return nil
}
