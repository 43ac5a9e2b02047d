// Package aggregate merges several registries into one (`--registries
// Kubernetes,File`): services from all of them, a hostname served by the
// first registry that has it, config kinds concatenated, the mesh config of
// the first. It is ready only when every member is.
package aggregate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Registry implements model.Registry over members, in priority order.
type Registry struct {
	members []model.Registry
	changes chan struct{}

	mu      sync.Mutex
	current *model.Snapshot
	from    []*model.Snapshot // the member snapshots current was merged from
}

var _ model.Registry = (*Registry)(nil)

// New aggregates members; earlier ones win a hostname served by several.
func New(members ...model.Registry) (*Registry, error) {
	if len(members) == 0 {
		return nil, errors.New("aggregate registry: no registries; choose at least one of --registries Kubernetes,File")
	}
	return &Registry{members: members, changes: make(chan struct{}, 1)}, nil
}

// Run runs every member and re-merges on each member change until ctx ends.
// A member that cannot start stops them all.
func (r *Registry) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, m := range r.members {
		g.Go(func() error { return m.Run(ctx) })
		g.Go(func() error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-m.Changes():
					r.signal()
				}
			}
		})
	}
	return g.Wait()
}

func (r *Registry) signal() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// Changes is signalled when any member changes.
func (r *Registry) Changes() <-chan struct{} { return r.changes }

// Ready is true when every member is ready.
func (r *Registry) Ready() bool {
	for _, m := range r.members {
		if !m.Ready() {
			return false
		}
	}
	return true
}

// Current merges the members' current snapshots; nil until each has one, so
// that proxies never get a mesh missing a whole registry.
func (r *Registry) Current() *model.Snapshot {
	snaps := make([]*model.Snapshot, len(r.members))
	for i, m := range r.members {
		if snaps[i] = m.Current(); snaps[i] == nil {
			return nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current != nil && same(r.from, snaps) {
		return r.current
	}
	r.current, r.from = Merge(snaps...), snaps
	return r.current
}

func same(a, b []*model.Snapshot) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// Merge combines snapshots, earlier ones first. Services keep their sorted
// order by hostname.
func Merge(snaps ...*model.Snapshot) *model.Snapshot {
	if len(snaps) == 1 {
		return snaps[0]
	}
	out := &model.Snapshot{}
	seen := map[string]bool{}
	h := sha256.New()
	for _, s := range snaps {
		h.Write([]byte(s.Version + "\x00"))
		if out.Mesh == nil {
			out.Mesh = s.Mesh
		}
		for _, svc := range s.Services {
			if !seen[svc.Hostname] {
				seen[svc.Hostname] = true
				out.Services = append(out.Services, svc)
			}
		}
		out.VirtualServices = append(out.VirtualServices, s.VirtualServices...)
		out.DestinationRules = append(out.DestinationRules, s.DestinationRules...)
		out.Gateways = append(out.Gateways, s.Gateways...)
		out.Sidecars = append(out.Sidecars, s.Sidecars...)
		out.ServiceEntries = append(out.ServiceEntries, s.ServiceEntries...)
		out.WorkloadEntries = append(out.WorkloadEntries, s.WorkloadEntries...)
		out.PeerAuthentications = append(out.PeerAuthentications, s.PeerAuthentications...)
		out.AuthorizationPolicies = append(out.AuthorizationPolicies, s.AuthorizationPolicies...)
		out.Objects = append(out.Objects, s.Objects...)
	}
	sortServices(out.Services)
	out.Version = hex.EncodeToString(h.Sum(nil))[:16]
	return out
}
