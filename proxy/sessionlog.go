package proxy

import "net/url"

// logStart writes the session-start line, once the viewer has its 101: the
// session's identity and trace ids (from logger), the channel, and for a VNC
// channel the upstream's scheme and host (never credentials).
func (s *session) logStart() {
	attrs := []any{"channel", "vnc"}
	if s.mode == modeMessages {
		attrs[1] = "messages"
	} else if rt := s.route; rt != nil && rt.Upstream != nil {
		attrs = append(attrs, "upstream", upstreamName(rt.Upstream))
	}
	if s.rfb != nil {
		attrs = append(attrs, "control", s.rfb.Interactor().String())
	}
	s.logger().Info("session start", attrs...)
}

// upstreamName is an upstream for logs: scheme and host (or a unix socket's
// path), never credentials or the query.
func upstreamName(u *url.URL) string {
	if u.Scheme == "unix" {
		return "unix://" + u.Path
	}
	return u.Scheme + "://" + u.Host
}
