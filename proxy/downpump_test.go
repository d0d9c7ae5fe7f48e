package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

// TestTLSViewerSpliced: a TLS viewer's socket is its bridge's socketpair;
// the down pump splices into it, and the viewer gets every byte in order.
func TestTLSViewerSpliced(t *testing.T) {
	const total = 16 << 20
	ps := startPushServer(t, total)
	cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
	pool := tlsListenerConfig(t, &cfg)
	srv, addr := startProxy(t, cfg)
	d := rfbclient.Dialer{Protocols: []string{"binary"}, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	ws, err := d.Dial(ctxT(t), "wss://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pushHandshake(t, ws)
	readPushed(t, ws, ps)
	if got := srv.Stats().Spliced; got != 1 {
		t.Fatalf("spliced sessions %d, want 1", got)
	}
}

// readPushed reads a pushServer's whole stream at the viewer and checks it
// is the server's, byte for byte.
func readPushed(t testing.TB, ws *rfbclient.WSConn, ps *pushServer) {
	t.Helper()
	h := sha256.New()
	_ = ws.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.CopyN(h, ws, int64(ps.total)); err != nil {
		t.Fatalf("reading the pushed stream: %v (got %d)", err, n)
	}
	want := <-ps.sum
	if got := h.Sum(nil); string(got) != string(want[:]) {
		t.Fatal("stream through vncedge differs from what the server sent")
	}
}

// TestSmallPipeStaysOnGnet: a pipe smaller than minPipe (what an
// unprivileged user gets past fs.pipe-user-pages-soft) is not worth
// splicing through: the session stays on gnet, tries once, leaks nothing,
// and loses no byte.
func TestSmallPipeStaysOnGnet(t *testing.T) {
	checkNoLeaks(t)
	const total = 8 << 20
	ps := startPushServer(t, total)
	cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
	cfg.SplicePipeSize = 4096
	srv, addr := startProxy(t, cfg)
	ws := dialWS(t, addr, "/")
	pushHandshake(t, ws)
	readPushed(t, ws, ps)
	if got := srv.Stats().Spliced; got != 0 {
		t.Fatalf("spliced sessions %d through a 4 KiB pipe, want 0", got)
	}
}
