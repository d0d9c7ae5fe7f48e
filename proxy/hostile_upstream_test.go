package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// hostileWS is a ws (or, with TLS, wss) upstream written for the tests: it
// accepts connections and hands each to serve, which plays the hostile peer.
// Cleanup closes the listener and every conn and waits for serve to return.
type hostileWS struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	reqs  chan *http.Request // the handshake requests, when serve reads them with readUpgrade
}

func startHostileWS(t testing.TB, tlsConf *tls.Config, serve func(c net.Conn, h *hostileWS)) *hostileWS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	h := &hostileWS{ln: ln, reqs: make(chan *http.Request, 64)}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				serve(c, h)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *hostileWS) addr() string { return h.ln.Addr().String() }

// upgrade answers the WebSocket handshake properly and records the request.
func (h *hostileWS) upgrade(c net.Conn) (*bufio.Reader, error) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	h.reqs <- req
	key := req.Header.Get("Sec-WebSocket-Key")
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
	_, err = io.WriteString(c, resp)
	return br, err
}

func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestHostileUpstreamEndlessHead: a ws upstream that answers 101 and then one
// endless header line. vncedge reads at most proxy.MaxResponseHead of it and
// answers the viewer 502 at once, long before the dial timeout; its heap
// does not grow with what the peer sends.
func TestHostileUpstreamEndlessHead(t *testing.T) {
	checkNoLeaks(t)
	sent := make(chan int64, 1)
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		var n int64
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for {
			m, err := c.Write(chunk)
			n += int64(m)
			if err != nil {
				sent <- n
				return
			}
		}
	})
	cfg := targetConfig(t, "ws://"+up.addr()+"/", rfbparse.User)
	cfg.DialTimeout = 8 * time.Second
	_, addr := startProxy(t, cfg)
	h0 := heapInUse()
	start := time.Now()
	_, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/", []string{"binary"}, nil)
	var se *rfbclient.StatusError
	if !asStatus(err, &se) || se.Status != http.StatusBadGateway {
		t.Fatalf("dial: %v, want HTTP 502", err)
	}
	el := time.Since(start)
	n := <-sent
	grew := int64(heapInUse()) - int64(h0)
	t.Logf("502 after %v; the upstream got %d bytes out before vncedge closed it; heap grew %d bytes", el, n, grew)
	if el > latencyLimit(time.Second) {
		t.Errorf("502 after %v: the head limit did not stop the dial", el)
	}
	if grew > 4<<20 {
		t.Errorf("heap grew %d bytes during an endless handshake head", grew)
	}
}

// TestHostileUpstreamPingFlood: a ws upstream that floods pings (125-byte
// payloads, 50 MB of them) and never reads. Before the fix every ping queued
// a pong in gnet's outbound buffer (the heap grew with the flood); now at
// most one pong is owed, and the heap stays flat.
func TestHostileUpstreamPingFlood(t *testing.T) {
	checkNoLeaks(t)
	const flood = 50 << 20
	done := make(chan error, 1)
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		if _, err := h.upgrade(c); err != nil {
			done <- err
			return
		}
		ping := ws.MustCompileFrame(ws.NewPingFrame(bytes.Repeat([]byte("p"), 125)))
		chunk := bytes.Repeat(ping, (64<<10)/len(ping))
		_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for sent := 0; sent < flood; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		// The marker: the RFB banner, as a data frame after every ping.
		_, err := c.Write(ws.MustCompileFrame(ws.NewBinaryFrame([]byte("RFB 003.008\n"))))
		done <- err
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 0)) // never reads: hold the conn
		<-time.After(10 * time.Second)
	})
	cfg := targetConfig(t, "ws://"+up.addr()+"/", rfbparse.User)
	_, addr := startProxy(t, cfg)
	h0 := heapInUse()
	v := dialWS(t, addr, "/")
	_ = v.NetConn().SetReadDeadline(time.Now().Add(60 * time.Second))
	banner := make([]byte, 12)
	if _, err := io.ReadFull(v, banner); err != nil {
		t.Fatalf("viewer: %v (want the banner after the flood)", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("upstream: %v", err)
	}
	grew := int64(heapInUse()) - int64(h0)
	t.Logf("after %d MB of pings the heap grew %d bytes", flood>>20, grew)
	if grew > 8<<20 {
		t.Errorf("heap grew %d bytes under a ping flood: pongs are queued without bound", grew)
	}
}

// TestHostileUpstreamPongsAndMasks: pings from a reading upstream are each
// answered, and every frame vncedge sends it (pongs, data) has its own mask.
func TestHostileUpstreamPongsAndMasks(t *testing.T) {
	const pings = 32
	masks := make(chan [4]byte, 2*pings)
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		br, err := h.upgrade(c)
		if err != nil {
			return
		}
		for i := range pings {
			if _, err := c.Write(ws.MustCompileFrame(ws.NewPingFrame([]byte{byte(i)}))); err != nil {
				return
			}
			hd, err := ws.ReadHeader(br)
			if err != nil || !hd.Masked {
				close(masks)
				return
			}
			masks <- hd.Mask
			if _, err := io.CopyN(io.Discard, br, hd.Length); err != nil {
				return
			}
		}
		close(masks)
	})
	_, addr := startProxy(t, targetConfig(t, "ws://"+up.addr()+"/", rfbparse.User))
	dialWS(t, addr, "/")
	seen := map[[4]byte]bool{}
	n := 0
	for m := range masks {
		n++
		seen[m] = true
	}
	if n != pings {
		t.Fatalf("got %d masked pongs, want %d", n, pings)
	}
	if len(seen) < pings-1 { // 32 draws of 32 bits: a repeat is ~1e-7 likely
		t.Errorf("%d pongs used %d distinct masks: the mask is reused", n, len(seen))
	}
}

// TestHostileUpstreamDataAfterClose: a ws upstream sends its close and data
// frames after it in one write; the viewer gets the close and nothing after.
func TestHostileUpstreamDataAfterClose(t *testing.T) {
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		if _, err := h.upgrade(c); err != nil {
			return
		}
		var b []byte
		b = append(b, ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))...)
		for range 8 {
			b = append(b, ws.MustCompileFrame(ws.NewBinaryFrame([]byte("RFB 003.008\n")))...)
		}
		_, _ = c.Write(b)
		_, _ = io.Copy(io.Discard, c)
	})
	cfg := targetConfig(t, "ws://"+up.addr()+"/", rfbparse.User)
	cfg.CloseTimeout = 300 * time.Millisecond
	_, addr := startProxy(t, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, br, _, err := ws.Dialer{Protocols: []string{"binary"}, NetDial: func(context.Context, string, string) (net.Conn, error) { return c, nil }}.Dial(ctxT(t), "ws://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader = c
	if br != nil {
		rd = io.MultiReader(br, c)
	}
	var ops []ws.OpCode
	for {
		f, err := ws.ReadFrame(rd)
		if err != nil {
			break
		}
		ops = append(ops, f.Header.OpCode)
	}
	if len(ops) == 0 || ops[len(ops)-1] != ws.OpClose {
		t.Fatalf("viewer frames %v: want the close last (no data after vncedge's close)", ops)
	}
	for _, op := range ops {
		if op == ws.OpBinary {
			t.Fatalf("viewer frames %v: data relayed after the upstream's close", ops)
		}
	}
}

// TestHostileUpstreamIdle: an upstream that completes its handshake and goes
// silent ends the session with 1001 upstream-idle after UpstreamIdleTimeout,
// though the viewer answers every ping.
func TestHostileUpstreamIdle(t *testing.T) {
	checkNoLeaks(t)
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		if _, err := h.upgrade(c); err != nil {
			return
		}
		_, _ = c.Write(ws.MustCompileFrame(ws.NewBinaryFrame([]byte("RFB 003.008\n"))))
		_, _ = io.Copy(io.Discard, c)
	})
	const idle = 300 * time.Millisecond
	cfg := targetConfig(t, "ws://"+up.addr()+"/", rfbparse.User)
	cfg.UpstreamIdleTimeout = idle
	cfg.PingInterval = 50 * time.Millisecond
	_, addr := startProxy(t, cfg)
	v := dialWS(t, addr, "/")
	start := time.Now()
	_ = v.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(v)
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway || ce.Reason != "upstream-idle" {
		t.Fatalf("viewer: %v, want close 1001 upstream-idle", err)
	}
	if el := time.Since(start); el < idle || el > idle+latencyLimit(time.Second) {
		t.Errorf("closed after %v, want about %v", el, idle)
	}
}

// testTLS returns a server config with the teststack certificate and a
// client config trusting it.
func testTLS(t testing.TB) (*tls.Config, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(dir+"/cert.pem", dir+"/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestHostileWSSSilentPeerNoLeak: 10 sessions to a wss upstream that
// completes the handshake, then neither sends nor reads, while the viewers
// push data at it (so the bridge's write to the TLS conn blocks). When the
// viewers leave, both bridge goroutines and all their sockets go too.
func TestHostileWSSSilentPeerNoLeak(t *testing.T) {
	checkNoLeaks(t)
	srvTLS, cliTLS := testTLS(t)
	stop := make(chan struct{})
	up := startHostileWS(t, srvTLS, func(c net.Conn, h *hostileWS) {
		br, err := h.upgrade(c)
		if err != nil || wsServerHandshake(c, br) != nil {
			return
		}
		<-stop // silent from now on, and never reads
	})
	defer close(stop)
	cfg := targetConfig(t, "wss://"+up.addr()+"/", rfbparse.User)
	cfg.UpstreamTLS = cliTLS
	srv, addr := startProxy(t, cfg)
	const n = 10
	g0, f0 := runtime.NumGoroutine(), len(openFDs())
	text := bytes.Repeat([]byte("x"), 1<<20-64) // 4 of them: more than the socketpair and TCP windows hold
	var vs []*rfbclient.WSConn
	for range n {
		v := dialWS(t, addr, "/")
		c, err := rfbclient.Handshake(v, rfbclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_ = v.NetConn().SetWriteDeadline(time.Now().Add(5 * time.Second))
		for range 4 {
			if err := c.ClientCutText(text); err != nil {
				t.Fatal(err)
			}
		}
		vs = append(vs, v)
	}
	for _, v := range vs {
		v.Close()
	}
	// The peer keeps its n conns (and a goroutine each) open: vncedge must
	// not keep anything of its own for them. Before the fix: 2n goroutines
	// and 2n sockets more.
	const tolerance = 4
	deadline := time.Now().Add(10 * time.Second)
	var g, f int
	for {
		g, f = runtime.NumGoroutine(), len(openFDs())
		if srv.Stats().Active == 0 && g <= g0+n+tolerance && f <= f0+n+tolerance {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the viewers left: active %d, goroutines %d → %d, fds %d → %d (the peer holds %d of each)",
				srv.Stats().Active, g0, g, f0, f, n)
		}
		time.Sleep(10 * time.Millisecond) // polling counters: the failure bound is the deadline
	}
	t.Logf("after the viewers left: goroutines %d → %d, fds %d → %d (the peer holds %d of each)", g0, g, f0, f, n)
}

// TestHostileWSSStalledDial504: a wss upstream that stalls, in the TLS
// handshake or after it (no HTTP answer), gives 504 (as documented), not 502.
func TestHostileWSSStalledDial504(t *testing.T) {
	const dialTimeout = 300 * time.Millisecond
	srvTLS, cliTLS := testTLS(t)
	silentTLS := startHostileWS(t, srvTLS, func(c net.Conn, h *hostileWS) {
		_ = c.(*tls.Conn).Handshake()
		_, _ = io.Copy(io.Discard, c)
	})
	tp, err := tracing.Setup(context.Background(), tracing.Config{Enabled: true, SampleRatio: 1, ServiceName: "vncedge"},
		tracing.WithExporter(tracetest.NewInMemoryExporter()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for name, target := range map[string]string{"tls": silentListener(t), "http": silentTLS.addr(), "tls traced": silentListener(t)} {
		t.Run(name, func(t *testing.T) {
			cfg := targetConfig(t, "wss://"+target+"/", rfbparse.User)
			cfg.DialTimeout = dialTimeout
			cfg.UpstreamTLS = cliTLS
			if strings.HasSuffix(name, "traced") {
				cfg.Tracing = tp // the TLS handshake runs in its own span
			}
			_, addr := startProxy(t, cfg)
			_, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/", []string{"binary"}, nil)
			var se *rfbclient.StatusError
			if !asStatus(err, &se) || se.Status != http.StatusGatewayTimeout {
				t.Fatalf("dial: %v, want HTTP 504", err)
			}
		})
	}
}

var _ = proxy.MaxResponseHead

// wsServerHandshake plays an RFB 3.8 server's side of the handshake with
// security None over a WebSocket (we are the server): banner, version, types,
// choice, result and an 8×8 ServerInit named "x", ClientInit.
func wsServerHandshake(c net.Conn, br *bufio.Reader) error {
	send := func(b ...byte) error {
		_, err := c.Write(ws.MustCompileFrame(ws.NewBinaryFrame(b)))
		return err
	}
	var got []byte
	need := func(n int) error {
		for len(got) < n {
			f, err := ws.ReadFrame(br)
			if err != nil {
				return err
			}
			if f.Header.Masked {
				ws.Cipher(f.Payload, f.Header.Mask, 0)
			}
			got = append(got, f.Payload...)
		}
		got = got[n:]
		return nil
	}
	steps := []func() error{
		func() error { return send([]byte("RFB 003.008\n")...) },
		func() error { return need(12) },
		func() error { return send(1, 1) },
		func() error { return need(1) },
		func() error {
			return send(0, 0, 0, 0, 0, 8, 0, 8, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 1, 'x')
		},
		func() error { return need(1) },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return err
		}
	}
	return nil
}
