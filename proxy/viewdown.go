package proxy

import (
	"errors"

	"vncedge/rfbparse"
)

// A viewer-role VNC channel may not read the remote clipboard, so its
// server → viewer stream is not cut through untouched, as a controller's
// is: it is framed message by message (rfbparse.ViewFilter) and
// ServerCutText, plain or extended, is dropped. Framing needs every
// rectangle's length: the channel's SetEncodings is restricted in place to
// encodings whose lengths are computable (rfbparse.ViewFramable; the
// extended-clipboard pseudo-encoding is not among them), and its
// SetPixelFormat passes only before it first asks for an update. What
// cannot be framed ends the session (1008 with the filter's reason): fail
// closed. The passed bytes still go out zero-copy, as sub-slices of the
// read, one binary frame per run.

// newViewDown returns the server-stream filter of a VNC channel of role r:
// nil (cut-through) for a controller.
func newViewDown(r Role) *rfbparse.ViewFilter {
	if r == RoleViewer {
		return new(rfbparse.ViewFilter)
	}
	return nil
}

// viewerRoleBytes is serverBytes for a viewer-role channel: the handshake
// bytes pass as they are, then the filter decides from ServerInit on.
func (s *session) viewerRoleBytes(p []byte) error {
	if !s.rfb.HandshakeDone() {
		if err := s.rfb.Server(p); err != nil {
			return err
		}
		if !s.rfb.HandshakeDone() {
			return s.writeDown(p)
		}
		k := len(p) - s.rfb.ServerRest()
		if err := s.writeDown(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	if !s.rfb.ServerAccepted() {
		return s.writeDown(p) // refused: the reason, then the server closes
	}
	s.down.SetBPP(s.rfb.ClientBPP())
	return s.down.Feed(p, (*viewDownWriter)(s))
}

// viewDownWriter sends the runs the filter passes to the viewer.
type viewDownWriter session

func (w *viewDownWriter) Write(p []byte) (int, error) {
	s := (*session)(w)
	if s.state != stRelay {
		return 0, errViewDownEnded // a slow-consumer end mid-read: send nothing after the close
	}
	return len(p), s.writeDown(p)
}

// errViewDownEnded stops the filter once the session is ending.
var errViewDownEnded = errors.New("viewer-role channel ending")
