package proxy_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// upgradeStatus sends a minimal upgrade request and returns the HTTP status.
func upgradeStatus(t *testing.T, addr, path string) (int, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the upgrade answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, c
}

func TestLimits(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	t.Run("per-ip", func(t *testing.T) {
		cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
		cfg.MaxPerIP = 1
		_, addr := startProxy(t, cfg)
		if st, _ := upgradeStatus(t, addr, "/"); st != 101 {
			t.Fatalf("first session: %d", st)
		}
		if st, _ := upgradeStatus(t, addr, "/"); st != 429 {
			t.Fatalf("second session from the same address: %d, want 429", st)
		}
	})
	t.Run("total", func(t *testing.T) {
		cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
		cfg.MaxSessions = 1
		_, addr := startProxy(t, cfg)
		_, c := upgradeStatus(t, addr, "/")
		if st, _ := upgradeStatus(t, addr, "/"); st != 503 {
			t.Fatalf("over the total cap: %d, want 503", st)
		}
		c.Close() // the slot frees once the first viewer is gone
		var st int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			if st, _ = upgradeStatus(t, addr, "/"); st == 101 {
				break
			}
		}
		if st != 101 {
			t.Fatalf("after the first viewer left: %d, want 101", st)
		}
	})
	t.Run("per-org", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "s.yaml")
		doc := "organizations: [{id: o1, api_keys: [k1]}]\nsessions:\n- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n- {kind: task, id: t2, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		sr, err := proxy.LoadStaticResolver(f, rfbparse.User)
		if err != nil {
			t.Fatal(err)
		}
		_, addr := startProxy(t, proxy.Config{Resolver: sr, MaxPerOrg: 1})
		if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/task/t1?apikey=k1&client_id=a"); st != 101 {
			t.Fatalf("first: %d", st)
		}
		if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/task/t2?apikey=k1&client_id=b"); st != 429 {
			t.Fatalf("second session of the organization: %d, want 429", st)
		}
	})
	t.Run("drain", func(t *testing.T) {
		srv, addr := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User))
		ws, cl := vncViewer(t, addr, "/")
		srv.Drain()
		if srv.Serving() {
			t.Error("Serving() true while draining")
		}
		if st, _ := upgradeStatus(t, addr, "/"); st != 503 {
			t.Fatalf("new session while draining: %d, want 503", st)
		}
		// The live session still works.
		if err := cl.RequestFull(); err != nil {
			t.Fatal(err)
		}
		_ = ws.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.ReadFull(); err != nil {
			t.Fatalf("live session during drain: %v", err)
		}
	})
}

func TestTimeouts(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	for _, tc := range []struct {
		name   string
		set    func(*proxy.Config)
		reason string
	}{
		{"idle", func(c *proxy.Config) { c.IdleTimeout = 200 * time.Millisecond }, "idle-timeout"},
		{"max-duration", func(c *proxy.Config) { c.MaxDuration = 300 * time.Millisecond }, "max-duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
			cfg.PingInterval = 50 * time.Millisecond // pongs must not count as activity
			tc.set(&cfg)
			_, addr := startProxy(t, cfg)
			ws, cl := vncViewer(t, addr, "/")
			if ce := awaitCloseOf(t, ws, cl); ce.Code != 1000 || ce.Reason != tc.reason {
				t.Fatalf("close %d %q, want 1000 %s", ce.Code, ce.Reason, tc.reason)
			}
		})
	}

	t.Run("half-open viewer", func(t *testing.T) {
		// A viewer that never answers pings is closed after two of them, and
		// its upstream with it.
		vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
		cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
		cfg.PingInterval = 50 * time.Millisecond
		_, addr := startProxy(t, cfg)
		ws, _ := vncViewer(t, addr, "/") // from here on nothing reads: no pongs
		conn, err := vnc.WaitConn(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.WaitDone(ctx); err != nil {
			t.Fatalf("upstream still open after unanswered pings: %v", err)
		}
		_ = ws
	})
}
