package main

import (
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// A configuration file may be a symlink into another directory (an
// Ansible-, Nix- or alternatives-managed file, a hostPath or subPath mount):
// an edit of the file itself, even through the link, is an event only in
// the target's directory. The watcher therefore watches each link target's
// directory too, and looks again after every reload (the link may now point
// elsewhere). Kubernetes' own symlink swap is still seen in the link's
// directory (its ..data entries).

// followLinks resolves the watched files' symlinks, remembers (anew) the
// targets that differ from the files, and watches their directories (fw may be nil:
// SIGHUP only). seen holds the directories watched so far. Only the
// watcher's goroutine calls it.
func (w *watcher) followLinks(fw *fsnotify.Watcher, seen map[string]bool) {
	w.targets = w.targets[:0] // a link swapped since points elsewhere now
	for _, f := range w.files {
		r, err := filepath.EvalSymlinks(f)
		if err != nil {
			continue
		}
		r = filepath.Clean(r)
		if r == f || w.isTarget(r) {
			continue
		}
		w.targets = append(w.targets, r)
		if dir := filepath.Dir(r); fw != nil && !seen[dir] {
			seen[dir] = true
			if err := fw.Add(dir); err != nil {
				w.log.Warn("cannot watch a configuration link's target directory; reload with SIGHUP", "dir", dir, "err", err)
			}
		}
	}
}

// isTarget reports whether name (cleaned) is a remembered link target.
func (w *watcher) isTarget(name string) bool {
	for _, t := range w.targets {
		if t == name {
			return true
		}
	}
	return false
}
