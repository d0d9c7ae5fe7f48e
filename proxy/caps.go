package proxy

import (
	"context"
	"vncedge/proxy/upgrade"
)

// admission is what a session holds of the server's caps, released by finish.
type admission struct {
	admitted  bool
	ipPending bool   // the per-IP count waits for the real address
	ip        string // the address counted against the per-IP cap
	org       string // organization whose slot this session holds (orgHeld)
	orgHeld   bool

	dialCancel context.CancelFunc // stops the dial or resolve in flight (stDialing)
}

// Caps are exact: a viewer is counted against the total (MaxSessions) and
// per-IP (MaxPerIP) caps when it is accepted, before any byte is read, so
// idle or slow sockets cannot hold more than their share; the handshake
// timeout closes sockets that send no complete request head. An
// organization's slot (MaxPerOrg) is taken off the loop after the resolve
// and handed to the session with the dial result (handoff.go): released
// with the organization it was taken for, also when the dial fails or the
// viewer leaves mid-dial. A paused upstream (backpressure) stays counted
// in the open-socket count (MaxConns) while its dup'd descriptor is open.

// admitOpen counts a new viewer against the total and per-IP caps, on its
// loop in OnOpen. Over a cap the viewer gets the HTTP refusal at once and
// is closed.
//
// Behind a load balancer (--proxy-protocol, or a peer in --trusted-proxies)
// the accept-time address is the balancer's: the per-IP count then waits
// for the real address, which admitRealIP counts once the PROXY header or
// the request head has named it.
func (s *session) admitOpen() bool {
	ip := ipOf(s.viewerAddr())
	if s.addrMayChange(ip) {
		ip, s.ipPending = "", true
	}
	if he := s.srv.admit(ip); he != nil {
		s.refuse(he)
		return false
	}
	s.ip, s.admitted = ip, true
	return true
}

// addrMayChange reports whether the viewer's real address is still to come
// (a PROXY header not read yet, or a trusted proxy's forwarded fields).
func (s *session) addrMayChange(ip string) bool {
	return s.srv.cfg.ProxyProtocol && !s.proxied || inPrefixes(ip, s.srv.cfg.TrustedProxies)
}

// addrMayChangeFor is addrMayChange for a TLS viewer before its handshake:
// behind a balancer its accept-time address is the balancer's.
func (s *Server) addrMayChangeFor(ip string) bool {
	return s.cfg.ProxyProtocol || inPrefixes(ip, s.cfg.TrustedProxies)
}

// admitRealIP counts the viewer's real address against the per-IP cap, once
// it is known (after the request head), if admitOpen could not.
func (s *session) admitRealIP() *upgrade.Error {
	if !s.ipPending || !s.admitted {
		return nil
	}
	ip := ipOf(s.viewerAddr())
	if he := s.srv.admitIP(ip); he != nil {
		return he
	}
	s.ip, s.ipPending = ip, false
	return nil
}
