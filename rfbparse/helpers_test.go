package rfbparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// ---- message builders (client to server) ----

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func keyEv(down bool, ks uint32) []byte {
	b := make([]byte, 8)
	b[0] = MsgKeyEvent
	if down {
		b[1] = 1
	}
	binary.BigEndian.PutUint32(b[4:], ks)
	return b
}

func keyDown(ks uint32) []byte { return keyEv(true, ks) }
func keyUp(ks uint32) []byte   { return keyEv(false, ks) }

func ptrEv(mask uint8, x, y uint16) []byte {
	b := []byte{MsgPointerEvent, mask, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], x)
	binary.BigEndian.PutUint16(b[4:], y)
	return b
}

// ptrExt is the 7-byte PointerEvent of ExtendedMouseButtons (mask bit 7 set).
func ptrExt(mask, ext uint8, x, y uint16) []byte {
	return append(ptrEv(mask|0x80, x, y), ext)
}

func setEnc(encs ...int32) []byte {
	b := []byte{MsgSetEncodings, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(encs)))
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return b
}

// setPF is noVNC's SetPixelFormat: 32 bpp, depth 24, little endian, true
// colour, 255/255/255 maxima, shifts 0/8/16.
func setPF() []byte {
	return []byte{MsgSetPixelFormat, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0}
}

func fbur(incremental bool, x, y, w, h uint16) []byte {
	b := []byte{MsgFramebufferUpdateReq, 0}
	if incremental {
		b[1] = 1
	}
	for _, v := range []uint16{x, y, w, h} {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func ecu(enable bool, x, y, w, h uint16) []byte {
	b := fbur(enable, x, y, w, h)
	b[0] = MsgEnableContinuousUpdates
	return b
}

func cutText(s string) []byte {
	b := []byte{MsgClientCutText, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// cutTextExt is an extended-clipboard ClientCutText (negative length).
func cutTextExt(payload []byte) []byte {
	b := []byte{MsgClientCutText, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(-int32(len(payload))))
	return append(b, payload...)
}

func fence(flags uint32, payload []byte) []byte {
	b := []byte{MsgClientFence, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, flags)
	b = append(b, byte(len(payload)))
	return append(b, payload...)
}

func xvpMsg(op byte) []byte { return []byte{MsgXVP, 0, 1, op} }

func setDesktopSize(w, h uint16, screens int) []byte {
	b := []byte{MsgSetDesktopSize, 0}
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = append(b, byte(screens), 0)
	for i := range screens {
		s := make([]byte, 16)
		binary.BigEndian.PutUint32(s, uint32(i))
		binary.BigEndian.PutUint16(s[8:], w)
		binary.BigEndian.PutUint16(s[10:], h)
		b = append(b, s...)
	}
	return b
}

func giiMsg(subtype byte, big bool, payload []byte) []byte {
	b := []byte{MsgGII, subtype, 0, 0}
	if big {
		b[1] |= 0x80
		binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	} else {
		binary.LittleEndian.PutUint16(b[2:], uint16(len(payload)))
	}
	return append(b, payload...)
}

func qemuKey(down bool, ks, kc uint32) []byte {
	b := []byte{MsgQEMU, qemuExtendedKeyEvent, 0, 0}
	if down {
		b[3] = 1
	}
	b = binary.BigEndian.AppendUint32(b, ks)
	return binary.BigEndian.AppendUint32(b, kc)
}

// plainKey is the plain KeyEvent the layout-proof policy makes of QEMU key event q.
func plainKey(q []byte) []byte {
	return keyEv(q[3] != 0, binary.BigEndian.Uint32(q[4:8]))
}

func qemuAudioMsg(op uint16) []byte {
	b := []byte{MsgQEMU, qemuAudio}
	b = binary.BigEndian.AppendUint16(b, op)
	if op == 2 {
		b = append(b, 3, 2, 0, 0, 0xac, 0x44)
	}
	return b
}

// ---- server side ----

func srvVer(minor int) []byte {
	return []byte("RFB 003.00" + string(rune('0'+minor)) + "\n")
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

var challenge = bytes.Repeat([]byte{0xa5}, 16)

// ---- writers ----

// sink collects what a Stream writes; each Write is copied.
type sink struct {
	buf    []byte
	writes int
}

func (s *sink) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	s.writes++
	return len(p), nil
}

// discard counts bytes without keeping them (benchmarks).
type discard struct{ n int64 }

func (d *discard) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	return len(p), nil
}

// ---- handshake helpers ----

// handshake38 is the client half of a 3.8 None handshake (version, choice, ClientInit).
var handshake38 = cat([]byte("RFB 003.008\n"), []byte{1}, []byte{1})

// ready returns a Stream past a 3.8 None handshake.
func ready(t testing.TB, pol *Policy, who Interactor) *Stream {
	t.Helper()
	s := NewStream(pol, who)
	var w sink
	mustServer(t, s, srvVer(8))
	mustFeed(t, s, []byte("RFB 003.008\n"), &w)
	mustServer(t, s, []byte{1, 1})
	mustFeed(t, s, []byte{1}, &w)
	mustServer(t, s, u32(0))
	mustFeed(t, s, []byte{1}, &w)
	if !s.Ready() || !s.AtBoundary() || !s.HandshakeDone() {
		t.Fatalf("not ready after handshake: phase %d srv %d", s.phase, s.srv)
	}
	if !bytes.Equal(w.buf, handshake38) {
		t.Fatalf("handshake output %q, want %q", w.buf, handshake38)
	}
	return s
}

func mustFeed(t testing.TB, s *Stream, p []byte, w *sink) {
	t.Helper()
	if err := s.Feed(p, w); err != nil {
		t.Fatalf("Feed(% x): %v", p, err)
	}
}

func mustServer(t testing.TB, s *Stream, p []byte) {
	t.Helper()
	if err := s.Server(p); err != nil {
		t.Fatalf("Server(% x): %v", p, err)
	}
}

// feedAll feeds a copy of p (Feed may rewrite in place) and returns the output.
func feedAll(t testing.TB, s *Stream, p []byte) []byte {
	t.Helper()
	var w sink
	mustFeed(t, s, bytes.Clone(p), &w)
	return w.buf
}

func asError(t testing.TB, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *Error", err, err)
	}
	if len(e.Reason) >= 123 {
		t.Fatalf("reason too long for a close frame: %q", e.Reason)
	}
	return e
}
