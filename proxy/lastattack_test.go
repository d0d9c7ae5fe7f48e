package proxy_test

// Last attacks on the viewer-role server → viewer filter (viewdown.go). Every
// test here failed on the code it was written against; each says what the
// attack is.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// lastattackFakeVNC is a one-shot RFB 3.8 server (security None) that reads
// want bytes after the security result (ClientInit and the messages the
// client pipelined after it) and then answers with reply in one write: what
// a server whose ServerInit and first update leave in one TCP segment sends
// (Xvnc writes them microseconds apart; a loaded proxy reads them in one
// chunk).
func lastattackFakeVNC(t *testing.T, want int, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		b := make([]byte, 64)
		if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
			return
		}
		if _, err := io.ReadFull(c, b[:12]); err != nil {
			return
		}
		if _, err := c.Write([]byte{1, 1}); err != nil { // one type: None
			return
		}
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil { // SecurityResult OK
			return
		}
		if _, err := io.ReadFull(c, make([]byte, want)); err != nil {
			return
		}
		if _, err := c.Write(reply); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // until the proxy closes
	}()
	return ln.Addr().String()
}

// lastattackViewerProxy serves task t1 on upstream with a viewer key kv.
func lastattackViewerProxy(t *testing.T, upstream string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
		"- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + upstream + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.User)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy()})
	return addr
}

// lastattackServerInit is a 4×4 ServerInit in 32 bpp true colour named "x".
func lastattackServerInit() []byte {
	si := []byte{0, 4, 0, 4, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 1, 'x'}
	return si
}

// lastattackSPF8 is a SetPixelFormat to 8 bpp true colour (BGR233).
func lastattackSPF8() []byte {
	return []byte{0, 0, 0, 0, 8, 8, 0, 1, 0, 7, 0, 7, 0, 3, 0, 3, 6, 0, 0, 0}
}

// lastattackViewer dials the viewer-role VNC channel and completes the RFB
// 3.8 handshake up to the SecurityResult by hand, so that the test chooses
// what is pipelined after it.
func lastattackViewer(t *testing.T, addr, path string) *rfbclient.WSConn {
	t.Helper()
	c := dialWS(t, addr, path)
	_ = c.NetConn().SetDeadline(time.Now().Add(15 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("version: %v", err)
	}
	if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 1 || b[1] != 1 {
		t.Fatalf("security types %v: %v", b[:2], err)
	}
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil || !bytes.Equal(b[:4], []byte{0, 0, 0, 0}) {
		t.Fatalf("security result %v: %v", b[:4], err)
	}
	return c
}

// TestLastAttackServerInitAndUpdateInOneChunk: ATTACK (viewer, honest
// server) — the viewer pipelines ClientInit, SetPixelFormat (8 bpp),
// SetEncodings (Raw) and a FramebufferUpdateRequest right after the
// security result, before ServerInit reaches it. The stream notes 8 bpp and
// the filter takes it before each server chunk, but when ServerInit and the
// first update arrive in ONE chunk, ServerInit's own 32 bpp overrides it for
// the rest of that chunk: the filter frames the 8-bpp Raw rectangle as four
// times its length, passes what follows unframed, and a ServerCutText (the
// remote clipboard) reaches the read-only viewer. Fix direction: apply the
// client's pixel format after ServerInit (or note it in the filter, not
// before Feed).
func TestLastAttackServerInitAndUpdateInOneChunk(t *testing.T) {
	const secret = "lastattack-secret"
	var reply []byte
	reply = append(reply, lastattackServerInit()...)
	reply = append(reply, 0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0) // update: one 4×4 Raw rect
	reply = append(reply, bytes.Repeat([]byte{0x5a}, 16)...)              // 16 pixels at 8 bpp
	cut := []byte{3, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cut[4:], uint32(len(secret)))
	reply = append(reply, cut...)
	reply = append(reply, secret...)
	reply = append(reply, 2)                              // Bell
	reply = append(reply, bytes.Repeat([]byte{2}, 64)...) // more Bells: the filter's overshoot ends inside them

	var pipe []byte
	pipe = append(pipe, 1)                   // ClientInit, shared
	pipe = append(pipe, lastattackSPF8()...) // SetPixelFormat 8 bpp
	pipe = append(pipe, 2, 0, 0, 1, 0, 0, 0, 0)
	pipe = append(pipe, 3, 0, 0, 0, 0, 0, 0, 4, 0, 4) // full update request
	addr := lastattackViewerProxy(t, lastattackFakeVNC(t, len(pipe), reply))
	c := lastattackViewer(t, addr, "/v1/stream/vnc/task/t1?client_id=v1&apikey=kv")
	if _, err := c.Write(pipe); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 25+16+16+1)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("ServerInit and the update: %v", err)
	}
	if next := got[len(got)-1]; next != 2 {
		rest, _ := io.ReadAll(io.LimitReader(c, int64(7+len(secret))))
		t.Fatalf("after the 8-bpp update the viewer got message type %d (%q), want the Bell: the remote clipboard passed the filter",
			next, rest)
	}
}

// lastattackPipeline is what the viewer sends right after the security
// result: ClientInit, SetPixelFormat 8 bpp, SetEncodings Raw, and a full
// request of the top-left w×h.
func lastattackPipeline(w, h byte) []byte {
	var pipe []byte
	pipe = append(pipe, 1)
	pipe = append(pipe, lastattackSPF8()...)
	pipe = append(pipe, 2, 0, 0, 1, 0, 0, 0, 0)
	return append(pipe, 3, 0, 0, 0, 0, 0, 0, w, 0, h)
}

// TestLastAttackPipelinedPixelFormatXvnc: ATTACK (viewer, real Xvnc) — the
// same pipelining as TestLastAttackServerInitAndUpdateInOneChunk against
// Xvnc: Xvnc writes ServerInit and the first update back to back, and the
// proxy often reads them in one chunk (9 of 30 connections on the shared
// test machine). Each such viewer-role channel's filter then passes the next
// 3·w·h bytes of the server stream unframed, for as long as the viewer asks
// for nothing more: every ServerCutText in that window, the remote
// clipboard, reaches the read-only viewer. 24 viewers pipeline a 16×16
// request; an X client then takes the CLIPBOARD selection (the controller
// channel is the oracle that Xvnc pushed it); each viewer then asks for a
// 1×1 update and must get it with no cut text before it. On the current
// code this fails unless none of the 24 reads coalesced.
func TestLastAttackPipelinedPixelFormatXvnc(t *testing.T) {
	teststack.Require(t, "python3")
	if err := exec.Command("python3", "-c", "import tkinter").Run(); err != nil {
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("missing python3 tkinter (apt-get install python3-tk) and %s=1", teststack.RequireRealEnv)
		}
		t.Skip("missing python3 tkinter (apt-get install python3-tk)")
	}
	x, addr := platattackXvncProxy(t)
	const secret = "lastattack-xvnc-clipboard-0815"
	ctl := platattackRFB(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=c1&apikey=kc")
	var viewers []*rfbclient.WSConn
	for n := 0; n < 24; n++ {
		c := lastattackViewer(t, addr, fmt.Sprintf("/v1/stream/vnc/browser_session/pbs_1?client_id=v%d&apikey=kv", n))
		if _, err := c.Write(lastattackPipeline(16, 16)); err != nil {
			t.Fatal(err)
		}
		si := make([]byte, 24)
		if _, err := io.ReadFull(c, si); err != nil {
			t.Fatalf("viewer %d ServerInit: %v", n, err)
		}
		if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(si[20:24]))); err != nil {
			t.Fatalf("viewer %d name: %v", n, err)
		}
		upd := make([]byte, 16+16*16) // one 16×16 Raw rect at 8 bpp
		if _, err := io.ReadFull(c, upd); err != nil || upd[0] != 0 || upd[3] != 1 || upd[15] != 0 {
			t.Fatalf("viewer %d first update %v: %v", n, upd[:16], err)
		}
		viewers = append(viewers, c)
	}

	x.StartClient(t, "python3", "-c", `import tkinter,sys
r=tkinter.Tk(); r.withdraw(); r.clipboard_clear(); r.clipboard_append(sys.argv[1]); r.update(); r.mainloop()`, secret)
	for { // the oracle: Xvnc pushed the selection to its clients
		m, err := ctl.ReadMessage()
		if err != nil {
			t.Fatalf("controller never got the remote clipboard (oracle): %v", err)
		}
		if m.Type == rfbclient.MsgServerCutText && bytes.Contains(m.Raw, []byte(secret)) {
			break
		}
	}
	leaked := 0
	for n, c := range viewers {
		if _, err := c.Write([]byte{3, 0, 0, 0, 0, 0, 0, 1, 0, 1}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("viewer %d: %v", n, err)
		}
		if b[0] == rfbparse.SrvServerCutText {
			leaked++
		} else if b[0] != rfbparse.SrvFramebufferUpdate {
			t.Fatalf("viewer %d: message type %d, want the update", n, b[0])
		}
	}
	if leaked > 0 {
		t.Fatalf("%d of %d viewer-role channels were sent the remote clipboard", leaked, len(viewers))
	}
}
