package proxy_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

// pushServer is a minimal RFB 3.8 server that, after ServerInit, writes total
// bytes of a deterministic stream as fast as the connection takes them. It
// reports through stalled each time a write makes no progress for 200ms.
type pushServer struct {
	ln      net.Listener
	total   int
	written atomic.Int64
	stalled chan int64
	sum     chan [32]byte
}

func startPushServer(t *testing.T, total int) *pushServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pushServer{ln: ln, total: total, stalled: make(chan int64, 1), sum: make(chan [32]byte, 1)}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *pushServer) serve() {
	c, err := p.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	pushServerHandshake(c) // the pushed stream follows ServerInit
	h := sha256.New()
	var x uint32 = 1
	for sent := 0; sent < p.total; {
		n := min(len(buf), p.total-sent)
		for i := range buf[:n] {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			buf[i] = byte(x)
		}
		h.Write(buf[:n])
		for off := 0; off < n; {
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			k, err := c.Write(buf[off:n])
			off += k
			p.written.Add(int64(k))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				select {
				case p.stalled <- p.written.Load():
				default:
				}
				continue
			}
			if err != nil {
				return
			}
		}
		sent += n
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	p.sum <- s
	io.Copy(io.Discard, c) // hold the conn until the viewer leaves
}

// pushServerHandshake is a push server's side of the RFB handshake: RFB 3.8,
// security None, and a ServerInit of 8x8, 32bpp, name "p" (what
// pushHandshake expects).
func pushServerHandshake(c net.Conn) {
	var buf [12]byte
	c.Write([]byte("RFB 003.008\n"))
	io.ReadFull(c, buf[:12])
	c.Write([]byte{1, 1})
	io.ReadFull(c, buf[:1])
	c.Write([]byte{0, 0, 0, 0})
	io.ReadFull(c, buf[:1])
	c.Write([]byte{0, 8, 0, 8, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 1, 'p'})
}

// pushHandshake completes a pushServer's RFB handshake by hand, with exact
// reads: a buffering RFB client would swallow the start of the pushed stream
// when it shares a frame with ServerInit.
func pushHandshake(t testing.TB, ws *rfbclient.WSConn) {
	t.Helper()
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
}

// TestSlowViewerBackpressure: a viewer that stops reading must not make
// vncedge buffer the server's output. The upstream is paused above the high
// watermark, so the VNC server's writes stall while vncedge holds at most the
// watermark (the hard cap, set just above it, would cut the session otherwise);
// when the viewer reads again every byte arrives, in order.
//
// It runs on both down paths: splice(2) through a pipe (the default for
// tcp:// upstreams, where the pipe is the bound) and gnet's buffers with
// pause and resume (NoSplice, as ws:// upstreams go).
func TestSlowViewerBackpressure(t *testing.T) {
	for _, noSplice := range []bool{false, true} {
		t.Run(map[bool]string{false: "splice", true: "gnet"}[noSplice], func(t *testing.T) {
			srv := slowViewerBackpressure(t, noSplice)
			if want := map[bool]int64{false: 1, true: 0}[noSplice]; srv.Stats().Spliced != want {
				t.Fatalf("spliced sessions %d, want %d", srv.Stats().Spliced, want)
			}
		})
	}
}

func slowViewerBackpressure(t *testing.T, noSplice bool) *proxy.Server {
	const total = 96 << 20
	ps := startPushServer(t, total)
	cfg := targetConfig(t, "tcp://"+ps.ln.Addr().String(), rfbparse.User)
	cfg.ViewerHighWater = 1 << 20
	cfg.ViewerLowWater = 256 << 10
	cfg.MaxViewerBuffer = 4 << 20
	cfg.NoSplice = noSplice
	srv, addr := startProxy(t, cfg)

	ws := dialWS(t, addr, "/")
	pushHandshake(t, ws)
	// Stop reading: the server must stall well before it has sent everything.
	var stalledAt int64
	select {
	case stalledAt = <-ps.stalled:
	case <-ps.sum:
		t.Fatalf("server wrote all %d bytes to a viewer that reads nothing: no backpressure", total)
	case <-time.After(20 * time.Second):
		t.Fatal("server neither stalled nor finished")
	}
	t.Logf("server stalled after %d MiB with the viewer not reading", stalledAt>>20)
	if stalledAt > 48<<20 {
		t.Fatalf("server wrote %d MiB before stalling; buffering is not bounded", stalledAt>>20)
	}

	// Read everything: nothing lost, nothing reordered, session not cut.
	h := sha256.New()
	ws.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.CopyN(h, ws, total); err != nil {
		t.Fatalf("reading the pushed stream: %v (server wrote %d, viewer got %d, frames %d)", err, ps.written.Load(), n, ws.FramesRead())
	}
	want := <-ps.sum
	if got := h.Sum(nil); string(got) != string(want[:]) {
		t.Fatal("stream through vncedge differs from what the server sent")
	}
	return srv
}

// TestSlowUpstreamCapped: a VNC server that stops reading while the viewer
// keeps sending (a huge clipboard) cannot make vncedge buffer without bound:
// past the hard cap the session ends with 1008 slow-upstream.
func TestSlowUpstreamCapped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pushServerHandshake(c)
		select {} // never read again
	}()
	cfg := targetConfig(t, "tcp://"+ln.Addr().String(), rfbparse.User)
	cfg.MaxViewerBuffer = 2 << 20
	cfg.MaxFramePayload = 1 << 20
	_, addr := startProxy(t, cfg)
	ws := dialWS(t, addr, "/")
	pushHandshake(t, ws)
	// A 15 MiB clipboard (under MaxCutText) that the server never reads.
	const total = 15 << 20
	hdr := binary.BigEndian.AppendUint32([]byte{6, 0, 0, 0}, total)
	go func() {
		ws.Write(hdr)
		chunk := make([]byte, 512<<10)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := ws.Write(chunk); err != nil {
				return
			}
		}
	}()
	_ = ws.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = ws.Read(make([]byte, 1))
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "slow-upstream" {
		t.Fatalf("viewer read %v, want close 1008 slow-upstream", err)
	}
}
