package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// This file holds the end-to-end policy tests and the helpers the other
// *_e2e_test.go files share: a viewer (rfbclient over a real WebSocket) talks
// through a real proxy to an rfbtest recording server, and the test asserts
// exactly which RFB messages reached the server.
//
// Drops are observed without sleeping: after the messages under test the
// viewer sends a sentinel (an incremental FramebufferUpdateRequest with a
// unique position, which the recording server, built with HoldIncremental,
// leaves unanswered). The proxy keeps message order, so once the sentinel is
// recorded everything sent before it that passed has been recorded too.

// e2e is one viewer session through the proxy to a recording server.
type e2e struct {
	t    *testing.T
	vnc  *rfbtest.Server
	srv  *proxy.Server
	addr string
	view *rfbclient.WSConn
	rfb  *rfbclient.Client
	up   *rfbtest.Conn
	seq  uint16
}

// startE2E starts a recording server and a proxy relaying every path to it
// (default policy, control as given, cfg adjusted by tweak), and opens one
// session through it.
func startE2E(t *testing.T, control rfbparse.Interactor, tweak func(*proxy.Config)) *e2e {
	t.Helper()
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), control)
	if tweak != nil {
		tweak(&cfg)
	}
	srv, addr := startProxy(t, cfg)
	e := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	e.connect("/websockify", nil)
	return e
}

// connect opens a viewer session on path and completes the RFB handshake
// through the proxy.
func (e *e2e) connect(path string, header map[string]string) {
	e.t.Helper()
	ctx := ctxT(e.t)
	d := rfbclient.Dialer{Protocols: []string{"binary"}}
	if len(header) > 0 {
		d.Header = map[string][]string{}
		for k, v := range header {
			d.Header.Set(k, v)
		}
	}
	c, err := d.Dial(ctx, "ws://"+e.addr+path)
	if err != nil {
		e.t.Fatalf("dial proxy: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	e.view = c
	// Bounds every read and write of the test on this conn.
	_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	e.rfb, err = rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		e.t.Fatalf("RFB handshake through the proxy: %v", err)
	}
	e.up, err = e.vnc.WaitConn(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.up.WaitReady(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// send writes each element of frames as one binary WebSocket frame.
func (e *e2e) send(frames ...[]byte) {
	e.t.Helper()
	for i, f := range frames {
		if err := e.view.WriteFrame(ws.OpBinary, f); err != nil {
			e.t.Fatalf("frame %d: %v", i, err)
		}
	}
}

// expectUpstream sends a sentinel and asserts that exactly want (raw
// messages, in order) reached the server between the previous sentinel and
// this one.
func (e *e2e) expectUpstream(want ...[]byte) {
	e.t.Helper()
	got := e.flush()
	if !equalMsgs(got, want) {
		e.t.Fatalf("server received:\n%s\nwant:\n%s", dumpMsgs(got), dumpMsgs(want))
	}
}

// flush sends a sentinel and returns the messages recorded before it.
func (e *e2e) flush() [][]byte {
	e.t.Helper()
	e.seq++
	s := sentinel(e.seq)
	if err := e.view.WriteFrame(ws.OpBinary, s); err != nil {
		e.t.Fatalf("sentinel: %v", err)
	}
	return awaitSentinel(e.t, e.vnc, s)
}

// sentinel is an incremental FramebufferUpdateRequest at a position no test
// message uses.
func sentinel(seq uint16) []byte {
	return fbur(true, 0xf000|int(seq), 0xfeed, 1, 1)
}

// awaitSentinel reads recorded messages until s and returns those before it.
func awaitSentinel(t *testing.T, vnc *rfbtest.Server, s []byte) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got [][]byte
	for {
		m, err := vnc.Next(ctx)
		if err != nil {
			t.Fatalf("sentinel %x never reached the server (%v); before it:\n%s\nserver errors: %v",
				s, err, dumpMsgs(got), vnc.Errors())
		}
		if bytes.Equal(m.Raw, s) {
			return got
		}
		got = append(got, m.Raw)
	}
}

func equalMsgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func dumpMsgs(ms [][]byte) string {
	if len(ms) == 0 {
		return "  (nothing)"
	}
	var b strings.Builder
	for i, m := range ms {
		if len(m) > 24 {
			fmt.Fprintf(&b, "  %d: %x… (%d bytes)\n", i, m[:24], len(m))
		} else {
			fmt.Fprintf(&b, "  %d: %x\n", i, m)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// RFB client message builders.

func keyMsg(down bool, keysym uint32) []byte {
	b := []byte{rfbparse.MsgKeyEvent, 0, 0, 0, 0, 0, 0, 0}
	if down {
		b[1] = 1
	}
	binary.BigEndian.PutUint32(b[4:], keysym)
	return b
}

func ptrMsg(mask byte, x, y int) []byte {
	b := []byte{rfbparse.MsgPointerEvent, mask, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(x))
	binary.BigEndian.PutUint16(b[4:], uint16(y))
	return b
}

func setEncodingsMsg(encs ...int32) []byte {
	b := []byte{rfbparse.MsgSetEncodings, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(encs)))
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return b
}

func setPixelFormatMsg() []byte {
	return []byte{rfbparse.MsgSetPixelFormat, 0, 0, 0,
		32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
}

func fbur(incremental bool, x, y, w, h int) []byte {
	b := make([]byte, 10)
	b[0] = rfbparse.MsgFramebufferUpdateReq
	if incremental {
		b[1] = 1
	}
	binary.BigEndian.PutUint16(b[2:], uint16(x))
	binary.BigEndian.PutUint16(b[4:], uint16(y))
	binary.BigEndian.PutUint16(b[6:], uint16(w))
	binary.BigEndian.PutUint16(b[8:], uint16(h))
	return b
}

func cutTextMsg(text []byte) []byte {
	b := []byte{rfbparse.MsgClientCutText, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], uint32(len(text)))
	return append(b, text...)
}

func xvpMsg(code byte) []byte { return []byte{rfbparse.MsgXVP, 0, 1, code} }

// qemuKeyMsg is a QEMU ExtendedKeyEvent: keysym and XT keycode.
func qemuKeyMsg(down bool, keysym, keycode uint32) []byte {
	b := []byte{rfbparse.MsgQEMU, 0, 0, 0}
	if down {
		b[3] = 1
	}
	b = binary.BigEndian.AppendUint32(b, keysym)
	return binary.BigEndian.AppendUint32(b, keycode)
}

func ecuMsg(enable bool, x, y, w, h int) []byte {
	b := fbur(enable, x, y, w, h)
	b[0] = rfbparse.MsgEnableContinuousUpdates
	return b
}

func fenceMsg(flags uint32, payload []byte) []byte {
	b := []byte{rfbparse.MsgClientFence, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, flags)
	b = append(b, byte(len(payload)))
	return append(b, payload...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

const (
	ctrlL  = rfbparse.KeysymControlL
	ctrlR  = rfbparse.KeysymControlR
	shiftL = rfbparse.KeysymShiftL
)

// TestE2EPolicyBypassTable sends attempts to get around the default policy
// (Ctrl+O forbidden, right button stripped, xvp dropped) as real WebSocket
// frames and checks, message by message, what reached the VNC server.
func TestE2EPolicyBypassTable(t *testing.T) {
	down, up := true, false
	oDown, oUp := keyMsg(down, 'o'), keyMsg(up, 'o')
	aDown, aUp := keyMsg(down, 'a'), keyMsg(up, 'a')
	longText := rfbtest.Pattern(7, 300_000)
	longCut := cutTextMsg(longText)

	cases := []struct {
		name   string
		pass   bool     // QEMU key events passed with their keycodes
		frames [][]byte // one element per WebSocket frame
		want   [][]byte // what the server must record, in order
	}{
		{
			name: "Control_R+O",
			frames: [][]byte{keyMsg(down, ctrlR), keyMsg(down, 'O'), keyMsg(up, 'O'), keyMsg(up, ctrlR),
				aDown, aUp},
			want: [][]byte{keyMsg(down, ctrlR), keyMsg(up, ctrlR), aDown, aUp},
		},
		{
			name:   "Control_L+o",
			frames: [][]byte{keyMsg(down, ctrlL), oDown, oUp, keyMsg(up, ctrlL), oDown, oUp},
			// plain o after Ctrl is released passes
			want: [][]byte{keyMsg(down, ctrlL), keyMsg(up, ctrlL), oDown, oUp},
		},
		{
			name: "Ctrl+Shift+O",
			frames: [][]byte{keyMsg(down, ctrlL), keyMsg(down, shiftL), keyMsg(down, 'O'), keyMsg(up, 'O'),
				keyMsg(up, shiftL), keyMsg(up, ctrlL)},
			want: [][]byte{keyMsg(down, ctrlL), keyMsg(down, shiftL), keyMsg(up, shiftL), keyMsg(up, ctrlL)},
		},
		{
			name: "Ctrl+O with non-zero padding",
			frames: [][]byte{keyMsg(down, ctrlL),
				{rfbparse.MsgKeyEvent, 1, 0xab, 0xcd, 0, 0, 0, 'o'},
				{rfbparse.MsgKeyEvent, 0, 0xff, 0xff, 0, 0, 0, 'o'},
				{rfbparse.MsgKeyEvent, 1, 0x12, 0x34, 0, 0, 0, 'a'}, // harmless key: passes as is
				{rfbparse.MsgKeyEvent, 0, 0x12, 0x34, 0, 0, 0, 'a'},
				keyMsg(up, ctrlL)},
			want: [][]byte{keyMsg(down, ctrlL),
				{rfbparse.MsgKeyEvent, 1, 0x12, 0x34, 0, 0, 0, 'a'},
				{rfbparse.MsgKeyEvent, 0, 0x12, 0x34, 0, 0, 0, 'a'},
				keyMsg(up, ctrlL)},
		},
		{
			name: "key-up of dropped O after Ctrl released",
			// The O key-up comes after Ctrl is up: it is still the key-up of
			// a dropped key-down, so it is dropped too.
			frames: [][]byte{keyMsg(down, ctrlL), oDown, keyMsg(up, ctrlL), oUp},
			want:   [][]byte{keyMsg(down, ctrlL), keyMsg(up, ctrlL)},
		},
		{
			name: "right button stripped",
			frames: [][]byte{ptrMsg(4, 100, 200), ptrMsg(5, 101, 201), ptrMsg(6, 102, 202), ptrMsg(12, 103, 203),
				ptrMsg(1, 104, 204), ptrMsg(0, 105, 205)},
			want: [][]byte{ptrMsg(0, 100, 200), ptrMsg(1, 101, 201), ptrMsg(2, 102, 202), ptrMsg(8, 103, 203),
				ptrMsg(1, 104, 204), ptrMsg(0, 105, 205)},
		},
		{
			name: "forbidden key packed after SetEncodings in one frame",
			frames: [][]byte{cat(setEncodingsMsg(0, 1, -239, -223), keyMsg(down, ctrlL), oDown, oUp,
				keyMsg(up, ctrlL), aDown)},
			want: [][]byte{setEncodingsMsg(0, 1, -239, -223), keyMsg(down, ctrlL), keyMsg(up, ctrlL), aDown},
		},
		{
			name: "key event split across two frames",
			frames: [][]byte{keyMsg(down, ctrlL),
				oDown[:3], oDown[3:], // forbidden, split
				oUp[:5], cat(oUp[5:], keyMsg(up, ctrlL)[:1]), keyMsg(up, ctrlL)[1:], // split twice
				aDown[:1], cat(aDown[1:], aUp)}, // harmless, split: arrives whole
			want: [][]byte{keyMsg(down, ctrlL), keyMsg(up, ctrlL), aDown, aUp},
		},
		{
			name: "several messages in one frame",
			frames: [][]byte{cat(setPixelFormatMsg(), setEncodingsMsg(0, -239), fbur(true, 1, 2, 3, 4),
				ptrMsg(1, 5, 6), ptrMsg(4, 5, 6), aDown, aUp, ptrMsg(0, 7, 8), xvpMsg(2), cutTextMsg([]byte("hi")))},
			want: [][]byte{setPixelFormatMsg(), setEncodingsMsg(0, -239), fbur(true, 1, 2, 3, 4),
				ptrMsg(1, 5, 6), ptrMsg(0, 5, 6), aDown, aUp, ptrMsg(0, 7, 8), cutTextMsg([]byte("hi"))},
		},
		{
			name:   "long ClientCutText split across many frames",
			frames: append([][]byte{longCut[:3], longCut[3:5], longCut[5:9]}, chunk(longCut[9:], 4093)...),
			want:   [][]byte{longCut},
		},
		{
			name:   "xvp dropped",
			frames: [][]byte{xvpMsg(2), cat(aDown, xvpMsg(3), xvpMsg(4), aUp), xvpMsg(2)[:2], xvpMsg(2)[2:]},
			want:   [][]byte{aDown, aUp},
		},
		{
			name: "QEMU ExtendedKeyEvent smuggling Ctrl+O",
			// keysym 'a' but XT keycode 0x18 ('o'): servers may act on the
			// keycode. Layout-proof default: the keycode never reaches the
			// server, which gets the keysym 'a' the policy judged.
			frames: [][]byte{keyMsg(down, ctrlL), qemuKeyMsg(down, 'a', 0x18), qemuKeyMsg(up, 'a', 0x18),
				keyMsg(up, ctrlL), qemuKeyMsg(down, 'a', 0x1e), qemuKeyMsg(up, 'a', 0x1e)},
			want: [][]byte{keyMsg(down, ctrlL), aDown, aUp, keyMsg(up, ctrlL), aDown, aUp},
		},
		{
			name: "QEMU ExtendedKeyEvent smuggling Ctrl+O, keycodes passed",
			pass: true,
			frames: [][]byte{keyMsg(down, ctrlL), qemuKeyMsg(down, 'a', 0x18), qemuKeyMsg(up, 'a', 0x18),
				keyMsg(up, ctrlL), qemuKeyMsg(down, 'a', 0x1e), qemuKeyMsg(up, 'a', 0x1e)},
			want: [][]byte{keyMsg(down, ctrlL), keyMsg(up, ctrlL), qemuKeyMsg(down, 'a', 0x1e), qemuKeyMsg(up, 'a', 0x1e)},
		},
		{
			name: "issue sequence A: QEMU Ctrl released with another keycode, keycodes passed",
			pass: true,
			// TigerVNC ignores the release: Ctrl stays held, o is dropped.
			frames: [][]byte{qemuKeyMsg(down, ctrlL, 0x1d), qemuKeyMsg(up, ctrlL, 0x1e), oDown, oUp, qemuKeyMsg(down, 'o', 0x18)},
			want:   [][]byte{qemuKeyMsg(down, ctrlL, 0x1d), qemuKeyMsg(up, ctrlL, 0x1e)},
		},
		{
			name: "issue sequence B: plain release of a QEMU-pressed Ctrl, keycodes passed",
			pass: true,
			frames: [][]byte{qemuKeyMsg(down, ctrlL, 0x1d), keyMsg(up, ctrlL), oDown, oUp,
				qemuKeyMsg(up, ctrlL, 0x1d), oDown},
			want: [][]byte{qemuKeyMsg(down, ctrlL, 0x1d), keyMsg(up, ctrlL), qemuKeyMsg(up, ctrlL, 0x1d), oDown},
		},
		{
			name:   "SetEncodings -258 replaced",
			frames: [][]byte{setEncodingsMsg(16, -258, -316)[:9], setEncodingsMsg(16, -258, -316)[9:]},
			want:   [][]byte{setEncodingsMsg(16, 16, -316)},
		},
		{
			name:   "control character and Menu key",
			frames: [][]byte{keyMsg(down, 0x0f), keyMsg(up, 0x0f), keyMsg(down, 0x100000f), keyMsg(down, rfbparse.KeysymMenu), aDown},
			want:   [][]byte{aDown},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tweak func(*proxy.Config)
			if tc.pass {
				tweak = func(c *proxy.Config) {
					pol := *rfbparse.DefaultPolicy()
					pol.QEMUKeys = rfbparse.QEMUKeysPass
					c.Policy = &pol
				}
			}
			e := startE2E(t, rfbparse.User, tweak)
			e.send(tc.frames...)
			e.expectUpstream(tc.want...)
			if errs := e.vnc.Errors(); len(errs) > 0 {
				t.Fatalf("server saw protocol errors: %v", errs)
			}
		})
	}
}

// chunk cuts b into pieces of at most n bytes.
func chunk(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// TestE2EAgentControl: while the agent has control, the viewer's input
// (keys, pointer, clipboard) is dropped; display messages pass.
func TestE2EAgentControl(t *testing.T) {
	e := startE2E(t, rfbparse.Agent, nil)
	passing := [][]byte{setPixelFormatMsg(), setEncodingsMsg(0, 1), fbur(true, 0, 0, 64, 48),
		ecuMsg(true, 0, 0, 64, 48), fenceMsg(1<<31|1, []byte("f1"))}
	e.send(keyMsg(true, 'a'), keyMsg(false, 'a'), ptrMsg(1, 10, 10), ptrMsg(0, 10, 10),
		cutTextMsg([]byte("secret")))
	e.send(passing...)
	// The same again, interleaved in one frame.
	e.send(cat(keyMsg(true, 'b'), passing[0], ptrMsg(1, 3, 4), passing[1], cutTextMsg([]byte("x")),
		passing[2], keyMsg(false, 'b'), passing[3], passing[4], ptrMsg(0, 3, 4)))
	e.expectUpstream(append(append([][]byte{}, passing...), passing...)...)
}

// TestE2ERightButtonModes runs the drop and allow modes of a custom policy.
func TestE2ERightButtonModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode rfbparse.RightButton
		want [][]byte
	}{
		{"drop", rfbparse.RightDrop, [][]byte{ptrMsg(1, 3, 3), ptrMsg(0, 5, 5)}},
		{"allow", rfbparse.RightAllow, [][]byte{ptrMsg(4, 1, 1), ptrMsg(6, 2, 2), ptrMsg(1, 3, 3), ptrMsg(12, 4, 4), ptrMsg(0, 5, 5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := rfbparse.NewPolicy(rfbparse.DefaultForbidden, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			e := startE2E(t, rfbparse.User, func(c *proxy.Config) { c.Policy = pol })
			e.send(ptrMsg(4, 1, 1), ptrMsg(6, 2, 2), ptrMsg(1, 3, 3), ptrMsg(12, 4, 4), ptrMsg(0, 5, 5))
			e.expectUpstream(tc.want...)
			// Ctrl+O stays forbidden in either mode.
			e.send(keyMsg(true, ctrlL), keyMsg(true, 'o'), keyMsg(false, 'o'), keyMsg(false, ctrlL))
			e.expectUpstream(keyMsg(true, ctrlL), keyMsg(false, ctrlL))
		})
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer for a logger shared with the
// event loops.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// passPolicy is the default policy with QEMU key events passed with their
// keycodes.
func passPolicy(c *proxy.Config) {
	pol := *rfbparse.DefaultPolicy()
	pol.QEMUKeys = rfbparse.QEMUKeysPass
	c.Policy = &pol
}

// nextMsgs reads n recorded messages (from any connection).
func nextMsgs(t *testing.T, e *e2e, n int) [][]byte {
	t.Helper()
	var got [][]byte
	for len(got) < n {
		m, err := e.vnc.Next(ctxT(t))
		if err != nil {
			t.Fatalf("after %d messages: %v\n%s", len(got), err, dumpMsgs(got))
		}
		got = append(got, m.Raw)
	}
	return got
}

// TestE2EHandOverReleasesAsPressed: when control goes to the agent, every key
// the user holds is released with the kind of event and identity it was
// pressed with (a QEMU release with the press's keycode), the button at the
// last position; the viewer's own later releases are dropped, and after
// take-control a bare o is a bare o on the server.
func TestE2EHandOverReleasesAsPressed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*proxy.Config)
		ctrl  []byte // Ctrl as it reaches the server, down
		rel   []byte // and its release
	}{
		{"keycodes passed", passPolicy, qemuKeyMsg(true, ctrlL, 0x1d), qemuKeyMsg(false, ctrlL, 0x1d)},
		{"layout-proof default", nil, keyMsg(true, ctrlL), keyMsg(false, ctrlL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
			cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			_, addr := startProxy(t, cfg)
			const q = "/v1/stream/%s/browser_session/pbs_2?client_id=c2"
			path := func(ch string) string { return strings.Replace(q, "%s", ch, 1) }
			mc := dialMessages(t, addr, path("messages"))
			mc.expect("interactor", "interactor", "user")
			e := &e2e{t: t, vnc: vnc, addr: addr}
			e.connect(path("vnc"), nil)

			e.send(qemuKeyMsg(true, ctrlL, 0x1d), keyMsg(true, 'a'), ptrMsg(1, 40, 50))
			e.expectUpstream(tc.ctrl, keyMsg(true, 'a'), ptrMsg(1, 40, 50))
			mc.send(map[string]string{"kind": "cede-control"})
			mc.expect("interactor", "interactor", "agent")
			// The releases, last pressed first, then the button.
			e.expectUpstream(keyMsg(false, 'a'), tc.rel, ptrMsg(0, 40, 50))
			// The viewer's own releases come too late: dropped.
			e.send(keyMsg(false, ctrlL), qemuKeyMsg(false, ctrlL, 0x1d), keyMsg(false, 'a'), ptrMsg(0, 40, 50))
			e.expectUpstream()
			mc.send(map[string]string{"kind": "take-control"})
			mc.expect("interactor", "interactor", "user")
			e.send(keyMsg(true, 'o'), keyMsg(false, 'o'))
			e.expectUpstream(keyMsg(true, 'o'), keyMsg(false, 'o'))
		})
	}
}

// TestE2EEndReleasesHeldKeys: a session that ends (viewer closes, or another
// viewer of the same client replaces it) releases on its upstream what the
// viewer held, each key as it was pressed.
func TestE2EEndReleasesHeldKeys(t *testing.T) {
	t.Run("viewer closes", func(t *testing.T) {
		e := startE2E(t, rfbparse.User, passPolicy)
		e.send(qemuKeyMsg(true, ctrlL, 0x1d), keyMsg(true, shiftL))
		e.expectUpstream(qemuKeyMsg(true, ctrlL, 0x1d), keyMsg(true, shiftL))
		if err := e.view.WriteFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
			t.Fatal(err)
		}
		if got, want := nextMsgs(t, e, 2), [][]byte{keyMsg(false, shiftL), qemuKeyMsg(false, ctrlL, 0x1d)}; !equalMsgs(got, want) {
			t.Fatalf("server received:\n%s\nwant:\n%s", dumpMsgs(got), dumpMsgs(want))
		}
		if err := e.up.WaitDone(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
		cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
		passPolicy(&cfg)
		_, addr := startProxy(t, cfg)
		p := "/v1/stream/vnc/task/tsk_2?client_id=c3"
		first := &e2e{t: t, vnc: vnc, addr: addr}
		first.connect(p, nil)
		first.send(qemuKeyMsg(true, ctrlL, 0x1d), ptrMsg(4|1, 7, 8))
		first.expectUpstream(qemuKeyMsg(true, ctrlL, 0x1d), ptrMsg(1, 7, 8))
		second := &e2e{t: t, vnc: vnc, addr: addr}
		second.connect(p, nil)
		if err := first.up.WaitDone(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if got, want := nextMsgs(t, first, 2), [][]byte{qemuKeyMsg(false, ctrlL, 0x1d), ptrMsg(0, 7, 8)}; !equalMsgs(got, want) {
			t.Fatalf("server received:\n%s\nwant:\n%s", dumpMsgs(got), dumpMsgs(want))
		}
		// The new viewer starts with nothing held: a bare o passes.
		second.send(keyMsg(true, 'o'))
		second.expectUpstream(keyMsg(true, 'o'))
	})
}
