package proxy_test

// Attacks on the session lifecycle (finish.go, issue #15): every way a
// session ends must leave the server clean (no session counted, no slot of
// any cap held, no pair left holding a channel, no socket or goroutine left),
// log what the reasons table says, and a session ended several ways at once,
// or whose dial result arrives after it ended, must end once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// lcResolver routes every stream path to up for organization "o1" (or the
// query's org), with the viewer's client_id. gate, when set, holds Resolve until it is closed (or,
// unless ignoreCtx, the context ends); entered counts calls that began.
type lcResolver struct {
	up         *url.URL
	gate       chan struct{}
	ignoreCtx  bool
	mu         sync.Mutex
	refuse     error // under mu
	noClientID bool  // under mu: a non-platform route without client_id
	entered    chan struct{}
	returned   atomic.Int64
	gated      atomic.Bool    // only the first Resolve waits at the gate
	live       proxy.Verifier // the routes' Verifier, if any
}

func (r *lcResolver) Resolve(ctx context.Context, req *upgrade.Request) (*proxy.Route, error) {
	defer r.returned.Add(1)
	if r.entered != nil {
		select {
		case r.entered <- struct{}{}:
		default:
		}
	}
	if r.gate != nil && r.gated.CompareAndSwap(false, true) {
		if r.ignoreCtx {
			<-r.gate
		} else {
			select {
			case <-r.gate:
			case <-ctx.Done():
				return nil, fmt.Errorf("lcResolver: %w", ctx.Err())
			}
		}
	}
	r.mu.Lock()
	refuse, noClientID := r.refuse, r.noClientID
	r.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	if noClientID {
		return &proxy.Route{Upstream: r.up, Control: rfbparse.User, Organization: "o1"}, nil
	}
	_, kind, id, _ := proxy.ParseStreamPath(req.Path)
	org := req.Query.Get("org")
	if org == "" {
		org = "o1"
	}
	return &proxy.Route{Kind: kind, ID: id, Organization: org, ClientID: req.Query.Get("client_id"),
		Upstream: r.up, Control: rfbparse.User, Live: r.live}, nil
}

// letIn makes later resolves succeed, with client_id.
func (r *lcResolver) letIn() {
	r.mu.Lock()
	r.refuse, r.noClientID = nil, false
	r.mu.Unlock()
}

// lcEnv is one proxy, its fake VNC server and its log.
type lcEnv struct {
	srv  *proxy.Server
	addr string
	stop func()
	res  *lcResolver
	ups  chan *net.TCPConn // the fake's handshaken conns
	log  *syncBuffer
}

// lcStart runs a proxy with every cap at 1 (edit may change them) in front
// of a fake VNC server whose conns are handed to the test.
func lcStart(t *testing.T, edit func(*proxy.Config, *lcResolver)) *lcEnv {
	t.Helper()
	e := &lcEnv{ups: make(chan *net.TCPConn, 8), log: &syncBuffer{}}
	fake := startRFBFake(t, nil, handOver(e.ups))
	u, _ := url.Parse("tcp://" + fake.addr())
	e.res = &lcResolver{up: u}
	cfg := proxy.Config{
		Resolver: e.res, Policy: rfbparse.DefaultPolicy(),
		MaxSessions: 1, MaxPerIP: 1, MaxPerOrg: 1,
		CloseTimeout: 500 * time.Millisecond,
		Logger:       slog.New(slog.NewJSONHandler(e.log, nil)),
	}
	if edit != nil {
		edit(&cfg, e.res)
	}
	e.srv, e.addr, e.stop = startOwnedProxy(t, cfg)
	return e
}

// lcPath is a VNC (or messages) channel path with client_id cid.
func lcPath(ch, cid string) string {
	return "/v1/stream/" + ch + "/browser_session/pbs_1?client_id=" + cid
}

// lcRequest is an upgrade request head for path, with extra header lines.
func lcRequest(addr, path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n" + extra + "\r\n"
}

// lcDial connects, writes pre, and returns the conn (closed with the test).
func lcDial(t *testing.T, addr string, pre string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if pre != "" {
		if _, err := io.WriteString(c, pre); err != nil {
			t.Fatal(err)
		}
	}
	return c.(*net.TCPConn)
}

// lcHead reads a response head byte by byte (nothing past it is taken).
func lcHead(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var head []byte
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(b[:]); err != nil {
			t.Fatalf("response head: %v (%q)", err, head)
		}
		head = append(head, b[0])
	}
	return string(head)
}

// lcViewer upgrades a VNC channel and runs the RFB handshake; the fake's
// side of the session is returned with it.
func lcViewer(t *testing.T, e *lcEnv, prefix, path string) (*pumpViewer, *net.TCPConn) {
	t.Helper()
	c := lcDial(t, e.addr, prefix+lcRequest(e.addr, path, ""))
	if h := lcHead(t, c); !strings.HasPrefix(h, "HTTP/1.1 101") {
		t.Fatalf("upgrade refused: %q", h)
	}
	v := &pumpViewer{c: c, tmp: make([]byte, 256<<10)}
	v.handshake(t, len("fault"))
	return v, nextConn(t, e.ups)
}

// lcMessages upgrades a message channel and reads its first message.
func lcMessages(t *testing.T, e *lcEnv, prefix, cid string) *pumpViewer {
	t.Helper()
	c := lcDial(t, e.addr, prefix+lcRequest(e.addr, lcPath("messages", cid), ""))
	if h := lcHead(t, c); !strings.HasPrefix(h, "HTTP/1.1 101") {
		t.Fatalf("upgrade refused: %q", h)
	}
	v := &pumpViewer{c: c, tmp: make([]byte, 64<<10)}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := v.next(); err != nil || f.op != ws.OpText {
		t.Fatalf("first message: %v %v", f.op, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return v
}

// lcWaitEOF waits until the proxy closed c (EOF or reset), discarding data.
func lcWaitEOF(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); isTimeout(err) {
		t.Fatalf("the proxy kept the socket open for %v", within)
	}
}

// lcClean waits until the server holds nothing for any session and the
// goroutines are back to g0 (gnet's and the liveness loop's not counted).
func lcClean(t *testing.T, e *lcEnv, g0 int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		held := proxy.LifecycleHeld(e.srv)
		gs := pumpGoroutines()
		if held == "" && (g0 < 0 || len(gs) <= g0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the server still holds: %q; goroutines %d → %d\n%s", held, g0, len(gs), strings.Join(gs, "\n\n"))
		}
		time.Sleep(5 * time.Millisecond) // polling a state nothing signals: the bound is the deadline
	}
}

// lcFresh opens n sessions at once from the same address and organization
// (the caps are n): every one must relay, then they end by the viewer's close.
func lcFresh(t *testing.T, e *lcEnv, n int, prefix string) {
	t.Helper()
	vs := make([]*pumpViewer, n)
	for i := range vs {
		vs[i], _ = lcViewer(t, e, prefix, lcPath("vnc", fmt.Sprintf("fresh-%d-%d", time.Now().UnixNano(), i)))
	}
	for _, v := range vs {
		_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		lcWaitEOF(t, v.c, 5*time.Second)
	}
}

// lcLine is a log line of interest.
type lcLine struct {
	Msg         string `json:"msg"`
	CloseCode   *int   `json:"close_code"`
	CloseReason string `json:"close_reason"`
	Status      int    `json:"status"`
	Compat      int    `json:"compat_close"`
}

// lcLines are the session end and refusal lines logged so far.
func (e *lcEnv) lcLines(t *testing.T) []lcLine {
	t.Helper()
	var out []lcLine
	sc := bufio.NewScanner(strings.NewReader(e.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l lcLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue
		}
		if l.Msg == "session end" || strings.HasPrefix(l.Msg, "upgrade refused") || strings.HasPrefix(l.Msg, "connection refused") {
			out = append(out, l)
		}
	}
	return out
}

func (l lcLine) String() string {
	if l.CloseCode == nil {
		return fmt.Sprintf("%s status=%d compat=%d", l.Msg, l.Status, l.Compat)
	}
	return fmt.Sprintf("%s close_code=%d close_reason=%q", l.Msg, *l.CloseCode, l.CloseReason)
}

// lcWay is one way a session ends.
type lcWay struct {
	name   string
	cfg    func(*proxy.Config, *lcResolver)
	prefix string // what every viewer sends first (a PROXY header)
	caps   int    // the caps the fresh sessions check (default 1)
	// run ends the session; it returns once the end is visible to the viewer.
	run func(t *testing.T, e *lcEnv)
	// want are the log lines the end leaves, in order. A viewer gone before
	// the 101 has no close code, but its line names the end as any other
	// does (viewer-gone), not with an empty close_reason (a metric label of
	// "unknown").
	want []string
}

const lcProxyV1 = "PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n"

// lcWays are the ends under test.
func lcWays() []lcWay {
	closeAt := func(code ws.StatusCode) func(t *testing.T, v *pumpViewer) {
		return func(t *testing.T, v *pumpViewer) {
			t.Helper()
			ce := v.drainToClose(t, 5*time.Second)
			if ce.code != int(code) {
				t.Fatalf("viewer got close %d %q, want %d", ce.code, ce.reason, code)
			}
		}
	}
	refusedWith := func(status string) func(t *testing.T, c net.Conn) {
		return func(t *testing.T, c net.Conn) {
			t.Helper()
			if h := lcHead(t, c); !strings.HasPrefix(h, "HTTP/1.1 "+status) {
				t.Fatalf("want %s, got %q", status, h)
			}
			lcWaitEOF(t, c, 5*time.Second)
		}
	}
	vnc := lcPath("vnc", "c1")
	rst := func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }
	noSplice := func(c *proxy.Config, _ *lcResolver) { c.NoSplice = true }
	spliced := func(t *testing.T, e *lcEnv, v *pumpViewer, up *net.TCPConn) {
		t.Helper()
		toPump(t, e.srv, 1, up, func(n int) error { _, err := v.readStream(n); return err })
		if e.srv.Stats().Spliced != 1 {
			t.Fatal("the session did not take the splice path")
		}
	}
	ways := []lcWay{
		{name: "bad-request", run: func(t *testing.T, e *lcEnv) {
			refusedWith("400")(t, lcDial(t, e.addr, "GARBAGE\r\n\r\n"))
		}, want: []string{"upgrade refused status=400 compat=0"}},
		{name: "bad-origin", cfg: func(c *proxy.Config, _ *lcResolver) { c.AllowedOrigins = []string{"https://good.example"} },
			run: func(t *testing.T, e *lcEnv) {
				refusedWith("403")(t, lcDial(t, e.addr, lcRequest(e.addr, vnc, "Origin: https://evil.example\r\n")))
			}, want: []string{"upgrade refused status=403 compat=0"}},
		{name: "over-per-ip-cap", cfg: func(c *proxy.Config, _ *lcResolver) { c.MaxSessions = 2 }, run: func(t *testing.T, e *lcEnv) {
			v, _ := lcViewer(t, e, "", vnc)
			refusedWith("429")(t, lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c2"), "")))
			_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, v.c, 5*time.Second)
		}, want: []string{"upgrade refused status=429 compat=0", `session end close_code=1000 close_reason="viewer-closed"`}},
		{name: "over-org-cap", cfg: func(c *proxy.Config, _ *lcResolver) { c.MaxSessions, c.MaxPerIP = 2, 2 }, run: func(t *testing.T, e *lcEnv) {
			v, _ := lcViewer(t, e, "", vnc)
			refusedWith("429")(t, lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c2"), "")))
			_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, v.c, 5*time.Second)
		}, want: []string{"upgrade refused status=429 compat=0", `session end close_code=1000 close_reason="viewer-closed"`}},
		{name: "resolver-refusal", cfg: func(_ *proxy.Config, r *lcResolver) {
			r.refuse = &upgrade.Error{Status: http.StatusUnauthorized, Message: "no"}
		}, run: func(t *testing.T, e *lcEnv) {
			refusedWith("401")(t, lcDial(t, e.addr, lcRequest(e.addr, vnc, "")))
			e.res.letIn() // the fresh sessions are let in (no session is resolving now)
		}, want: []string{"upgrade refused status=401 compat=0"}},
		{name: "compat-refusal", cfg: func(c *proxy.Config, r *lcResolver) {
			c.Compat = true
			r.refuse = &upgrade.Error{Status: http.StatusUnauthorized, Message: "no"}
		}, run: func(t *testing.T, e *lcEnv) {
			c := lcDial(t, e.addr, lcRequest(e.addr, vnc, ""))
			if h := lcHead(t, c); !strings.HasPrefix(h, "HTTP/1.1 101") {
				t.Fatalf("--compat: want 101, got %q", h)
			}
			closeAt(ws.StatusProtocolError)(t, &pumpViewer{c: c, tmp: make([]byte, 4096)})
			lcWaitEOF(t, c, 5*time.Second)
			e.res.letIn()
		}, want: []string{"upgrade refused status=401 compat=1002"}},
		{name: "proxy-header-garbage", prefix: lcProxyV1, cfg: func(c *proxy.Config, _ *lcResolver) { c.ProxyProtocol = true },
			run: func(t *testing.T, e *lcEnv) {
				refusedWith("400")(t, lcDial(t, e.addr, "PROXY GARBAGE\r\n"))
			}, want: []string{"connection refused: bad PROXY protocol header status=0 compat=0"}},
		{name: "proxy-header-then-bad-request", prefix: lcProxyV1, cfg: func(c *proxy.Config, _ *lcResolver) { c.ProxyProtocol = true },
			run: func(t *testing.T, e *lcEnv) {
				refusedWith("400")(t, lcDial(t, e.addr, lcProxyV1+"GARBAGE\r\n\r\n"))
			}, want: []string{"upgrade refused status=400 compat=0"}},
		{name: "proxy-header-then-vanish", prefix: lcProxyV1, cfg: func(c *proxy.Config, _ *lcResolver) { c.ProxyProtocol = true },
			run: func(t *testing.T, e *lcEnv) {
				c := lcDial(t, e.addr, lcProxyV1+"GET / HT")
				lcWaitFor(t, "no session", func() bool { return e.srv.Stats().Active == 1 })
				rst(c)
			}, want: []string{`session end close_code=0 close_reason="viewer-gone"`}},
		{name: "proxy-header-over-real-ip-cap", prefix: lcProxyV1, caps: 1,
			cfg: func(c *proxy.Config, _ *lcResolver) { c.ProxyProtocol, c.MaxSessions, c.MaxPerOrg = true, 2, 2 },
			run: func(t *testing.T, e *lcEnv) {
				v, _ := lcViewer(t, e, lcProxyV1, vnc)
				refusedWith("429")(t, lcDial(t, e.addr, lcProxyV1+lcRequest(e.addr, lcPath("vnc", "c2"), "")))
				_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				lcWaitEOF(t, v.c, 5*time.Second)
			}, want: []string{"upgrade refused status=429 compat=0", `session end close_code=1000 close_reason="viewer-closed"`}},
		{name: "early-data-over-limit-while-dialing", cfg: func(c *proxy.Config, r *lcResolver) {
			c.MaxEarlyBytes = 1 << 10
			r.gate, r.entered = make(chan struct{}), make(chan struct{}, 1)
		}, run: func(t *testing.T, e *lcEnv) {
			c := lcDial(t, e.addr, lcRequest(e.addr, vnc, ""))
			<-e.res.entered
			_, _ = c.Write(make([]byte, 8<<10))
			lcWaitEOF(t, c, 5*time.Second)
			close(e.res.gate)
		}, want: []string{`session end close_code=0 close_reason="early-data-limit"`}},
		{name: "upgrade-timeout", cfg: func(c *proxy.Config, _ *lcResolver) { c.HandshakeTimeout = 200 * time.Millisecond },
			run: func(t *testing.T, e *lcEnv) {
				c := lcDial(t, e.addr, "GET / HTTP/1.1\r\n")
				lcWaitEOF(t, c, 5*time.Second)
			}},
		{name: "viewer-gone-while-upgrading", run: func(t *testing.T, e *lcEnv) {
			c := lcDial(t, e.addr, "GET / HTTP/1.1\r\n")
			rst(c)
		}, want: []string{`session end close_code=0 close_reason="viewer-gone"`}},
		{name: "viewer-gone-while-dialing", cfg: func(_ *proxy.Config, r *lcResolver) {
			r.gate, r.entered = make(chan struct{}), make(chan struct{}, 1)
		}, run: func(t *testing.T, e *lcEnv) {
			c := lcDial(t, e.addr, lcRequest(e.addr, vnc, ""))
			<-e.res.entered
			rst(c)
			lcWaitFor(t, "the resolver's context was not cancelled", func() bool { return e.res.returned.Load() == 1 })
		}, want: []string{`session end close_code=0 close_reason="viewer-gone"`}},
	}
	for _, path := range []struct {
		name string
		cfg  func(*proxy.Config, *lcResolver)
		pump bool
	}{{"gnet", noSplice, false}, {"splice", nil, true}} {
		relay := func(t *testing.T, e *lcEnv) (*pumpViewer, *net.TCPConn) {
			v, up := lcViewer(t, e, "", vnc)
			if path.pump {
				spliced(t, e, v, up)
			}
			return v, up
		}
		ways = append(ways,
			lcWay{name: path.name + "/viewer-close", cfg: path.cfg, run: func(t *testing.T, e *lcEnv) {
				v, _ := relay(t, e)
				_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
				closeAt(ws.StatusNormalClosure)(t, v)
				lcWaitEOF(t, v.c, 5*time.Second)
			}, want: []string{`session end close_code=1000 close_reason="viewer-closed"`}},
			lcWay{name: path.name + "/viewer-rst", cfg: path.cfg, run: func(t *testing.T, e *lcEnv) {
				v, up := relay(t, e)
				rst(v.c)
				lcWaitEOF(t, up, 5*time.Second)
			}, want: []string{`session end close_code=1006 close_reason="viewer-gone"`}},
			lcWay{name: path.name + "/broken-frame-stream", cfg: path.cfg, run: func(t *testing.T, e *lcEnv) {
				v, _ := relay(t, e)
				_, _ = v.c.Write([]byte{0x82, 0x01, 0x00}) // unmasked: a protocol error
				closeAt(ws.StatusProtocolError)(t, v)
				lcWaitEOF(t, v.c, 5*time.Second)
			}, want: []string{`session end close_code=1002 close_reason="client frame not masked"`}},
			lcWay{name: path.name + "/ping-timeout", cfg: func(c *proxy.Config, r *lcResolver) {
				if path.cfg != nil {
					path.cfg(c, r)
				}
				c.PingInterval = 100 * time.Millisecond
			}, run: func(t *testing.T, e *lcEnv) {
				v, _ := relay(t, e)
				// Half-open: the viewer answers nothing from now on.
				_ = v.c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					f, err := v.next()
					if err != nil {
						break // the proxy dropped the socket
					}
					if f.op == ws.OpClose {
						t.Fatal("a close frame to a half-open viewer")
					}
				}
			}, want: []string{`session end close_code=1001 close_reason="ping-timeout"`}},
			lcWay{name: path.name + "/upstream-closes", cfg: path.cfg, run: func(t *testing.T, e *lcEnv) {
				v, up := relay(t, e)
				_ = up.Close()
				closeAt(ws.StatusNormalClosure)(t, v)
				_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				lcWaitEOF(t, v.c, 5*time.Second)
			}, want: []string{`session end close_code=1000 close_reason="upstream-closed"`}},
			lcWay{name: path.name + "/replaced", cfg: path.cfg, caps: 2, run: func(t *testing.T, e *lcEnv) {
				v1, _ := relay(t, e)
				v2, _ := lcViewer(t, e, "", vnc)
				closeAt(ws.StatusNormalClosure)(t, v1)
				_ = v1.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				lcWaitEOF(t, v1.c, 5*time.Second)
				_ = v2.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				lcWaitEOF(t, v2.c, 5*time.Second)
			}, want: []string{`session end close_code=1000 close_reason="replaced"`, `session end close_code=1000 close_reason="viewer-closed"`}},
		)
	}
	ways = append(ways,
		lcWay{name: "messages/viewer-close", run: func(t *testing.T, e *lcEnv) {
			m := lcMessages(t, e, "", "c1")
			_ = m.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, m.c, 5*time.Second)
		}, want: []string{`session end close_code=1000 close_reason="viewer-closed"`}},
		lcWay{name: "messages/viewer-rst", run: func(t *testing.T, e *lcEnv) {
			m := lcMessages(t, e, "", "c1")
			rst(m.c)
		}, want: []string{`session end close_code=1006 close_reason="viewer-gone"`}},
		lcWay{name: "messages/replaced", caps: 2, run: func(t *testing.T, e *lcEnv) {
			m1 := lcMessages(t, e, "", "c1")
			m2 := lcMessages(t, e, "", "c1")
			closeAt(ws.StatusNormalClosure)(t, m1)
			_ = m1.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, m1.c, 5*time.Second)
			_ = m2.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, m2.c, 5*time.Second)
		}, want: []string{`session end close_code=1000 close_reason="replaced"`, `session end close_code=1000 close_reason="viewer-closed"`}},
		lcWay{name: "messages/server-ends-it", cfg: func(c *proxy.Config, _ *lcResolver) { c.MaxDuration = 300 * time.Millisecond },
			run: func(t *testing.T, e *lcEnv) {
				m := lcMessages(t, e, "", "c1")
				closeAt(ws.StatusNormalClosure)(t, m)
				_ = m.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				lcWaitEOF(t, m.c, 5*time.Second)
			}, want: []string{`session end close_code=1000 close_reason="max-duration"`}},
		lcWay{name: "vnc/pair-refused-after-dial", caps: 2, run: func(t *testing.T, e *lcEnv) {
			m := lcMessages(t, e, "", "c1")
			refusedWith("403")(t, lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c1")+"&org=o2", "")))
			_ = m.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, m.c, 5*time.Second)
		}, want: []string{"upgrade refused status=403 compat=0", `session end close_code=1000 close_reason="viewer-closed"`}},
		lcWay{name: "messages/pair-refused", caps: 2, run: func(t *testing.T, e *lcEnv) {
			v, _ := lcViewer(t, e, "", lcPath("vnc", "c1"))
			refusedWith("403")(t, lcDial(t, e.addr, lcRequest(e.addr, lcPath("messages", "c1")+"&org=o2", "")))
			_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			lcWaitEOF(t, v.c, 5*time.Second)
		}, want: []string{"upgrade refused status=403 compat=0", `session end close_code=1000 close_reason="viewer-closed"`}},
		lcWay{name: "messages/ping-timeout", cfg: func(c *proxy.Config, _ *lcResolver) { c.PingInterval = 100 * time.Millisecond },
			run: func(t *testing.T, e *lcEnv) {
				m := lcMessages(t, e, "", "c1")
				lcWaitEOF(t, m.c, 5*time.Second) // never answers a ping
			}, want: []string{`session end close_code=1001 close_reason="ping-timeout"`}},
		lcWay{name: "messages/early-data-over-limit-while-resolving", cfg: func(c *proxy.Config, r *lcResolver) {
			c.MaxEarlyBytes = 1 << 10
			r.gate, r.entered = make(chan struct{}), make(chan struct{}, 1)
		}, run: func(t *testing.T, e *lcEnv) {
			c := lcDial(t, e.addr, lcRequest(e.addr, lcPath("messages", "c1"), ""))
			<-e.res.entered
			_, _ = c.Write(make([]byte, 8<<10))
			lcWaitEOF(t, c, 5*time.Second)
			close(e.res.gate)
		}, want: []string{`session end close_code=0 close_reason="early-data-limit"`}},
		lcWay{name: "messages/missing-client-id", cfg: func(_ *proxy.Config, r *lcResolver) { r.noClientID = true },
			run: func(t *testing.T, e *lcEnv) {
				refusedWith("400")(t, lcDial(t, e.addr, lcRequest(e.addr, "/v1/stream/messages/browser_session/pbs_1", "")))
				e.res.letIn()
			}, want: []string{"upgrade refused status=400 compat=0"}},
	)
	return ways
}

// lcWaitFor polls cond (state nothing signals) for up to 5 s.
func lcWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	pumpWait(t, 5*time.Second, what, cond)
}

// TestLifecycleEveryEndLeavesServerClean ends a session each way a session
// ends. Each time the server must then hold nothing (no session, no slot of
// the total, per-IP or per-organization cap, no pair holding a channel, no
// socket counted, no goroutine more than before), the log must carry the
// reasons table's code and text for that end (none for an end before the
// upgrade), and fresh sessions from the same address and organization, as
// many as the caps allow, must relay.
func TestLifecycleEveryEndLeavesServerClean(t *testing.T) {
	checkNoLeaks(t)
	for _, w := range lcWays() {
		t.Run(w.name, func(t *testing.T) {
			caps := max(w.caps, 1)
			e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
				c.MaxSessions, c.MaxPerIP, c.MaxPerOrg = caps, caps, caps
				if w.cfg != nil {
					w.cfg(c, r)
				}
			})
			g0 := len(pumpGoroutines())
			w.run(t, e)
			lcClean(t, e, g0)
			var got []string
			// finish counts the session out before it logs: wait for the lines.
			deadline := time.Now().Add(2 * time.Second)
			for {
				got = got[:0]
				for _, l := range e.lcLines(t) {
					got = append(got, l.String())
				}
				if len(got) >= len(w.want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond) // polling the log: the bound is the deadline
			}
			if strings.Join(got, "\n") != strings.Join(w.want, "\n") {
				t.Errorf("log lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(w.want, "\n"))
			}
			lcFresh(t, e, caps, w.prefix)
			lcClean(t, e, g0)
		})
	}
}

// TestLifecycleShutdownInEveryState shuts the server down with one viewer
// still sending its request head, one whose upstream is being resolved and
// one relaying: Shutdown must return at once (not at HandshakeTimeout or
// DialTimeout), the relaying viewer must get 1001, and nothing may be held.
func TestLifecycleShutdownInEveryState(t *testing.T) {
	checkNoLeaks(t)
	for _, pump := range []bool{false, true} {
		t.Run(map[bool]string{false: "gnet", true: "splice"}[pump], func(t *testing.T) {
			e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
				c.MaxSessions, c.MaxPerIP, c.MaxPerOrg = 3, 3, 3
				c.NoSplice = !pump
				c.HandshakeTimeout, c.DialTimeout = 30*time.Second, 30*time.Second
				r.gate, r.entered = make(chan struct{}), make(chan struct{}, 1)
			})
			e.res.gated.Store(true) // the relaying viewer first, not held
			v, up := lcViewer(t, e, "", lcPath("vnc", "c1"))
			if pump {
				toPump(t, e.srv, 1, up, func(n int) error { _, err := v.readStream(n); return err })
			}
			e.res.gated.Store(false)
			dialing := lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c2"), ""))
			<-e.res.entered
			upgrading := lcDial(t, e.addr, "GET / HTTP/1.1\r\n")
			lcWaitFor(t, "3 sessions", func() bool { return e.srv.Stats().Active == 3 })
			began := time.Now()
			done := make(chan struct{})
			go func() { e.stop(); close(done) }()
			ce := v.drainToClose(t, 5*time.Second)
			if ce.code != int(ws.StatusGoingAway) {
				t.Errorf("relaying viewer got %d %q, want 1001", ce.code, ce.reason)
			}
			_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, ""))
			lcWaitEOF(t, dialing, 5*time.Second)
			lcWaitEOF(t, upgrading, 5*time.Second)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Shutdown did not return within 5 s")
			}
			if d := time.Since(began); d > latencyLimit(time.Second) {
				t.Errorf("Shutdown took %v", d)
			}
			if held := proxy.LifecycleHeld(e.srv); held != "" {
				t.Errorf("after Shutdown the server still holds: %s", held)
			}
			// Before the 101 there is no close code; the relaying session's is 1001.
			want := map[string]int{`session end close_code=0 close_reason="server-shutdown"`: 2,
				`session end close_code=1001 close_reason="server-shutdown"`: 1}
			got := map[string]int{}
			for _, l := range e.lcLines(t) {
				got[l.String()]++
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("log lines %v, want %v", got, want)
			}
		})
	}
}

// TestLifecycleEndedManyWaysAtOnce ends relaying sessions four ways in the
// same instant: the control plane (a Verifier saying the session ended, an
// endAsync), the viewer's close frame, the upstream's close, and the
// viewer's reset a moment later. Each session must end once: one log
// line, and a server that holds nothing after.
func TestLifecycleEndedManyWaysAtOnce(t *testing.T) {
	checkNoLeaks(t)
	const rounds = 20
	for _, pump := range []bool{false, true} {
		t.Run(map[bool]string{false: "gnet", true: "splice"}[pump], func(t *testing.T) {
			ended := &lcVerifier{}
			e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
				c.MaxSessions, c.MaxPerIP, c.MaxPerOrg = 4, 4, 4
				c.NoSplice = !pump
				c.LivenessPeriod = 20 * time.Millisecond
				r.live = ended
			})
			g0 := len(pumpGoroutines())
			for i := range rounds {
				ended.on.Store(false)
				v, up := lcViewer(t, e, "", lcPath("vnc", fmt.Sprintf("c%d", i)))
				if pump {
					toPump(t, e.srv, int64(i+1), up, func(n int) error { _, err := v.readStream(n); return err })
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				for _, f := range []func(){
					func() { ended.on.Store(true) },
					func() { _ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")) },
					func() { _ = up.Close() },
				} {
					wg.Add(1)
					go func() { defer wg.Done(); <-start; f() }()
				}
				close(start)
				wg.Wait()
				lcWaitEOF(t, v.c, 5*time.Second)
				lcWaitFor(t, "session still active", func() bool { return e.srv.Stats().Active == 0 })
			}
			lcClean(t, e, g0)
			lines := e.lcLines(t)
			if len(lines) != rounds {
				t.Errorf("%d log lines for %d sessions: %v", len(lines), rounds, lines)
			}
			for _, l := range lines {
				if l.Msg != "session end" || l.CloseCode == nil || *l.CloseCode == 0 {
					t.Errorf("log line %v", l)
				}
			}
		})
	}
}

// lcVerifier reports every session ended once on is set.
type lcVerifier struct{ on atomic.Bool }

func (v *lcVerifier) Verify(context.Context, *proxy.Route) error {
	if v.on.Load() {
		return proxy.ErrSessionEnded
	}
	return nil
}

// TestLifecycleDialResultAfterFinish: the viewer leaves while a resolver
// that ignores its context still runs; the session finishes (not counted),
// then the resolve returns and the dial result reaches a finished session.
// It must be thrown away and release the organization's slot it took.
func TestLifecycleDialResultAfterFinish(t *testing.T) {
	checkNoLeaks(t)
	for _, ch := range []string{"vnc", "messages"} {
		t.Run(ch, func(t *testing.T) {
			e := lcStart(t, func(_ *proxy.Config, r *lcResolver) {
				r.gate, r.entered, r.ignoreCtx = make(chan struct{}), make(chan struct{}, 1), true
			})
			g0 := len(pumpGoroutines())
			c := lcDial(t, e.addr, lcRequest(e.addr, lcPath(ch, "c1"), ""))
			<-e.res.entered
			_ = c.SetLinger(0)
			_ = c.Close()
			lcWaitFor(t, "the session did not finish", func() bool { return e.srv.Stats().Active == 0 })
			close(e.res.gate)
			lcWaitFor(t, "the resolver did not return", func() bool { return e.res.returned.Load() == 1 })
			lcClean(t, e, g0)
			lcFresh(t, e, 1, "")
			lcClean(t, e, g0)
		})
	}
}

// TestLifecycleCompatRefusalRecorded: a resolver's refusal is the refuse
// door with or without --compat; only what goes on the wire differs (an
// HTTP 401, or a 101 and close 1002). Both must count as a failed upgrade in
// the metrics (vncedge_upgrade_failures_total{status="401"}) and end the
// session span with what the viewer got: the HTTP status, or the close code
// and reason, not a span with close code 0 and no reason.
func TestLifecycleCompatRefusalRecorded(t *testing.T) {
	for _, compat := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "compat"}[compat], func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp, err := tracing.Setup(context.Background(), tracing.Config{Enabled: true, SampleRatio: 1, ServiceName: "vncedge"},
				tracing.WithExporter(exp))
			if err != nil {
				t.Fatal(err)
			}
			e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
				c.Compat, c.Tracing = compat, tp
				r.refuse = &upgrade.Error{Status: http.StatusUnauthorized, Message: "no"}
			})
			c := lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c1"), ""))
			h := lcHead(t, c)
			if compat {
				if !strings.HasPrefix(h, "HTTP/1.1 101") {
					t.Fatalf("want 101, got %q", h)
				}
				v := &pumpViewer{c: c, tmp: make([]byte, 4096)}
				if ce := v.drainToClose(t, 5*time.Second); ce.code != int(ws.StatusProtocolError) {
					t.Fatalf("close %d, want 1002", ce.code)
				}
			} else if !strings.HasPrefix(h, "HTTP/1.1 401") {
				t.Fatalf("want 401, got %q", h)
			}
			lcWaitEOF(t, c, 5*time.Second)
			e.stop()
			if err := tp.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			tp.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if m := rec.Body.String(); !strings.Contains(m, `vncedge_upgrade_failures_total{status="401"`) {
				var lines []string
				for l := range strings.SplitSeq(m, "\n") {
					if strings.HasPrefix(l, "vncedge_upgrade") || strings.HasPrefix(l, "vncedge_sessions") {
						lines = append(lines, l)
					}
				}
				t.Errorf("the refusal is not counted as a failed upgrade; metrics:\n%s", strings.Join(lines, "\n"))
			}
			var sess *tracetest.SpanStub
			for _, s := range exp.GetSpans() {
				if s.Name == tracing.SpanSession {
					sess = &s
				}
			}
			if sess == nil {
				t.Fatal("no session span")
			}
			attrs := map[string]string{}
			for _, a := range sess.Attributes {
				attrs[string(a.Key)] = a.Value.String()
			}
			code, status, reason := attrs[string(tracing.AttrCloseCode)], attrs[string(tracing.AttrHTTPStatus)], attrs[string(tracing.AttrCloseReason)]
			if compat && (code != "1002" || reason == "") || !compat && status != "401" {
				t.Errorf("session span: close code %q reason %q http status %q; the viewer got %s", code, reason, status,
					map[bool]string{false: "HTTP 401", true: "101 then close 1002"}[compat])
			}
		})
	}
}

// TestLifecycleShutdownUnderArrivals shuts the server down while viewers
// keep arriving with complete requests: a viewer admitted just before
// Shutdown marks the server stopping but put in its session set just after
// Shutdown walked it is never told to go away; it must still not keep
// Shutdown waiting (here HandshakeTimeout and DialTimeout are 30 s).
func TestLifecycleShutdownUnderArrivals(t *testing.T) {
	checkNoLeaks(t)
	for round := range 5 {
		e := lcStart(t, func(c *proxy.Config, _ *lcResolver) {
			c.MaxSessions, c.MaxPerIP, c.MaxPerOrg = 0, 0, 0
			c.HandshakeTimeout, c.DialTimeout = 30*time.Second, 30*time.Second
		})
		quit := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var open []net.Conn // kept open: the proxy is to close them
				defer func() {
					for _, c := range open {
						c.Close()
					}
				}()
				for i := 0; ; i++ {
					select {
					case <-quit:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", e.addr, time.Second)
					if err != nil {
						continue
					}
					_, _ = io.WriteString(c, lcRequest(e.addr, lcPath("vnc", fmt.Sprintf("r%d-%d-%d", round, w, i)), ""))
					if open = append(open, c); len(open) > 30 {
						open[0].Close()
						open = open[1:]
					}
				}
			}()
		}
		lcWaitFor(t, "no arrivals", func() bool { return e.srv.Stats().Total > 200 })
		began := time.Now()
		done := make(chan struct{})
		go func() { e.stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(8 * time.Second):
			t.Errorf("round %d: Shutdown still waiting after 8 s; held: %s", round, proxy.LifecycleHeld(e.srv))
		}
		close(quit)
		wg.Wait()
		<-done
		t.Logf("round %d: Shutdown took %v with %d sessions seen", round, time.Since(began), e.srv.Stats().Total)
	}
}

// TestLifecycleDialingHasADeadline: DialTimeout bounds "resolve + dial + ws
// handshake" (Config), and a session in stDialing has no deadline of its
// own (readUpgrade clears it): the bound is only as good as the Resolver's
// respect for its context. A Resolver that ignores it (a blocking client
// library, a lock) keeps the viewer waiting, and its slots of every cap
// held, for as long as it blocks. The session must end near DialTimeout
// whatever the Resolver does.
func TestLifecycleDialingHasADeadline(t *testing.T) {
	e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
		c.DialTimeout = 300 * time.Millisecond
		r.gate, r.entered, r.ignoreCtx = make(chan struct{}), make(chan struct{}, 1), true
	})
	defer close(e.res.gate) // after the test's checks: the Resolver returns at last
	c := lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c1"), ""))
	<-e.res.entered
	began := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatalf("2 s after the resolve began (DialTimeout 300ms) the viewer still waits, %d bytes read; held: %s", n, proxy.LifecycleHeld(e.srv))
	}
	t.Logf("the viewer was answered after %v", time.Since(began))
}

// TestLifecycleViewerGoneDuringUpstreamHandshake: the upstream is a ws or
// wss server that accepts the TCP connection and then says nothing (its
// WebSocket or TLS handshake hangs). The viewer leaves meanwhile: the dial
// must stop at once (not at DialTimeout, 30 s here), closing the upstream
// socket, and leave nothing behind.
func TestLifecycleViewerGoneDuringUpstreamHandshake(t *testing.T) {
	checkNoLeaks(t)
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			e := lcStart(t, func(c *proxy.Config, r *lcResolver) {
				c.DialTimeout = 30 * time.Second
				r.up, _ = url.Parse(scheme + "://" + ln.Addr().String() + "/vnc")
			})
			g0 := len(pumpGoroutines())
			v := lcDial(t, e.addr, lcRequest(e.addr, lcPath("vnc", "c1"), ""))
			var up net.Conn
			select {
			case up = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("the proxy never dialed the upstream")
			}
			defer up.Close()
			_ = v.SetLinger(0)
			_ = v.Close()
			began := time.Now()
			lcWaitEOF(t, up, 5*time.Second)
			t.Logf("upstream closed %v after the viewer left", time.Since(began))
			lcClean(t, e, g0)
		})
	}
}
