package proxy

import "github.com/panjf2000/gnet/v2"

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
func (s *session) admitOpen() gnet.Action {
	s.ip = ipOf(s.viewer.RemoteAddr())
	if he := s.srv.admit(s.ip); he != nil {
		return s.reject(he)
	}
	s.admitted = true
	return gnet.None
}
