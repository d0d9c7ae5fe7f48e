package proxy

import "net/url"

// logStart writes the session-start line, once the viewer has its 101: the
// session's identity and trace ids (from logger), the channel, and for a VNC
// channel the upstream's scheme and host (never credentials).
func (s *session) logStart() {
	attrs := []any{"channel", s.channel()}
	if rt := s.route; s.msg == nil && rt != nil && rt.Upstream != nil {
		attrs = append(attrs, "upstream", upstreamName(rt.Upstream))
	}
	if s.rfb != nil {
		attrs = append(attrs, "control", s.rfb.Interactor().String())
	}
	s.logger().Info("session start", attrs...)
}

// channel names the session's channel kind in its log lines. Logs are where
// the two kinds really differ (a message channel has no upstream to name),
// so logStart and logEnd ask s.msg != nil rather than going through
// msgChannel.
func (s *session) channel() string {
	if s.msg != nil {
		return "messages"
	}
	return "vnc"
}

// upstreamName is an upstream for logs: scheme and host (or a unix socket's
// path), never credentials or the query.
func upstreamName(u *url.URL) string {
	if u.Scheme == "unix" {
		return "unix://" + u.Path
	}
	return u.Scheme + "://" + u.Host
}
