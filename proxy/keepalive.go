// keepalive.go holds the relay's liveness and limits without a timer or goroutine
// per connection: startChecks arms nextCheck, the server's ticker runs relayCheck
// on the loop when it passes, and relayCheck sends keepalive pings and enforces
// the idle, upstream-idle and maximum-duration limits. sendControl writes the
// control frames (pings, pongs, the echoed close) to either conn.

package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/wsframe"
)

// keepalive is a relay's ping and idle state.
type keepalive struct {
	// nextCheck (unix ns, 0 = none) is when the ticker runs relayCheck; the
	// ticker goroutine reads it.
	nextCheck    atomic.Int64
	pingsOut     int   // pings sent and not answered
	lastViewer   int64 // coarse unix ns of the last viewer data
	lastUpstream int64 // coarse unix ns of the last upstream read
	// At the last check: the viewer's gnet outbound, that plus its socket's
	// send queue, and the bytes its socket had acknowledged (viewerTook).
	checkedOut, checkedQueued int
	checkedAcked              uint64
}

// startChecks arms the ticker's relay checks.
func (s *session) startChecks() {
	s.lastViewer = time.Now().UnixNano()
	s.lastUpstream = s.lastViewer
	if d := s.nextCheckDelay(); d > 0 {
		s.nextCheck.Store(time.Now().Add(d).UnixNano())
	}
}

func (s *session) nextCheckDelay() time.Duration {
	cfg := &s.srv.cfg
	d := time.Duration(0)
	for _, v := range []time.Duration{cfg.PingInterval, cfg.IdleTimeout / 2, cfg.MaxDuration, cfg.UpstreamIdleTimeout / 2} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	return d
}

// relayCheck runs on the loop when nextCheck passes: keepalive, idle and
// maximum duration, without a timer or goroutine per connection.
type relayCheck session

func (r *relayCheck) Run(context.Context) error {
	s := (*session)(r)
	if s.state != stRelay {
		return nil
	}
	cfg := &s.srv.cfg
	now := time.Now()
	switch {
	case cfg.MaxDuration > 0 && now.Sub(s.start) >= cfg.MaxDuration:
		s.end(reasonMaxDuration)
		return nil
	case cfg.IdleTimeout > 0 && now.Sub(time.Unix(0, s.lastViewer)) >= cfg.IdleTimeout:
		s.end(reasonIdleTimeout)
		return nil
	case s.upstreamIdle(now):
		s.end(reasonUpstreamIdle)
		return nil
	}
	if cfg.PingInterval > 0 {
		if s.viewerTook() {
			// A slow viewer reaches our ping only after the bytes queued
			// before it, and while paused its pong waits unread behind the
			// input held for the upstream: the bytes it took since the last
			// check show it is alive. One that takes nothing (half-open, or
			// a zero window) is still dropped below.
			s.pingsOut = 0
		}
		if s.pingsOut >= 2 {
			// A half-open viewer: nobody will read a close frame.
			s.drop(reasonPingTimeout)
			return nil
		}
		s.pingsOut++
		s.sendControl(s.viewer, ws.OpPing, nil, false)
		s.markViewerOut()
	}
	s.nextCheck.Store(now.Add(s.nextCheckDelay()).UnixNano())
	return nil
}

// sendControl writes a control frame (payload ≤ 125 bytes) to c.
func (s *session) sendControl(c gnet.Conn, op ws.OpCode, payload []byte, masked bool) {
	if c == nil {
		return
	}
	if c == s.viewer && s.pump != nil {
		s.pumpControl(op, payload)
		return
	}
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}
	if masked {
		h.Masked, h.Mask = true, s.maskRNG.next()
	}
	n := wsframe.PutHeader(s.ctl[:], h)
	m := copy(s.ctl[n:], payload)
	if masked {
		ws.Cipher(s.ctl[n:n+m], h.Mask, 0)
	}
	_, _ = c.Write(s.ctl[:n+m])
	if c == s.up {
		s.checkUpstreamOut()
	}
}

// markViewerOut notes what is queued for the viewer and what its socket has
// acknowledged, for viewerTook at the next check.
func (s *session) markViewerOut() {
	s.checkedOut = s.viewer.OutboundBuffered()
	s.checkedQueued = s.checkedOut
	if n, q, ok := ackedAndQueued(s.viewer.Fd()); ok {
		s.checkedAcked, s.checkedQueued = n, s.checkedQueued+q
	}
}

// viewerTook reports whether the viewer took bytes of a backlog since
// markViewerOut: its socket acknowledged more, or gnet's outbound for it
// shrank. Only a backlog counts: with nothing queued before our ping but the
// ping itself, its pong is not held up, and acknowledging the ping proves no
// more than a TCP stack that still answers.
func (s *session) viewerTook() bool {
	if s.checkedQueued <= maxControlFrame {
		return false
	}
	if n, _, ok := ackedAndQueued(s.viewer.Fd()); ok && n > s.checkedAcked {
		return true
	}
	return s.viewer.OutboundBuffered() < s.checkedOut
}

// maxControlFrame is the largest control frame we send (header and payload).
const maxControlFrame = 2 + 125
