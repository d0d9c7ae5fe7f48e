// finish.go is a session's one way out. An end starts at one of three doors,
// each named by what goes on the wire, and every end then reaches finish (the
// viewer conn's OnClose), the one place a session's slots, registrations,
// recording, log line and span are released:
//
//	refuse    before the 101 (stUpgrade, stDialing → stClosed): an HTTP error, or
//	          with --compat a resolver's refusal as a 101 and a close frame
//	          (refuseAfterUpgrade); then the viewer is closed
//	endWith   after the 101 (stDialing, stRelay → stClosing): our close frame, the
//	          upstream closed at once, the viewer given CloseTimeout to answer
//	drop      any state (→ stClosing, or stClosed before the 101): close the viewer
//	          now, with no close handshake: a half-open viewer, a broken frame
//	          stream, a failed write to the viewer, the viewer's own close (echoed
//	          first), an upgrade past its deadline, shutdown before the 101
//	finish    OnClose (any → stClosed): releases everything
//
// Call sites name an endReason (reasons.go): end, endDetail and endFrame are
// endWith with the row's code and text; endAsync and endAsyncDetail hand
// endWith to the session's loop from any goroutine. Only serveWeb leaves otherwise: a plain
// HTTP request is handed to the web server, never a session (web.go); it too
// reaches finish. goingAway (server shutdown) and expire (a passed deadline,
// from the ticker) run on the session's loop and pick a door.

package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/attribute"

	"vncedge/proxy/upgrade"
	"vncedge/proxy/wsframe"
)

// ending is how a session ended, for its log line, span and recording.
type ending struct {
	closeCode   ws.StatusCode
	closeReason string
}

// refuse answers a viewer that is not upgraded with an HTTP error, logs the
// refusal (the session's only log line) and closes the viewer. It returns
// gnet.None for callers that answer a gnet callback.
func (s *session) refuse(err error) gnet.Action {
	if s.state >= stRelay {
		return gnet.None
	}
	var he *upgrade.Error
	if !errors.As(err, &he) {
		he = &upgrade.Error{Status: http.StatusBadRequest, Message: "bad request"}
	}
	s.recordRefusal(he)
	_, _ = s.viewer.Write(upgrade.AppendError(nil, he))
	s.closeViewer(stClosed)
	return gnet.None
}

// recordRefusal counts, logs and traces a refused upgrade: the session's
// only log line, and its span ends here.
func (s *session) recordRefusal(he *upgrade.Error, attrs ...any) {
	s.srv.upgradeFailures.Add(1)
	s.status = he.Status
	s.closeReason = "http-" + http.StatusText(he.Status)
	if tr := s.srv.cfg.Tracing; tr != nil {
		tr.UpgradeFailed(he.Status)
	}
	attrs = append([]any{"status", he.Status, "reason", he.Message}, attrs...)
	attrs = append(attrs, "viewer", addrString(s.viewerAddr()), "path", pathOf(s.req))
	s.srv.cfg.Logger.Info("upgrade refused", append(attrs, append(refusalAttrs(s.req, he), s.traceAttrs()...)...)...)
	s.logged = true
	s.endSpan()
}

// refuseAfterUpgrade answers as the reference platform does: accept the
// WebSocket, then close it, because browsers cannot read the HTTP status of a
// failed upgrade: 1002 for credentials, 1013 for a session that is not ready.
func (s *session) refuseAfterUpgrade(he *upgrade.Error) {
	code := ws.StatusCode(1013)
	switch he.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		code = ws.StatusProtocolError
	}
	s.closeCode = code // the viewer saw a WebSocket close (span, metric)
	s.recordRefusal(he, "compat_close", int(code))
	_, _ = s.viewer.Write(upgrade.AppendResponse(nil, s.req, s.proto))
	_, _ = s.viewer.Write(wsframe.AppendClose(nil, code, he.Message, nil))
	s.closeViewer(stClosed)
}

// endWith closes the session with code and reason: the upstream now, the
// viewer once it answers our close frame (or CloseTimeout passes: expire).
// Call sites use end, endDetail or endFrame (reasons.go), not this.
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

// endAsyncWith ends a session from any goroutine (endWith). Call sites use
// endAsync or endAsyncDetail (reasons.go), not this.
func (s *session) endAsyncWith(code ws.StatusCode, reason string) {
	_ = s.viewer.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if s.state == stRelay {
			s.events.Add("vnc.end", attribute.String("reason", reason))
			s.endWith(code, reason)
		}
		return nil
	}))
}

// drop closes the viewer now, without a close handshake, and the upstream
// with it. r is recorded as the session's end unless one already was (a
// session at stClosing keeps its own).
func (s *session) drop(r endReason) {
	if s.state == stClosed {
		return
	}
	switch {
	case s.state < stRelay:
		s.closeCode, s.closeReason = 0, r.text() // no WebSocket: no close code
	case s.state < stClosing:
		s.setClose(r)
	}
	if s.state < stRelay {
		s.closeViewer(stClosed)
		return
	}
	s.closeUpstream()
	s.closeViewer(stClosing)
}

// closeViewer moves the session to st and closes the viewer conn; finish
// follows when gnet has closed it.
func (s *session) closeViewer(st sessionState) {
	s.state = st
	_ = s.viewer.Close()
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

// finish runs once, when the viewer conn is gone (its OnClose), however the
// session ended: it releases everything the session holds.
func (s *session) finish(err error) {
	s.endDial()
	closeBridge(s.vbridge) // a TLS viewer's bridge ends with its conn, not at a write timeout
	s.vbridge = nil
	switch {
	case s.state == stRelay: // no door taken: the viewer vanished
		s.setClose(reasonViewerGone)
	case s.state < stRelay && s.closeReason == "": // gone before the 101
		s.closeCode, s.closeReason = 0, reasonViewerGone.text()
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
	s.recEnd()
	s.logEnd(err)
	s.endSpan()
	s.srv.active.Add(-1) // last: a session counted out has written everything
}

// goingAway closes a session for server shutdown, on its loop.
type goingAway session

func (g *goingAway) Run(context.Context) error {
	s := (*session)(g)
	switch s.state {
	case stRelay:
		s.end(reasonServerShutdown)
	case stUpgrade, stDialing:
		s.drop(reasonServerShutdown)
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
	s.timedOut()
	return nil
}

// dialGrace is how long past DialTimeout a dialing viewer waits before it is
// answered 504 without the dial's result (a Resolver that ignores its context).
const dialGrace = time.Second

// timedOut ends a session past its deadline: an upgrade not completed within
// HandshakeTimeout (dropped), a dial without a result past DialTimeout and
// dialGrace (504), or a close not answered within CloseTimeout (dropped).
func (s *session) timedOut() {
	if s.state == stDialing {
		s.srv.cfg.Logger.Warn("upstream dial gave no result in time", "timeout", s.srv.cfg.DialTimeout+dialGrace, "path", pathOf(s.req))
		s.refuse(&upgrade.Error{Status: http.StatusGatewayTimeout, Message: "upstream dial timed out"})
		return
	}
	if s.state == stUpgrade {
		s.logged = true
		s.srv.upgradeFailures.Add(1)
	}
	s.drop(reasonUpgradeTimeout) // kept only for stUpgrade: a closing session has its reason
}
