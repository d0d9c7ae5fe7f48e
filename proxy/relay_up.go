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
	s.batch.begin(buf)
	err := s.vdec.Feed(buf, (*viewerFrames)(s))
	s.batch.end()
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
		s.drop(reasonViewerProtocol)
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
		if s.state != stRelay {
			s.drop(reasonViewerClosed) // our close answered: the session keeps its reason
			return nil
		}
		// Echo the viewer's close, then close: it sends nothing after its close.
		s.sendControl(s.viewer, ws.OpClose, payload[:min(len(payload), 2)], false)
		s.drop(reasonViewerClosed)
		s.closeCode = closeCodeOf(payload) // the viewer's, not the row's
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

// upBatch collects the upstream-bound writes of one viewer read for one
// writev. Slices of the viewer's buffer (between begin and end) go in as they
// are; other bytes (a prefix the parser held across reads, frame headers) are
// copied to its arena.
type upBatch struct {
	iov          [batchIOV][]byte
	niov, narena int
	arena        [batchArena]byte
	lo, hi       uintptr // bounds of the viewer buffer being processed
}

// begin marks buf, the viewer buffer being processed, as stable until the
// batch is flushed; end forgets it.
func (b *upBatch) begin(buf []byte) {
	if len(buf) > 0 {
		b.lo = uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		b.hi = b.lo + uintptr(len(buf))
	}
}

func (b *upBatch) end() { b.lo, b.hi = 0, 0 }

// stable reports whether p lies in the viewer buffer being processed.
func (b *upBatch) stable(p []byte) bool {
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return a >= b.lo && a+uintptr(len(p)) <= b.hi
}

// fits reports whether slices more slices and bytes more arena bytes fit.
func (b *upBatch) fits(slices, bytes int) bool {
	return b.niov+slices <= batchIOV && b.narena+bytes <= batchArena
}

// room is the arena's unused tail, for a header to be put in and kept.
func (b *upBatch) room() []byte { return b.arena[b.narena:] }

// keep copies p into the arena (within fits) and returns the copy; keep of
// room()[:n] keeps a header put there in place.
func (b *upBatch) keep(p []byte) []byte {
	n := copy(b.arena[b.narena:], p)
	out := b.arena[b.narena : b.narena+n]
	b.narena += n
	return out
}

// add queues p.
func (b *upBatch) add(p []byte) {
	b.iov[b.niov] = p
	b.niov++
}

// queued is what is queued, in order.
func (b *upBatch) queued() [][]byte { return b.iov[:b.niov] }

// reset empties the batch, dropping its references to the viewer's buffer.
func (b *upBatch) reset() {
	clear(b.iov[:b.niov])
	b.niov, b.narena = 0, 0
}

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
	stable := s.batch.stable(b)
	room := hdr
	if !stable {
		room += len(b)
	}
	if !s.batch.fits(2, room) {
		if err := s.flushUp(); err != nil {
			return 0, err
		}
	}
	if !stable {
		if len(b)+hdr > batchArena { // not from the parser's small arrays: write through
			return len(b), s.writeUpNow(b)
		}
		b = s.batch.keep(b)
	}
	if s.wsUp {
		// Re-frame as a masked client frame, masking in place: b has been
		// parsed and is not read again.
		mask := s.maskRNG.next()
		h := s.batch.room()
		n := wsframe.PutHeader(h, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask, Length: int64(len(b))})
		s.batch.add(s.batch.keep(h[:n]))
		ws.Cipher(b, mask, 0)
	}
	s.batch.add(b)
	return len(b), nil
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
	q := s.batch.queued()
	if len(q) == 0 {
		return nil
	}
	if s.up == nil && s.paused {
		return nil // kept (copies only: no viewer data is read while paused) until resume
	}
	var err error
	if s.pump != nil {
		err = s.pumpWrite(q...)
	} else if s.up != nil {
		if len(q) == 1 {
			_, err = s.up.Write(q[0])
		} else {
			_, err = s.up.Writev(q)
		}
	}
	s.batch.reset()
	if err == nil {
		s.checkUpstreamOut()
	}
	return err
}
