// session.go defines a viewer session: the session struct that every session_*,
// relay_*, flow_pause, keepalive, finish and observe file works on (a message
// channel's own part is msgChannel, msgchannel.go), its
// lifecycle (sessionState, with every transition listed), the upstream conn's
// context (upstreamConn), newSession, and viewerTraffic, which routes the
// viewer's bytes by state: to readUpgrade, held while dialing or paused, or to
// the relay (fromViewer).

package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/trace"

	"vncedge/proxy/record"
	"vncedge/proxy/upgrade"
	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// sessionState is where a session is in its life. It is read and written only
// on the session's loop (the deadline, read by the ticker, is separate). The
// order matters: endWith ignores a session at stClosing or later.
//
// Transitions, and where they happen:
//
//	stUpgrade → stDialing  readUpgrade: a valid request head, the dial (or the
//	                       messages channel's resolve) starts off the loop
//	stUpgrade → stClosed   reject (from readUpgrade, admitOpen), readProxy (a bad
//	                       PROXY header), serveWeb (a plain HTTP request, handed
//	                       to the web server)
//	stDialing → stRelay    upstreamOpen (VNC channel), msgChannel.open (messages channel)
//	stDialing → stClosed   reject (answerDialFailure; upstreamOpen or msgChannel.open
//	                       refusing the pair; msgChannel.open without a client_id),
//	                       refuseAfterUpgrade (--compat)
//	stDialing → stClosing  endWith, when upstreamOpen or msgChannel.open cannot write the 101
//	stRelay   → stClosing  endWith (end, endDetail, endFrame, endAsyncWith);
//	                       viewerFrames.OnControl (the viewer's close, echoed);
//	                       relayCheck (ping timeout); pumpEvent.Run (the pump
//	                       failed to write to the viewer)
//	any       → stClosed   viewerClosed (the viewer conn's OnClose)
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
// upstream conn's context is an upstreamConn pointing back here.
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
	// nextCheck (unix ns, 0 = none) is when the ticker runs relayCheck:
	// keepalive pings, idle and maximum-duration limits.
	nextCheck atomic.Int64

	admitted   bool
	ipPending  bool               // the per-IP count waits for the real address (caps.go)
	dialCancel context.CancelFunc // stops the dial or resolve in flight (stDialing)
	org        string             // organization whose slot this session holds (orgHeld)
	orgHeld    bool
	ip         string
	pingsOut   int   // pings sent and not answered
	pongOwed   bool  // a pong was queued and the viewer's outbound was not empty after
	lastViewer int64 // coarse unix ns of the last viewer read

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
	wsUp  bool

	vdec wsframe.Decoder // viewer frames (we are the server)
	udec wsframe.Decoder // upstream frames for ws/wss upstreams (we are the client)
	rfb  *rfbparse.Stream
	down *rfbparse.ViewFilter // viewer role: the server stream, framed (viewdown.go)

	// Upstream side (upstream_side.go).
	maskRNG      maskStream // a fresh client mask per frame to ws upstreams
	bridge       io.Closer  // the wss bridge; closed with the upstream
	upPongOwed   bool       // a ping from the upstream waits for its pong
	pongLen      uint8
	pongBody     [125]byte
	lastUpstream int64 // coarse unix ns of the last upstream read

	vhdr [wsframe.MaxHeaderSize]byte       // header of a frame to the viewer
	uhdr [wsframe.MaxHeaderSize]byte       // header of a frame to the upstream
	vec  [2][]byte                         // writev vector (gnet modifies it in place)
	ctl  [wsframe.MaxHeaderSize + 125]byte // control frames we send

	// Upstream-bound writes of one viewer read are batched into one writev.
	// Slices of the viewer's buffer go in as they are; bytes the parser holds
	// in its own arrays (a prefix split across reads) are copied to arena.
	iov          [batchIOV][]byte
	niov, narena int
	arena        [batchArena]byte
	curLo, curHi uintptr // bounds of the viewer buffer being processed

	bytesUp, bytesDown   uint64 // RFB payload bytes: viewer→server passed, server→viewer
	framesUp, framesDown uint64
	pauses               uint64 // times the upstream was paused for a slow viewer

	// Backpressure: while the viewer's outbound is over the high watermark the
	// upstream conn is taken off the loop (its socket kept open by pausedFD), so
	// the kernel window closes on the VNC server; it is enrolled again below the
	// low watermark.
	paused, pauseReq bool
	pausedFD         int
	resumeTimer      *time.Timer
	resumeDelay      time.Duration
	resumeBackoff    bool // resumeDelay is growing: set while paused

	closeCode   ws.StatusCode
	closeReason string
	logged      bool

	// Tracing: the session span, its context, and events kept until the end.
	span   trace.Span
	spanCx context.Context
	events tracing.EventLog
	status int // HTTP status of a refused upgrade

	rec *record.Recording // nil unless recorded (proxy/recording.go)

	// pump carries the server stream of a raw-TCP upstream once the RFB
	// handshake is done (downpump_linux.go); nil before, and on the gnet path.
	pump       *downPump
	pumpHalted bool // stopPump ran
	noPump     bool // a pump could not start: the session stays on gnet
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
	s := &session{srv: srv, viewer: c, remote: c.RemoteAddr(), start: time.Now(), pausedFD: -1,
		viewerCap: srv.cfg.MaxViewerBuffer}
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
			s.setClose(reasonEarlyDataLimit)
			return gnet.Close
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
			}
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
