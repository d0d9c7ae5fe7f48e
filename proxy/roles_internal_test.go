package proxy

import (
	"testing"
	"time"

	"vncedge/rfbparse"
)

// TestRegistrySessionIndex: watchers are found through the per-session
// index, which forgets swept pairs (no growth with viewers that come and go).
func TestRegistrySessionIndex(t *testing.T) {
	r := newRegistry()
	attach := func(msg bool, client, id string, role Role, ctl rfbparse.Interactor) (*session, *pair) {
		s := &session{}
		rt := &Route{Kind: "task", ID: id, Organization: "o1", ClientID: client, Control: ctl, Role: role}
		var p *pair
		var ok bool
		if msg {
			p, _, _, ok = r.attachMessages(&msgChannel{s: s}, rt)
		} else {
			p, _, _, ok = r.attachVNC(s, rt)
		}
		if !ok {
			t.Fatal("attach refused")
		}
		s.pair = p
		return s, p
	}
	ctlVNC, ctl := attach(false, "c", "t1", RoleController, rfbparse.User)
	_, watcher := attach(true, "w", "t1", RoleViewer, rfbparse.Agent)
	other, _ := attach(false, "o", "t2", RoleController, rfbparse.User)
	if got := r.shownControl(watcher, RoleViewer, rfbparse.Agent); got != rfbparse.User {
		t.Errorf("watcher of t1 sees %v, want user (c drives)", got)
	}
	r.setControl(ctl, rfbparse.Agent)
	if got := r.shownControl(watcher, RoleViewer, rfbparse.Agent); got != rfbparse.Agent {
		t.Errorf("after c ceded the watcher sees %v; t2's driver must not count", got)
	}
	r.detach(ctlVNC)
	r.detach(other)
	r.sweep(time.Now().Add(time.Hour), time.Minute)
	if sp := r.bySession[sessionKey{"task", "t2"}]; sp != nil || len(r.bySession) != 1 {
		t.Errorf("index after sweep: %v, want only t1's watcher", r.bySession)
	}
}
