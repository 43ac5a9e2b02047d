// Package file is istiod-lite's default registry: a directory of Istio-style
// YAML, watched with fsnotify. Every change is validated as a whole; a change
// with any error is rejected (logged, counted, kept as the last error) and the
// last good snapshot keeps serving, so nothing is ever half-applied.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/config"
	"github.com/meshlite/meshlite/istiod-lite/model"
)

// DefaultDir is istiod-lite's --configDir default.
const DefaultDir = "./examples/mesh"

// Options configure a Registry. Zero values take the documented defaults.
type Options struct {
	// Dir is the directory to read recursively (*.yaml, *.yml, *.json). Default DefaultDir.
	Dir string
	// Debounce is how long the directory must be quiet before a reload. Default 100ms.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous stream of changes can postpone a reload. Default 1s.
	MaxDelay time.Duration
	// Config tunes parsing (default namespace, domain suffix).
	Config config.Options
	// Clock drives the debounce; tests inject a fake one. Default the real clock.
	Clock clock.Clock
	// Logger defaults to slog.Default(), tagged scope=config.
	Logger *slog.Logger
	// Registerer receives the registry's metrics. Default: a private registry (not exported).
	Registerer prometheus.Registerer
}

// Status is what /debug endpoints show about the registry.
type Status struct {
	Dir           string
	Version       string    // of the snapshot being served; empty before the first load
	LastLoad      time.Time // when the served snapshot was accepted
	LastError     error     // the latest rejected change; nil if the latest attempt succeeded
	LastErrorTime time.Time
	Rejections    uint64
}

// Registry implements model.Registry over a watched directory.
type Registry struct {
	opts    Options
	log     *slog.Logger
	loader  *config.Loader // only used by the Run goroutine
	changes chan struct{}
	ready   atomic.Bool

	mu       sync.RWMutex
	current  *model.Snapshot
	status   Status
	reloaded chan struct{} // test hook: signalled after every reload attempt

	rejections prometheus.Counter
	reloads    prometheus.Counter
	lastOK     prometheus.Gauge
}

var _ model.Registry = (*Registry)(nil)

// New builds a Registry and registers its metrics. Call Run to load and watch.
func New(opts Options) (*Registry, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = time.Second
	}
	if opts.MaxDelay < opts.Debounce {
		opts.MaxDelay = opts.Debounce
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	r := &Registry{
		opts:    opts,
		log:     opts.Logger.With("scope", "config"),
		loader:  config.NewLoader(opts.Config),
		changes: make(chan struct{}, 1),
		status:  Status{Dir: opts.Dir},
		rejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "istiod_config_rejections_total",
			Help: "Config changes rejected by validation; the previous config kept serving.",
		}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "istiod_config_reloads_total",
			Help: "Attempts to load the config directory, successful or not.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "istiod_config_last_reload_successful",
			Help: "1 if the latest load of the config directory was accepted, 0 if it was rejected.",
		}),
	}
	for _, c := range []prometheus.Collector{r.rejections, r.reloads, r.lastOK} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("registering config registry metrics: %w", err)
		}
	}
	return r, nil
}

// Current returns the last good snapshot, or nil before the first load.
func (r *Registry) Current() *model.Snapshot {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.current
}

// Changes is signalled (coalescing) each time Current changes.
func (r *Registry) Changes() <-chan struct{} { return r.changes }

// Ready is true once the first load succeeded.
func (r *Registry) Ready() bool { return r.ready.Load() }

// Status reports the served version and the latest rejection, for debug pages.
func (r *Registry) Status() Status {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.status
}

// Run loads the directory, failing with every validation message if that first
// load is invalid, then watches it until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("starting file watcher for %s: %w", r.opts.Dir, err)
	}
	defer w.Close()
	// Watch before the first load so a change made during it is not missed.
	if err := r.syncWatches(w); err != nil {
		return fmt.Errorf("watching config directory %s (check --configDir): %w", r.opts.Dir, err)
	}
	if err := r.reload(); err != nil {
		return fmt.Errorf("initial config in %s is invalid; fix these errors and restart:\n%w", r.opts.Dir, err)
	}

	d := &debouncer{clk: r.opts.Clock, delay: r.opts.Debounce, maxDelay: r.opts.MaxDelay}
	defer d.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Chmod alone never changes content; everything else may, including
			// events on hidden names (a ConfigMap's ..data swap).
			if ev.Op == fsnotify.Chmod {
				continue
			}
			r.log.Debug("config event", "event", ev.String())
			d.trigger()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: reload to be sure we did not miss one.
			r.log.Warn("config watcher error; reloading", "dir", r.opts.Dir, "error", err)
			d.trigger()
		case <-d.C():
			d.fired()
			// Watch new directories before reading them: a file changed after
			// the read must raise an event, or it would go unseen until some
			// unrelated change (a file removed just after a reload was lost
			// this way when the watch came second).
			if err := r.syncWatches(w); err != nil {
				r.log.Warn("cannot watch config directory", "dir", r.opts.Dir, "error", err)
			}
			_ = r.reload() // rejections are logged and counted inside
		}
	}
}

// reload validates the whole directory and swaps the snapshot only when it is
// valid and different.
func (r *Registry) reload() error {
	r.reloads.Inc()
	defer r.notifyReloaded()
	set, err := r.loader.Load([]string{r.opts.Dir})
	if err != nil {
		r.reject(err)
		return err
	}
	snap := config.Build(set)
	now := r.opts.Clock.Now()
	r.mu.Lock()
	r.status.LastError, r.status.LastErrorTime = nil, time.Time{}
	if r.current != nil && r.current.Version == snap.Version {
		r.mu.Unlock()
		r.lastOK.Set(1)
		return nil
	}
	old := ""
	if r.current != nil {
		old = r.current.Version
	}
	r.current = snap
	r.status.Version, r.status.LastLoad = snap.Version, now
	r.mu.Unlock()
	r.lastOK.Set(1)
	r.ready.Store(true)
	r.log.Info("config accepted", "dir", r.opts.Dir, "version", snap.Version, "previous", old, "objects", len(snap.Objects), "services", len(snap.Services))
	select {
	case r.changes <- struct{}{}:
	default:
	}
	return nil
}

func (r *Registry) reject(err error) {
	r.rejections.Inc()
	r.lastOK.Set(0)
	r.mu.Lock()
	r.status.LastError, r.status.LastErrorTime = err, r.opts.Clock.Now()
	r.status.Rejections++
	serving := r.status.Version
	r.mu.Unlock()
	var errs config.Errors
	if errors.As(err, &errs) {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		r.log.Error("config change rejected; still serving the last good config", "dir", r.opts.Dir, "serving", serving, "errors", len(errs), "details", msgs)
		return
	}
	r.log.Error("config change rejected; still serving the last good config", "dir", r.opts.Dir, "serving", serving, "error", err)
}

func (r *Registry) notifyReloaded() {
	r.mu.RLock()
	ch := r.reloaded
	r.mu.RUnlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// syncWatches watches the root and every non-hidden subdirectory; fsnotify is
// not recursive, and new directories must be picked up as they appear.
// Watching directories rather than files is what makes editors'
// rename-and-replace and ConfigMap ..data symlink swaps visible.
func (r *Registry) syncWatches(w *fsnotify.Watcher) error {
	root := r.opts.Dir
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil // vanished while walking; the next event re-syncs
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && len(d.Name()) > 0 && d.Name()[0] == '.' {
			return filepath.SkipDir
		}
		if err := w.Add(path); err != nil && path == root {
			return err
		}
		return nil
	})
}

// MarshalJSON renders the status for /debug pages: errors become strings, one
// per validation problem, since an error value would marshal as {}.
func (s Status) MarshalJSON() ([]byte, error) {
	out := struct {
		Dir           string    `json:"dir"`
		Version       string    `json:"version,omitempty"`
		LastLoad      time.Time `json:"lastLoad,omitzero"`
		LastError     []string  `json:"lastError,omitempty"`
		LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
		Rejections    uint64    `json:"rejections"`
	}{Dir: s.Dir, Version: s.Version, LastLoad: s.LastLoad, LastErrorTime: s.LastErrorTime, Rejections: s.Rejections}
	var errs config.Errors
	switch {
	case errors.As(s.LastError, &errs):
		for _, e := range errs {
			out.LastError = append(out.LastError, e.Error())
		}
	case s.LastError != nil:
		out.LastError = []string{s.LastError.Error()}
	}
	return json.Marshal(out)
}
