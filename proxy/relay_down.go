// relay_down.go carries the server-to-viewer direction on the gnet path: upstream
// reads (upstreamTraffic) are unframed for ws/wss upstreams (upstreamFrames),
// checked by the RFB handshake tracker (serverBytes) and sent to the viewer as one
// binary frame each, straight from gnet's buffer (writeDown). writeDown also
// watches the viewer's outbound and asks for a pause (flow_pause.go) or ends a
// slow consumer; upstreamTraffic takes the conn off the loop when asked, or hands
// it to the splice pump (downpump_linux.go).

package proxy

import (
	"errors"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

func (s *session) upstreamTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	if s.state != stRelay {
		return gnet.None
	}
	s.lastUpstream = s.srv.now.Load()
	s.fromUpstream(buf)
	s.sendOwedPong()
	if len(buf) >= spliceAfter && s.startPump(c) {
		return gnet.Close // the socket lives on in the pump
	}
	if s.pauseReq && s.state == stRelay {
		s.pauseReq = false
		if s.pause(c) {
			return gnet.Close // the socket lives on in pausedFD (flow_pause.go)
		}
	}
	return gnet.None
}

// fromUpstream forwards server bytes to the viewer.
func (s *session) fromUpstream(buf []byte) {
	if s.wsUp {
		if err := s.udec.Feed(buf, (*upstreamFrames)(s)); err != nil && s.state == stRelay {
			var re *rfbparse.Error
			var ce *wsframe.CloseError
			switch {
			case errors.As(err, &re):
				s.endDetail(reasonRFBPolicy, re.Reason)
			case errors.As(err, &ce):
				s.end(reasonUpstreamProtocol)
			default:
				s.end(reasonViewerWriteFailed)
			}
		}
		return
	}
	if err := s.serverBytes(buf); err != nil && s.state == stRelay {
		var re *rfbparse.Error
		if errors.As(err, &re) {
			s.endDetail(reasonRFBPolicy, re.Reason)
		} else {
			s.end(reasonViewerWriteFailed)
		}
	}
}

// serverBytes tracks the server's handshake, then sends p to the viewer as one
// binary frame, straight from the caller's buffer.
func (s *session) serverBytes(p []byte) error {
	if s.down != nil {
		return s.viewerRoleBytes(p) // viewer role: no remote clipboard (viewdown.go)
	}
	if !s.rfb.HandshakeDone() {
		if err := s.rfb.Server(p); err != nil {
			return err
		}
	}
	return s.writeDown(p)
}

// writeDown sends p to the viewer as one binary frame, straight from the
// caller's buffer.
func (s *session) writeDown(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n := wsframe.PutHeader(s.vhdr[:], ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p))})
	s.vec[0], s.vec[1] = s.vhdr[:n], p
	if _, err := s.viewer.Writev(s.vec[:]); err != nil {
		return err
	}
	s.vec[0], s.vec[1] = nil, nil
	s.bytesDown += uint64(len(p))
	s.framesDown++
	s.recServer(p)
	switch ob := s.viewer.OutboundBuffered(); {
	case ob > s.srv.cfg.MaxViewerBuffer:
		s.end(reasonSlowConsumer)
	case ob > s.srv.cfg.ViewerHighWater:
		s.pauseReq = true
	}
	return nil
}

// upstreamFrames receives decoded frames from ws/wss upstreams.
type upstreamFrames session

func (u *upstreamFrames) OnData(_ ws.OpCode, p []byte, _ bool) error {
	s := (*session)(u)
	if s.state != stRelay {
		return nil // after our close (or the upstream's): nothing more is relayed
	}
	return s.serverBytes(p)
}

func (u *upstreamFrames) OnControl(op ws.OpCode, payload []byte) error {
	s := (*session)(u)
	if s.state != stRelay {
		return nil
	}
	switch op {
	case ws.OpPing:
		s.pongUpstream(payload)
	case ws.OpClose:
		s.end(reasonUpstreamClosed)
	}
	return nil
}
