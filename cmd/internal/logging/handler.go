package logging

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
)

// Handler filters records by the level of their logger's scope, then passes
// them to an inner handler (slog's text or JSON handler). The scope is the
// value of the last "scope" attribute added with Logger.With outside any
// group; loggers without one are in the default scope.
type Handler struct {
	inner   slog.Handler
	levels  *atomic.Pointer[Levels] // shared by every derived handler, so SetLevels reaches them all
	scope   string
	grouped bool // inside WithGroup a "scope" key is the caller's data, not ours
}

// NewHandler wraps inner, which should accept every level (filtering is ours).
func NewHandler(inner slog.Handler, levels Levels) *Handler {
	p := &atomic.Pointer[Levels]{}
	p.Store(&levels)
	return &Handler{inner: inner, levels: p, scope: DefaultScope}
}

// SetLevels changes the levels of this handler and every logger derived from it,
// for a future runtime endpoint; safe for concurrent use.
func (h *Handler) SetLevels(l Levels) { h.levels.Store(&l) }

// Levels returns the current levels.
func (h *Handler) Levels() Levels { return *h.levels.Load() }

func (h *Handler) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= h.levels.Load().For(h.scope)
}

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.Enabled(ctx, r.Level) { // for callers that skip Enabled
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	if !h.grouped {
		for _, a := range attrs {
			if a.Key == ScopeKey {
				c.scope = a.Value.String()
			}
		}
	}
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.grouped = true
	c.inner = h.inner.WithGroup(name)
	return &c
}

// acceptAll lets the inner handler pass everything the scope filter allowed.
var acceptAll = slog.Level(math.MinInt)
