package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// fetchDirect reads a full framebuffer straight from the VNC server.
func fetchDirect(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, fb, err := rfbclient.Fetch(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("fetch from %s: %v", addr, err)
	}
	return fb
}

// fetchVia reads a full framebuffer through vncedge, as a WebSocket client
// offering the "binary" subprotocol (noVNC 1.3) or none (noVNC 1.7).
func fetchVia(t *testing.T, addr string, protocols []string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rfbclient.Dialer{Protocols: protocols}.Dial(ctx, "ws://"+addr+"/websockify")
	if err != nil {
		t.Fatalf("dial vncedge: %v", err)
	}
	defer c.Close()
	if len(protocols) > 0 && c.Protocol() != "binary" {
		t.Fatalf("subprotocol %q, want binary", c.Protocol())
	}
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	_, fb, err := rfbclient.Fetch(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("fetch through vncedge: %v", err)
	}
	return fb
}

// TestRealStack drives a real Xvnc desktop through vncedge over each upstream
// kind: tcp:// straight to Xvnc, ws:// through real websockify, and wss://
// through websockify terminating TLS with a test CA. The pixels must equal
// those read from Xvnc directly.
func TestRealStack(t *testing.T) {
	teststack.Require(t, "Xvnc", "websockify", "xwud")
	x := teststack.StartXvnc(t)
	x.ShowNoise(t, 640, 480, 11)
	wsAddr := teststack.StartWebsockify(t, x.Addr())
	wssAddr, pool := teststack.StartWebsockifyTLS(t, x.Addr())

	direct := fetchDirect(t, x.Addr())
	if n := teststack.DistinctColours(direct); n < 100000 {
		t.Fatalf("desktop has %d distinct colours; the noise image is not showing", n)
	}

	cases := []struct {
		name, upstream string
		tls            *tls.Config
	}{
		{"tcp", "tcp://" + x.Addr(), nil},
		{"ws-websockify", "ws://" + wsAddr + "/", nil},
		{"wss-websockify", "wss://" + wssAddr + "/", &tls.Config{RootCAs: pool}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := targetConfig(t, tc.upstream, rfbparse.User)
			cfg.UpstreamTLS = tc.tls
			_, addr := startProxy(t, cfg)
			for _, protos := range [][]string{{"binary"}, nil} {
				if fb := fetchVia(t, addr, protos); !bytes.Equal(fb, direct) {
					t.Fatalf("framebuffer through vncedge (protocols %v) differs from Xvnc's own", protos)
				}
			}
		})
	}

	t.Run("wss-untrusted-ca", func(t *testing.T) {
		// Without the test CA the TLS handshake must fail: the viewer gets 502.
		_, addr := startProxy(t, targetConfig(t, "wss://"+wssAddr+"/", rfbparse.User))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := rfbclient.DialWS(ctx, "ws://"+addr+"/", nil, nil)
		var se *rfbclient.StatusError
		if !asStatus(err, &se) || se.Status != 502 {
			t.Fatalf("dial with untrusted upstream CA: %v, want HTTP 502", err)
		}
	})
}
