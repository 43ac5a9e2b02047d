package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// ack is one route-config version a sidecar ACKed, and when.
type ack struct {
	version string
	at      time.Time
}

// sidecar is one simulated Envoy sidecar on ADS: it subscribes to every
// cluster and listener (wildcard), then, as Envoy does, to the endpoints of
// its EDS clusters and to the route configs its listeners' HTTP connection
// managers name, and ACKs every response.
type sidecar struct {
	id     string
	labels map[string]any
	routes chan ack // each ACKed RDS version

	mu     sync.Mutex
	counts map[string]int // type URL -> resources last received
}

func newSidecar(i, shapes int) *sidecar {
	return &sidecar{
		id:     fmt.Sprintf("sidecar~10.%d.%d.%d~load-%d.demo~demo.svc.cluster.local", 100+i/65536, (i/256)%256, i%256, i),
		labels: map[string]any{"app": fmt.Sprintf("load-%d", i%shapes), "version": "v1"},
		routes: make(chan ack, 64),
		counts: map[string]int{},
	}
}

func (s *sidecar) resourceCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// next waits for the sidecar's next RDS ACK.
func (s *sidecar) next(ctx context.Context, timeout time.Duration, errc <-chan error) (ack, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-s.routes:
		return a, nil
	case err := <-errc:
		return ack{}, err
	case <-t.C:
		return ack{}, fmt.Errorf("sidecar %s: no route update within %s", s.id, timeout)
	case <-ctx.Done():
		return ack{}, ctx.Err()
	}
}

func (s *sidecar) run(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":       "demo",
		"SERVICE_ACCOUNT": "load",
		"LABELS":          s.labels,
		"ISTIO_VERSION":   "1.31.1",
	})
	if err != nil {
		return err
	}
	node := &core.Node{Id: s.id, Cluster: "load.demo", Metadata: md, UserAgentName: "envoy"}
	names := map[string][]string{}
	send := func(typeURL, version, nonce string) error {
		req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names[typeURL], VersionInfo: version, ResponseNonce: nonce}
		if node != nil {
			req.Node, node = node, nil
		}
		return stream.Send(req)
	}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := send(t, "", ""); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		t := resp.GetTypeUrl()
		if err := send(t, resp.GetVersionInfo(), resp.GetNonce()); err != nil {
			return err
		}
		at := time.Now()
		s.mu.Lock()
		s.counts[t] = len(resp.GetResources())
		s.mu.Unlock()
		var sub string
		var want []string
		switch t {
		case resourcev3.ClusterType:
			sub, want = resourcev3.EndpointType, edsClusters(resp.GetResources())
		case resourcev3.ListenerType:
			sub, want = resourcev3.RouteType, routeNames(resp.GetResources())
		case resourcev3.RouteType:
			select {
			case s.routes <- ack{resp.GetVersionInfo(), at}:
			default:
				return fmt.Errorf("sidecar %s: route updates not consumed", s.id)
			}
		}
		if sub != "" && !slices.Equal(want, names[sub]) {
			names[sub] = want
			if err := send(sub, "", ""); err != nil {
				return err
			}
		}
	}
}

// edsClusters names the clusters whose endpoints come from EDS.
func edsClusters(res []*anypb.Any) []string {
	var out []string
	for _, a := range res {
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			continue
		}
		if c.GetType() == cluster.Cluster_EDS {
			out = append(out, c.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// routeNames lists the RDS route configs the listeners' HTTP connection managers reference.
func routeNames(res []*anypb.Any) []string {
	seen := map[string]bool{}
	for _, a := range res {
		var l listener.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			continue
		}
		chains := append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain())
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				var m hcm.HttpConnectionManager
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&m) != nil {
					continue
				}
				if n := m.GetRds().GetRouteConfigName(); n != "" {
					seen[n] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
