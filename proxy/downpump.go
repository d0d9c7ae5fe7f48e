package proxy

import (
	"syscall"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/wsframe"
)

// pumpState is a session's splice pump (downpump_linux.go): the server stream
// of a raw-TCP upstream once the RFB handshake is done.
type pumpState struct {
	pump       *downPump // nil before, and on the gnet path
	pumpHalted bool      // stopPump ran
	noPump     bool      // a pump could not start: the session stays on gnet
}

// The session's side of the down pump (downpump_linux.go): when it starts,
// how the loop writes through it, how it stops. All on the loop.

// spliceAfter is the upstream read that moves a session to the down pump: a
// read this large means the server streams bulk (framebuffer updates), where
// splice(2) saves a copy per byte. Sessions that only ever exchange small
// messages (key acknowledgements, small updates) stay on gnet, whose loop
// answers them sooner than a goroutine woken by the netpoller; so do idle
// ones, which then hold no pipe, goroutine or extra descriptors.
const spliceAfter = 32 << 10

// startPump hands a raw-TCP upstream to a down pump once the RFB handshake
// is done and nothing of the session is queued in gnet: from then on the
// server stream goes to the viewer by splice(2). It reports whether it did;
// the caller then closes gnet's conn (the pump holds a dup of its socket).
// Sessions that need the server stream in user space stay on the gnet path:
// ws/wss upstreams (frames), viewer roles (the stream is filtered) and
// recordings. A TLS viewer's socket is the socketpair of its bridge
// (tlsbridge.go): the pump splices into it all the same.
func (s *session) startPump(c gnet.Conn) bool {
	if !spliceSupported || s.srv.cfg.NoSplice || s.pump != nil || s.noPump || s.state != stRelay || s.wsUp ||
		s.down != nil || s.rec != nil || s.paused || s.pauseReq ||
		!s.rfb.HandshakeDone() || len(s.batch.queued()) != 0 || c.OutboundBuffered() != 0 || s.viewer.OutboundBuffered() != 0 {
		return false
	}
	upFD, err := c.Dup()
	if err != nil {
		return false
	}
	viewerFD, err := s.viewer.Dup()
	if err != nil {
		_ = syscall.Close(upFD)
		return false
	}
	d, err := newDownPump(s, upFD, viewerFD, s.srv.cfg.SplicePipeSize)
	if err != nil {
		s.noPump = true // not again for this session
		s.srv.cfg.Logger.Debug("splice path unavailable: staying on gnet", "err", err)
		return false
	}
	s.pump, s.up = d, nil
	s.srv.spliced.Add(1)
	go d.run()
	return true
}

// stopPump closes the pump's upstream; the pump sends what was queued for
// the viewer (the close frame) within CloseTimeout, then exits.
func (s *session) stopPump() {
	if s.pump == nil || s.pumpHalted {
		return
	}
	s.pumpHalted = true
	s.pump.halt(s.srv.cfg.CloseTimeout)
	s.srv.conns.Add(-1) // the upstream socket the pump held
}

// pumpWrite writes upstream bytes through the pump's socket.
func (s *session) pumpWrite(bufs ...[]byte) error {
	if s.pumpHalted {
		return nil
	}
	return s.pump.writeUp(bufs)
}

// pumpControl queues a control frame to the viewer behind the pump's frame
// in flight. A frame that does not fit (a ping flood) is not sent; a close
// (the echo of the viewer's) takes the room kept for it and is the last.
func (s *session) pumpControl(op ws.OpCode, payload []byte) {
	n := wsframe.PutHeader(s.ctl[:], ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))})
	m := copy(s.ctl[n:], payload)
	s.pump.queue(s.ctl[:n+m], op == ws.OpClose)
}

// downStats is what went to the viewer: the gnet path's counts and the pump's.
func (s *session) downStats() (bytes, frames uint64) {
	bytes, frames = s.bytesDown, s.framesDown
	if s.pump != nil {
		bytes += s.pump.bytes.Load()
		frames += s.pump.frames.Load()
	}
	return bytes, frames
}
