package secret

import (
	"sync"
	"time"
)

// Status is the readiness view of a certificate source.
type Status struct {
	// HasCert is true once a workload key pair exists.
	HasCert bool
	// Expiry of the current leaf (zero without one).
	Expiry time.Time
	// Delivered is true once the current or an earlier certificate was served to
	// Envoy (SDS ACK) or written to OUTPUT_CERTS; DeliveredVia says which.
	Delivered    bool
	DeliveredVia string
	// LastError is the most recent failure to obtain or load a certificate; it
	// is cleared by the next success.
	LastError error
	// Permanent is set when LastError cannot be fixed by retrying (the CA
	// refused the caller or the request); the source stops retrying.
	Permanent bool
}

// Hub implements the shared half of Source: current values, status and
// per-resource subscriptions. Sources embed it and call Set* when they change.
type Hub struct {
	mu       sync.Mutex
	workload *Workload
	bundle   *Bundle
	status   Status
	subs     map[string]map[*subscription]struct{}
}

type subscription struct{ ch chan struct{} }

// Workload implements Source.
func (h *Hub) Workload() *Workload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.workload
}

// Bundle implements Source.
func (h *Hub) Bundle() *Bundle {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bundle
}

// Status implements Source.
func (h *Hub) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// MarkDelivered implements Source.
func (h *Hub) MarkDelivered(how string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.status.Delivered {
		return
	}
	h.status.Delivered, h.status.DeliveredVia = true, how
}

// Subscribe implements Source.
func (h *Hub) Subscribe(resource string) (<-chan struct{}, func()) {
	s := &subscription{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[string]map[*subscription]struct{}{}
	}
	if h.subs[resource] == nil {
		h.subs[resource] = map[*subscription]struct{}{}
	}
	h.subs[resource][s] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs[resource], s)
			h.mu.Unlock()
		})
	}
}

// SetWorkload publishes a new key pair and clears any error. It reports whether
// the value changed (and subscribers of ResourceDefault were signalled).
func (h *Hub) SetWorkload(w *Workload) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status.LastError, h.status.Permanent = nil, false
	if h.workload.Equal(w) {
		return false
	}
	h.workload = w
	h.status.HasCert = w != nil
	if w != nil {
		h.status.Expiry = w.NotAfter()
	}
	h.notifyLocked(ResourceDefault)
	return true
}

// SetBundle publishes a new trust bundle; subscribers of ResourceRoot are
// signalled only if the roots changed.
func (h *Hub) SetBundle(b *Bundle) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bundle.Equal(b) {
		return false
	}
	h.bundle = b
	h.notifyLocked(ResourceRoot)
	return true
}

// SetError records a failure. The current workload, if any, is kept: an
// expiring certificate is better than none while the source recovers.
func (h *Hub) SetError(err error, permanent bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status.LastError, h.status.Permanent = err, permanent
}

func (h *Hub) notifyLocked(resource string) {
	for s := range h.subs[resource] {
		select {
		case s.ch <- struct{}{}:
		default: // a signal is already pending; the reader will see the latest value
		}
	}
}
