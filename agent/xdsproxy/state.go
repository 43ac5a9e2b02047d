package xdsproxy

import (
	"slices"
	"sort"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Status is the proxy's sync state, served by the status server on
// /debug/syncz.
type Status struct {
	Upstream   string         `json:"upstream"`
	ServerName string         `json:"serverName,omitempty"`
	Healthy    bool           `json:"healthy"`
	Reason     string         `json:"reason,omitempty"`
	Streams    []StreamStatus `json:"streams"`
}

// StreamStatus describes one downstream stream.
type StreamStatus struct {
	ID                int64        `json:"id"`
	Mode              string       `json:"mode"`
	Node              string       `json:"node,omitempty"`
	UpstreamConnected bool         `json:"upstreamConnected"`
	UpstreamConnects  int          `json:"upstreamConnects"`
	LastUpstreamError string       `json:"lastUpstreamError,omitempty"`
	Types             []TypeStatus `json:"types"`
}

// TypeStatus is the per-type view of what the downstream was sent and what
// it accepted or rejected.
type TypeStatus struct {
	TypeURL string `json:"typeUrl"`
	// SentVersion/SentNonce: the last response forwarded to the downstream.
	SentVersion string `json:"sentVersion,omitempty"`
	SentNonce   string `json:"sentNonce,omitempty"`
	// AckedVersion/AckedNonce: the last response the downstream accepted.
	AckedVersion string `json:"ackedVersion,omitempty"`
	AckedNonce   string `json:"ackedNonce,omitempty"`
	LastNACK     *NACK  `json:"lastNack,omitempty"`
	// Subscriptions: resource names (SotW) or subscribed names (delta);
	// "*" marks a wildcard subscription.
	Subscriptions []string `json:"subscriptions,omitempty"`
	Requests      uint64   `json:"requests"`
	Responses     uint64   `json:"responses"`
	NACKs         uint64   `json:"nacks"`
}

// NACK is a rejected response.
type NACK struct {
	Version string    `json:"version,omitempty"`
	Nonce   string    `json:"nonce,omitempty"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// streamState is shared by a session's handler and upstream-receive
// goroutines and read by SyncStatus; mu guards everything in it and in the
// session that embeds it.
type streamState struct {
	id   int64
	mode string

	mu        sync.Mutex
	node      *core.Node
	connected bool
	connects  int
	lastErr   string
	responded bool
	types     map[string]*TypeStatus
	order     []string
}

// typeStatus returns the status for typeURL, creating it; callers hold mu.
func (st *streamState) typeStatus(typeURL string) *TypeStatus {
	ts, ok := st.types[typeURL]
	if !ok {
		ts = &TypeStatus{TypeURL: typeURL}
		st.types[typeURL] = ts
		st.order = append(st.order, typeURL)
	}
	return ts
}

func (st *streamState) setConnected(c bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.connected = c
	if c {
		st.connects++
	}
}

func (st *streamState) setUpstreamError(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		st.lastErr = err.Error()
	}
}

func (st *streamState) everResponded() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.responded
}

func (st *streamState) resetResponded() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.responded = false
}

func (st *streamState) snapshot() StreamStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := StreamStatus{
		ID:                st.id,
		Mode:              st.mode,
		UpstreamConnected: st.connected,
		UpstreamConnects:  st.connects,
		LastUpstreamError: st.lastErr,
	}
	if st.node != nil {
		out.Node = st.node.GetId()
	}
	for _, t := range st.order {
		ts := *st.types[t]
		ts.Subscriptions = slices.Clone(ts.Subscriptions)
		if ts.LastNACK != nil {
			n := *ts.LastNACK
			ts.LastNACK = &n
		}
		out.Types = append(out.Types, ts)
	}
	return out
}

// SyncStatus reports every open stream's state for /debug/syncz.
func (p *Proxy) SyncStatus() Status {
	p.mu.Lock()
	streams := make([]*streamState, 0, len(p.streams))
	for _, st := range p.streams {
		streams = append(streams, st)
	}
	p.mu.Unlock()
	perm := p.Health()

	out := Status{Upstream: p.opts.DiscoveryAddress, Healthy: perm == nil, Streams: []StreamStatus{}}
	if !p.opts.Plaintext {
		out.ServerName = p.opts.ServerName
	}
	if perm != nil {
		out.Reason = perm.Error()
	}
	for _, st := range streams {
		out.Streams = append(out.Streams, st.snapshot())
	}
	sort.Slice(out.Streams, func(i, j int) bool { return out.Streams[i].ID < out.Streams[j].ID })
	return out
}
