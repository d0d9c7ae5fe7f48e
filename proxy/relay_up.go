// relay_up.go carries the viewer-to-server direction: viewer bytes go through the
// frame decoder (fromViewer, viewerFrames) and the RFB policy stream, and what
// passes is queued for the upstream (upstreamWriter) and written in one writev
// per viewer read (flushUp), or at once when it cannot wait (writeUpNow). Slices
// of the viewer's own buffer are queued as they are (inViewerBuf); other bytes are
// copied to the batch arena.

package proxy

import (
	"errors"
	"unsafe"

	"github.com/gobwas/ws"

	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

// fromViewer feeds viewer bytes through the frame decoder and the RFB stream,
// then writes what passed to the upstream in one writev.
func (s *session) fromViewer(buf []byte) {
	if len(buf) > 0 {
		s.curLo = uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		s.curHi = s.curLo + uintptr(len(buf))
	}
	err := s.vdec.Feed(buf, (*viewerFrames)(s))
	s.curLo, s.curHi = 0, 0
	if ferr := s.flushUp(); ferr != nil && err == nil {
		err = ferr
	}
	if err == nil {
		return
	}
	var ce *wsframe.CloseError
	if errors.As(err, &ce) {
		// The frame stream is broken: no close reply can be read from it.
		// Fail the connection (RFC 6455 §7.1.7): close frame, then close.
		if s.state == stRelay {
			s.endFrame(ce)
		}
		_ = s.viewer.Close()
		return
	}
	if s.state == stRelay {
		s.end(reasonUpstreamWriteFailed)
	}
}

// viewerFrames receives decoded viewer frames.
type viewerFrames session

func (v *viewerFrames) OnData(_ ws.OpCode, p []byte, fin bool) error {
	s := (*session)(v)
	if s.state != stRelay {
		return nil // closing: discard
	}
	s.framesUp++
	s.lastViewer = s.srv.now.Load() // data, not pongs, keeps a session from idling
	s.data.onData(p, fin)
	return nil
}

// dataSink takes the payload of the viewer's data frames, on the loop in
// stRelay: the channel's own use of them (session.data).
type dataSink interface {
	onData(p []byte, fin bool)
}

// vncData is a VNC channel's dataSink: frames are a byte stream for the RFB
// policy stream, and what passes goes upstream.
type vncData session

func (v *vncData) onData(p []byte, _ bool) {
	s := (*session)(v)
	if err := s.rfb.Feed(p, (*upstreamWriter)(s)); err != nil {
		// End the session here rather than fail the decoder: the frame
		// stream is intact and must still carry the viewer's close reply.
		var re *rfbparse.Error
		if errors.As(err, &re) {
			s.endDetail(reasonRFBPolicy, re.Reason)
		} else {
			s.end(reasonUpstreamWriteFailed)
		}
		return
	}
	if ev := s.rfb.TakeEvents(); ev != 0 {
		s.onEvents(ev)
	}
	s.recPolicy()
}

func (v *viewerFrames) OnControl(op ws.OpCode, payload []byte) error {
	s := (*session)(v)
	switch op {
	case ws.OpPing:
		if s.state == stRelay {
			s.pongViewer(payload)
		}
	case ws.OpPong:
		s.pingsOut = 0
	case ws.OpClose:
		if s.state == stRelay {
			// Echo the viewer's close, then close: it sends nothing after its close.
			s.closeCode, s.closeReason = closeCodeOf(payload), reasonViewerClosed.text()
			s.sendControl(s.viewer, ws.OpClose, payload[:min(len(payload), 2)], false)
			s.state = stClosing
			s.closeUpstream()
		}
		_ = s.viewer.Close()
	}
	return nil
}

func closeCodeOf(payload []byte) ws.StatusCode {
	if len(payload) < 2 {
		return ws.StatusNoStatusRcvd
	}
	return ws.StatusCode(uint16(payload[0])<<8 | uint16(payload[1]))
}

const (
	batchIOV   = 64  // slices per writev
	batchArena = 512 // bytes for frame headers and parser-held bytes per batch
)

// upstreamWriter queues the RFB bytes that passed policy for the upstream.
type upstreamWriter session

func (w *upstreamWriter) Write(b []byte) (int, error) {
	s := (*session)(w)
	if len(b) == 0 {
		return 0, nil
	}
	s.recInput(b)
	s.bytesUp += uint64(len(b))
	hdr := 0
	if s.wsUp {
		hdr = wsframe.MaxHeaderSize
	}
	stable := s.inViewerBuf(b)
	room := hdr
	if !stable {
		room += len(b)
	}
	if s.niov+2 > batchIOV || s.narena+room > batchArena {
		if err := s.flushUp(); err != nil {
			return 0, err
		}
	}
	if !stable {
		if len(b)+hdr > batchArena { // not from the parser's small arrays: write through
			return len(b), s.writeUpNow(b)
		}
		n := copy(s.arena[s.narena:], b)
		b = s.arena[s.narena : s.narena+n]
		s.narena += n
	}
	if s.wsUp {
		// Re-frame as a masked client frame, masking in place: b has been
		// parsed and is not read again.
		mask := s.maskRNG.next()
		n := wsframe.PutHeader(s.arena[s.narena:], ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask, Length: int64(len(b))})
		s.iov[s.niov] = s.arena[s.narena : s.narena+n]
		s.narena += n
		s.niov++
		ws.Cipher(b, mask, 0)
	}
	s.iov[s.niov] = b
	s.niov++
	return len(b), nil
}

// inViewerBuf reports whether b lies in the viewer buffer being processed,
// which stays valid until the batch is flushed.
func (s *session) inViewerBuf(b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= s.curLo && p+uintptr(len(b)) <= s.curHi
}

// writeUpNow writes b at once, as one frame for ws upstreams (after the batch).
func (s *session) writeUpNow(b []byte) error {
	if err := s.flushUp(); err != nil {
		return err
	}
	if s.pump != nil {
		err := s.pumpWrite(b)
		s.checkUpstreamOut()
		return err
	}
	if s.up == nil {
		return nil // paused or closed: as flushUp
	}
	if !s.wsUp {
		_, err := s.up.Write(b)
		s.checkUpstreamOut()
		return err
	}
	mask := s.maskRNG.next()
	n := wsframe.PutHeader(s.uhdr[:], ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask, Length: int64(len(b))})
	ws.Cipher(b, mask, 0)
	s.vec[0], s.vec[1] = s.uhdr[:n], b
	_, err := s.up.Writev(s.vec[:])
	s.vec[0], s.vec[1] = nil, nil
	s.checkUpstreamOut()
	return err
}

// flushUp writes the queued batch to the upstream.
func (s *session) flushUp() error {
	if s.niov == 0 {
		return nil
	}
	if s.up == nil && s.paused {
		return nil // kept (copies only: no viewer data is read while paused) until resume
	}
	var err error
	if s.pump != nil {
		err = s.pumpWrite(s.iov[:s.niov]...)
	} else if s.up != nil {
		if s.niov == 1 {
			_, err = s.up.Write(s.iov[0])
		} else {
			_, err = s.up.Writev(s.iov[:s.niov])
		}
	}
	clear(s.iov[:s.niov])
	s.niov, s.narena = 0, 0
	if err == nil {
		s.checkUpstreamOut()
	}
	return err
}
