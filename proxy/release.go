package proxy

import "vncedge/rfbparse"

// releaseHeld writes upstream a release of every key and button the viewer
// still holds on the server, each as it was pressed (see
// rfbparse.Stream.ReleaseAll), just before the upstream closes: when the
// session ends and when another viewer of the same client replaced it.
func (s *session) releaseHeld() {
	if s.rfb == nil || s.up == nil && s.pump == nil || s.paused {
		return
	}
	var buf [rfbparse.MaxReleaseLen]byte
	if b := s.rfb.ReleaseAll(buf[:0]); len(b) > 0 {
		_, _ = (*upstreamWriter)(s).Write(b)
	}
}
