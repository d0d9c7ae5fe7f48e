package proxy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// startOwnedE2E is startE2E on a proxy from startOwnedProxy.
func startOwnedE2E(t *testing.T, tweak func(*proxy.Config)) (*e2e, func()) {
	t.Helper()
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	if tweak != nil {
		tweak(&cfg)
	}
	srv, addr, stop := startOwnedProxy(t, cfg)
	e := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	e.connect("/websockify", nil)
	return e, stop
}

// awaitClose reads the viewer conn until the proxy's close frame and returns
// it (WSConn answers it). Data frames before it are skipped.
func awaitClose(t *testing.T, c *rfbclient.WSConn) *rfbclient.CloseError {
	t.Helper()
	buf := make([]byte, 32<<10)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ce *rfbclient.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		t.Fatalf("waiting for a close frame from the proxy: %v", err)
	}
}

// awaitTCPEnd reads the viewer's raw conn until the proxy closes it.
func awaitTCPEnd(t *testing.T, c *rfbclient.WSConn) {
	t.Helper()
	b, err := io.ReadAll(c.NetConn())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("proxy did not close the viewer conn after the close handshake: %v", err)
	}
	if len(b) > 0 {
		t.Errorf("bytes after the close frame: %x", b)
	}
}

// checkNoActive shuts the proxy down and asserts no session is left counted.
// Shutdown waits (up to its 5s context) for Active to reach 0, so a session
// that never decremented it shows up here as Active > 0.
func checkNoActive(t *testing.T, srv *proxy.Server, stop func()) {
	t.Helper()
	stop()
	if st := srv.Stats(); st.Active != 0 {
		t.Errorf("after Shutdown: Stats().Active = %d, want 0 (%+v)", st.Active, st)
	}
}

// TestE2EUpstreamClosedCleanly: the VNC server ends the connection; the
// viewer gets close 1000 "upstream-closed", then the TCP conn ends.
func TestE2EUpstreamClosedCleanly(t *testing.T) {
	e, stop := startOwnedE2E(t, nil)
	if err := e.up.Close(); err != nil {
		t.Fatal(err)
	}
	ce := awaitClose(t, e.view)
	if ce.Code != ws.StatusNormalClosure || ce.Reason != "upstream-closed" {
		t.Fatalf("close %d %q, want 1000 \"upstream-closed\"", ce.Code, ce.Reason)
	}
	awaitTCPEnd(t, e.view)
	checkNoActive(t, e.srv, stop)
}

// TestE2EViewerCloses: the viewer closes with 1000; the proxy echoes the code,
// closes the upstream and the viewer conn.
func TestE2EViewerCloses(t *testing.T) {
	e, stop := startOwnedE2E(t, nil)
	e.send(keyMsg(true, 'a'), keyMsg(false, 'a'))
	e.expectUpstream(keyMsg(true, 'a'), keyMsg(false, 'a'))
	if err := e.view.CloseWith(ws.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	ce := awaitClose(t, e.view)
	if ce.Code != ws.StatusNormalClosure {
		t.Errorf("close reply %d %q, want code 1000 echoed", ce.Code, ce.Reason)
	}
	if err := e.up.WaitDone(ctxT(t)); err != nil {
		t.Fatalf("upstream conn still open after the viewer closed: %v", err)
	}
	if err := e.up.Err(); err != nil {
		t.Errorf("upstream conn ended with %v, want a clean close", err)
	}
	awaitTCPEnd(t, e.view)
	checkNoActive(t, e.srv, stop)
}

// TestE2EViewerVanishes: the viewer's TCP conn drops without a close frame;
// the upstream conn must be closed too.
func TestE2EViewerVanishes(t *testing.T) {
	e, stop := startOwnedE2E(t, nil)
	e.send(keyMsg(true, 'a'))
	e.expectUpstream(keyMsg(true, 'a'))
	if err := e.view.NetConn().Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.up.WaitDone(ctxT(t)); err != nil {
		t.Fatalf("upstream conn still open after the viewer vanished: %v", err)
	}
	checkNoActive(t, e.srv, stop)
}

// readRawFrame reads one frame from the viewer's conn, bypassing WSConn (which
// swallows pongs). Only safe while the proxy sends nothing else.
func readRawFrame(t *testing.T, e *e2e) (ws.Header, []byte) {
	t.Helper()
	r := e.view.NetConn()
	h, err := ws.ReadHeader(r)
	if err != nil {
		t.Fatalf("reading a frame from the proxy: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("reading a frame payload from the proxy: %v", err)
	}
	if h.Masked {
		t.Errorf("proxy sent a masked frame")
		ws.Cipher(p, h.Mask, 0)
	}
	return h, p
}

func expectPong(t *testing.T, e *e2e, payload string) {
	t.Helper()
	h, p := readRawFrame(t, e)
	if h.OpCode != ws.OpPong || !h.Fin || string(p) != payload {
		t.Fatalf("got frame op %v fin %v payload %q, want a pong with %q", h.OpCode, h.Fin, p, payload)
	}
}

// TestE2EPingPong: a viewer ping is answered with a pong carrying the same
// payload, and the relay goes on.
func TestE2EPingPong(t *testing.T) {
	e := startE2E(t, rfbparse.User, nil)
	for _, payload := range []string{"", "ping-1", strings.Repeat("p", 125)} {
		if err := e.view.WriteFrame(ws.OpPing, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		expectPong(t, e, payload)
	}
	e.send(keyMsg(true, 'a'))
	e.expectUpstream(keyMsg(true, 'a'))
}

// TestE2EFrameRules: frames the proxy must refuse close the session with the
// RFC 6455 code, and nothing of them reaches the server.
func TestE2EFrameRules(t *testing.T) {
	const maxPayload = 1024
	key := keyMsg(true, 'z')
	big := cat(cutTextMsg(make([]byte, maxPayload)), key) // 1024+8+8 bytes
	cases := []struct {
		name string
		h    ws.Header
		p    []byte
		code ws.StatusCode
	}{
		{"unmasked", ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(key))}, key, ws.StatusProtocolError},
		{"rsv1", ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(len(key))}, key, ws.StatusProtocolError},
		{"text", ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: ws.NewMask(), Length: int64(len(key))}, key, ws.StatusUnsupportedData},
		{"over MaxFramePayload", ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(len(big))}, big, ws.StatusMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A short CloseTimeout keeps the test quick whatever the proxy does
			// with the close reply (TestE2ECloseReplyEndsFailedSessionPromptly checks that).
			e, stop := startOwnedE2E(t, func(c *proxy.Config) {
				c.MaxFramePayload = maxPayload
				c.CloseTimeout = 250 * time.Millisecond
			})
			// A good message first, so the test sees the relay worked
			// (one that leaves nothing held for the session's end to release).
			e.send(ptrMsg(0, 1, 1))
			e.expectUpstream(ptrMsg(0, 1, 1))
			if err := e.view.WriteFrameHeader(tc.h, tc.p); err != nil {
				t.Fatal(err)
			}
			ce := awaitClose(t, e.view)
			if ce.Code != tc.code {
				t.Errorf("close %d %q, want code %d", ce.Code, ce.Reason, tc.code)
			}
			if err := e.up.WaitDone(ctxT(t)); err != nil {
				t.Fatalf("upstream still open after the session failed: %v", err)
			}
			if got := rawOf(e.vnc.Messages()); len(got) != 2 { // the pointer event and the sentinel
				t.Errorf("server received after the bad frame:\n%s", dumpMsgs(got[min(2, len(got)):]))
			}
			awaitTCPEnd(t, e.view)
			checkNoActive(t, e.srv, stop)
		})
	}
}

func rawOf(ms []rfbtest.Msg) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m.Raw
	}
	return out
}

// TestE2EUnknownMessageType: an unknown RFB client message type fails the
// session closed with 1008 naming it; the server gets what came before the
// bad byte and nothing after.
func TestE2EUnknownMessageType(t *testing.T) {
	e, stop := startOwnedE2E(t, func(c *proxy.Config) { c.CloseTimeout = 250 * time.Millisecond })
	e.send(cat(keyMsg(true, 'a'), []byte{7, 1, 2, 3, 4, 5, 6, 7}, keyMsg(false, 'a')))
	ce := awaitClose(t, e.view)
	if ce.Code != ws.StatusPolicyViolation || !strings.Contains(ce.Reason, "unknown client message type 7") {
		t.Errorf("close %d %q, want 1008 naming message type 7", ce.Code, ce.Reason)
	}
	if err := e.up.WaitDone(ctxT(t)); err != nil {
		t.Fatalf("upstream still open: %v", err)
	}
	// The key-up is vncedge's own: the session's end releases the held key.
	if got := rawOf(e.vnc.Messages()); !equalMsgs(got, [][]byte{keyMsg(true, 'a'), keyMsg(false, 'a')}) {
		t.Errorf("server received:\n%s\nwant only the key-down before the bad byte, then its release", dumpMsgs(got))
	}
	if errs := e.vnc.Errors(); len(errs) > 0 {
		t.Errorf("server saw bytes of the bad message: %v", errs)
	}
	checkNoActive(t, e.srv, stop)
}

// TestE2EFragmentedMessage: a binary message in continuation frames, cut in
// the middle of RFB messages, arrives intact; a ping between the fragments is
// answered.
func TestE2EFragmentedMessage(t *testing.T) {
	msgs := [][]byte{setEncodingsMsg(0, 1, -239), keyMsg(true, 'a'), keyMsg(false, 'a'),
		ptrMsg(4, 9, 9), cutTextMsg([]byte("fragmented clipboard"))}
	want := [][]byte{msgs[0], msgs[1], msgs[2], ptrMsg(0, 9, 9), msgs[4]}
	all := cat(msgs...)
	parts := [][]byte{all[:5], all[5:17], all[17:30], all[30:]}

	frame := func(i int) ws.Header {
		h := ws.Header{Fin: i == len(parts)-1, OpCode: ws.OpContinuation, Masked: true, Mask: ws.NewMask(), Length: int64(len(parts[i]))}
		if i == 0 {
			h.OpCode = ws.OpBinary
		}
		return h
	}
	t.Run("continuation frames", func(t *testing.T) {
		e := startE2E(t, rfbparse.User, nil)
		for i := range parts {
			if err := e.view.WriteFrameHeader(frame(i), parts[i]); err != nil {
				t.Fatal(err)
			}
		}
		e.expectUpstream(want...)
	})
	t.Run("ping between fragments", func(t *testing.T) {
		e := startE2E(t, rfbparse.User, nil)
		for i := range parts {
			if err := e.view.WriteFrameHeader(frame(i), parts[i]); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				if err := e.view.WriteFrame(ws.OpPing, []byte("mid")); err != nil {
					t.Fatal(err)
				}
				expectPong(t, e, "mid")
			}
		}
		e.expectUpstream(want...)
	})
}

// TestE2ESessionEndLogLine: one JSON "session end" line with the close, the
// byte counts and the drops, and no API key anywhere in the log.
func TestE2ESessionEndLogLine(t *testing.T) {
	const apiKey, upstreamKey = "viewer-key-5f1d2c9a", "upstream-key-93be07d4"
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	path := writeSessionsFile(t, sessionsYAML(map[string]string{"org-a": apiKey}, []sessionEntry{
		{kind: "browser_session", id: "bs-log", org: "org-a", upstream: "tcp://" + vnc.Addr(),
			headers: map[string]string{"x-api-key": upstreamKey}},
	}))
	res, err := proxy.LoadStaticResolver(path, rfbparse.User)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	srv, addr, stop := startOwnedProxy(t, proxy.Config{
		Resolver: res,
		Policy:   rfbparse.DefaultPolicy(),
		Logger:   slog.New(slog.NewJSONHandler(&logBuf, nil)),
	})
	e := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	e.connect("/v1/stream/vnc/browser_session/bs-log?client_id=c-42&apikey="+apiKey, nil)
	e.send(keyMsg(true, ctrlL), keyMsg(true, 'o'), keyMsg(false, 'o'), keyMsg(false, ctrlL))
	e.expectUpstream(keyMsg(true, ctrlL), keyMsg(false, ctrlL))
	// A refused viewer too: its "upgrade refused" line must not leak the key either.
	if _, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/v1/stream/vnc/browser_session/nope?apikey="+apiKey, nil, nil); err == nil {
		t.Fatal("unknown session was accepted")
	}
	if err := e.view.CloseWith(ws.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	awaitClose(t, e.view)
	stop()

	out := logBuf.String()
	for _, secret := range []string{apiKey, upstreamKey} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains the API key %q:\n%s", secret, out)
		}
	}
	var ends []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if line["msg"] == "session end" {
			ends = append(ends, line)
		}
	}
	if len(ends) != 1 {
		t.Fatalf("%d \"session end\" lines, want 1:\n%s", len(ends), out)
	}
	l := ends[0]
	num := func(k string) float64 {
		v, ok := l[k].(float64)
		if !ok {
			t.Errorf("session end: %s = %v, want a number", k, l[k])
		}
		return v
	}
	if c := num("close_code"); c != 1000 {
		t.Errorf("close_code %v, want 1000", c)
	}
	if r, _ := l["close_reason"].(string); r != "viewer-closed" {
		t.Errorf("close_reason %q, want viewer-closed", r)
	}
	if num("bytes_up") <= 0 || num("bytes_down") <= 0 {
		t.Errorf("bytes_up %v, bytes_down %v: want both > 0", l["bytes_up"], l["bytes_down"])
	}
	dropped, _ := l["dropped"].(map[string]any)
	if n, _ := dropped["shortcut"].(float64); n != 1 || dropped["unmatched-release"] != 1.0 {
		t.Errorf("dropped = %v, want shortcut: 1, unmatched-release: 1 (key-down and key-up of O)", l["dropped"])
	}
	if l["id"] != "bs-log" || l["organization"] != "org-a" || l["client_id"] != "c-42" {
		t.Errorf("session end route attrs id=%v organization=%v client_id=%v", l["id"], l["organization"], l["client_id"])
	}
}

// TestE2ECloseReplyEndsFailedSessionPromptly: once the proxy has sent its close frame for a
// failed session, the viewer's close reply must end the TCP connection at
// once (RFC 6455 §7.1.1: the server closes the TCP conn after the close
// exchange), not only when CloseTimeout expires. A clean upstream close is
// the control case.
func TestE2ECloseReplyEndsFailedSessionPromptly(t *testing.T) {
	const closeTimeout = 4 * time.Second
	cases := []struct {
		name string
		fail func(e *e2e)
		code ws.StatusCode
	}{
		{"upstream closed (control)", func(e *e2e) { _ = e.up.Close() }, ws.StatusNormalClosure},
		{"RFB error 1008", func(e *e2e) { e.send([]byte{7, 0, 0, 0}) }, ws.StatusPolicyViolation},
		{"frame protocol error 1002", func(e *e2e) {
			_ = e.view.WriteFrameHeader(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 8}, keyMsg(true, 'a'))
		}, ws.StatusProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, stop := startOwnedE2E(t, func(c *proxy.Config) { c.CloseTimeout = closeTimeout })
			tc.fail(e)
			ce := awaitClose(t, e.view) // answers the close frame
			if ce.Code != tc.code {
				t.Errorf("close %d %q, want %d", ce.Code, ce.Reason, tc.code)
			}
			replied := time.Now()
			_ = e.view.NetConn().SetReadDeadline(replied.Add(closeTimeout / 2))
			b, err := io.ReadAll(e.view.NetConn())
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("BUG: the proxy ignored the viewer's close reply and kept the conn open "+
					"(%v after the reply; it would close only at CloseTimeout %v): %v", time.Since(replied).Round(time.Millisecond), closeTimeout, err)
			}
			if len(b) > 0 {
				t.Errorf("bytes after the close frame: %x", b)
			}
			checkNoActive(t, e.srv, stop)
		})
	}
}
