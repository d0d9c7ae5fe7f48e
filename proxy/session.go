// session.go defines a viewer session: the session struct that every session_*,
// relay_*, flow_pause, keepalive, finish and observe file works on (a message
// channel's own part is msgChannel, msgchannel.go), its lifecycle
// (sessionState, with every transition listed; finish.go is the way out), the
// upstream conn's
// context (upstreamConn), newSession, and viewerTraffic, which routes the
// viewer's bytes by state: to readUpgrade, held while dialing or paused, or to
// the relay (fromViewer).

package proxy

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/record"
	"vncedge/proxy/upgrade"
	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

// sessionState is where a session is in its life. It is read and written only
// on the session's loop (the deadline, read by the ticker, is separate). The
// order matters: endWith ignores a session at stClosing or later.
//
// Transitions, and where they happen. Every end goes out through finish.go:
// one of its doors (refuse, endWith, drop), then finish, the viewer conn's
// OnClose, which releases everything whatever the door.
//
//	stUpgrade → stDialing  readUpgrade: a valid request head, the dial (or the
//	                       messages channel's resolve) starts off the loop
//	stDialing → stRelay    upstreamOpen (VNC channel), msgChannel.open (messages channel)
//	stUpgrade,             refuse: an HTTP error (readUpgrade, admitOpen,
//	stDialing → stClosed   answerDialFailure, a pair refused by upstreamOpen or
//	                       msgChannel.open, a dial with no result by DialTimeout
//	                       and dialGrace: expire, 504); refuseAfterUpgrade
//	                       (--compat); drop (a bad PROXY header, early data
//	                       over the limit, the upgrade's deadline, server
//	                       shutdown, a viewer accepted as it began); serveWeb
//	                       (a plain HTTP request, handed to the web server)
//	stDialing,             endWith (end, endDetail, endFrame, endAsync): our close
//	stRelay   → stClosing  frame; drop: no handshake (the viewer's close echoed,
//	                       a broken frame stream, a ping timeout, the pump's
//	                       failed write to the viewer)
//	stClosing → stClosed   finish; drop at CloseTimeout (expire) first
//	any       → stClosed   finish (the viewer conn's OnClose)
//
// Nothing moves a session backwards.
type sessionState uint8

// Session states, in order.
const (
	stUpgrade sessionState = iota // reading the viewer's HTTP request head
	stDialing                     // resolving and dialing the upstream off the loop
	stRelay                       // both conns open, relaying
	stClosing                     // close frame sent to the viewer, waiting for its reply
	stClosed                      // done: the viewer conn is closed, being closed, or handed off (serveWeb)
)

// String names the state for logs and tests.
func (st sessionState) String() string {
	switch st {
	case stUpgrade:
		return "upgrade"
	case stDialing:
		return "dialing"
	case stRelay:
		return "relay"
	case stClosing:
		return "closing"
	case stClosed:
		return "closed"
	}
	return "sessionState(" + strconv.Itoa(int(st)) + ")"
}

// session is one viewer connection: for a VNC channel, the viewer, its
// upstream and the RFB stream between them; for a message channel, the
// viewer connection core its msgChannel rides on (upgrade, admission,
// keepalive, close, logs, span). It is the viewer conn's context; the
// upstream conn's context is an upstreamConn pointing back here. Its fields
// are the core below and one small part per concern, each defined in the
// file that works on it.
type session struct {
	srv     *Server
	viewer  gnet.Conn
	remote  net.Addr  // the viewer's address (viewerAddr)
	proxied bool      // the PROXY protocol header was read (realaddr.go)
	desktop string    // key of the desktop whose keyboard the policy shares (desktop.go)
	vbridge io.Closer // a TLS viewer's bridge (tlsbridge.go), closed when the viewer conn closes
	up      gnet.Conn // nil until enrolled, and again once closed
	state   sessionState
	// deadline (unix ns, 0 = none) is read by the ticker goroutine.
	deadline atomic.Int64

	pair *pair // shared with the viewer's other channel; nil without client_id
	// msg is the message channel this session carries (msgchannel.go); nil
	// for a VNC channel. Set by readUpgrade when the path names one.
	msg *msgChannel
	// data takes the viewer's data frames in stRelay, set when the channel
	// opens: the RFB stream (vncData, relay_up.go) or the message channel.
	data      dataSink
	viewerCap int // the viewer's outbound cap (viewerout.go)
	// published is the route, readable off the loop (liveness checks).
	published atomic.Pointer[Route]

	start time.Time
	req   *upgrade.Request
	proto string
	route *Route

	vdec wsframe.Decoder // viewer frames (we are the server)
	rfb  *rfbparse.Stream
	down *rfbparse.ViewFilter // viewer role: the server stream, framed (viewdown.go)

	admission          // caps.go: the slots this session holds
	keepalive          // keepalive.go: pings, idle and duration checks
	wsUpstream         // upstream_side.go: a ws/wss upstream's framing
	viewerOut          // viewerout.go: frames we write to the viewer
	batch      upBatch // relay_up.go: upstream-bound writes of one viewer read
	flowPause          // flow_pause.go: the gnet path's backpressure
	pumpState          // downpump.go: the splice pump, once started
	ending             // finish.go: the close code and reason
	observed           // observe.go: counters, span and log state

	rec *record.Recording // nil unless recorded (proxy/recording.go)
}

// upstreamConn is the upstream conn's context.
type upstreamConn struct {
	s       *session
	early   []byte // bytes read by the ws dialer past its 101
	route   *Route // handed to the session on the loop, in upstreamOpen
	resumed bool   // enrolled again after a pause

	bridge io.Closer // the wss bridge behind a socketpair conn, handed to the session
}

func newSession(srv *Server, c gnet.Conn) *session {
	s := &session{srv: srv, viewer: c, remote: c.RemoteAddr(), start: time.Now()}
	s.pausedFD = -1
	s.viewerCap = srv.cfg.MaxViewerBuffer
	s.deadline.Store(s.start.Add(srv.cfg.HandshakeTimeout).UnixNano())
	s.vdec = wsframe.Decoder{Role: wsframe.Server, MaxPayload: srv.cfg.MaxFramePayload}
	s.udec = wsframe.Decoder{Role: wsframe.Client}
	srv.active.Add(1)
	srv.total.Add(1)
	return s
}

// viewerTraffic handles bytes from the viewer in every state.
func (s *session) viewerTraffic(c gnet.Conn) gnet.Action {
	switch s.state {
	case stUpgrade:
		return s.readUpgrade(c)
	case stDialing:
		// The client must wait for the 101; keep what it pipelined, within bounds.
		if c.InboundBuffered() > s.srv.cfg.MaxEarlyBytes {
			s.logf(slog.LevelWarn, "viewer sent too much before the upgrade completed")
			s.drop(reasonEarlyDataLimit)
		}
		return gnet.None
	case stRelay, stClosing:
		if s.paused && s.state == stRelay {
			// Hold viewer input (unread, in gnet's buffer) while the upstream is
			// off the loop, within MaxPausedInput: a paste may arrive meanwhile.
			// (Not behind a spliced session's short upstream write: that input
			// queues behind it in the pump, within MaxUpstreamBuffer, so the
			// viewer's pongs and close are still read while the server is slow.)
			if c.InboundBuffered() > s.srv.cfg.MaxPausedInput {
				s.end(reasonViewerInputLimit)
				return gnet.None
			}
			s.resumeCheck() // the drain waiter's wake-up, or viewer bytes (flow_pause.go)
			return gnet.None
		}
		buf, _ := c.Next(-1)
		s.fromViewer(buf)
		return gnet.None
	}
	_, _ = c.Discard(-1)
	return gnet.None
}

func ipOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return addrString(a)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func pathOf(r *upgrade.Request) string {
	if r == nil {
		return ""
	}
	return r.Path
}
