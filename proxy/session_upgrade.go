// session_upgrade.go takes a viewer from its first bytes to the relay: it reads and
// checks the HTTP upgrade (readUpgrade), refuses it with an HTTP error or, with
// --compat, a close after the 101 (answerDialFailure picks; finish.go answers),
// resolves and dials the upstream off the loop (dialJob.dial, resolveStatus), and
// once the upstream is enrolled answers 101 and starts relaying (upstreamOpen,
// drainViewer).

package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/trace"

	"vncedge/proxy/upgrade"
	"vncedge/tracing"
)

// readUpgrade waits for a complete request head, checks it, and starts the dial.
func (s *session) readUpgrade(c gnet.Conn) gnet.Action {
	if s.srv.cfg.ProxyProtocol && !s.proxied {
		if act, ok := s.readProxy(c); !ok {
			return act
		}
	}
	buf, _ := c.Peek(-1)
	n := upgrade.End(buf)
	if n < 0 {
		if len(buf) > upgrade.MaxRequestSize {
			return s.refuse(upgrade.ErrTooLarge)
		}
		return gnet.None
	}
	if n > upgrade.MaxRequestSize {
		return s.refuse(upgrade.ErrTooLarge)
	}
	if d := s.deadline.Load(); d != 0 && time.Now().UnixNano() > d {
		// Complete, but late: the sweep (a tick apart) has not run yet.
		s.timedOut()
		return gnet.None
	}
	req, err := upgrade.Parse(buf[:n])
	if err != nil {
		return s.refuse(err)
	}
	if s.srv.cfg.Web != nil && isWebRequest(req) {
		return s.serveWeb(c)
	}
	s.forwardedAddr(req)
	s.req = req // for the refusal's log line
	proto, err := upgrade.Check(req, &upgrade.Options{AllowedOrigins: s.srv.cfg.AllowedOrigins, Subprotocol: "binary"})
	if err != nil {
		return s.refuse(err)
	}
	if err := checkStreamTarget(req); err != nil {
		return s.refuse(err)
	}
	if he := s.admitRealIP(); he != nil {
		return s.refuse(he)
	}
	s.req = req
	if tr := s.srv.cfg.Tracing; tr != nil {
		_, kind, id, _ := ParseStreamPath(req.Path)
		s.spanCx, s.span = tr.StartSession(req.Get("traceparent"), tracing.SessionInfo{Kind: kind, ID: id,
			ClientID: req.Query.Get("client_id"), Viewer: addrString(s.viewerAddr()), Start: s.start})
		tr.SessionOpened()
	}
	_, _ = c.Discard(n) // pipelined bytes stay in gnet's buffer until the relay starts
	s.req, s.proto, s.state = req, proto, stDialing
	// The dial's own context ends it at DialTimeout; this deadline answers the
	// viewer should a Resolver not heed its context (expire: 504).
	s.deadline.Store(time.Now().Add(s.srv.cfg.DialTimeout + dialGrace).UnixNano())
	if ch, _, _, ok := ParseStreamPath(req.Path); ok && ch == "messages" {
		newMsgChannel(s)
		go s.newDialJob().resolveMessages()
		return gnet.None
	}
	go s.newDialJob().dial()
	return gnet.None
}

// dial runs off the loop: resolve, take the organization's slot, dial, then
// hand the upstream to the viewer's loop (dialDone enrolls it there). It
// reads no session field: everything comes from j, results go back through
// the loop.
func (j *dialJob) dial() {
	defer j.cancel()
	cfg := &j.srv.cfg
	route, err := j.resolveRoute()
	if err != nil {
		j.finish(failResult(resolveStatus(cfg, err, j.req)), dialDone)
		return
	}
	r := &dialResult{route: route}
	if he := j.takeOrg(r); he != nil {
		j.finish(failResult(he), dialDone)
		return
	}
	dialCtx, dialSpan := j.ctx, trace.Span(nil)
	if tr := cfg.Tracing; tr != nil {
		dialCtx, dialSpan = tr.StartChild(j.ctx, tracing.SpanDial)
	}
	began := time.Now()
	j.srv.vetCDP(route)
	conn, early, br, err := dialUpstream(dialCtx, route, cfg.UpstreamTLS, cfg.Tracing, &j.srv.conns, j.srv.guard, cfg.UpstreamRecvBuffer)
	if tr := cfg.Tracing; tr != nil {
		tr.DialLatency(time.Since(began), err == nil)
		tracing.EndChild(dialSpan, err)
	}
	if err != nil {
		if j.ctx.Err() == context.Canceled {
			j.discard(r) // the viewer left: nobody to answer
			return
		}
		j.log.Warn("upstream dial failed", "err", tracing.Redact(err.Error()))
		j.discard(r)
		j.finish(failResult(dialStatus(err)), dialDone)
		return
	}
	r.conn, r.early, r.bridge = conn, early, br
	j.finish(r, dialDone)
}

// resolveStatus turns a resolver error into the viewer's HTTP answer.
func resolveStatus(cfg *Config, err error, r *upgrade.Request) *upgrade.Error {
	var he *upgrade.Error
	if errors.As(err, &he) {
		he2 := *he
		he2.Header = append(he2.Header[:len(he2.Header):len(he2.Header)], [2]string{compatMarker, "1"})
		return &he2
	}
	cfg.Logger.Warn("resolve failed", "err", tracing.Redact(err.Error()), "path", r.Path)
	return &upgrade.Error{Status: http.StatusBadGateway, Message: "cannot resolve session",
		Header: [][2]string{{compatMarker, "1"}}}
}

// compatMarker tags resolver refusals, which --compat=skyvern answers after
// the upgrade; it is stripped before anything is written.
const compatMarker = "X-Vncedge-Resolve"

// answerDialFailure answers the waiting viewer with an HTTP error, on its loop.
func (s *session) answerDialFailure(he *upgrade.Error) {
	resolveErr := false
	if n := len(he.Header); n > 0 && he.Header[n-1][0] == compatMarker {
		resolveErr = true
		h := *he
		h.Header = he.Header[:n-1]
		he = &h
	}
	if resolveErr && s.srv.cfg.Compat {
		s.refuseAfterUpgrade(he)
		return
	}
	s.refuse(he)
}

// upstreamOpen runs on the viewer's loop once the upstream is enrolled: answer
// 101, then relay what either side already sent.
func (s *session) upstreamOpen(c gnet.Conn, up *upstreamConn) gnet.Action {
	if up.resumed {
		if s.state != stRelay {
			return gnet.Close
		}
		s.up, s.paused = c, false
		s.drainViewer()
		return gnet.None
	}
	if s.state != stDialing {
		closeBridge(up.bridge)
		return gnet.Close
	}
	s.up, s.route, s.bridge = c, up.route, up.bridge
	_ = c.SetNoDelay(true)
	rt := s.route
	s.wsUp = rt.Upstream.Scheme == "ws" || rt.Upstream.Scheme == "wss"
	control := rt.Control
	if rt.ClientID != "" {
		p, replaced, ctl, ok := s.srv.reg.attachVNC(s, rt)
		if !ok {
			s.refuse(pairRefusal)
			return gnet.Close // the upstream conn
		}
		if replaced != nil {
			// Now, not after the 101: a failed write finishes this session
			// inside Write, and the replaced one is already out of the pair.
			replaced.endAsync(reasonReplaced)
		}
		s.pair, control = p, ctl
		s.srv.reg.notifyWatchers(p) // a controller back in control drives again (roles.go)
	}
	s.rfb = newRoleStream(s.srv.cfg.Policy, rt.Role, control)
	s.data = (*vncData)(s)
	s.shareKeys() // one keyboard per VNC server (desktop.go)
	s.down = newViewDown(rt.Role)
	ua := s.req.UserAgent
	s.rfb.SetMac(strings.Contains(ua, "Macintosh") || strings.Contains(ua, "Mac OS X"))
	if s.wsUp {
		s.maskRNG.seed()
	}
	if _, err := s.viewer.Write(upgrade.AppendResponse(nil, s.req, s.proto)); err != nil {
		s.end(reasonViewerWriteFailed)
		return gnet.None
	}
	s.state = stRelay
	s.deadline.Store(0)
	s.recStart()
	s.publish()
	s.logStart()
	s.startChecks()
	if len(up.early) > 0 {
		s.fromUpstream(up.early)
		up.early = nil
	}
	s.drainViewer()
	return gnet.None
}

// drainViewer relays viewer bytes that waited in gnet's buffer (pipelined
// after the upgrade, or sent while the upstream was paused).
func (s *session) drainViewer() {
	if s.state == stRelay && s.viewer.InboundBuffered() > 0 {
		buf, _ := s.viewer.Next(-1)
		s.fromViewer(buf)
	}
}
