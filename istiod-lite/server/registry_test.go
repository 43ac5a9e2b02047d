package server

import (
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// staticRegistry is a model.Registry whose snapshot the test sets.
type staticRegistry struct {
	mu      sync.Mutex
	snap    *model.Snapshot
	changes chan struct{}
}

func newStaticRegistry(s *model.Snapshot) *staticRegistry {
	return &staticRegistry{snap: s, changes: make(chan struct{}, 1)}
}

func (r *staticRegistry) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (r *staticRegistry) Changes() <-chan struct{}      { return r.changes }
func (r *staticRegistry) Ready() bool                   { return r.Current() != nil }

func (r *staticRegistry) Current() *model.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

// Set publishes s and signals a change, coalescing like a real registry.
func (r *staticRegistry) Set(s *model.Snapshot) {
	r.mu.Lock()
	r.snap = s
	r.mu.Unlock()
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// quiet keeps test output to failures; run with -v and change it to see the server's log.
var quiet = Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
