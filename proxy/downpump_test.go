package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"

	"golang.org/x/sys/unix"
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

// TestSocketSizing: a spliced session's viewer socket gets
// ViewerNotSentLowat as TCP_NOTSENT_LOWAT, and the upstream socket
// UpstreamRecvBuffer as SO_RCVBUF (the kernel doubles it); with neither set
// (lowat off, autotuning) the sockets keep the kernel's values.
func TestSocketSizing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lowat, rcvbuf int
	}{{"set", 96 << 10, 192 << 10}, {"off", -1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			const total = 16 << 20
			ps := startPushServer(t, total)
			cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
			cfg.ViewerNotSentLowat, cfg.UpstreamRecvBuffer = tc.lowat, tc.rcvbuf
			srv, addr := startProxy(t, cfg)
			ws := dialWS(t, addr, "/")
			pushHandshake(t, ws)
			h := sha256.New()
			_ = ws.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.CopyN(h, ws, 4<<20); err != nil { // the pump starts at the first bulk read
				t.Fatal(err)
			}
			if got := srv.Stats().Spliced; got != 1 {
				t.Fatalf("spliced sessions %d, want 1", got)
			}
			lowat := sockoptOfPeer(t, ws.NetConn().LocalAddr(), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
			rcvbuf := sockoptOfPeer(t, ps.ln.Addr(), unix.SOL_SOCKET, unix.SO_RCVBUF)
			if tc.lowat > 0 {
				if lowat != tc.lowat {
					t.Errorf("viewer TCP_NOTSENT_LOWAT %d, want %d", lowat, tc.lowat)
				}
				if rcvbuf != 2*tc.rcvbuf {
					t.Errorf("upstream SO_RCVBUF %d, want %d (twice the setting)", rcvbuf, 2*tc.rcvbuf)
				}
			} else if lowat == 96<<10 || rcvbuf == 2*(192<<10) {
				t.Errorf("off: viewer lowat %d, upstream rcvbuf %d: set anyway", lowat, rcvbuf)
			}
			if _, err := io.CopyN(h, ws, total-4<<20); err != nil {
				t.Fatal(err)
			}
			if want := <-ps.sum; string(h.Sum(nil)) != string(want[:]) {
				t.Fatal("stream through vncedge differs from what the server sent")
			}
		})
	}
}

// sockoptOfPeer reads an integer socket option of this process's socket
// connected to peer (the proxy runs in the test's process).
func sockoptOfPeer(t *testing.T, peer net.Addr, level, opt int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	want := peer.(*net.TCPAddr)
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getpeername(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*unix.SockaddrInet4); !ok || in4.Port != want.Port || !net.IP(in4.Addr[:]).Equal(want.IP) {
			continue
		}
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			t.Fatalf("getsockopt on fd %d: %v", fd, err)
		}
		return v
	}
	t.Fatalf("no socket of this process is connected to %v", peer)
	return 0
}
