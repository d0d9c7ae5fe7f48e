package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// browserStepTimeout bounds each browser step (connect, canvas, input). It
// only bounds failures: steps take 0.1-4 s, but up to 16 s were seen on a
// 2-CPU machine at load 14.
const browserStepTimeout = 30 * time.Second

// noVNCPage starts vncedge with cfg, allowing the noVNC page's origin (the
// page comes from another port, so its Origin differs from the Host the
// WebSocket goes to), opens noVNC in a new tab of b and waits until it is
// connected through vncedge. With lossless, noVNC's SetEncodings lose the
// JPEG quality level (browser.Page.NoJPEG).
func noVNCPage(t *testing.T, b *browser.Browser, base string, cfg proxy.Config, lossless bool) (*proxy.Server, *browser.Page) {
	t.Helper()
	origin, err := browser.Origin(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AllowedOrigins = []string{origin}
	px, addr := startProxy(t, cfg)
	port := portOf(t, addr)
	// JPEG quality 9 (of 0-9): TigerVNC's quality 100 JPEG from the
	// start, rather than a coarse first pass and a refresh seconds later.
	quality := url.Values{"quality": {"9"}}
	// The page after the proxy: its cleanup (screenshot on failure) then
	// runs while the proxy and the VNC server are still up.
	p := b.NewPage(t)
	if err := p.RecordWebSocketSends(); err != nil {
		t.Fatal(err)
	}
	if lossless {
		if err := p.NoJPEG(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.OpenNoVNC(browser.NoVNCURL(base, "127.0.0.1", port, "websockify", quality), browserStepTimeout); err != nil {
		t.Fatal(err)
	}
	return px, p
}

// noiseError returns the largest difference in one colour channel between
// the w×h noise image of seed and the TrueColor32 framebuffer fb (fbW pixels
// wide) at (x0, y0).
func noiseError(fb []byte, fbW, x0, y0, w, h int, seed uint32) int {
	worst := 0
	for i := 0; i < w*h; i++ {
		got := binary.LittleEndian.Uint32(fb[((y0+i/w)*fbW+x0+i%w)*4:])
		want := teststack.NoisePixel(seed, i)
		for shift := 0; shift < 24; shift += 8 {
			d := int(got>>shift&0xff) - int(want>>shift&0xff)
			worst = max(worst, d, -d)
		}
	}
	return worst
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestBrowserNoVNC runs the real viewer: Debian's noVNC 1.3 in headless
// Chromium connects through vncedge to a real Xvnc showing a noise image,
// and the image must appear pixel-exact in noVNC's canvas. Upstreams: tcp://
// straight to Xvnc and ws:// through real websockify.
//
// noVNC always asks for JPEG (a quality-level pseudo-encoding), and TigerVNC
// then sends noise as Tight JPEG, never bit-exact in the canvas even after its
// "lossless" refresh (JPEG quality 100). The pixel-exact cases therefore
// strip the quality level from noVNC's SetEncodings in the page; the
// "tcp-stock-jpeg" case keeps noVNC's encodings (at its highest JPEG
// quality setting) and allows ±8 per channel: quality 100 JPEG is off by up
// to 4 here, a coarser one by tens.
func TestBrowserNoVNC(t *testing.T) {
	teststack.Require(t, "Xvnc", "chromium", "xwud")
	browser.Require(t)
	const w, h, seed = 640, 480, 29
	x := teststack.StartXvnc(t)
	x0, y0 := x.ShowNoise(t, w, h, seed)
	base := browser.ServeNoVNC(t)
	b := browser.Start(t)

	// Pixels the canvas poll waits for before reading the whole canvas:
	// the image's corners and a spread of pixels in between.
	var samples []browser.Sample
	for _, i := range []int{0, 1, w - 1, w * (h - 1), w*h - 1} {
		samples = append(samples, browser.Sample{X: x0 + i%w, Y: y0 + i/w, RGB: teststack.NoisePixel(seed, i)})
	}
	for i := 7; i < w*h; i += w*h/64 + 13 {
		samples = append(samples, browser.Sample{X: x0 + i%w, Y: y0 + i/w, RGB: teststack.NoisePixel(seed, i)})
	}

	tcp := func(*testing.T) string { return "tcp://" + x.Addr() }
	cases := []struct {
		name      string
		upstream  func(t *testing.T) string
		tolerance int // per colour channel; 0: pixel-exact, lossless encodings
	}{
		{"tcp", tcp, 0},
		{"ws-websockify", func(t *testing.T) string {
			teststack.Require(t, "websockify")
			return "ws://" + teststack.StartWebsockify(t, x.Addr()) + "/"
		}, 0},
		{"tcp-stock-jpeg", tcp, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, p := noVNCPage(t, b, base, targetConfig(t, tc.upstream(t), rfbparse.User), tc.tolerance == 0)
			connected := time.Since(start)
			// The samples can match before the last rectangle of a
			// refresh has landed: read again until the whole image
			// matches or the time is up.
			deadline := time.Now().Add(browserStepTimeout)
			for reads := 1; ; reads++ {
				fb, fbW, fbH, err := p.Canvas(time.Until(deadline), tc.tolerance, samples...)
				if err != nil {
					if fb, fbW, _, err := p.Canvas(5*time.Second, 0); err == nil {
						t.Logf("the canvas is off by up to %d per channel", noiseError(fb, fbW, x0, y0, w, h, seed))
					}
					t.Fatal(err)
				}
				if fbW != 1024 || fbH != 768 {
					t.Fatalf("canvas %dx%d, want Xvnc's 1024x768", fbW, fbH)
				}
				worst := noiseError(fb, fbW, x0, y0, w, h, seed)
				if tc.tolerance == 0 && worst == 0 {
					if gx, gy, ok := teststack.FindNoise(fb, fbW, w, h, seed); !ok || gx != x0 || gy != y0 {
						t.Fatalf("FindNoise: (%d,%d) %v, want the image at (%d,%d)", gx, gy, ok, x0, y0)
					}
				}
				if worst <= tc.tolerance {
					t.Logf("noVNC connected in %v; the %dx%d image matched (largest channel error %d) after %v and %d canvas reads",
						connected.Round(time.Millisecond), w, h, worst, time.Since(start).Round(time.Millisecond), reads)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the %dx%d noise image is not in noVNC's canvas at (%d,%d): a channel is off by %d (tolerance %d)",
						w, h, x0, y0, worst, tc.tolerance)
				}
			}
		})
	}
}

// Keysyms and message fields the policy test looks at.
const (
	keysymControlL = 0xffe3
	msgFBUpdateReq = 3
	msgKeyEvent    = 4
	msgPointer     = 5
	msgQEMU        = 255
	buttonRight    = 1 << 2
	buttonLeft     = 1 << 0
	// pseudoEncodingQEMUExtKey, sent by the server in a FramebufferUpdate,
	// switches noVNC to QEMU ExtendedKeyEvents (keysym plus XT keycode).
	pseudoEncodingQEMUExtKey = -258
)

// keyOf returns the keysym and direction of a KeyEvent or QEMU
// ExtendedKeyEvent, ok false for any other message.
func keyOf(m []byte) (keysym uint32, down, ok bool) {
	switch {
	case len(m) == 8 && m[0] == msgKeyEvent:
		return binary.BigEndian.Uint32(m[4:]), m[1] != 0, true
	case len(m) == 12 && m[0] == msgQEMU && m[1] == 0:
		return binary.BigEndian.Uint32(m[4:]), binary.BigEndian.Uint16(m[2:]) != 0, true
	}
	return 0, false, false
}

// splitClientStream splits what an RFB 3.8 viewer sent (ProtocolVersion,
// security type, ClientInit, then client messages) into the handshake and
// whole messages, with its own length table (notes/FACTS.md). A trailing
// partial message is an error.
func splitClientStream(b []byte) (handshake []byte, msgs [][]byte, err error) {
	const hs = 12 + 1 + 1
	if len(b) < hs {
		return nil, nil, fmt.Errorf("%d bytes, shorter than the handshake", len(b))
	}
	handshake, b = b[:hs], b[hs:]
	for len(b) > 0 {
		n := 0
		switch b[0] {
		case 0:
			n = 20
		case 2:
			if len(b) >= 4 {
				n = 4 + 4*int(binary.BigEndian.Uint16(b[2:]))
			}
		case 3, 150:
			n = 10
		case 4:
			n = 8
		case 5:
			n = 6
		case 6:
			if len(b) >= 8 {
				l := int64(int32(binary.BigEndian.Uint32(b[4:])))
				n = 8 + int(max(l, -l))
			}
		case 248:
			if len(b) >= 9 {
				n = 9 + int(b[8])
			}
		case 250:
			n = 4
		case 251:
			if len(b) >= 8 {
				n = 8 + 16*int(b[6])
			}
		case 255:
			if len(b) >= 2 && b[1] != 0 {
				return nil, nil, fmt.Errorf("QEMU subtype %d not expected from noVNC", b[1])
			}
			n = 12
		default:
			return nil, nil, fmt.Errorf("unknown client message type %d", b[0])
		}
		if n == 0 || len(b) < n {
			return nil, nil, fmt.Errorf("partial message of type %d (%d bytes left)", b[0], len(b))
		}
		msgs = append(msgs, b[:n])
		b = b[n:]
	}
	return handshake, msgs, nil
}

// applyDefaultPolicy is the test's own model of rfbparse.DefaultPolicy for
// the input the policy test types: the only 'o' it types is Ctrl+O, so every
// 'o' key event is dropped; the right button is cleared from PointerEvents.
func applyDefaultPolicy(msgs [][]byte) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if k, _, ok := keyOf(m); ok && (k == 'o' || k == 'O') {
			continue
		}
		// Layout-proof: −258 becomes the entry before it, QEMU key events
		// plain KeyEvents of their keysym.
		if m[0] == 2 {
			m = append([]byte(nil), m...)
			for i := 4; i+4 <= len(m); i += 4 {
				if int32(binary.BigEndian.Uint32(m[i:])) == pseudoEncodingQEMUExtKey {
					copy(m[i:i+4], m[i-4:i])
				}
			}
		}
		if k, down, ok := keyOf(m); ok && m[0] == msgQEMU {
			m = []byte{msgKeyEvent, 0, 0, 0, byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
			if down {
				m[1] = 1
			}
		}
		if m[0] == msgPointer && m[1]&buttonRight != 0 {
			m = append([]byte(nil), m...)
			m[1] &^= buttonRight
		}
		out = append(out, m)
	}
	return out
}

// serverLog collects what the recording server received, in order.
type serverLog struct {
	srv  *rfbtest.Server
	msgs []rfbtest.Msg
}

// waitFor reads messages until one satisfies match, and returns its index.
func (l *serverLog) waitFor(ctx context.Context, what string, match func(rfbtest.Msg) bool) (int, error) {
	for {
		m, err := l.srv.Next(ctx)
		if err != nil {
			return 0, fmt.Errorf("waiting for %s at the VNC server: %w (errors: %v)", what, err, l.srv.Errors())
		}
		l.msgs = append(l.msgs, m)
		if match(m) {
			return len(l.msgs) - 1, nil
		}
	}
}

// waitAnswered waits until noVNC has sent n incremental update requests,
// which it sends when it has finished an update.
func (l *serverLog) waitAnswered(ctx context.Context, n int) error {
	incremental := func() int {
		k := 0
		for _, m := range l.msgs {
			if m.Type == msgFBUpdateReq && m.Raw[1] == 1 {
				k++
			}
		}
		return k
	}
	if incremental() >= n {
		return nil
	}
	_, err := l.waitFor(ctx, fmt.Sprintf("noVNC's update request #%d", n), func(rfbtest.Msg) bool {
		return incremental() >= n
	})
	return err
}

func (l *serverLog) waitKey(ctx context.Context, keysym uint32, down bool) (int, error) {
	return l.waitFor(ctx, fmt.Sprintf("key %#x down=%v", keysym, down), func(m rfbtest.Msg) bool {
		k, d, ok := keyOf(m.Raw)
		return ok && k == keysym && d == down
	})
}

// stream is the client-to-server byte stream the server saw: the handshake
// noVNC sends with security None and a shared session, then the messages.
func (l *serverLog) stream() []byte {
	b := []byte("RFB 003.008\n\x01\x01")
	for _, m := range l.msgs {
		b = append(b, m.Raw...)
	}
	return b
}

// controlKey returns the CDP events for pressing (down) or releasing the
// left Control key, as Chromium reports them (ctrlKey set while held).
func controlKey(down bool) input.DispatchKeyEventParams {
	ev := kb.Encode([]rune(kb.Control)[0])
	if down {
		p := *ev[0]
		p.Modifiers |= int64(chromedp.ModifierCtrl)
		return p
	}
	return *ev[len(ev)-1]
}

// typeAndClick focuses noVNC's canvas and sends, through Chromium's input
// pipeline: the letters "hi", Ctrl+O, a right click and a left click at
// (20, 30) on the remote screen, and the letter "z" as an end marker.
func typeAndClick(p *browser.Page) error {
	ctx, cancel := context.WithTimeout(p.Context(), browserStepTimeout)
	defer cancel()
	rect, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => {
		const c = `+browser.CanvasJS+`;
		c.focus();
		if (document.activeElement !== c) throw new Error('the noVNC canvas does not take focus');
		const r = c.getBoundingClientRect();
		return [r.left, r.top];
	})()`))
	if err != nil {
		return fmt.Errorf("focusing the canvas: %w", err)
	}
	x, y := rect[0]+20.5, rect[1]+30.5
	return p.Do(browserStepTimeout,
		chromedp.KeyEvent("hi"),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, input.DispatchKeyEvent, controlKey(true))
			return err
		}),
		chromedp.KeyEvent("o", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, input.DispatchKeyEvent, controlKey(false))
			return err
		}),
		chromedp.MouseClickXY(x, y, chromedp.ButtonType(input.MouseButtonRight)),
		chromedp.MouseClickXY(x, y, chromedp.ButtonType(input.MouseButtonLeft)),
		chromedp.KeyEvent("z"),
	)
}

// TestBrowserNoVNCPolicy types and clicks in real noVNC (Chromium's input
// pipeline, noVNC's keyboard and mouse code) and checks at a recording VNC
// server that vncedge's default policy held: letters and Ctrl arrive, Ctrl+O
// does not (neither its key-down nor its key-up), and the right button is
// stripped from PointerEvents. It runs twice on one connection: with plain
// KeyEvents, then after the server enables QEMU ExtendedKeyEvents. Everything
// else noVNC sent must arrive unchanged, byte for byte.
//
// With VNCEDGE_RECORD=1 it writes the client-to-server stream the server saw
// to rfbparse/testdata/novnc-1.3-session.bin (a fuzz seed and split-test
// input).
func TestBrowserNoVNCPolicy(t *testing.T) {
	teststack.Require(t, "chromium")
	browser.Require(t)
	srv := rfbtest.NewServer(t, rfbtest.Options{Width: 320, Height: 240, HoldIncremental: true})
	base := browser.ServeNoVNC(t)
	b := browser.Start(t)
	px, p := noVNCPage(t, b, base, targetConfig(t, "tcp://"+srv.Addr(), rfbparse.User), false)

	ctx, cancel := context.WithTimeout(context.Background(), browserStepTimeout)
	defer cancel()
	conn, err := srv.WaitConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	log := &serverLog{srv: srv}
	// Type once noVNC has answered the first update: the recorded stream
	// then has the same order every run.
	if err := log.waitAnswered(ctx, max(1, srv.UpdatesSent())); err != nil {
		t.Fatal(err)
	}

	phases := []struct {
		name   string
		keyMsg byte
		setup  func(t *testing.T)
	}{
		{"KeyEvent", msgKeyEvent, func(*testing.T) {}},
		// noVNC sends QEMU key events; the default policy passes them on as
		// plain KeyEvents (checked against what noVNC sent below).
		{"QEMUExtendedKeyEvent", msgKeyEvent, func(t *testing.T) {
			// A FramebufferUpdate with one pseudo-rectangle announces
			// QEMU ExtendedKeyEvent support. noVNC answers each finished
			// update with an incremental request: once it has answered
			// every update the server sent and this one, it has switched.
			upd := make([]byte, 16)
			binary.BigEndian.PutUint16(upd[2:], 1)
			enc := int32(pseudoEncodingQEMUExtKey)
			binary.BigEndian.PutUint32(upd[12:], uint32(enc))
			if err := conn.Push(upd); err != nil {
				t.Fatal(err)
			}
			if err := log.waitAnswered(ctx, srv.UpdatesSent()+1); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, ph := range phases {
		if !t.Run(ph.name, func(t *testing.T) {
			ph.setup(t)
			from := len(log.msgs)
			if err := typeAndClick(p); err != nil {
				t.Fatal(err)
			}
			end, err := log.waitKey(ctx, 'z', false)
			if err != nil {
				t.Fatal(err)
			}
			got := log.msgs[from : end+1]

			keys := map[[2]uint32]int{} // {keysym, down} → count
			var pointers [][]byte
			for _, m := range got {
				if k, down, ok := keyOf(m.Raw); ok {
					if m.Type != ph.keyMsg {
						t.Errorf("key %#x arrived as message type %d, want %d", k, m.Type, ph.keyMsg)
					}
					d := uint32(0)
					if down {
						d = 1
					}
					keys[[2]uint32{k, d}]++
				}
				if m.Type == msgPointer {
					pointers = append(pointers, m.Raw)
				}
			}
			for _, k := range []uint32{'h', 'i', 'z', keysymControlL} {
				if keys[[2]uint32{k, 1}] != 1 || keys[[2]uint32{k, 0}] != 1 {
					t.Errorf("key %#x: %d downs and %d ups arrived, want 1 and 1", k, keys[[2]uint32{k, 1}], keys[[2]uint32{k, 0}])
				}
			}
			for _, k := range []uint32{'o', 'O'} {
				if n := keys[[2]uint32{k, 1}] + keys[[2]uint32{k, 0}]; n != 0 {
					t.Errorf("Ctrl+O got through: %d key events for %q arrived", n, rune(k))
				}
			}
			var leftDown bool
			for _, m := range pointers {
				mask, px, py := m[1], binary.BigEndian.Uint16(m[2:]), binary.BigEndian.Uint16(m[4:])
				if mask&buttonRight != 0 {
					t.Errorf("PointerEvent % x arrived with the right button (bit 2) set", m)
				}
				if px != 20 || py != 30 {
					t.Errorf("PointerEvent at (%d,%d), want (20,30)", px, py)
				}
				leftDown = leftDown || mask&buttonLeft != 0
			}
			if len(pointers) < 4 || !leftDown {
				t.Errorf("PointerEvents %x: want a right click's down and up and a left click's (mask 1)", pointers)
			}

			// What noVNC sent, from the page's own WebSocket, must equal
			// what arrived once the policy is applied; it must also show
			// that noVNC did send Ctrl+O and the right button.
			sent, err := p.SentBytes()
			if err != nil {
				t.Fatal(err)
			}
			hs, msgs, err := splitClientStream(sent)
			if err != nil {
				t.Fatalf("noVNC's stream: %v", err)
			}
			if string(hs) != "RFB 003.008\n\x01\x01" {
				t.Errorf("noVNC's handshake %q, want version 3.8, security None, shared", hs)
			}
			var sentO, sentRight, sentQEMU bool
			for _, m := range msgs { // the first phase precedes the switch to QEMU key events
				if _, _, ok := keyOf(m); ok && m[0] == msgQEMU {
					sentQEMU = true
				}
			}
			if sentQEMU != (ph.name == "QEMUExtendedKeyEvent") {
				t.Errorf("noVNC sent QEMU key events: %v, want %v", sentQEMU, ph.name == "QEMUExtendedKeyEvent")
			}
			for _, m := range msgs {
				if k, _, ok := keyOf(m); ok && k == 'o' {
					sentO = true
				}
				sentRight = sentRight || (m[0] == msgPointer && m[1]&buttonRight != 0)
			}
			if !sentO || !sentRight {
				t.Errorf("noVNC itself sent no Ctrl+O (%v) or no right button (%v): the input did not reach it", sentO, sentRight)
			}
			want := applyDefaultPolicy(msgs)
			if len(want) < len(log.msgs) {
				t.Fatalf("the server got %d messages, noVNC sent %d that pass the policy", len(log.msgs), len(want))
			}
			for i, m := range log.msgs {
				if !bytes.Equal(m.Raw, want[i]) {
					t.Fatalf("message %d: the server got % x, noVNC sent % x (after policy)", i, m.Raw, want[i])
				}
			}
		}) {
			t.FailNow()
		}
	}
	if errs := srv.Errors(); len(errs) > 0 {
		t.Errorf("server errors: %v", errs)
	}

	select {
	case <-conn.Done():
		t.Errorf("the VNC connection ended: %v", conn.Err())
	default:
	}

	session := log.stream()
	if len(session) >= 64<<10 {
		t.Errorf("recorded session is %d bytes, want < 64 KiB", len(session))
	}
	if os.Getenv("VNCEDGE_RECORD") == "1" && !t.Failed() {
		dir := filepath.Join("..", "rfbparse", "testdata")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "novnc-1.3-session.bin")
		if err := os.WriteFile(path, session, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes, %d messages)", path, len(session), len(log.msgs))
	}

	t.Run("TabCloseEndsSession", func(t *testing.T) {
		// Closing the tab ends the session: vncedge closes the upstream.
		if err := p.Close(); err != nil {
			t.Fatalf("closing the tab: %v", err)
		}
		if err := conn.WaitDone(ctx); err != nil {
			t.Fatalf("the VNC connection outlived the viewer's tab: %v (proxy %+v)", err, px.Stats())
		}
		if err := conn.Err(); err != nil {
			t.Errorf("the VNC connection ended with %v, want a clean close", err)
		}
	})

	t.Run("ForeignOriginRefused", func(t *testing.T) {
		// Without AllowedOrigins the page's origin (another port) is
		// foreign: the upgrade must be refused, before any dial.
		other := rfbtest.NewServer(t, rfbtest.Options{})
		px, addr := startProxy(t, targetConfig(t, "tcp://"+other.Addr(), rfbparse.User))
		p := b.NewPage(t)
		status, err := p.OpenNoVNCFailing(browser.NoVNCURL(base, "127.0.0.1", portOf(t, addr), "websockify", nil), browserStepTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(other.Conns()); n != 0 {
			t.Errorf("vncedge dialed the VNC server %d times for a refused origin", n)
		}
		if st := px.Stats(); st.UpgradeFailures < 1 {
			t.Errorf("stats %+v, want an upgrade failure", st)
		}
		t.Logf("noVNC shows %q", status)
	})
}
