package proxy_test

import (
	"io"
	"testing"
	"time"

	"vncedge/rfbparse"
)

// TestPausedUpstreamCounted (issue 13 point 3): while the upstream is paused
// for a slow viewer (taken off the loop, its socket kept open by a dup), it
// still counts as an open socket against MaxConns; once the session ends the
// count is back to zero.
func TestPausedUpstreamCounted(t *testing.T) {
	ps := startPushServer(t, 96<<20)
	cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
	cfg.ViewerHighWater = 1 << 20
	cfg.ViewerLowWater = 256 << 10
	cfg.MaxViewerBuffer = 8 << 20
	srv, addr := startProxy(t, cfg)
	ws := dialWS(t, addr, "/")
	buf := make([]byte, 25)
	for _, step := range []struct {
		read int
		send []byte
	}{{12, []byte("RFB 003.008\n")}, {2, []byte{1}}, {4, []byte{1}}, {25, nil}} {
		if _, err := io.ReadFull(ws, buf[:step.read]); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if step.send != nil {
			if _, err := ws.Write(step.send); err != nil {
				t.Fatalf("handshake: %v", err)
			}
		}
	}
	select {
	case <-ps.stalled: // the viewer reads nothing: the upstream is paused
	case <-time.After(20 * time.Second):
		t.Fatal("the server never stalled")
	}
	if n := srv.Stats().Conns; n != 2 {
		t.Fatalf("open sockets while paused: %d, want 2 (viewer and paused upstream)", n)
	}
	ws.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Conns != 0 || srv.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the viewer left: %+v", srv.Stats())
		}
		time.Sleep(5 * time.Millisecond) // counters of the server under test: no event to await
	}
}
