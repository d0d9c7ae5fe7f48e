package main

// Attacks on the sessions-file reload (issue 14). Every test here failed on
// the code it was written against; each says what the attack is.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbtest"
)

// TestPlatAttackReloadLogLeaksAPIKey: ATTACK (careless operator) — an
// operator adds a viewer key the way "key: role" suggests
// ("- sk_live_…: viewer"). The reload is refused, rightly, but the error
// line the binary logs quotes the API key as an "unknown key": the secret
// is now in the log pipeline. The log must name the file and line only.
func TestPlatAttackReloadLogLeaksAPIKey(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	if err := os.WriteFile(f, []byte(sessionsDoc(vnc.Addr(), "k1")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--sessions", f)
	const secret = "sk_live_PLATATTACK4711"
	bad := strings.Replace(sessionsDoc(vnc.Addr(), "k1"), "api_keys: [k1]", "api_keys: [k1, {"+secret+": viewer}]", 1)
	if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	l := p.awaitLog(t, "configuration reload failed")
	if strings.Contains(l, secret) {
		t.Errorf("the reload error log line quotes the API key:\n%s", l)
	}
}

// TestPlatAttackWatcherSymlinkElsewhere: ATTACK (careless operator) — the
// sessions file is a symlink into another directory (an Ansible/Nix/
// alternatives-managed config, a hostPath or subPath mount): the watcher
// watches only the symlink's directory, so an edit of the file itself —
// even written through the symlink's own path — is never seen, and the old
// table (with a revoked key) stays in use until someone sends SIGHUP. The
// README promises a reload when the file changes.
func TestPlatAttackWatcherSymlinkElsewhere(t *testing.T) {
	confDir, realDir := t.TempDir(), t.TempDir()
	target := filepath.Join(realDir, "sessions.yaml")
	if err := os.WriteFile(target, []byte("v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(confDir, "sessions.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, got := startWatcher(t, link)
	if err := os.WriteFile(link, []byte("v2"), 0o600); err != nil { // through the symlink
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "v2" {
			t.Errorf("reload read %q, want v2", s)
		}
	case <-time.After(5 * time.Second): // failure bound only: a reload comes within 250 ms
		t.Fatal("an edit of the symlinked sessions file never caused a reload")
	}
}
