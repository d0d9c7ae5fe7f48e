package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

// e2eProxy is one in-process vncedge in front of its own recording server.
type e2eProxy struct {
	srv   *proxy.Server
	addr  string
	vnc   *rfbtest.Server
	agent bool
}

// e2eEnv is shared by every FuzzEndToEnd input of a process: a proxy with
// the user in control and one with the agent in control.
type e2eEnv struct {
	user, agent *e2eProxy
	runs        int
	goroutines  int
	fds         int
}

var (
	envOnce sync.Once
	env     *e2eEnv
	envErr  error
	envTB   = &processTB{}
)

// TestMain stops the shared fixtures when the tests end.
func TestMain(m *testing.M) {
	code := m.Run()
	envTB.run()
	os.Exit(code)
}

func startEnv() (*e2eEnv, error) {
	e := &e2eEnv{}
	for _, agent := range []bool{false, true} {
		vnc := rfbtest.NewServer(envTB, rfbtest.Options{HoldIncremental: true})
		control := rfbparse.User
		if agent {
			control = rfbparse.Agent
		}
		srv, addr, stop, err := startProxy(targetConfig("tcp://"+vnc.Addr(), control))
		if err != nil {
			return nil, err
		}
		envTB.Cleanup(stop)
		p := &e2eProxy{srv: srv, addr: addr, vnc: vnc, agent: agent}
		if agent {
			e.agent = p
		} else {
			e.user = p
		}
	}
	return e, nil
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// checkLeaks compares goroutines and open fds, once no session is left,
// with the first measurement.
func (e *e2eEnv) checkLeaks(t *testing.T) {
	for _, p := range []*e2eProxy{e.user, e.agent} {
		if err := awaitIdle(p.srv); err != nil {
			t.Fatal(err)
		}
	}
	// Goroutines that end right after a session (the dialer, the recording
	// server's conn) get a bounded moment to go.
	g, fds := 0, 0
	for i := 0; i < 200; i++ {
		g, fds = runtime.NumGoroutine(), openFDs()
		if e.goroutines == 0 || g <= e.goroutines+16 && fds <= e.fds+16 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e.goroutines == 0 {
		e.goroutines, e.fds = g, fds
		return
	}
	if g > e.goroutines+16 || fds > e.fds+16 {
		buf := make([]byte, 1<<16)
		t.Fatalf("leak after %d sessions: %d goroutines (first %d), %d fds (first %d)\n%s",
			e.runs, g, e.goroutines, fds, e.fds, buf[:runtime.Stack(buf, true)])
	}
}

// chunkSizes are the RFB payload sizes per frame in frame mode.
var chunkSizes = [8]int{1, 3, 6, 8, 12, 64, 1000, 1 << 30}

// closeCodesIn returns the close codes (1005 for none) of the close frames a
// proxy reading raw finds in it.
func closeCodesIn(raw []byte) map[int]bool {
	codes := map[int]bool{}
	d := wsframe.Decoder{Role: wsframe.Server, MaxPayload: 1 << 20}
	_ = d.Feed(append([]byte(nil), raw...), closeSniffer(codes))
	return codes
}

type closeSniffer map[int]bool

func (closeSniffer) OnData(ws.OpCode, []byte, bool) error { return nil }

func (c closeSniffer) OnControl(op ws.OpCode, p []byte) error {
	if op == ws.OpClose {
		code := int(ws.StatusNoStatusRcvd)
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		c[code] = true
		return errors.New("stop at the first close")
	}
	return nil
}

// FuzzEndToEnd sends random viewer bytes through an in-process vncedge to a
// recording RFB server, after a real upgrade and RFB handshake. mode: bit 0
// the agent has control; bit 1 raw bytes (else binary frames of RFB
// content, sized by bits 2-4). The proxy must not panic or leak, must close
// with a valid code (or echo the viewer's own), must send only valid frames
// and nothing after its close frame, and the recording server must never
// receive a message the policy forbids.
func FuzzEndToEnd(f *testing.F) {
	f.Add(cat(keyEv(true, ksControlL), keyEv(true, 'o'), ptrEv(4, 3, 3), fbur(false, 0, 0, 8, 8)), uint8(0x10))
	f.Add(cat(keyEv(true, 'a'), cutText("x")), uint8(1))
	f.Add(frame(ws.OpText, []byte("hi"), true), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		envOnce.Do(func() { env, envErr = startEnv() })
		if envErr != nil {
			t.Fatal(envErr)
		}
		p := env.user
		if mode&1 != 0 {
			p = env.agent
		}
		raw := mode&2 != 0
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		v, resp := openViewer(t, p.addr, upgradeHead("/websockify"))
		if v == nil {
			t.Fatalf("upgrade refused: %d", resp.StatusCode)
		}
		defer v.c.Close()
		if err := v.handshake(); err != nil {
			t.Fatalf("RFB handshake through the proxy: %v", err)
		}
		up, err := p.vnc.WaitConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := up.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		start := len(p.vnc.Messages())

		var sent []byte
		if raw {
			sent = data
		} else {
			size := chunkSizes[mode>>2&7]
			for rest := data; len(rest) > 0; {
				n := min(size, len(rest))
				sent = append(sent, frame(ws.OpBinary, rest[:n], true)...)
				rest = rest[n:]
			}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = v.write(sent)
			if raw {
				_ = v.c.(*net.TCPConn).CloseWrite()
			} else {
				v.sendClose(binary.BigEndian.AppendUint16(nil, 1000))
			}
		}()
		derr := v.drain()
		v.c.Close()
		wg.Wait()
		if derr != nil {
			t.Fatalf("the proxy did not close the session: %v", derr)
		}
		if v.frameErr != nil {
			t.Fatalf("the proxy sent an invalid frame: %v", v.frameErr)
		}
		if v.afterClose {
			t.Fatal("the proxy sent frames after its close frame")
		}
		switch {
		case v.closeCode < 0:
			if !raw {
				t.Fatal("the proxy ended a framed session without a close frame")
			}
		case proxyCloseCodes[v.closeCode]:
		case raw && closeCodesIn(sent)[v.closeCode]: // the echo of the viewer's own close
		default:
			t.Fatalf("close code %d %q", v.closeCode, v.closeWhy)
		}
		if err := up.WaitDone(ctx); err != nil {
			t.Fatalf("upstream conn still open after the session ended: %v", err)
		}
		// A message cut by the session's end, or an update written after it,
		// is fine; anything else means the server got bytes it cannot parse.
		if err := up.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) &&
			!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the recording server choked: %v", err)
		}
		var got []byte
		for _, m := range p.vnc.Messages()[start:] {
			got = append(got, m.Raw...)
		}
		pol := defaultRef
		pol.agent = p.agent
		if why := violation(pol, got, -1); why != "" {
			t.Fatalf("the server received a forbidden message: %s", why)
		}
		env.runs++
		if env.runs%64 == 1 {
			env.checkLeaks(t)
		}
	})
}
