package server

import (
	"sort"
	"sync"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// Nack is the last rejection of one type by one proxy.
type Nack struct {
	Version string    `json:"version"` // the version the proxy still runs
	Nonce   string    `json:"nonce"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// TypeStatus is what was sent to a proxy for one type and what it accepted.
type TypeStatus struct {
	Sent     string `json:"sent"`
	Acked    string `json:"acked"`
	LastNack *Nack  `json:"lastNack,omitempty"`
}

// ProxyStatus is one connected proxy as /debug/syncz shows it.
type ProxyStatus struct {
	ID          string                `json:"id"`
	Generator   string                `json:"generator,omitempty"`
	ConnectedAt time.Time             `json:"connectedAt"`
	Streams     int                   `json:"streams"`
	Types       map[string]TypeStatus `json:"types"` // by short type name: cds, eds, lds, rds
}

// proxy is the server's state for one node ID. Guarded by Server.mu.
type proxy struct {
	p         *xds.Proxy
	connected time.Time
	streams   int
	res       *xds.Resources
	// setMu is held from reading res and the subscriptions to setting the
	// cache snapshot made of them, so snapshots are set in order.
	setMu     sync.Mutex
	subKey    subKey // subscriptionKey of byType, when subKeySet
	subKeySet bool
	// byType holds the types generation produces, indexed like xds.TypeURLs:
	// fixed slots rather than maps, since a push touches every proxy's.
	byType [numTypes]typeState
	other  map[string]*TypeStatus // status of any other type a proxy asks for (rare)
}

// numTypes is len(xds.TypeURLs).
const numTypes = 4

// typeState is one generated type of one proxy.
type typeState struct {
	version string    // set in the cache
	setAt   time.Time // when version was set; zero once ACKed (push-to-ACK latency)
	status  TypeStatus
	seen    bool         // sent or requested: shown on /debug/syncz
	sub     subscription // the names the proxy asked for
}

// typeIndex returns the slot of a generated type, or -1.
func typeIndex(typeURL string) int {
	for i, t := range xds.TypeURLs {
		if t == typeURL {
			return i
		}
	}
	return -1
}

func (p *proxy) status(typeURL string) *TypeStatus {
	if i := typeIndex(typeURL); i >= 0 {
		p.byType[i].seen = true
		return &p.byType[i].status
	}
	if p.other == nil {
		p.other = map[string]*TypeStatus{}
	}
	ts := p.other[typeURL]
	if ts == nil {
		ts = &TypeStatus{}
		p.other[typeURL] = ts
	}
	return ts
}

func copyStatus(ts *TypeStatus) TypeStatus {
	c := *ts
	if ts.LastNack != nil {
		n := *ts.LastNack
		c.LastNack = &n
	}
	return c
}

// ShortType maps a type URL to the name Istio's debug pages use.
func ShortType(typeURL string) string {
	switch typeURL {
	case "type.googleapis.com/envoy.config.cluster.v3.Cluster":
		return "cds"
	case "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":
		return "eds"
	case "type.googleapis.com/envoy.config.listener.v3.Listener":
		return "lds"
	case "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":
		return "rds"
	}
	return typeURL
}

// Proxies returns the connected proxies sorted by ID.
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for id, p := range s.proxies {
		ps := ProxyStatus{ID: id, Generator: p.p.Generator, ConnectedAt: p.connected, Streams: p.streams, Types: map[string]TypeStatus{}}
		for i := range p.byType {
			if p.byType[i].seen {
				ps.Types[ShortType(xds.TypeURLs[i])] = copyStatus(&p.byType[i].status)
			}
		}
		for t, ts := range p.other {
			ps.Types[ShortType(t)] = copyStatus(ts)
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ProxyResources returns what the proxy with this node ID is being sent.
func (s *Server) ProxyResources(id string) (*xds.Resources, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[id]
	if !ok || p.res == nil {
		return nil, false
	}
	return p.res, true
}
