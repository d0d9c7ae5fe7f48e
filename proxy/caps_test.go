package proxy_test

import (
	"testing"
	"time"

	"vncedge/rfbparse"
)

// TestPausedUpstreamCounted (issue 13 point 3): while the upstream is paused
// for a slow viewer (taken off the loop, its socket kept open by a dup), it
// still counts as an open socket against MaxConns; once the session ends the
// count is back to zero.
// It runs on the gnet path, where pausing happens, and on the splice path,
// where the pump holds the upstream socket.
func TestPausedUpstreamCounted(t *testing.T) {
	for _, noSplice := range []bool{true, false} {
		t.Run(map[bool]string{true: "gnet", false: "splice"}[noSplice], func(t *testing.T) {
			pausedUpstreamCounted(t, noSplice)
		})
	}
}

func pausedUpstreamCounted(t *testing.T, noSplice bool) {
	ps := startPushServer(t, 96<<20)
	cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
	cfg.ViewerHighWater = 1 << 20
	cfg.ViewerLowWater = 256 << 10
	cfg.MaxViewerBuffer = 8 << 20
	cfg.NoSplice = noSplice
	srv, addr := startProxy(t, cfg)
	ws := dialWS(t, addr, "/")
	pushHandshake(t, ws)
	select {
	case <-ps.stalled: // the viewer reads nothing: the upstream is paused
	case <-time.After(20 * time.Second):
		t.Fatal("the server never stalled")
	}
	if want := map[bool]int64{true: 0, false: 1}[noSplice]; srv.Stats().Spliced != want {
		t.Fatalf("spliced %d, want %d", srv.Stats().Spliced, want)
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
