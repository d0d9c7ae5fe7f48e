package teststack_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
)

// fetchTCP reads a full framebuffer straight from addr.
func fetchTCP(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	init, fb, err := rfbclient.Fetch(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("fetch from %s: %v", addr, err)
	}
	if init.Width != 1024 || init.Height != 768 {
		t.Fatalf("ServerInit size %dx%d, want 1024x768", init.Width, init.Height)
	}
	return fb
}

// fetchWS reads a full framebuffer through a WebSocket at url.
func fetchWS(t *testing.T, d rfbclient.Dialer, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer func() { _ = c.Close() }()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	_, fb, err := rfbclient.Fetch(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("fetch through %s: %v", url, err)
	}
	return fb
}

func TestRealStackFramebuffersEqual(t *testing.T) {
	teststack.Require(t, "Xvnc", "websockify")
	x := teststack.StartXvnc(t)
	nx, ny := x.ShowNoise(t, 640, 480, 7)
	wsAddr := teststack.StartWebsockify(t, x.Addr())
	wssAddr, pool := teststack.StartWebsockifyTLS(t, x.Addr())

	direct := fetchTCP(t, x.Addr())
	if len(direct) != 1024*768*4 {
		t.Fatalf("framebuffer is %d bytes, want %d", len(direct), 1024*768*4)
	}
	if n := teststack.DistinctColours(direct); n < 100000 {
		t.Fatalf("framebuffer has %d distinct colours; want a non-trivial desktop", n)
	}

	if x0, y0, ok := teststack.FindNoise(direct, 1024, 640, 480, 7); !ok || x0 != nx || y0 != ny {
		t.Fatalf("noise image at (%d,%d) intact %v; ShowNoise saw it at (%d,%d)", x0, y0, ok, nx, ny)
	}

	viaWS := fetchWS(t, rfbclient.Dialer{Protocols: []string{"binary"}}, teststack.URL("ws", wsAddr))
	viaWSS := fetchWS(t, rfbclient.Dialer{TLSConfig: &tls.Config{RootCAs: pool}}, teststack.URL("wss", wssAddr))
	again := fetchTCP(t, x.Addr())

	for name, fb := range map[string][]byte{"ws": viaWS, "wss": viaWSS, "direct again": again} {
		if !bytes.Equal(fb, direct) {
			t.Errorf("%s framebuffer differs from the direct one", name)
		}
	}
	t.Logf("1024x768 framebuffer, %d distinct colours, equal over tcp, ws and wss", teststack.DistinctColours(direct))
}

func TestWebsockifyTLSRejectsUnknownCA(t *testing.T) {
	teststack.Require(t, "Xvnc", "websockify")
	x := teststack.StartXvnc(t)
	wssAddr, _ := teststack.StartWebsockifyTLS(t, x.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rfbclient.Dialer{}.Dial(ctx, teststack.URL("wss", wssAddr))
	if err == nil {
		_ = c.Close()
		t.Fatal("dial with the system roots succeeded; want a certificate error")
	}
}

func TestRequireSkipsMissingTool(t *testing.T) {
	t.Setenv(teststack.RequireRealEnv, "")
	ran := false
	t.Run("missing", func(t *testing.T) {
		defer func() { ran = true }()
		teststack.Require(t, "vncedge-no-such-tool")
		t.Error("Require returned for a missing tool")
	})
	if !ran {
		t.Fatal("subtest did not run")
	}
}

func TestBigUpdateThroughWebsockify(t *testing.T) {
	teststack.Require(t, "websockify")
	srv := rfbtest.NewServer(t, rfbtest.Options{UpdateSize: 4 << 20, Seed: 11})
	addr := teststack.StartWebsockify(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, teststack.URL("ws", addr), []string{"binary"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	rc, err := rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if err := rc.SetEncodings(); err != nil {
		t.Fatal(err)
	}
	if err := rc.KeyEvent(true, 0xffe3); err != nil {
		t.Fatal(err)
	}
	if err := rc.PointerEvent(1, 3, 4); err != nil {
		t.Fatal(err)
	}
	if err := rc.ClientCutText(bytes.Repeat([]byte("x"), 100000)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		fb, err := rc.ReadFull()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fb, srv.Framebuffer()) {
			t.Fatalf("4 MiB update %d through websockify differs", i)
		}
	}
	wantTypes := []byte{0, 2, 4, 5, 6, 3, 3}
	for i, want := range wantTypes {
		m, err := srv.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != want {
			t.Fatalf("message %d type %d, want %d", i, m.Type, want)
		}
	}
	t.Logf("%d WebSocket frames carried the two updates", c.FramesRead())
}
