package proxy_test

// Attacks on the splice(2) down pump (downpump_linux.go): sessions ended in
// every way must leave no socket, descriptor or goroutine behind; control
// frames must go between data frames, and the close last; the up direction
// through the pump's non-blocking writes must keep every byte, in order, and
// the viewer must stay answerable while the VNC server is slow to read.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

// pumpWait polls cond (a counter or a descriptor count: nothing to wait on)
// until it holds, failing after within.
func pumpWait(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		<-tick.C
	}
}

// pumpProxy runs a proxy for the raw-TCP upstream at addr; the splice path
// is the default for it.
func pumpProxy(t testing.TB, addr string, edit func(*proxy.Config)) (*proxy.Server, string, func()) {
	t.Helper()
	cfg := targetConfig(t, "tcp://"+addr, rfbparse.User)
	if edit != nil {
		edit(&cfg)
	}
	return startOwnedProxy(t, cfg)
}

// pumpViewer is a viewer that speaks WebSocket by hand over a raw socket, so the
// test sees every frame the proxy sends (WSConn hides pongs and boundaries)
// and reads in sizes of its own choosing.
type pumpViewer struct {
	c    *net.TCPConn
	rng  *rand.Rand // nil: reads as large as the buffer
	tmp  []byte
	in   []byte // read, not yet parsed
	pend []byte // data payload not yet consumed by readStream

	wmu sync.Mutex

	pongs  [][]byte
	frames int // data frames
}

// pumpFrame is one frame as it came off the wire.
type pumpFrame struct {
	fin     bool
	rsv     byte
	op      ws.OpCode
	masked  bool
	minimal bool // the length was in its shortest encoding
	payload []byte
}

func dialPumpViewer(t testing.TB, addr string, rng *rand.Rand) *pumpViewer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return upgradePumpViewer(t, c.(*net.TCPConn), addr, rng)
}

// upgradePumpViewer upgrades c, a fresh conn to the proxy at addr, to a
// WebSocket viewer, reading nothing past the 101.
func upgradePumpViewer(t testing.TB, c *net.TCPConn, addr string, rng *rand.Rand) *pumpViewer {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	r := &pumpViewer{c: c, rng: rng, tmp: make([]byte, 256<<10)}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var head []byte
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) { // byte by byte: nothing past the head is taken
		if _, err := c.Read(b[:]); err != nil {
			t.Fatalf("upgrade response: %v (%q)", err, head)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		t.Fatalf("upgrade refused: %q", head)
	}
	return r
}

// need reads until n bytes are buffered, in random sizes when rng is set.
func (r *pumpViewer) need(n int) error {
	for len(r.in) < n {
		k := len(r.tmp)
		if r.rng != nil {
			if r.rng.IntN(4) == 0 {
				k = 1 + r.rng.IntN(16)
			} else {
				k = 1 + r.rng.IntN(len(r.tmp))
			}
		}
		m, err := r.c.Read(r.tmp[:k])
		r.in = append(r.in, r.tmp[:m]...)
		if err != nil {
			return err
		}
	}
	return nil
}

// next reads one frame.
func (r *pumpViewer) next() (pumpFrame, error) {
	if err := r.need(2); err != nil {
		return pumpFrame{}, err
	}
	f := pumpFrame{fin: r.in[0]&0x80 != 0, rsv: r.in[0] & 0x70, op: ws.OpCode(r.in[0] & 0x0f), masked: r.in[1]&0x80 != 0}
	l, hl := uint64(r.in[1]&0x7f), 2
	f.minimal = true
	switch l {
	case 126:
		if err := r.need(4); err != nil {
			return f, err
		}
		l, hl = uint64(binary.BigEndian.Uint16(r.in[2:])), 4
		f.minimal = l >= 126
	case 127:
		if err := r.need(10); err != nil {
			return f, err
		}
		l, hl = binary.BigEndian.Uint64(r.in[2:]), 10
		f.minimal = l > 0xffff
	}
	if f.masked {
		hl += 4
	}
	if l > 64<<20 {
		return f, fmt.Errorf("frame of %d bytes", l)
	}
	if err := r.need(hl + int(l)); err != nil {
		return f, err
	}
	f.payload = append([]byte(nil), r.in[hl:hl+int(l)]...)
	r.in = r.in[hl+int(l):]
	return f, nil
}

// write sends one masked frame.
func (r *pumpViewer) write(op ws.OpCode, payload []byte) error {
	var buf bytes.Buffer
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	_ = ws.WriteHeader(&buf, h)
	start := buf.Len()
	buf.Write(payload)
	ws.Cipher(buf.Bytes()[start:], h.Mask, 0)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.c.Write(buf.Bytes())
	return err
}

// pumpClosed is what readStream returns at the proxy's close frame.
type pumpClosed struct {
	code   int
	reason string
}

func (e *pumpClosed) Error() string { return fmt.Sprintf("close %d %s", e.code, e.reason) }

// pumpCheckData fails on a data frame the proxy must never send.
func pumpCheckData(f pumpFrame) error {
	switch {
	case !f.fin || f.rsv != 0 || f.masked || !f.minimal:
		return fmt.Errorf("malformed frame: fin %v rsv %#x masked %v minimal %v", f.fin, f.rsv, f.masked, f.minimal)
	case f.op != ws.OpBinary:
		return fmt.Errorf("data frame with opcode %v", f.op)
	case len(f.payload) == 0:
		return errors.New("empty data frame")
	}
	return nil
}

// readStream returns n data bytes, checking every frame; pings are answered,
// pongs recorded; the close frame ends it with *pumpClosed.
func (r *pumpViewer) readStream(n int) ([]byte, error) {
	for len(r.pend) < n {
		f, err := r.next()
		if err != nil {
			return nil, err
		}
		if f.op.IsControl() {
			if !f.fin || f.rsv != 0 || f.masked || len(f.payload) > 125 {
				return nil, fmt.Errorf("malformed control frame %v", f.op)
			}
			switch f.op {
			case ws.OpPing:
				_ = r.write(ws.OpPong, f.payload)
			case ws.OpPong:
				r.pongs = append(r.pongs, f.payload)
			case ws.OpClose:
				e := &pumpClosed{}
				if len(f.payload) >= 2 {
					e.code, e.reason = int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
				}
				return nil, e
			default:
				return nil, fmt.Errorf("control opcode %v", f.op)
			}
			continue
		}
		if err := pumpCheckData(f); err != nil {
			return nil, err
		}
		r.frames++
		r.pend = append(r.pend, f.payload...)
	}
	out := r.pend[:n:n]
	r.pend = r.pend[n:]
	return out, nil
}

// handshake runs the viewer's side of the RFB handshake (the server's
// ServerInit carries a name of nameLen bytes).
func (r *pumpViewer) handshake(t testing.TB, nameLen int) {
	t.Helper()
	_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer r.c.SetDeadline(time.Time{})
	for _, step := range []struct {
		read int
		send []byte
	}{{12, []byte("RFB 003.008\n")}, {2, []byte{1}}, {4, []byte{1}}, {24 + nameLen, nil}} {
		if _, err := r.readStream(step.read); err != nil {
			t.Fatalf("viewer handshake: %v", err)
		}
		if step.send != nil {
			if err := r.write(ws.OpBinary, step.send); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// drainToClose reads until the proxy's close frame, which must come after
// the stream's data and be followed by nothing; it returns the close.
func (r *pumpViewer) drainToClose(t testing.TB, within time.Duration) *pumpClosed {
	t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(within))
	for {
		_, err := r.readStream(1)
		var ce *pumpClosed
		if errors.As(err, &ce) {
			if len(r.in) != 0 {
				t.Fatalf("%d bytes after the close frame", len(r.in))
			}
			return ce
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
}

// ---------------------------------------------------------------------------
// Leaks

// TestPumpSessionEndsNoLeak ends spliced sessions in every way a session
// ends. Each time: every session went through the pump (Stats.Spliced), the
// viewer sees the close it should, and once they are over Stats.Active and
// Stats.Conns are 0 and the descriptors and goroutines are back to what they
// were before, with the proxy still running.
func TestPumpSessionEndsNoLeak(t *testing.T) {
	checkNoLeaks(t)
	const n = 4
	type way struct {
		name string
		cfg  func(*proxy.Config)
		// end ends session i (viewer v, server side c); want is the viewer's
		// close (code 0: none, the socket just ends).
		end  func(t *testing.T, v *pumpViewer, c *net.TCPConn, stop func())
		code int
		why  string
	}
	ways := []way{
		{name: "viewer-close", end: func(t *testing.T, v *pumpViewer, _ *net.TCPConn, _ func()) {
			_ = v.write(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
		}, code: 1000},
		{name: "viewer-rst", end: func(t *testing.T, v *pumpViewer, _ *net.TCPConn, _ func()) {
			_ = v.c.SetLinger(0)
			_ = v.c.Close()
		}},
		{name: "upstream-eof", end: func(t *testing.T, _ *pumpViewer, c *net.TCPConn, _ func()) {
			_ = c.Close()
		}, code: 1000, why: "upstream-closed"},
		{name: "upstream-rst", end: func(t *testing.T, _ *pumpViewer, c *net.TCPConn, _ func()) {
			_ = c.SetLinger(0)
			_ = c.Close()
		}, code: 1011, why: "upstream-error"},
		{name: "upstream-rst-mid-paste", end: func(t *testing.T, v *pumpViewer, c *net.TCPConn, _ func()) {
			go func() { // the proxy's writes to the upstream fail under it
				msg := binary.BigEndian.AppendUint32([]byte{6, 0, 0, 0}, 8<<20)
				_ = v.write(ws.OpBinary, msg)
				chunk := make([]byte, 256<<10)
				for range 32 {
					if v.write(ws.OpBinary, chunk) != nil {
						return
					}
				}
			}()
			_ = c.SetLinger(0)
			_ = c.Close()
		}, code: 1011},
		{name: "max-duration", cfg: func(c *proxy.Config) { c.MaxDuration = 300 * time.Millisecond }, code: 1000, why: "max-duration"},
		{name: "idle-timeout", cfg: func(c *proxy.Config) { c.IdleTimeout = 300 * time.Millisecond }, code: 1000, why: "idle-timeout"},
		{name: "ping-timeout", cfg: func(c *proxy.Config) { c.PingInterval = 50 * time.Millisecond }},
		{name: "shutdown", end: func(t *testing.T, _ *pumpViewer, _ *net.TCPConn, stop func()) { stop() }, code: 1001, why: "server-shutdown"},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			ch := make(chan *net.TCPConn, n)
			fake := startRFBFake(t, nil, handOver(ch))
			srv, addr, stop := pumpProxy(t, fake.addr(), func(c *proxy.Config) {
				c.CloseTimeout = 500 * time.Millisecond
				if w.cfg != nil {
					w.cfg(c)
				}
			})
			g0, f0 := len(pumpGoroutines()), len(pumpFDs())
			vs := make([]*pumpViewer, n)
			cs := make([]*net.TCPConn, n)
			for i := range vs {
				vs[i] = dialPumpViewer(t, addr, nil)
				vs[i].handshake(t, len("fault"))
				cs[i] = nextConn(t, ch)
				toPump(t, srv, int64(i+1), cs[i], func(n int) error { _, err := vs[i].readStream(n); return err })
			}
			pumpWait(t, 5*time.Second, "not every session was spliced", func() bool { return srv.Stats().Spliced == n })
			// Traffic both ways through the pump before the end.
			for i := range vs {
				if _, err := cs[i].Write([]byte{2}); err != nil { // Bell
					t.Fatal(err)
				}
				_ = vs[i].c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if b, err := vs[i].readStream(1); err != nil || b[0] != 2 {
					t.Fatalf("bell through the pump: %v %v", b, err)
				}
			}
			var once sync.Once
			for i := range vs {
				if w.end != nil {
					w.end(t, vs[i], cs[i], func() { once.Do(stop) })
				}
			}
			if w.name != "viewer-rst" && w.name != "ping-timeout" {
				for _, v := range vs {
					ce := v.drainToClose(t, 5*time.Second)
					if ce.code != w.code || w.why != "" && ce.reason != w.why {
						t.Fatalf("viewer got close %d %q, want %d %q", ce.code, ce.reason, w.code, w.why)
					}
				}
			}
			pumpWait(t, 5*time.Second, "sessions still counted", func() bool {
				st := srv.Stats()
				return st.Active == 0 && st.Conns == 0
			})
			// The proxy's side is closed: every viewer reads to EOF (or a
			// reset), and so does every server conn.
			for i := range vs {
				_ = vs[i].c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.Copy(io.Discard, vs[i].c); isTimeout(err) {
					t.Fatalf("viewer %d: the proxy kept the socket open", i)
				}
				_ = cs[i].SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.Copy(io.Discard, cs[i]); isTimeout(err) {
					t.Fatalf("server conn %d: the proxy kept the upstream open", i)
				}
				vs[i].c.Close()
				cs[i].Close()
			}
			if w.name == "shutdown" {
				return // the proxy is gone; checkNoLeaks has the last word
			}
			var g, f int
			deadline := time.Now().Add(5 * time.Second)
			for {
				gs, fds := pumpGoroutines(), pumpFDs()
				g, f = len(gs), len(fds)
				if g <= g0 && f <= f0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("left behind: goroutines %d → %d, fds %d → %d\n%s\n%s", g0, g, f0, f, strings.Join(fds, " "), strings.Join(gs, "\n\n"))
				}
				time.Sleep(5 * time.Millisecond) // polling counts: the bound is the deadline
			}
			t.Logf("goroutines %d → %d, fds %d → %d", g0, g, f0, f)
		})
	}
}

// pumpGoroutines are the goroutines but gnet's and the liveness loop's
// (they may still be starting when the test takes its baseline).
func pumpGoroutines() []string {
	var out []string
	for _, g := range goroutines() {
		if !strings.Contains(g, "created by golang.org/x/sync/errgroup") && !strings.Contains(g, "created by github.com/panjf2000/gnet/") &&
			!strings.Contains(g, "livenessLoop") {
			out = append(out, g)
		}
	}
	return out
}

// pumpFDs are the open sockets and pipes (not gnet's epoll and eventfds).
func pumpFDs() []string {
	var out []string
	for _, f := range openFDs() {
		if strings.Contains(f, "socket:") || strings.Contains(f, "pipe:") {
			out = append(out, f)
		}
	}
	return out
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPumpBlockedViewerEnds: the server pushes without end, the viewer reads
// nothing, so the pump is stuck mid-frame when the session ends
// (max-duration). The upstream must close at once, the pump must give up
// within CloseTimeout and the viewer's socket must close, while the viewer
// still reads nothing.
func TestPumpBlockedViewerEnds(t *testing.T) {
	checkNoLeaks(t)
	// CloseTimeout well apart from max-duration: an upstream closed at once
	// and one closed only after CloseTimeout differ by seconds, not by the
	// scheduling noise of a loaded machine.
	const maxDur, closeTimeout = 300 * time.Millisecond, 3 * time.Second
	upClosed := make(chan time.Time, 1)
	chunk := bytes.Repeat([]byte{0}, 64<<10)
	fake := startRFBFake(t, nil, func(_ int, c *net.TCPConn) {
		defer c.Close()
		for {
			if _, err := c.Write(chunk); err != nil {
				upClosed <- time.Now()
				return
			}
		}
	})
	srv, addr, _ := pumpProxy(t, fake.addr(), func(c *proxy.Config) {
		c.MaxDuration, c.CloseTimeout = maxDur, closeTimeout
	})
	f0 := len(pumpFDs())
	v := dialPumpViewer(t, addr, nil)
	v.handshake(t, len("fault"))
	start := time.Now()
	var at time.Time
	select {
	case at = <-upClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream was never closed")
	}
	if srv.Stats().Spliced != 1 {
		t.Fatalf("spliced %d, want 1", srv.Stats().Spliced)
	}
	if d := at.Sub(start); d > maxDur+closeTimeout/2 {
		t.Fatalf("upstream closed %v after the start: not promptly at max-duration %v", d, maxDur)
	}
	pumpWait(t, maxDur+closeTimeout+latencyLimit(2*time.Second), "the session outlived CloseTimeout with a viewer that reads nothing", func() bool {
		st := srv.Stats()
		return st.Active == 0 && st.Conns == 0 && len(pumpFDs()) <= f0+1 // +1: the viewer's own socket
	})
	t.Logf("ended %v after the start", time.Since(start))
	// The viewer reads at last: what the socket held, then EOF.
	_ = v.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, v.c); isTimeout(err) {
		t.Fatal("the viewer's socket stayed open")
	}
}

// ---------------------------------------------------------------------------
// Control frames

// TestPumpCloseEchoAfterPingFlood: with the pump stuck mid-frame (the viewer
// not reading), the viewer sends pings with full payloads, then its close.
// When it reads again: the data, pongs, and the close echo last. The pongs
// may be dropped (only the latest ping need be answered); the echo may not.
func TestPumpCloseEchoAfterPingFlood(t *testing.T) {
	checkNoLeaks(t)
	ps := startPushServer(t, 1<<40)
	srv, addr, _ := pumpProxy(t, ps.ln.Addr().String(), nil)
	v := dialPumpViewer(t, addr, nil)
	v.handshake(t, 1)
	select {
	case <-ps.stalled: // the pump is mid-frame on a full socket
	case <-time.After(10 * time.Second):
		t.Fatal("the server never stalled")
	}
	if srv.Stats().Spliced != 1 {
		t.Fatalf("spliced %d, want 1", srv.Stats().Spliced)
	}
	ping := bytes.Repeat([]byte{'p'}, 125)
	for range 8 {
		if err := v.write(ws.OpPing, ping); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.write(ws.OpClose, ws.NewCloseFrameBody(4321, "")); err != nil {
		t.Fatal(err)
	}
	ce := v.drainToClose(t, 10*time.Second)
	if ce.code != 4321 {
		t.Fatalf("close echo %d, want 4321", ce.code)
	}
	for _, p := range v.pongs {
		if !bytes.Equal(p, ping) {
			t.Fatalf("pong %q", p)
		}
	}
	t.Logf("%d pongs for 8 pings, then the echo", len(v.pongs))
}

// TestPumpStreamIntegrity: the viewer reads with random sizes (1 byte to
// 256 KiB) and pings the proxy meanwhile; every frame is well-formed, every
// ping gets a pong with its payload or is superseded by a later one that
// does, the payload stream equals the server's byte for byte, and the
// close comes last.
func TestPumpStreamIntegrity(t *testing.T) {
	checkNoLeaks(t)
	total := 48 << 20
	if raceEnabled {
		total = 12 << 20
	}
	ps := startPushServer(t, total)
	srv, addr, _ := pumpProxy(t, ps.ln.Addr().String(), func(c *proxy.Config) { c.SplicePipeSize = 256 << 10 })
	v := dialPumpViewer(t, addr, rand.New(rand.NewPCG(1, 2)))
	v.handshake(t, 1)
	stop := make(chan struct{})
	pinged := make(chan int, 1)
	go func() { // pings with a counter, as fast as the pump takes them
		defer close(pinged)
		i := 0
		for {
			select {
			case <-stop:
				pinged <- i
				return
			default:
			}
			i++
			if v.write(ws.OpPing, fmt.Appendf(nil, "%08d", i)) != nil {
				return
			}
			if i%64 == 0 {
				runtimeYield()
			}
		}
	}()
	h := sha256.New()
	_ = v.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for got := 0; got < total; {
		b, err := v.readStream(min(total-got, 1+rand.IntN(1<<20)))
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, total, err)
		}
		h.Write(b)
		got += len(b)
	}
	close(stop)
	last := <-pinged
	want := <-ps.sum
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the stream through the pump differs from the server's")
	}
	if srv.Stats().Spliced != 1 {
		t.Fatalf("spliced %d, want 1", srv.Stats().Spliced)
	}
	// Pings on an idle pump: one of them gets its pong (the latest may be
	// dropped only while earlier pongs are unsent), after every earlier one.
	_ = v.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	final := 0
	for len(v.pongs) == 0 || !bytes.HasPrefix(v.pongs[len(v.pongs)-1], []byte("final")) {
		final++
		if err := v.write(ws.OpPing, fmt.Appendf(nil, "final%d", final)); err != nil {
			t.Fatal(err)
		}
		f, err := v.next()
		if err != nil {
			t.Fatalf("waiting for a final pong: %v", err)
		}
		switch {
		case f.op == ws.OpPong:
			v.pongs = append(v.pongs, f.payload)
		case f.op.IsControl():
			t.Fatalf("unexpected %v", f.op)
		default:
			t.Fatalf("data after the stream ended: %d bytes", len(f.payload))
		}
	}
	for len(v.pongs) > 0 && bytes.HasPrefix(v.pongs[len(v.pongs)-1], []byte("final")) {
		v.pongs = v.pongs[:len(v.pongs)-1]
	}
	prev := 0
	for _, p := range v.pongs {
		var k int
		if _, err := fmt.Sscanf(string(p), "%d", &k); err != nil || k <= prev || k > last {
			t.Fatalf("pong %q after %d (last ping %d): not a ping's payload, or out of order", p, prev, last)
		}
		prev = k
	}
	t.Logf("%d MiB in %d frames; %d pings, %d pongs", total>>20, v.frames, last, len(v.pongs))
	if err := v.write(ws.OpClose, ws.NewCloseFrameBody(1000, "")); err != nil {
		t.Fatal(err)
	}
	if ce := v.drainToClose(t, 5*time.Second); ce.code != 1000 {
		t.Fatalf("close echo %d", ce.code)
	}
}

func runtimeYield() { time.Sleep(time.Millisecond) } // pacing the ping writer, not synchronisation

// ---------------------------------------------------------------------------
// The up direction

// upSession is a viewer and the server side of its upstream (c), which the
// test reads when it chooses: a server that stops reading, then reads.
type upSession struct {
	srv *proxy.Server
	v   *rfbclient.WSConn
	c   *net.TCPConn
}

func startUpSession(t *testing.T, noSplice bool, edit func(*proxy.Config)) *upSession {
	t.Helper()
	ch := make(chan *net.TCPConn, 1)
	fake := startRFBFake(t, nil, handOver(ch))
	srv, addr, _ := pumpProxy(t, fake.addr(), func(c *proxy.Config) {
		c.NoSplice = noSplice
		if edit != nil {
			edit(c)
		}
	})
	v := dialWS(t, addr, "/")
	viewerHandshake(t, v)
	u := &upSession{srv: srv, v: v, c: nextConn(t, ch)}
	want := map[bool]int64{false: 1, true: 0}[noSplice]
	toPump(t, srv, want, u.c, func(n int) error { _, err := io.ReadFull(v, make([]byte, n)); return err })
	pumpWait(t, 5*time.Second, "splice path not taken as configured", func() bool { return srv.Stats().Spliced == want })
	return u
}

// toPump pushes bulk from the server (c) until the session moves to the
// pump (a session does after a bulk upstream read, spliceAfter); read takes
// n bytes at the viewer.
func toPump(t testing.TB, srv *proxy.Server, want int64, c net.Conn, read func(n int) error) {
	t.Helper()
	bulk := make([]byte, 256<<10)
	for i := 0; i < 8 && srv.Stats().Spliced < want; i++ {
		if _, err := c.Write(bulk); err != nil {
			t.Fatal(err)
		}
		if err := read(len(bulk)); err != nil {
			t.Fatalf("viewer reading bulk: %v", err)
		}
	}
}

// sendCut sends a ClientCutText of text in frames of at most 256 KiB.
func sendCut(v *rfbclient.WSConn, text []byte) error {
	msg := binary.BigEndian.AppendUint32([]byte{6, 0, 0, 0}, uint32(len(text)))
	msg = append(msg, text...)
	for len(msg) > 0 {
		k := min(len(msg), 256<<10)
		if _, err := v.Write(msg[:k]); err != nil {
			return err
		}
		msg = msg[k:]
	}
	return nil
}

// pumpKeyMsg is a KeyEvent.
func pumpKeyMsg(down bool, sym uint32) []byte {
	d := byte(0)
	if down {
		d = 1
	}
	return binary.BigEndian.AppendUint32([]byte{4, d, 0, 0}, sym)
}

// TestPumpSlowServerViewerStillAnswered: a VNC server that does not read
// for a while, during a 12 MiB paste (within MaxUpstreamBuffer). The viewer
// stays a live peer meanwhile, as on the gnet path, where the paste waits in
// gnet's buffer: its pongs count (pings: PingInterval is short, and a viewer
// whose pongs went unread would be cut with ping-timeout; when the server
// reads again it gets the paste), and its close is answered at once (close).
func TestPumpSlowServerViewerStillAnswered(t *testing.T) {
	const pingEvery = 200 * time.Millisecond
	for _, noSplice := range []bool{false, true} {
		for _, what := range []string{"pings", "close"} {
			t.Run(map[bool]string{false: "splice", true: "gnet"}[noSplice]+"/"+what, func(t *testing.T) {
				checkNoLeaks(t)
				u := startUpSession(t, noSplice, func(c *proxy.Config) {
					if what == "pings" {
						// Short enough that input held for ~3 intervals (the
						// defect) is a ping-timeout within the wait below;
						// long enough that a loaded machine (the viewer's
						// pong waits behind its own paste write) is not one.
						c.PingInterval = pingEvery
					}
				})
				text := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16)
				readErr := make(chan error, 1)
				if what == "pings" { // the viewer reads (answering pings) throughout
					go func() {
						_, err := u.v.Read(make([]byte, 1))
						readErr <- err
					}()
				}
				if err := sendCut(u.v, text); err != nil {
					t.Fatal(err)
				}
				if what == "close" {
					if err := u.v.CloseWith(1000, ""); err != nil {
						t.Fatal(err)
					}
					_ = u.v.NetConn().SetReadDeadline(time.Now().Add(latencyLimit(time.Second)))
					var ce *rfbclient.CloseError
					if _, err := u.v.Read(make([]byte, 1)); !errors.As(err, &ce) || ce.Code != 1000 {
						t.Fatalf("viewer's close while the server is not reading: read %v, want the echo", err)
					}
					return
				}
				// 8 ping intervals more with the server reading nothing: the
				// session must live on.
				select {
				case err := <-readErr:
					t.Fatalf("while the server was not reading, the viewer read %v", err)
				case <-time.After(8 * pingEvery):
				}
				// The server reads again: the whole paste arrives.
				_ = u.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got := make([]byte, 8+len(text))
				if _, err := io.ReadFull(u.c, got); err != nil {
					t.Fatalf("server read: %v", err)
				}
				if !bytes.Equal(got[8:], text) {
					t.Fatal("the paste arrived changed")
				}
				select {
				case err := <-readErr:
					t.Fatalf("the viewer read %v", err)
				default:
				}
				_ = u.v.NetConn().Close()
				<-readErr
			})
		}
	}
}

// TestPumpUpInterleavedOrder: key events between large pastes, while the
// server reads only now and then, must reach it complete and in order: the
// policy passes plain keys and Latin-1 clipboards unchanged, so what the
// server reads equals what the viewer sent.
func TestPumpUpInterleavedOrder(t *testing.T) {
	for _, noSplice := range []bool{false, true} {
		t.Run(map[bool]string{false: "splice", true: "gnet"}[noSplice], func(t *testing.T) {
			checkNoLeaks(t)
			u := startUpSession(t, noSplice, nil)
			rng := rand.New(rand.NewPCG(3, 4))
			var want []byte
			sent := make(chan error, 1)
			var msgs [][]byte
			for i := range 6 {
				for k := range 40 {
					sym := uint32('a' + (i*40+k)%26)
					msgs = append(msgs, pumpKeyMsg(true, sym), pumpKeyMsg(false, sym))
				}
				text := make([]byte, 512<<10+rng.IntN(1<<20))
				for j := range text {
					text[j] = 'A' + byte(rng.IntN(26))
				}
				cut := binary.BigEndian.AppendUint32([]byte{6, 0, 0, 0}, uint32(len(text)))
				msgs = append(msgs, append(cut, text...))
			}
			for _, m := range msgs {
				want = append(want, m...)
			}
			go func() {
				for _, m := range msgs {
					// Messages split across frames at random points.
					for len(m) > 0 {
						k := min(len(m), 1+rng.IntN(300<<10))
						if _, err := u.v.Write(m[:k]); err != nil {
							sent <- err
							return
						}
						m = m[k:]
					}
				}
				sent <- nil
			}()
			// The server reads nothing until the viewer has sent it all (the
			// proxy's writes come up short), then reads in bursts.
			select {
			case err := <-sent:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the viewer could not send")
			}
			got := make([]byte, 0, len(want))
			buf := make([]byte, 1<<20)
			_ = u.c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for len(got) < len(want) {
				time.Sleep(20 * time.Millisecond) // a slow server, not synchronisation
				n, err := io.ReadFull(u.c, buf[:min(len(buf), len(want)-len(got))])
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("server read after %d of %d bytes: %v", len(got), len(want), err)
				}
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && got[i] == want[i] {
					i++
				}
				t.Fatalf("the server's stream differs from the viewer's from byte %d of %d", i, len(want))
			}
			if strings.Contains(t.Name(), "splice") && u.srv.Stats().Spliced != 1 {
				t.Fatal("not spliced")
			}
		})
	}
}

// TestPumpSmallUpdateLatency: the pump writes each frame's header with
// MSG_MORE; the payload spliced after it must push the segment out, or a
// small update (a cursor move) would wait for the kernel's 200 ms cork.
func TestPumpSmallUpdateLatency(t *testing.T) {
	checkNoLeaks(t)
	ch := make(chan *net.TCPConn, 1)
	fake := startRFBFake(t, nil, handOver(ch))
	srv, addr, _ := pumpProxy(t, fake.addr(), nil)
	v := dialPumpViewer(t, addr, nil)
	v.handshake(t, len("fault"))
	c := nextConn(t, ch)
	toPump(t, srv, 1, c, func(n int) error { _, err := v.readStream(n); return err })
	pumpWait(t, 5*time.Second, "not spliced", func() bool { return srv.Stats().Spliced == 1 })
	_ = v.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var worst time.Duration
	for i := range 20 {
		began := time.Now()
		if _, err := c.Write([]byte{2}); err != nil {
			t.Fatal(err)
		}
		if b, err := v.readStream(1); err != nil || b[0] != 2 {
			t.Fatalf("update %d: %v %v", i, b, err)
		}
		worst = max(worst, time.Since(began))
	}
	t.Logf("worst of 20 one-byte updates: %v", worst)
	if worst > latencyLimit(100*time.Millisecond) {
		t.Fatalf("a one-byte update took %v through the pump", worst)
	}
}

// TestPumpReleaseOnEnd: a key the viewer holds down when the session ends
// is released on the server (releaseHeld) through the pump's socket, before
// the upstream closes, however the session ends.
func TestPumpReleaseOnEnd(t *testing.T) {
	for _, how := range []string{"viewer-close", "viewer-rst", "max-duration"} {
		t.Run(how, func(t *testing.T) {
			checkNoLeaks(t)
			ch := make(chan *net.TCPConn, 1)
			fake := startRFBFake(t, nil, handOver(ch))
			srv, addr, _ := pumpProxy(t, fake.addr(), func(c *proxy.Config) {
				if how == "max-duration" {
					c.MaxDuration = 300 * time.Millisecond
				}
			})
			v := dialPumpViewer(t, addr, nil)
			v.handshake(t, len("fault"))
			c := nextConn(t, ch)
			toPump(t, srv, 1, c, func(n int) error { _, err := v.readStream(n); return err })
			pumpWait(t, 5*time.Second, "not spliced", func() bool { return srv.Stats().Spliced == 1 })
			if err := v.write(ws.OpBinary, pumpKeyMsg(true, 'a')); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, 8)
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, pumpKeyMsg(true, 'a')) {
				t.Fatalf("key down: %v %v", got, err)
			}
			switch how {
			case "viewer-close":
				_ = v.write(ws.OpClose, ws.NewCloseFrameBody(1000, ""))
			case "viewer-rst":
				_ = v.c.SetLinger(0)
				_ = v.c.Close()
			}
			rest, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("server read: %v", err)
			}
			if !bytes.Equal(rest, pumpKeyMsg(false, 'a')) {
				t.Fatalf("after the end the server read %v, want the release of 'a'", rest)
			}
		})
	}
}
