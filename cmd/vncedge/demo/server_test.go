package demo

import (
	"context"
	"encoding/binary"
	"errors"
	"image"
	"net"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
)

const testTimeout = 10 * time.Second

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.Record = true
	s, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// connect dials s and runs the handshake; the connection has a deadline so
// a missing update fails the test instead of hanging it.
func connect(t testing.TB, s *Server) (*rfbclient.Client, net.Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testTimeout))
	c, err := rfbclient.Handshake(nc, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, nc
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pixel decodes pixel i of an rfbclient framebuffer in format pf into
// 8-bit channels scaled back from the format's maxima.
func pixel(fb []byte, pf rfbclient.PixelFormat, i int) (r, g, b uint32) {
	n := int(pf.BPP / 8)
	p := fb[i*n : i*n+n]
	var v uint32
	switch {
	case n == 4 && pf.BigEndian:
		v = binary.BigEndian.Uint32(p)
	case n == 4:
		v = binary.LittleEndian.Uint32(p)
	case n == 2 && pf.BigEndian:
		v = uint32(binary.BigEndian.Uint16(p))
	case n == 2:
		v = uint32(binary.LittleEndian.Uint16(p))
	default:
		v = uint32(p[0])
	}
	return v >> pf.RedShift & uint32(pf.RedMax), v >> pf.GreenShift & uint32(pf.GreenMax), v >> pf.BlueShift & uint32(pf.BlueMax)
}

// wantChannels is rgb (0xRRGGBB) in the format's channel ranges.
func wantChannels(rgb uint32, pf rfbclient.PixelFormat) (r, g, b uint32) {
	return scale(rgb>>16&0xff, pf.RedMax), scale(rgb>>8&0xff, pf.GreenMax), scale(rgb&0xff, pf.BlueMax)
}

// expectedPixel is what the server shows at (x, y) with a still band and
// no input yet, apart from the status line.
func expectedPixel(srv []uint32, x, y int) uint32 {
	switch {
	case y < StaticRect.Max.Y:
		return StaticPixel(x, y)
	case y < BandRect.Max.Y:
		return BandPixel(0, x, y)
	}
	return srv[y*Width+x]
}

func TestHandshakeAndFullUpdateInEveryFormat(t *testing.T) {
	s := startServer(t, Options{FPS: -1, Name: "demo test"})
	formats := []struct {
		name string
		pf   rfbclient.PixelFormat
	}{
		{"native", rfbclient.TrueColor32()},
		// What noVNC sends: 32 bits, depth 24, little-endian, red at 0.
		{"novnc", rfbclient.PixelFormat{BPP: 32, Depth: 24, TrueColor: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 0, GreenShift: 8, BlueShift: 16}},
		{"bigendian32", rfbclient.PixelFormat{BPP: 32, Depth: 24, BigEndian: true, TrueColor: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 24, GreenShift: 16, BlueShift: 8}},
		{"rgb565", rfbclient.PixelFormat{BPP: 16, Depth: 16, TrueColor: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0}},
		{"bgr233", rfbclient.PixelFormat{BPP: 8, Depth: 8, TrueColor: true, RedMax: 7, GreenMax: 7, BlueMax: 3, RedShift: 0, GreenShift: 3, BlueShift: 6}},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			c, _ := connect(t, s)
			in := c.Init()
			if in.Version != "3.8" || in.Security != rfbclient.SecurityNone || in.Width != Width || in.Height != Height || in.Name != "demo test" {
				t.Fatalf("ServerInit %+v", in)
			}
			if in.Format != rfbclient.TrueColor32() {
				t.Errorf("native format %+v, want 32bpp depth 24 little-endian 16/8/0", in.Format)
			}
			if err := c.SetPixelFormat(f.pf); err != nil {
				t.Fatal(err)
			}
			if err := c.SetEncodings(rfbclient.EncodingRaw, 7, 16, -239, -223); err != nil { // Tight, ZRLE, cursor, DesktopSize: ignored
				t.Fatal(err)
			}
			fb, err := c.ReadFull()
			if err != nil {
				t.Fatal(err)
			}
			bad, srv := 0, s.Framebuffer()
			for y := range Height {
				for x := range Width {
					r, g, b := pixel(fb, f.pf, y*Width+x)
					wr, wg, wb := wantChannels(expectedPixel(srv, x, y), f.pf)
					if r != wr || g != wg || b != wb {
						if bad++; bad <= 3 {
							t.Errorf("(%d,%d): got %d,%d,%d want %d,%d,%d", x, y, r, g, b, wr, wg, wb)
						}
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d pixels differ", bad)
			}
		})
	}
}

func TestStaticRegionIsDeterministic(t *testing.T) {
	// Sanity of the pattern itself: bars where they belong, title text
	// drawn, and the band moving by BandStep a frame with period BandPeriod.
	if got := StaticPixel(50, 50); got != 0xffffff {
		t.Errorf("first bar %06x, want white", got)
	}
	if got := StaticPixel(750, 50); got != 0x000000 {
		t.Errorf("last bar %06x, want black", got)
	}
	text := 0
	for y := range 24 {
		for x := range Width {
			if StaticPixel(x, y) == titleForeground {
				text++
			}
		}
	}
	if text < 500 {
		t.Errorf("title has %d text pixels", text)
	}
	y := BandRect.Min.Y
	if BandPixel(1, 10, y) != BandPixel(0, 10+BandStep, y) || BandPixel(BandPeriod, 10, y) != BandPixel(0, 10, y) || BandPixel(1, 10, y) == BandPixel(0, 10, y) {
		t.Error("band does not move by BandStep a frame with period BandPeriod")
	}
}

// readUntil reads updates until cond holds for the client's framebuffer,
// sending an incremental request before each read.
func readUntil(t *testing.T, c *rfbclient.Client, what string, cond func(fb []byte) bool) []rfbclient.Rect {
	t.Helper()
	var all []rfbclient.Rect
	for range 50 {
		if cond(c.Framebuffer()) {
			return all
		}
		if err := c.Request(true, 0, 0, Width, Height); err != nil {
			t.Fatal(err)
		}
		rects, err := c.ReadUpdate()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		all = append(all, rects...)
	}
	t.Fatalf("no %s after 50 updates", what)
	return nil
}

func rgbAt(fb []byte, x, y int) uint32 {
	return binary.LittleEndian.Uint32(fb[(y*Width+x)*4:]) & 0xffffff
}

func TestPointerTrail(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	c, _ := connect(t, s)
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(); err != nil {
		t.Fatal(err)
	}
	y0 := CanvasRect.Min.Y + 100
	pen, _ := PenColour(1)
	// A move without buttons draws nothing; a drag with the left button
	// draws a line; a middle-button dot elsewhere in its own colour.
	events := []struct {
		mask uint8
		x, y int
	}{{0, 50, y0 + 50}, {0, 100, y0}, {1, 100, y0}, {1, 200, y0}, {1, 200, y0 + 40}, {0, 200, y0 + 40}, {2, 300, y0}, {0, 300, y0}}
	for _, e := range events {
		if err := c.PointerEvent(e.mask, e.x, e.y); err != nil {
			t.Fatal(err)
		}
	}
	mid, _ := PenColour(2)
	readUntil(t, c, "the trail", func(fb []byte) bool { return rgbAt(fb, 300, y0) == mid })
	fb := c.Framebuffer()
	for _, p := range []image.Point{{100, y0}, {150, y0}, {199, y0 + 1}, {200, y0 + 20}, {200, y0 + 40}} {
		if got := rgbAt(fb, p.X, p.Y); got != pen {
			t.Errorf("trail at %v: %06x, want %06x", p, got, pen)
		}
	}
	for _, p := range []image.Point{{75, y0 + 25}, {150, y0 + 20}, {250, y0}} {
		if got := rgbAt(fb, p.X, p.Y); got != CanvasBackground {
			t.Errorf("off the trail at %v: %06x, want the background", p, got)
		}
	}
	// The server's own screen agrees with the client's.
	srv := s.Framebuffer()
	for i := range Width * Height {
		if got := binary.LittleEndian.Uint32(fb[i*4:]) & 0xffffff; got != srv[i] {
			t.Fatalf("pixel (%d,%d): client %06x, server %06x", i%Width, i/Width, got, srv[i])
		}
	}
	// Escape clears the canvas.
	if err := c.KeyEvent(true, 0xff1b); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "the cleared canvas", func(fb []byte) bool { return rgbAt(fb, 150, y0) == CanvasBackground })
}

func TestKeysShown(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	c, _ := connect(t, s)
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []uint32{0xffe3, 'h', 'i', ' ', 0xff0d, 0x010020ac} { // Ctrl, h, i, space, Return, €
		if err := c.KeyEvent(true, k); err != nil {
			t.Fatal(err)
		}
		if err := c.KeyEvent(false, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.WaitMessage(ctxT(t), 0, func(m Msg) bool {
		return m.Type == MsgKeyEvent && m.Raw[1] == 0 && binary.BigEndian.Uint32(m.Raw[4:]) == 0x010020ac
	}); err != nil {
		t.Fatal(err)
	}
	const want = "<Ctrl>hi_<Ret><U+20AC>"
	if got := s.Keys(); got != want {
		t.Fatalf("keys %q, want %q", got, want)
	}
	// The status line, as the client sees it, is the key line rendered.
	exp := make([]uint32, Width*Height)
	drawStatus(exp, &status{keys: []string{"<Ctrl>", "h", "i", "_", "<Ret>", "<U+20AC>"}, viewers: 1}, nil)
	line := keysLineRect
	readUntil(t, c, "the key line", func(fb []byte) bool {
		for y := line.Min.Y; y < line.Max.Y; y++ {
			for x := range Width {
				if rgbAt(fb, x, y) != exp[y*Width+x] {
					return false
				}
			}
		}
		return true
	})
}

func TestIncrementalRequestHeldUntilChange(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	c, _ := connect(t, s)
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(); err != nil {
		t.Fatal(err)
	}
	sent := s.UpdatesSent()
	// Nothing changes: the request is held. A key then changes the status
	// line, and the answer is that region alone, in one update.
	if err := c.Request(true, 0, 0, Width, Height); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.WaitMessage(ctxT(t), 0, func(m Msg) bool { return m.Type == MsgFramebufferUpdateReq && m.Raw[1] == 1 }); err != nil {
		t.Fatal(err)
	}
	if got := s.UpdatesSent(); got != sent {
		t.Fatalf("%d updates sent for an incremental request with nothing changed", got-sent)
	}
	if err := c.KeyEvent(true, 'x'); err != nil {
		t.Fatal(err)
	}
	rects, err := c.ReadUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if len(rects) != 1 || !image.Rect(rects[0].X, rects[0].Y, rects[0].X+rects[0].W, rects[0].Y+rects[0].H).In(keysLineRect) || rects[0].Encoding != rfbclient.EncodingRaw {
		t.Fatalf("update %+v, want part of the key line %v in Raw", rects, keysLineRect)
	}
}

func TestBandMovesWhileWatched(t *testing.T) {
	s := startServer(t, Options{FPS: 60})
	c, _ := connect(t, s)
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(); err != nil {
		t.Fatal(err)
	}
	frames := map[int]bool{}
	for range 6 {
		if err := c.Request(true, 0, 0, Width, Height); err != nil {
			t.Fatal(err)
		}
		rects, err := c.ReadUpdate()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rects {
			if !image.Rect(r.X, r.Y, r.X+r.W, r.Y+r.H).In(BandRect.Union(StatusRect)) {
				t.Errorf("update rectangle %+v outside the band", r)
			}
		}
		n, ok := matchBand(c.Framebuffer())
		if !ok {
			t.Fatal("the band matches no frame")
		}
		frames[n] = true
	}
	if len(frames) < 2 {
		t.Errorf("the band showed frames %v: it does not move", frames)
	}
}

// matchBand finds the frame (mod BandPeriod) a TrueColor32 framebuffer's
// band shows.
func matchBand(fb []byte) (int, bool) {
next:
	for n := range BandPeriod {
		for y := BandRect.Min.Y; y < BandRect.Max.Y; y++ {
			for x := range Width {
				if rgbAt(fb, x, y) != BandPixel(n, x, y) {
					continue next
				}
			}
		}
		return n, true
	}
	return 0, false
}

func TestViewersShareTheScreen(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	a, _ := connect(t, s)
	b, _ := connect(t, s)
	for _, c := range []*rfbclient.Client{a, b} {
		if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadFull(); err != nil {
			t.Fatal(err)
		}
	}
	y := CanvasRect.Min.Y + 50
	for _, m := range []uint8{1, 0} {
		if err := a.PointerEvent(m, 400, y); err != nil {
			t.Fatal(err)
		}
	}
	pen, _ := PenColour(1)
	readUntil(t, b, "a's dot on b's screen", func(fb []byte) bool { return rgbAt(fb, 400, y) == pen })
	if s.Viewers() != 2 {
		t.Errorf("%d viewers, want 2", s.Viewers())
	}
}

func TestRefusesColourMaps(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	c, nc := connect(t, s)
	pf := rfbclient.TrueColor32()
	pf.TrueColor = false
	if err := c.SetPixelFormat(pf); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := nc.Read(b[:]); err == nil {
		t.Fatal("the server kept a viewer that asked for a colour map")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

func TestOlderClientVersions(t *testing.T) {
	s := startServer(t, Options{FPS: -1})
	for _, v := range []string{"3.3", "3.7"} {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(testTimeout))
		_, fb, err := rfbclient.Fetch(nc, rfbclient.Options{Version: v})
		nc.Close()
		if err != nil {
			t.Fatalf("RFB %s: %v", v, err)
		}
		if got := rgbAt(fb, 50, 50); got != StaticPixel(50, 50) {
			t.Errorf("RFB %s: pixel %06x", v, got)
		}
	}
}

func TestStartStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := connect(t, s)
	cancel()
	// The viewer is disconnected once the server closes.
	for {
		if _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("the server still accepts after its context ended")
	}
}

func TestAddDirtyMergesTouchingAndCaps(t *testing.T) {
	var set []image.Rectangle
	set = addDirty(set, image.Rect(0, 0, 10, 10))
	set = addDirty(set, image.Rect(10, 0, 20, 10)) // touches: merged
	set = addDirty(set, image.Rect(100, 100, 110, 110))
	if len(set) != 2 || set[0] != image.Rect(0, 0, 20, 10) {
		t.Fatalf("set %v", set)
	}
	for i := range maxDirty {
		set = addDirty(set, image.Rect(200+20*i, 300, 210+20*i, 310))
	}
	var all image.Rectangle
	for _, r := range set {
		all = all.Union(r)
	}
	if len(set) > maxDirty || all != image.Rect(0, 0, 350, 310) {
		t.Fatalf("over the cap: %v, want at most %d rectangles covering everything", set, maxDirty)
	}
}
