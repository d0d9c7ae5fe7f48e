package proxy

import (
	"fmt"
	"strings"
)

// LifecycleHeld lists what srv still holds for sessions (for the lifecycle
// attack tests, package proxy_test): sessions in its set, admitted slots,
// per-IP and per-organization counts, registry pairs with a live channel,
// and the active and open-socket counters. It is "" when nothing is held.
func LifecycleHeld(srv *Server) string {
	var out []string
	srv.mu.Lock()
	if n := len(srv.sessions); n > 0 {
		out = append(out, fmt.Sprintf("%d sessions in the set", n))
	}
	if srv.admitted != 0 {
		out = append(out, fmt.Sprintf("admitted %d", srv.admitted))
	}
	if len(srv.perIP) > 0 {
		out = append(out, fmt.Sprintf("per-IP %v", srv.perIP))
	}
	if len(srv.perOrg) > 0 {
		out = append(out, fmt.Sprintf("per-org %v", srv.perOrg))
	}
	srv.mu.Unlock()
	srv.reg.mu.Lock()
	for k, p := range srv.reg.pairs {
		if p.vnc != nil {
			out = append(out, fmt.Sprintf("pair %s holds a VNC channel", k.clientID))
		}
		if p.msg != nil {
			out = append(out, fmt.Sprintf("pair %s holds a message channel", k.clientID))
		}
	}
	srv.reg.mu.Unlock()
	if n := srv.active.Load(); n != 0 {
		out = append(out, fmt.Sprintf("active %d", n))
	}
	if n := srv.conns.Load(); n != 0 {
		out = append(out, fmt.Sprintf("conns %d", n))
	}
	return strings.Join(out, "; ")
}
