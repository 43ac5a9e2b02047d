// Package modeltest holds test doubles for istiod-lite/model.
package modeltest

import (
	"context"
	"sync"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// StaticRegistry is a model.Registry whose snapshot the test sets.
type StaticRegistry struct {
	mu      sync.Mutex
	snap    *model.Snapshot
	changes chan struct{}
}

var _ model.Registry = (*StaticRegistry)(nil)

// NewStaticRegistry serves s (nil: not loaded yet, not ready).
func NewStaticRegistry(s *model.Snapshot) *StaticRegistry {
	return &StaticRegistry{snap: s, changes: make(chan struct{}, 1)}
}

func (r *StaticRegistry) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (r *StaticRegistry) Changes() <-chan struct{}      { return r.changes }
func (r *StaticRegistry) Ready() bool                   { return r.Current() != nil }

func (r *StaticRegistry) Current() *model.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

// Set replaces the snapshot and signals a change.
func (r *StaticRegistry) Set(s *model.Snapshot) {
	r.mu.Lock()
	r.snap = s
	r.mu.Unlock()
	select {
	case r.changes <- struct{}{}:
	default:
	}
}
