package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"time"
	"vncedge/proxy/wsframe"

	"github.com/gobwas/ws"
)

// wsUpstream is the client side of a ws or wss upstream: its frames, masks,
// the wss bridge and the pong we owe it. Unused for raw TCP upstreams.
type wsUpstream struct {
	wsUp       bool            // the upstream speaks WebSocket
	udec       wsframe.Decoder // upstream frames (we are the client)
	maskRNG    maskStream      // a fresh client mask per frame
	bridge     io.Closer       // the wss bridge; closed with the upstream
	upPongOwed bool            // a ping from the upstream waits for its pong
	pongLen    uint8
	pongBody   [125]byte
	uhdr       [wsframe.MaxHeaderSize]byte // header of a frame to the upstream
}

// maskStream draws the client masks of one session's frames to a ws
// upstream: a fresh, unpredictable mask per frame (RFC 6455 §5.3) without a
// system call or allocation per frame. It is xorshift64* seeded from
// crypto/rand once per session; the masks protect intermediaries from
// chosen-plaintext frames, they are not a cipher.
type maskStream struct{ x uint64 }

func (m *maskStream) seed() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	m.x = binary.LittleEndian.Uint64(b[:]) | 1 // never the all-zero state
}

func (m *maskStream) next() [4]byte {
	if m.x == 0 {
		m.seed()
	}
	m.x ^= m.x >> 12
	m.x ^= m.x << 25
	m.x ^= m.x >> 27
	v := m.x * 2685821657736338717
	return [4]byte{byte(v >> 32), byte(v >> 40), byte(v >> 48), byte(v >> 56)}
}

// checkUpstreamOut ends the session with slow-upstream once the bytes queued
// for the upstream (RFB data, pongs, anything) pass MaxUpstreamBuffer. It runs
// after every write to the upstream.
func (s *session) checkUpstreamOut() {
	if s.state != stRelay {
		return
	}
	if s.up != nil && s.up.OutboundBuffered() > s.srv.cfg.MaxUpstreamBuffer || s.pump != nil && s.pump.held() > s.srv.cfg.MaxUpstreamBuffer {
		s.end(reasonSlowUpstream)
	}
}

// pongUpstream answers an upstream's ping. While earlier bytes still wait in
// the upstream's outbound buffer, the pong is owed instead (the latest ping's
// payload, RFC 6455 §5.5.3): a peer that pings and never reads queues at most
// one pong.
func (s *session) pongUpstream(payload []byte) {
	if s.up == nil {
		return
	}
	if s.up.OutboundBuffered() > 0 {
		s.upPongOwed = true
		s.pongLen = uint8(copy(s.pongBody[:], payload))
		return
	}
	s.upPongOwed = false
	s.sendControl(s.up, ws.OpPong, payload, true)
}

// sendOwedPong sends an owed pong once the upstream's outbound has drained.
func (s *session) sendOwedPong() {
	if s.upPongOwed && s.up != nil && s.state == stRelay && s.up.OutboundBuffered() == 0 {
		s.upPongOwed = false
		s.sendControl(s.up, ws.OpPong, s.pongBody[:s.pongLen], true)
	}
}

// upstreamIdle reports whether the upstream has sent nothing for
// UpstreamIdleTimeout (0: never). A paused upstream (a slow viewer) is not
// read, so not idle.
func (s *session) upstreamIdle(now time.Time) bool {
	t := s.srv.cfg.UpstreamIdleTimeout
	if s.paused {
		s.lastUpstream = now.UnixNano()
		return false
	}
	if s.pump != nil {
		s.lastUpstream = s.pump.last.Load()
	}
	return t > 0 && now.Sub(time.Unix(0, s.lastUpstream)) >= t
}

// closeBridge ends a wss bridge, if any, without blocking the loop.
func closeBridge(b io.Closer) {
	if b != nil {
		_ = b.Close()
	}
}
