package proxy_test

// The integrity test: many sessions move randomized data both ways at once,
// through random frame splits and random pauses, while the proxy pauses and
// resumes upstreams for backpressure; every byte is checked, in order, at
// both ends.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

// Per-session rates the traffic is paced to, so that the proxy (not the
// test's own generators) sets the pace and the backlog at the end stays small.
var (
	integDownRate = 256 << 10 // bytes/s server → viewer
	integUpRate   = 64 << 10  // clipboard bytes/s viewer → server
)

func init() {
	if raceEnabled { // the race detector costs ~10x CPU per byte handled
		integDownRate, integUpRate = 24<<10, 8<<10
	}
}

// pacer spaces writes to a rate, allowing bursts of 20 ms worth: traffic
// shaping, not synchronisation.
type pacer struct {
	rate int       // bytes/s
	due  time.Time // when the bytes sent so far are due
}

// wait sleeps until n more bytes may go, or end, or stop.
func (p *pacer) wait(n int, end time.Time, stop <-chan struct{}) {
	const burst = 20 * time.Millisecond
	if now := time.Now(); p.due.Before(now.Add(-burst)) {
		p.due = now.Add(-burst)
	}
	p.due = p.due.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	d := time.Until(p.due)
	if !end.IsZero() {
		d = min(d, time.Until(end))
	}
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// upSalt separates a session's viewer→server stream from its server→viewer one.
const upSalt = 0x75705f7374726561 // "up_strea"

// integSession is the server's side of one session.
type integSession struct {
	seed     uint64
	downSent atomic.Int64 // bytes written after ServerInit
	upRecv   atomic.Int64 // ClientCutText payload bytes received and checked
	err      error        // set before done is closed
	done     chan struct{}
}

// integServer is the fake VNC server's state: its sessions by seed.
type integServer struct {
	base     uint64
	mu       sync.Mutex
	sessions map[uint64]*integSession
}

// seed is the i-th accepted conn's seed; it is the desktop name, in hex, so
// the viewer can regenerate what the server sends and vice versa.
func (s *integServer) seed(i int) uint64 { return s.base ^ (uint64(i)+1)*0x9e3779b97f4a7c15 }

func (s *integServer) name(i int) string { return fmt.Sprintf("%016x", s.seed(i)) }

func (s *integServer) lookup(seed uint64) *integSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[seed]
}

// serve runs one session: a writer streams seed's bytes in random chunks
// with random pauses until the viewer's end sentinel arrives, a reader checks
// the viewer's ClientCutText payloads against seed^upSalt's stream; then the
// server closes (FIN), which the viewer sees as 1000 upstream-closed after
// the last byte.
func (s *integServer) serve(i int, c *net.TCPConn) {
	st := &integSession{seed: s.seed(i), done: make(chan struct{})}
	s.mu.Lock()
	s.sessions[st.seed] = st
	s.mu.Unlock()
	defer c.Close()
	defer close(st.done)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard, not a pace

	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- st.write(c, stop) }()
	rerr := st.read(c)
	close(stop)
	if err := <-werr; rerr == nil {
		rerr = err
	}
	st.err = rerr
}

func (st *integSession) write(c net.Conn, stop <-chan struct{}) error {
	rng := rand.New(rand.NewPCG(st.seed, 1))
	src := streamOf(st.seed)
	buf := make([]byte, 32<<10)
	p := pacer{rate: integDownRate}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n := 1 + rng.IntN(512)
		if rng.IntN(4) == 0 {
			n = 1 + rng.IntN(len(buf))
		}
		p.wait(n, time.Time{}, stop)
		_, _ = src.Read(buf[:n])
		k, err := c.Write(buf[:n])
		st.downSent.Add(int64(k))
		if err != nil {
			return fmt.Errorf("server write after %d bytes: %w", st.downSent.Load(), err)
		}
		if rng.IntN(8) == 0 { // traffic shape: a random pause, not synchronisation
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
	}
}

// read checks ClientCutText messages until the end sentinel (a
// FramebufferUpdateRequest); any other message is an error.
func (st *integSession) read(c net.Conn) error {
	br := bufio.NewReaderSize(c, 16<<10)
	want := streamOf(st.seed ^ upSalt)
	got, exp := make([]byte, 16<<10), make([]byte, 16<<10)
	var hdr [9]byte
	for {
		typ, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("server read after %d clipboard bytes: %w", st.upRecv.Load(), err)
		}
		switch typ {
		case rfbparse.MsgClientCutText:
			if _, err := io.ReadFull(br, hdr[:7]); err != nil {
				return fmt.Errorf("server read: ClientCutText header: %w", err)
			}
			for left := int(binary.BigEndian.Uint32(hdr[3:7])); left > 0; {
				k := min(left, len(got))
				if _, err := io.ReadFull(br, got[:k]); err != nil {
					return fmt.Errorf("server read after %d clipboard bytes: %w", st.upRecv.Load(), err)
				}
				_, _ = want.Read(exp[:k])
				if i := firstDiff(got[:k], exp[:k]); i >= 0 {
					return fmt.Errorf("viewer→server byte %d differs: got %#x, want %#x", st.upRecv.Load()+int64(i), got[i], exp[i])
				}
				st.upRecv.Add(int64(k))
				left -= k
			}
		case rfbparse.MsgFramebufferUpdateReq:
			if _, err := io.ReadFull(br, hdr[:9]); err != nil {
				return fmt.Errorf("server read: sentinel: %w", err)
			}
			return nil
		default:
			return fmt.Errorf("server got message type %d after %d clipboard bytes", typ, st.upRecv.Load())
		}
	}
}

// integResult is one session's outcome at the viewer.
type integResult struct {
	up, down int64 // bytes sent up (clipboard payload), received down
	err      error
}

// runIntegViewer runs one viewer until deadline: it sends ClientCutText
// messages with random payloads, cut into frames at random points (some
// fragmented, with pings in between), and reads with random sizes and pauses,
// checking every byte; then it sends the end sentinel and reads to the close.
//
// Once handshaken it calls ready and waits for go, which carries the common
// deadline (or is closed without one when the run is called off).
func runIntegViewer(ctx context.Context, addr string, srv *integServer, ready func(), start <-chan time.Time) (res integResult) {
	v, err := rfbclient.DialWS(ctx, "ws://"+addr+"/", []string{"binary"}, nil)
	if err != nil {
		ready()
		res.err = err
		return
	}
	defer v.Close()
	name, err := rawViewerHandshake(v)
	ready()
	if err != nil {
		res.err = fmt.Errorf("handshake: %w", err)
		return
	}
	deadline, ok := <-start
	if !ok {
		res.err = errors.New("run called off")
		return
	}
	seed, err := strconv.ParseUint(name, 16, 64)
	if err != nil {
		res.err = fmt.Errorf("desktop name %q: %w", name, err)
		return
	}
	_ = v.NetConn().SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard

	type readResult struct {
		n   int64
		err error
	}
	readDone := make(chan readResult, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 2))
		want := streamOf(seed)
		got, exp := make([]byte, 32<<10), make([]byte, 32<<10)
		var n int64
		for {
			k, err := v.Read(got[:1+rng.IntN(len(got))])
			if k > 0 {
				_, _ = want.Read(exp[:k])
				if i := firstDiff(got[:k], exp[:k]); i >= 0 {
					readDone <- readResult{n, fmt.Errorf("server→viewer byte %d differs: got %#x, want %#x", n+int64(i), got[i], exp[i])}
					return
				}
				n += int64(k)
			}
			if err != nil {
				var ce *rfbclient.CloseError
				if errors.As(err, &ce) && ce.Code == ws.StatusNormalClosure && ce.Reason == "upstream-closed" {
					err = nil
				} else {
					err = fmt.Errorf("viewer read after %d bytes: %w", n, err)
				}
				readDone <- readResult{n, err}
				return
			}
			if rng.IntN(16) == 0 { // a slow viewer now and then: backpressure
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			}
		}
	}()

	rng := rand.New(rand.NewPCG(seed, 3))
	src := streamOf(seed ^ upSalt)
	var pending []byte
	send := func(all bool) error {
		for len(pending) > 0 {
			if !all && len(pending) < 4<<10 {
				return nil
			}
			k := 1 + rng.IntN(min(len(pending), 8<<10))
			if err := sendSplit(v, pending[:k], rng); err != nil {
				return fmt.Errorf("viewer write after %d clipboard bytes: %w", res.up, err)
			}
			pending = pending[k:]
			if rng.IntN(8) == 0 {
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			}
		}
		return nil
	}
	p := pacer{rate: integUpRate}
	for time.Now().Before(deadline) && res.err == nil {
		n := rng.IntN(256)
		if rng.IntN(8) == 0 {
			n = rng.IntN(16 << 10)
		}
		p.wait(8+n, deadline, nil)
		msg := make([]byte, 8+n)
		msg[0] = rfbparse.MsgClientCutText
		binary.BigEndian.PutUint32(msg[4:], uint32(n))
		_, _ = src.Read(msg[8:])
		pending = append(pending, msg...)
		res.up += int64(n)
		res.err = send(false)
	}
	if res.err == nil {
		pending = append(pending, fbur(false, 0, 0, 8, 8)...) // the end sentinel
		res.err = send(true)
	}
	if res.err != nil {
		_ = v.NetConn().Close()
		<-readDone
		return
	}
	r := <-readDone
	res.down, res.err = r.n, r.err
	if res.err != nil {
		return
	}
	st := srv.lookup(seed)
	if st == nil {
		res.err = fmt.Errorf("server has no session %016x", seed)
		return
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		res.err = errors.New("server side of the session did not finish")
		return
	}
	switch {
	case st.err != nil:
		res.err = st.err
	case st.downSent.Load() != res.down:
		res.err = fmt.Errorf("server sent %d bytes, viewer received %d", st.downSent.Load(), res.down)
	case st.upRecv.Load() != res.up:
		res.err = fmt.Errorf("viewer sent %d clipboard bytes, server received %d", res.up, st.upRecv.Load())
	}
	return
}

// sendSplit sends b as one binary message: mostly one frame; sometimes
// fragmented into continuation frames, with a ping between fragments.
func sendSplit(v *rfbclient.WSConn, b []byte, rng *rand.Rand) error {
	if len(b) < 2 || rng.IntN(6) != 0 {
		return v.WriteFrame(ws.OpBinary, b)
	}
	op := ws.OpBinary
	for len(b) > 0 {
		k := len(b)
		if rng.IntN(3) != 0 {
			k = 1 + rng.IntN(len(b))
		}
		h := ws.Header{Fin: k == len(b), OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(k)}
		if err := v.WriteFrameHeader(h, b[:k]); err != nil {
			return err
		}
		b, op = b[k:], ws.OpContinuation
		if len(b) > 0 && rng.IntN(4) == 0 {
			if err := v.WriteFrame(ws.OpPing, []byte("mid-message")); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestIntegrity: 200 sessions for 3 s (20 for 1 s with -short), randomized
// data both ways; every byte arrives, in order, at both ends.
func TestIntegrity(t *testing.T) {
	checkNoLeaks(t)
	sessions, dur := 200, 3*time.Second
	if testing.Short() {
		sessions, dur = 20, time.Second
	}
	srv := &integServer{base: rand.Uint64(), sessions: map[uint64]*integSession{}}
	t.Logf("seed base %#x", srv.base)

	fake := startRFBFake(t, srv.name, srv.serve)
	cfg := targetConfig(t, "tcp://"+fake.addr(), rfbparse.User)
	// Low watermarks: upstreams are paused and resumed all the time.
	cfg.ViewerHighWater, cfg.ViewerLowWater = 64<<10, 16<<10
	proxySrv, addr := startProxy(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	results := make(chan integResult, sessions)
	start := make(chan time.Time, sessions)
	var wg, ready sync.WaitGroup
	dials := make(chan struct{}, 32) // handshakes in flight
	for range sessions {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			dials <- struct{}{}
			results <- runIntegViewer(ctx, addr, srv, func() { <-dials; ready.Done() }, start)
		}()
	}
	ready.Wait()
	setup := time.Since(t0)
	t1 := time.Now()
	for range sessions {
		start <- t1.Add(dur)
	}

	wg.Wait()
	close(results)
	elapsed := time.Since(t1)

	var up, down int64
	var failed []error
	for r := range results {
		up += r.up
		down += r.down
		if r.err != nil {
			failed = append(failed, r.err)
		}
	}
	t.Logf("%d sessions (set up in %v), %v for a %v run: %.1f MB down, %.1f MB up, every byte checked in order (%d sessions at the proxy)",
		sessions, setup.Round(time.Millisecond), elapsed.Round(time.Millisecond), dur, float64(down)/1e6, float64(up)/1e6, proxySrv.Stats().Total)
	for i, err := range failed {
		if i == 10 {
			t.Errorf("... and %d more", len(failed)-10)
			break
		}
		t.Errorf("session: %v", err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d sessions failed (seed base %#x)", len(failed), sessions, srv.base)
	}
	srv.mu.Lock()
	n := len(srv.sessions)
	srv.mu.Unlock()
	if n != sessions {
		t.Errorf("server saw %d sessions, want %d", n, sessions)
	}
}
