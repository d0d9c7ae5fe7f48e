package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/trace"

	"vncedge/proxy/upgrade"
	"vncedge/tracing"
)

// dialJob is everything a dial or resolve goroutine may use, copied on the
// session's loop when the goroutine starts. The goroutine reads no session
// field: s is carried only to name the session in the results it hands back
// through loop.Execute (see the package doc, "One owner per field").
type dialJob struct {
	s      *session       // never dereferenced off the loop
	srv    *Server        // immutable config; caps under srv.mu
	loop   gnet.EventLoop // the viewer's loop (results run there)
	ctx    context.Context
	cancel context.CancelFunc // also called on the loop (takeResult, endDial): idempotent
	req    *upgrade.Request   // not modified after the head is parsed
	log    *slog.Logger       // built on the loop
	span   trace.Span         // session span (OTel spans are safe for concurrent use)
}

// dialResult is what a dial or resolve goroutine hands back to the loop.
type dialResult struct {
	route   *Route
	org     string // organization whose slot was taken (orgHeld)
	orgHeld bool
	conn    net.Conn  // the dialed upstream (VNC channel), nil for messages
	bridge  io.Closer // the wss bridge behind conn, if any
	early   []byte
	fail    *upgrade.Error // set when the dial or resolve failed
}

// newDialJob starts the dial phase, on the loop: the context (session span,
// DialTimeout) is cancelled when the viewer leaves, so a dial in flight
// stops at once instead of running to its timeout.
func (s *session) newDialJob() *dialJob {
	ctx, cancel := context.WithTimeout(s.traceCtx(), s.srv.cfg.DialTimeout)
	s.dialCancel = cancel
	return &dialJob{s: s, srv: s.srv, loop: s.viewer.EventLoop(), ctx: ctx, cancel: cancel, req: s.req, log: s.logger(), span: s.span}
}

// resolveRoute runs the Resolver in a child span, off the loop.
func (j *dialJob) resolveRoute() (*Route, error) {
	cfg := &j.srv.cfg
	tr := cfg.Tracing
	if tr == nil {
		return cfg.Resolver.Resolve(j.ctx, j.req)
	}
	rctx, span := tr.StartChild(j.ctx, tracing.SpanResolve)
	began := time.Now()
	route, err := cfg.Resolver.Resolve(rctx, j.req)
	var he *upgrade.Error
	tr.ControlPlaneLatency("resolve", time.Since(began), err == nil || errors.As(err, &he) && he.Status < 500)
	tracing.EndChild(span, err)
	if err == nil && j.span != nil {
		info := tracing.SessionInfo{Kind: route.Kind, ID: route.ID, Organization: route.Organization, ClientID: route.ClientID}
		if u := route.Upstream; u != nil {
			info.UpstreamScheme, info.UpstreamHost = u.Scheme, u.Host
		}
		tr.AnnotateSession(j.span, info)
	}
	return route, err
}

// takeOrg counts the route against its organization's cap, off the loop.
// The slot travels in the result and belongs to the session once the loop
// accepted it; until then whoever holds the result releases it.
func (j *dialJob) takeOrg(r *dialResult) *upgrade.Error {
	if j.srv.cfg.MaxPerOrg <= 0 {
		return nil
	}
	if he := j.srv.admitOrg(r.route.Organization); he != nil {
		return he
	}
	r.org, r.orgHeld = r.route.Organization, true
	return nil
}

// discard releases what a result holds that the session did not take.
func (j *dialJob) discard(r *dialResult) {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
	closeBridge(r.bridge)
	r.bridge = nil
	if r.orgHeld {
		j.srv.releaseOrg(r.org)
		r.orgHeld = false
	}
}

// finish hands r to the session's loop, where done runs with it; if the loop
// no longer runs tasks, what r holds is released here.
func (j *dialJob) finish(r *dialResult, done func(*session, *dialResult)) {
	err := j.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		done(j.s, r)
		return nil
	}))
	if err != nil {
		j.discard(r)
	}
}

// failResult is a result that carries only an HTTP refusal.
func failResult(he *upgrade.Error) *dialResult { return &dialResult{fail: he} }

// takeResult runs on the loop: it ends the dial phase and reports whether
// the session still waits for r. If it does not (the viewer left, or the
// server is shutting down) r's conn and organization slot are released. If
// it does, the organization slot becomes the session's, released with it.
func (s *session) takeResult(r *dialResult) bool {
	if s.dialCancel != nil {
		s.dialCancel()
		s.dialCancel = nil
	}
	if s.state != stDialing {
		(&dialJob{srv: s.srv}).discard(r)
		return false
	}
	if r.orgHeld {
		s.org, s.orgHeld, r.orgHeld = r.org, true, false
	}
	return true
}

// dialDone runs on the loop with the dial goroutine's result: refuse the
// viewer, or enroll the upstream on this loop (its OnOpen continues in
// upstreamOpen; the enroll result is never waited on).
func dialDone(s *session, r *dialResult) {
	if !s.takeResult(r) {
		return
	}
	if r.fail != nil {
		s.answerDialFailure(r.fail)
		return
	}
	up := &upstreamConn{s: s, early: r.early, route: r.route, bridge: r.bridge}
	conn := r.conn
	r.conn, r.bridge = nil, nil
	if _, err := s.viewer.EventLoop().Enroll(gnet.NewContext(context.Background(), up), conn); err != nil {
		_ = conn.Close()
		closeBridge(up.bridge)
		s.answerDialFailure(&upgrade.Error{Status: http.StatusServiceUnavailable, Message: "shutting down"})
	}
}

// messagesResolved runs on the loop with a message channel's resolve result.
func messagesResolved(s *session, r *dialResult) {
	if !s.takeResult(r) {
		return
	}
	if r.fail != nil {
		s.answerDialFailure(r.fail)
		return
	}
	s.msg.open(r.route)
}

// endDial cancels a dial in flight when the viewer leaves, on the loop.
func (s *session) endDial() {
	if s.dialCancel != nil {
		s.dialCancel()
		s.dialCancel = nil
	}
}

// releaseOrg gives back one slot of org's cap (a dial result not taken).
func (srv *Server) releaseOrg(org string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.perOrg[org]--; srv.perOrg[org] <= 0 {
		delete(srv.perOrg, org)
	}
}
