package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"vncedge/proxy"
	"vncedge/proxy/resolve"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// reloadDebounce gathers the burst of events one save makes (an editor's
// write-and-rename, Kubernetes' symlink swap) into one reload.
const reloadDebounce = 250 * time.Millisecond

// reloadFunc re-reads configuration files; changed is false when their bytes
// are those in use. On error the configuration in use stays.
type reloadFunc func() (changed bool, err error)

// configSource returns the files behind the configuration in use and how to
// reload them: the sessions file, or the token key files. None for the other
// resolvers.
func configSource(o *options, cfg proxy.Config, static *proxy.StaticResolver) (files []string, reload reloadFunc) {
	if static != nil {
		return []string{o.sessions}, func() (bool, error) { return static.Reload(o.sessions) }
	}
	if ts, ok := cfg.Resolver.(*tokenSource); ok {
		return ts.files, ts.reload
	}
	return nil, nil
}

// tokenSource is the token resolver built from the key files, swapped whole
// when they change. Live sessions keep the resolver that admitted them (it is
// their Verifier: their tokens still expire).
type tokenSource struct {
	o     *options
	ctl   rfbparse.Interactor
	files []string
	mu    sync.Mutex // serialises reloads
	raw   []byte     // the key files' bytes in use
	cur   atomic.Pointer[resolve.TokenResolver]
}

// newTokenSource reads the key files named by --token-secret-file and
// --token-public-keys.
func newTokenSource(o *options, ctl rfbparse.Interactor) (*tokenSource, error) {
	ts := &tokenSource{o: o, ctl: ctl}
	if o.tokenSecretFile != "" {
		ts.files = append(ts.files, o.tokenSecretFile)
	}
	if o.tokenPublicKeys != "" {
		ts.files = append(ts.files, strings.Split(o.tokenPublicKeys, ",")...)
	}
	if _, err := ts.reload(); err != nil {
		return nil, err
	}
	return ts, nil
}

// Resolve implements proxy.Resolver with the resolver in use.
func (ts *tokenSource) Resolve(ctx context.Context, r *upgrade.Request) (*proxy.Route, error) {
	return ts.cur.Load().Resolve(ctx, r)
}

func (ts *tokenSource) reload() (bool, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var raw []byte
	for _, f := range ts.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return false, fmt.Errorf("token key file: %w", err)
		}
		raw = append(append(raw, b...), 0)
	}
	if ts.cur.Load() != nil && bytes.Equal(raw, ts.raw) {
		return false, nil
	}
	o := ts.o
	tc := resolve.TokenConfig{VNCPort: o.vncPort, UpstreamAPIKey: o.upstreamAPIKey, DefaultControl: ts.ctl, Leeway: 5 * time.Second}
	if o.tokenSecretFile != "" {
		secret, err := os.ReadFile(o.tokenSecretFile)
		if err != nil {
			return false, fmt.Errorf("--token-secret-file: %w", err)
		}
		tc.HS256Secret = []byte(strings.TrimSpace(string(secret)))
	}
	if o.tokenPublicKeys != "" {
		keys, err := resolve.LoadPublicKeys(strings.Split(o.tokenPublicKeys, ",")...)
		if err != nil {
			return false, fmt.Errorf("--token-public-keys: %w", err)
		}
		tc.PublicKeys = keys
	}
	tr, err := resolve.NewTokenResolver(tc)
	if err != nil {
		return false, err
	}
	ts.cur.Store(tr)
	ts.raw = raw
	return true, nil
}

// watcher reloads the configuration when its files change (fsnotify on
// their directories: Kubernetes updates a mounted Secret or ConfigMap by
// swapping a symlink, which a watch on the file itself never sees) and on
// SIGHUP, debounced, with a log line and a metric per reload.
type watcher struct {
	files    []string
	reload   reloadFunc
	log      *slog.Logger
	count    *tracing.ReloadCounter
	debounce time.Duration
	hup      chan struct{}
	targets  []string      // symlink targets of files, also watched (reload_links.go)
	watching chan struct{} // closed once run has set up its watches
}

func newWatcher(files []string, reload reloadFunc, log *slog.Logger, count *tracing.ReloadCounter) *watcher {
	clean := make([]string, len(files))
	for i, f := range files {
		clean[i] = filepath.Clean(f) // fsnotify reports cleaned names: "a/../s.yaml" is "s.yaml"
	}
	return &watcher{files: clean, reload: reload, log: log, count: count, debounce: reloadDebounce, hup: make(chan struct{}, 1), watching: make(chan struct{})}
}

// kick asks for a reload (SIGHUP); any goroutine.
func (w *watcher) kick() {
	select {
	case w.hup <- struct{}{}:
	default:
	}
}

// relevant reports whether an event in a watched directory may change one
// of the files: the file's own name, or Kubernetes' ..data links.
func (w *watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if w.isTarget(name) {
		return true // the file behind a symlink (reload_links.go)
	}
	dir, base := filepath.Dir(name), filepath.Base(name)
	for _, f := range w.files {
		if filepath.Dir(f) == dir && (base == filepath.Base(f) || strings.HasPrefix(base, "..")) {
			return true
		}
	}
	return false
}

// run watches until done is closed. Without fsnotify (e.g. out of inotify
// instances) it still serves SIGHUP and says so.
func (w *watcher) run(done <-chan struct{}) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	seen := map[string]bool{}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.log.Warn("cannot watch configuration files; reload with SIGHUP", "err", err)
	} else {
		defer fw.Close()
		for _, f := range w.files {
			dir := filepath.Dir(f)
			if seen[dir] {
				continue
			}
			seen[dir] = true
			if err := fw.Add(dir); err != nil {
				w.log.Warn("cannot watch a configuration directory; reload with SIGHUP", "dir", dir, "err", err)
			}
		}
		events, errs = fw.Events, fw.Errors
		w.followLinks(fw, seen)
	}
	close(w.watching)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending time.Time // first request not yet served
	arm := func() {
		// Debounce, but never past 20 periods: a file written without pause
		// is still reloaded.
		if pending.IsZero() {
			pending = time.Now()
		} else if time.Since(pending) > 20*w.debounce {
			return
		}
		timer.Reset(w.debounce)
	}
	for {
		select {
		case <-done:
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.relevant(ev.Name) {
				arm()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("configuration watch", "err", err)
		case <-w.hup:
			arm()
		case <-timer.C:
			pending = time.Time{}
			w.reloadNow()
			if fw != nil {
				w.followLinks(fw, seen) // a link may point elsewhere now
			}
		}
	}
}

// reloadNow reloads once and reports it.
func (w *watcher) reloadNow() {
	changed, err := w.reload()
	switch {
	case err != nil:
		w.count.Add(tracing.ReloadError)
		w.log.Error("configuration reload failed; keeping the configuration in use", "files", w.files, "err", err)
	case changed:
		w.count.Add(tracing.ReloadOK)
		w.log.Info("configuration reloaded", "files", w.files)
	default:
		w.count.Add(tracing.ReloadUnchanged)
		w.log.Info("configuration unchanged", "files", w.files)
	}
}
