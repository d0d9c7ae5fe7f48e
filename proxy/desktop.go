package proxy

import (
	"net/url"

	"vncedge/rfbparse"
)

// A desktop is one VNC server as its viewers share it: the server has one
// keyboard for all its clients, so the input policy of every VNC channel to
// it judges key presses against the modifiers held through all of them
// (rfbparse.SharedKeys). Desktops are keyed by the upstream's URL (without
// credentials) and live while a channel uses them; the map is under
// Server.mu, touched when a VNC channel starts and ends.
type desktop struct {
	keys rfbparse.SharedKeys
	refs int
}

// desktopKey names the VNC server behind u.
func desktopKey(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// shareKeys joins the session's policy stream to its desktop's keyboard, on
// the loop, before any input is relayed.
func (s *session) shareKeys() {
	if s.rfb == nil || s.srv.cfg.Policy == nil || s.route == nil || s.route.Upstream == nil {
		return
	}
	srv := s.srv
	key := desktopKey(s.route.Upstream)
	srv.mu.Lock()
	d := srv.desktops[key]
	if d == nil {
		d = &desktop{}
		srv.desktops[key] = d
	}
	d.refs++
	srv.mu.Unlock()
	s.desktop = key
	s.rfb.Share(&d.keys)
}

// unshareKeys withdraws the session's modifiers from its desktop, on the
// loop, when the viewer conn is gone (its upstream is closed by then).
func (s *session) unshareKeys() {
	if s.desktop == "" {
		return
	}
	s.rfb.Unshare()
	srv := s.srv
	srv.mu.Lock()
	if d := srv.desktops[s.desktop]; d != nil {
		if d.refs--; d.refs <= 0 {
			delete(srv.desktops, s.desktop)
		}
	}
	srv.mu.Unlock()
	s.desktop = ""
}
