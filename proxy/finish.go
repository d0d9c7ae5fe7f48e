// finish.go ends sessions: endWith sends the close frame and closes the upstream
// at once, leaving the viewer until it answers or CloseTimeout passes;
// closeUpstream releases everything on the server side; upstreamClosed and
// viewerClosed handle either conn going away, and viewerClosed (the viewer
// conn's OnClose) is where a session's slots, registrations, recording, log
// line and span are released. goingAway (server shutdown) and expire (a passed
// deadline, from the ticker or readUpgrade) run on the session's loop to close it.

package proxy

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/wsframe"
)

// endWith closes the session with code and reason: the upstream now, the
// viewer once it answers our close frame (or CloseTimeout passes). Call sites
// use end, endDetail or endFrame (reasons.go), not this.
func (s *session) endWith(code ws.StatusCode, reason string) {
	if s.state >= stClosing {
		return
	}
	s.state = stClosing
	s.closeCode, s.closeReason = code, reason
	if s.pump != nil {
		// The pump sends the close after its frame in flight, then exits.
		s.pump.queue(wsframe.AppendClose(s.ctl[:0], code, reason, nil), true)
		s.closeUpstream()
	} else {
		s.closeUpstream()
		_, _ = s.viewer.Write(wsframe.AppendClose(s.ctl[:0], code, reason, nil))
	}
	s.deadline.Store(time.Now().Add(s.srv.cfg.CloseTimeout).UnixNano())
}

func (s *session) closeUpstream() {
	s.releaseHeld()
	s.unpause()
	_ = s.flushUp()
	s.stopPump()
	if s.up != nil {
		_ = s.up.Close()
		s.up = nil
	}
	closeBridge(s.bridge) // a silent wss peer would keep both bridge goroutines
	s.bridge = nil
}

// upstreamClosed: the VNC server side ended.
func (s *session) upstreamClosed(err error) {
	if s.paused || s.pump != nil {
		return // taken off the loop on purpose; pausedFD or the pump keeps the socket
	}
	s.up = nil
	if s.state != stRelay {
		return
	}
	if err == nil || errors.Is(err, io.EOF) {
		s.end(reasonUpstreamClosed)
	} else {
		s.srv.cfg.Logger.Debug("upstream error", "err", err)
		s.end(reasonUpstreamError)
	}
}

// viewerClosed: the viewer conn is gone; make sure the upstream follows.
func (s *session) viewerClosed(err error) {
	s.endDial()
	closeBridge(s.vbridge) // a TLS viewer's bridge ends with its conn, not at a write timeout
	s.vbridge = nil
	if s.state == stRelay { // no close frame: the viewer vanished
		s.setClose(reasonViewerGone)
	}
	s.state = stClosed
	s.closeUpstream()
	s.unshareKeys()
	s.srv.reg.detach(s)
	s.srv.reg.notifyWatchers(s.pair) // a controller gone no longer drives (roles.go)
	s.published.Store(nil)
	if s.admitted {
		s.srv.release(s.ip, s.org, s.orgHeld) // the slot taken for s.org, whatever s.route says
		s.orgHeld = false
	}
	s.srv.active.Add(-1)
	s.recEnd()
	s.logEnd(err)
	s.endSpan()
}

// goingAway closes a session for server shutdown, on its loop.
type goingAway session

func (g *goingAway) Run(context.Context) error {
	s := (*session)(g)
	switch s.state {
	case stRelay:
		s.end(reasonServerShutdown)
	case stUpgrade, stDialing:
		_ = s.viewer.Close()
	}
	return nil
}

// expire closes a session whose deadline passed, on its loop.
type expire session

func (e *expire) Run(context.Context) error {
	s := (*session)(e)
	if d := s.deadline.Load(); d == 0 || d > time.Now().UnixNano() || s.state == stClosed {
		return nil
	}
	if s.state == stUpgrade {
		s.setClose(reasonUpgradeTimeout)
		s.logged = true
		s.srv.upgradeFailures.Add(1)
	}
	_ = s.viewer.Close()
	return nil
}
