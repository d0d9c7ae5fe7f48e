package proxy_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// countingListener accepts and counts connections, closing each.
func countingListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

func dialStatusOf(t *testing.T, addr string) int {
	t.Helper()
	c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/", []string{"binary"}, nil)
	if err == nil {
		c.Close()
	}
	var se *rfbclient.StatusError
	if asStatus(err, &se) {
		return se.Status
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return http.StatusSwitchingProtocols
}

// TestHostileUpstreamOwnAddresses: a resolver answer aiming at vncedge's
// own admin or listen address is refused with 502 and never dialed.
func TestHostileUpstreamOwnAddresses(t *testing.T) {
	admin, hits := countingListener(t)
	t.Run("admin", func(t *testing.T) {
		cfg := targetConfig(t, "tcp://"+admin, rfbparse.User)
		cfg.AdminAddr = admin
		_, addr := startProxy(t, cfg)
		if s := dialStatusOf(t, addr); s != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", s)
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("the admin address got %d connections", n)
		}
	})
	t.Run("listen", func(t *testing.T) {
		listen := freeAddr(t)
		cfg := targetConfig(t, "ws://"+listen+"/", rfbparse.User)
		cfg.Addr = listen
		srv, addr := startProxy(t, cfg)
		if s := dialStatusOf(t, addr); s != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", s)
		}
		if tot := srv.Stats().Total; tot != 1 {
			t.Fatalf("%d viewer connections: vncedge dialed itself", tot)
		}
	})
	t.Run("admin on all interfaces", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(admin)
		cfg := targetConfig(t, "tcp://"+admin, rfbparse.User)
		cfg.AdminAddr = ":" + port
		_, addr := startProxy(t, cfg)
		if s := dialStatusOf(t, addr); s != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", s)
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("the admin address got %d connections", n)
		}
	})
}

// TestHostileUpstreamAllow: with UpstreamAllow set, an upstream outside it
// is refused (502) before any connection; inside it (by CIDR or by name),
// it is relayed.
func TestHostileUpstreamAllow(t *testing.T) {
	outside, hits := countingListener(t)
	cfg := targetConfig(t, "tcp://"+outside, rfbparse.User)
	cfg.UpstreamAllow = []string{"10.0.0.0/8", "vnc.example"}
	_, addr := startProxy(t, cfg)
	if s := dialStatusOf(t, addr); s != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", s)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("a disallowed upstream got %d connections", n)
	}
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	_, port, _ := net.SplitHostPort(vnc.Addr())
	for _, c := range []struct{ allow, target string }{
		{"127.0.0.0/8", "tcp://" + vnc.Addr()},
		{"localhost", "tcp://localhost:" + port},
	} {
		cfg := targetConfig(t, c.target, rfbparse.User)
		cfg.UpstreamAllow = []string{c.allow}
		_, addr := startProxy(t, cfg)
		if s := dialStatusOf(t, addr); s != http.StatusSwitchingProtocols {
			t.Fatalf("allow %s, upstream %s: status %d, want 101", c.allow, c.target, s)
		}
	}
}

// TestHostileCDPOutsideAllow: a DevTools endpoint outside UpstreamAllow is
// dropped: no DevTools client is ever made for it, copy answers an error.
func TestHostileCDPOutsideAllow(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.UpstreamAllow = []string{"127.0.0.0/8"}
	var made atomic.Int32
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient {
		made.Add(1)
		return &closingClipboard{selected: "x", closed: make(chan struct{})}
	}
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://10.9.9.9:9222"
	_, addr := startProxy(t, cfg)
	mc := dialMessages(t, addr, "/v1/stream/messages/browser_session/pbs_1?client_id=c1")
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("error", "failed_kind", "clipboard-copy")
	if n := made.Load(); n != 0 {
		t.Fatalf("%d DevTools clients made for a disallowed endpoint", n)
	}
}

// TestHostileRouteHeaders: route headers cannot forge Host or handshake
// headers, and go in clear only to loopback upstreams.
func TestHostileRouteHeaders(t *testing.T) {
	up := startHostileWS(t, nil, func(c net.Conn, h *hostileWS) {
		if _, err := h.upgrade(c); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	})
	u, _ := url.Parse("ws://" + up.addr() + "/")
	hdr := http.Header{"Host": {"evil.example"}, "X-Api-Key": {"k1"}, "Sec-Websocket-Protocol": {"evil"}, "Connection": {"close"}}
	cfg := proxy.Config{Resolver: &proxy.TargetResolver{Upstream: u, Header: hdr, Control: rfbparse.User}, Policy: rfbparse.DefaultPolicy()}
	_, addr := startProxy(t, cfg)
	dialWS(t, addr, "/")
	var req *http.Request
	select {
	case req = <-up.reqs:
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake reached the upstream")
	}
	if req.Host != up.addr() {
		t.Errorf("upstream saw Host %q, want %q", req.Host, up.addr())
	}
	if got := req.Header.Get("X-Api-Key"); got != "k1" {
		t.Errorf("loopback upstream got x-api-key %q, want k1", got)
	}
	if got := req.Header.Values("Sec-Websocket-Protocol"); len(got) != 1 || got[0] != "binary" {
		t.Errorf("upstream saw subprotocols %q", got)
	}
	for _, c := range []struct {
		scheme, host string
		want         bool
	}{{"ws", "127.0.0.1", true}, {"wss", "edge.example", true}, {"ws", "10.1.2.3", false}, {"ws", "edge.example", false}} {
		got := proxy.SafeHeaders(http.Header{"X-Api-Key": {"k"}}, c.scheme, c.host) != nil
		if got != c.want {
			t.Errorf("SafeHeaders to %s://%s sends: %v, want %v", c.scheme, c.host, got, c.want)
		}
	}

}

// TestHostileUpstreamUnspecifiedAddress: 0.0.0.0 and [::] reach this
// machine: aimed at the listen port they are refused too.
func TestHostileUpstreamUnspecifiedAddress(t *testing.T) {
	listen := freeAddr(t)
	_, port, _ := net.SplitHostPort(listen)
	for _, host := range []string{"0.0.0.0", "[::]", "localhost", "[::ffff:127.0.0.1]"} {
		cfg := targetConfig(t, "ws://"+host+":"+port+"/", rfbparse.User)
		cfg.Addr = listen
		srv, addr, stop := startOwnedProxy(t, cfg)
		if s := dialStatusOf(t, addr); s != http.StatusBadGateway {
			t.Fatalf("upstream %s:%s (our listen port): status %d, want 502", host, port, s)
		}
		if tot := srv.Stats().Total; tot != 1 {
			t.Fatalf("upstream %s: %d viewer connections: vncedge dialed itself", host, tot)
		}
		stop() // frees the port for the next host
	}
}
