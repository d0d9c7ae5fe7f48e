package proxy

// logStart writes the session-start line, once the viewer has its 101: the
// session's identity and trace ids (from logger), the channel, and for a VNC
// channel the upstream's scheme and host (never credentials).
func (s *session) logStart() {
	attrs := []any{"channel", "vnc"}
	if s.mode == modeMessages {
		attrs[1] = "messages"
	} else if rt := s.route; rt != nil && rt.Upstream != nil {
		attrs = append(attrs, "upstream", rt.Upstream.Scheme+"://"+rt.Upstream.Host)
	}
	if s.rfb != nil {
		attrs = append(attrs, "control", s.rfb.Interactor().String())
	}
	s.logger().Info("session start", attrs...)
}
