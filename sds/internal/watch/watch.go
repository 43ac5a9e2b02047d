// Package watch reports changes to a few files in a way that survives how
// Kubernetes updates Secret and ConfigMap volumes: files are symlinks through a
// `..data` symlink to a timestamped directory, and an update swaps `..data`
// atomically and deletes the old directory. Watching the files themselves (as
// Istio does) loses the watch after the first swap because the watched inode is
// gone. Here the containing directories are watched — both the directory the
// path is in and the directory its symlinks resolve to — and the set of
// watches is recomputed after every event, so any number of swaps, a deleted
// and recreated directory, or a file that appears later are all seen.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options configures Run.
type Options struct {
	// Paths are the files to follow.
	Paths []string
	// Poll, when positive, also calls onChange periodically: a safety net for
	// filesystems where inotify is not delivered (some network volumes).
	Poll   time.Duration
	Logger *slog.Logger
}

// Run calls onChange (from a single goroutine, never concurrently) once the
// watches are in place and then whenever a file in opts.Paths may have
// changed, until ctx is done. onChange must re-read
// the files and decide whether anything really changed.
func Run(ctx context.Context, opts Options, onChange func()) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %v: %w", opts.Paths, err)
	}
	defer w.Close()
	watched := map[string]bool{}
	resync := func() {
		want := dirsFor(opts.Paths)
		for d := range want {
			if !watched[d] {
				if err := w.Add(d); err != nil {
					log.Debug("cannot watch directory yet", "dir", d, "err", err)
					continue
				}
				watched[d] = true
			}
		}
		for d := range watched {
			if !want[d] {
				_ = w.Remove(d) // may already be gone with the directory
				delete(watched, d)
			}
		}
	}
	resync()
	// Anything that changed before the watches existed is caught here.
	onChange()
	var tick <-chan time.Time
	if opts.Poll > 0 {
		t := time.NewTicker(opts.Poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 && watched[ev.Name] {
				// A watched directory went away; inotify dropped its watch.
				delete(watched, ev.Name)
			}
			drain(w)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("file watch error; changes may be picked up late", "paths", opts.Paths, "err", err)
		case <-tick:
		}
		resync()
		onChange()
	}
}

// drain swallows events already queued: they are covered by the reload that
// follows, which collapses a burst (a whole ..data swap) into one or two reloads.
func drain(w *fsnotify.Watcher) {
	for {
		select {
		case <-w.Events:
		default:
			return
		}
	}
}

// dirsFor returns the directories to watch for paths: each path's directory,
// the directory of every symlink hop on the way to the final file, and for a
// directory that does not exist yet its closest existing ancestor.
func dirsFor(paths []string) map[string]bool {
	out := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		out[existingDir(filepath.Dir(abs))] = true
		cur := abs
		for range 16 { // bounded: a symlink loop must not hang the watcher
			fi, err := os.Lstat(cur)
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				break
			}
			target, err := os.Readlink(cur)
			if err != nil {
				break
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			cur = target
			out[existingDir(filepath.Dir(cur))] = true
		}
	}
	return out
}

func existingDir(d string) string {
	for {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			// Resolve so one directory reached through two names (..data and
			// ..2024_…) is watched once: inotify keys watches by inode.
			if real, err := filepath.EvalSymlinks(d); err == nil {
				return real
			}
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return d
		}
		d = parent
	}
}
