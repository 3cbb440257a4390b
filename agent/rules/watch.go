package rules

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultPollInterval is how often a Watcher looks at the rules directories.
const DefaultPollInterval = 2 * time.Second

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// Interval between polls (0: DefaultPollInterval).
	Interval time.Duration
	// OnReload is called with each new set after the engine switched to it.
	OnReload func(*Set)
	// OnError is called when changed files fail to compile; the engine
	// keeps its set.
	OnError func(error)
	// Load compiles the set after a change (nil: Load(dirs...)); the
	// daemon gives a Loader's, to keep the server's rule set in it.
	Load func() (*Set, error)
}

// Watcher reloads an engine's rules when the files of the rules directories
// change. It polls the name, modification time and size of every *.yaml
// file rather than relying on inotify, so that it also sees files on
// network and overlay file systems and directories created later.
type Watcher struct {
	engine *Engine
	dirs   []string
	opts   WatchOptions

	// mu makes loading and swapping one step, so that a Reload and a Check
	// never swap in a set compiled before the other's.
	mu   sync.Mutex
	last map[string]fileStamp
}

type fileStamp struct {
	mtime time.Time
	size  int64
}

// NewWatcher returns a watcher for dirs that swaps engine's set. The set
// the engine holds is taken to match the files as they are now.
func NewWatcher(engine *Engine, dirs []string, opts WatchOptions) *Watcher {
	if opts.Interval <= 0 {
		opts.Interval = DefaultPollInterval
	}
	if opts.Load == nil {
		opts.Load = func() (*Set, error) { return Load(dirs...) }
	}
	w := &Watcher{engine: engine, dirs: dirs, opts: opts}
	w.last, _ = w.stamps()
	return w
}

// stamps lists the rule files of the directories with their stamps.
func (w *Watcher) stamps() (map[string]fileStamp, error) {
	out := make(map[string]fileStamp)
	for _, dir := range w.dirs {
		names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("list rules in %s: %w", dir, err)
		}
		for _, n := range names {
			fi, err := os.Stat(n)
			if err != nil {
				continue // removed while listing: the next poll sees it gone
			}
			out[n] = fileStamp{mtime: fi.ModTime(), size: fi.Size()}
		}
	}
	return out, nil
}

// Check polls once: when a file was added, removed or changed it reloads,
// swaps the engine's set and reports true. A set that fails to compile is
// returned as the error (and given to OnError); the engine keeps the last
// good set, and the same files are not tried again until they change.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now, err := w.stamps()
	if err != nil {
		w.report(err)
		return false, err
	}
	if maps.Equal(now, w.last) {
		return false, nil
	}
	w.last = now
	if _, err := w.reloadLocked(); err != nil {
		w.report(err)
		return false, err
	}
	return true, nil
}

// Reload compiles the set now, whether or not files changed (the daemon
// calls it when the server's rule set changed), swaps the engine's set and
// returns it. On an error the engine keeps its set; OnError is not called.
func (w *Watcher) Reload() (*Set, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now, err := w.stamps(); err == nil {
		w.last = now
	}
	return w.reloadLocked()
}

// reloadLocked loads, swaps and tells OnReload. w.mu must be held.
func (w *Watcher) reloadLocked() (*Set, error) {
	set, err := w.opts.Load()
	if err != nil {
		return nil, fmt.Errorf("reload rules: %w", err)
	}
	w.engine.Swap(set)
	if w.opts.OnReload != nil {
		w.opts.OnReload(set)
	}
	return set, nil
}

func (w *Watcher) report(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// Run polls until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = w.Check()
		}
	}
}
