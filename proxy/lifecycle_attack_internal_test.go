package proxy

// White-box attacks on the session lifecycle (finish.go): ends that need a
// viewer conn whose write fails at a chosen moment, which no real socket
// gives on demand. lcConn does what gnet's conn does there: a failed write
// closes the conn and runs OnClose (finish) before Write returns.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// lcConn is a viewer or upstream conn with only what a session's open and
// end use; any other method panics (the embedded interface is nil).
type lcConn struct {
	gnet.Conn
	loop      *lcLoop
	s         *session // whose finish a failed write runs (as gnet's OnClose would)
	failWrite error
	closed    bool
}

func (c *lcConn) RemoteAddr() net.Addr      { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000} }
func (c *lcConn) EventLoop() gnet.EventLoop { return c.loop }
func (c *lcConn) InboundBuffered() int      { return 0 }
func (c *lcConn) OutboundBuffered() int     { return 0 }
func (c *lcConn) SetNoDelay(bool) error     { return nil }
func (c *lcConn) Close() error              { c.closed = true; return nil }

func (c *lcConn) Write(p []byte) (int, error) {
	if c.failWrite != nil && !c.closed {
		c.closed = true
		c.s.finish(c.failWrite) // gnet: loop.close → OnClose, inside Write
		return 0, c.failWrite
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *lcConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		k, err := c.Write(b)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// lcLoop records the tasks handed to it instead of running them.
type lcLoop struct {
	gnet.EventLoop
	tasks []gnet.Runnable
}

func (l *lcLoop) Execute(_ context.Context, r gnet.Runnable) error {
	l.tasks = append(l.tasks, r)
	return nil
}

func lcServer(t *testing.T) *Server {
	t.Helper()
	u, _ := url.Parse("tcp://127.0.0.1:5900")
	srv, err := New(Config{Addr: "127.0.0.1:1", Resolver: &TargetResolver{Upstream: u},
		Policy: rfbparse.DefaultPolicy(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// lcSession is a session on a fake viewer conn, past its request head.
func lcSession(srv *Server, failWrite error) (*session, *lcConn) {
	c := &lcConn{loop: &lcLoop{}, failWrite: failWrite}
	s := newSession(srv, c)
	c.s = s
	s.req = &upgrade.Request{Path: "/v1/stream/vnc/browser_session/pbs_1"}
	s.state = stDialing
	return s, c
}

// TestLifecycleReplacingChannelDiesOnIts101: a viewer's channel replaces its
// older channel of the same client_id (attach), then its own 101 cannot be
// written (the viewer reset meanwhile: gnet closes the conn and runs finish
// inside Write). The older channel has been taken out of the pair by the
// attach, and the new one leaves it at once: the older one must then be
// ended ("replaced") or stay in the pair, not live on outside it, where no
// change of control, clipboard call or watcher reaches it.
func TestLifecycleReplacingChannelDiesOnIts101(t *testing.T) {
	rt := func() *Route {
		u, _ := url.Parse("tcp://127.0.0.1:5900")
		return &Route{Kind: "browser_session", ID: "pbs_1", Organization: "o1", ClientID: "c1", Upstream: u, Control: rfbparse.User}
	}
	t.Run("messages", func(t *testing.T) {
		srv := lcServer(t)
		old, oldConn := lcSession(srv, nil)
		mOld := newMsgChannel(old)
		p, _, _, ok := srv.reg.attachMessages(mOld, rt())
		if !ok {
			t.Fatal("attach")
		}
		old.pair, old.route, old.state = p, rt(), stRelay

		s, _ := lcSession(srv, syscall.ECONNRESET)
		newMsgChannel(s).open(rt())

		if s.state != stClosed {
			t.Fatalf("the new channel is %v, want closed", s.state)
		}
		_, msg := srv.reg.peers(p)
		if msg != mOld && len(oldConn.loop.tasks) == 0 {
			t.Errorf("the replaced message channel was taken out of its pair (now %p) and never ended: it lives on orphaned", msg)
		}
	})
	t.Run("vnc", func(t *testing.T) {
		srv := lcServer(t)
		old, oldConn := lcSession(srv, nil)
		p, _, _, ok := srv.reg.attachVNC(old, rt())
		if !ok {
			t.Fatal("attach")
		}
		old.pair, old.route, old.state = p, rt(), stRelay

		s, _ := lcSession(srv, syscall.ECONNRESET)
		up := &lcConn{loop: &lcLoop{}}
		s.upstreamOpen(up, &upstreamConn{s: s, route: rt()})

		if s.state != stClosed {
			t.Fatalf("the new channel is %v, want closed", s.state)
		}
		if !up.closed {
			t.Error("the new channel's upstream was left open")
		}
		vnc, _ := srv.reg.peers(p)
		if vnc != old && len(oldConn.loop.tasks) == 0 {
			t.Errorf("the replaced VNC channel was taken out of its pair (now %p) and never ended: it lives on orphaned, its control no longer changed by the pair", vnc)
		}
	})
}
