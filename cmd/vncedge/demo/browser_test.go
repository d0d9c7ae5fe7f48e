package demo

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// The real-browser test: Debian's Chromium, driven over CDP, opens the demo
// page (noVNC @novnc/novnc from node_modules) served by Handler; the page
// connects through an in-process vncedge (agent has control at start) to the
// demo server, which records what arrives.

const (
	chromiumPath = "/usr/bin/chromium"
	// artifactsEnv names a directory that also receives failure screenshots.
	artifactsEnv = "VNCEDGE_ARTIFACTS"
	// stepTimeout bounds each browser step. Generous: under -race on a
	// loaded 2-core machine one CDP round trip can take a second.
	stepTimeout = 40 * time.Second
)

// requireNoVNC returns the npm-installed noVNC, running `npm ci` in WebDir
// when node_modules is missing; without npm the test is skipped (failed
// with VNCEDGE_REQUIRE_REAL=1).
var npmOnce sync.Once

func requireNoVNC(t *testing.T) string {
	t.Helper()
	web := WebDir()
	if web == "" {
		t.Fatal("the demo's web directory is not beside the test source")
	}
	dir := filepath.Join(web, "node_modules", "@novnc", "novnc")
	if hasNoVNC(dir) {
		return dir
	}
	if _, err := exec.LookPath("npm"); err != nil {
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("missing npm (apt-get install npm) to install noVNC in %s, and %s=1", web, teststack.RequireRealEnv)
		}
		t.Skipf("missing npm (apt-get install npm) to install noVNC in %s", web)
	}
	var out []byte
	var err error
	npmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = web
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", web, err, out)
	}
	if !hasNoVNC(dir) {
		t.Fatalf("npm ci in %s did not install %s", web, dir)
	}
	return dir
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProxy runs vncedge in process until the test ends.
func startProxy(t testing.TB, cfg proxy.Config) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("vncedge did not start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("vncedge shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("vncedge: %v", err)
		}
	})
}

// page is one Chromium tab; when the test fails, a screenshot goes to
// t.TempDir() and $VNCEDGE_ARTIFACTS, and the console is logged.
type page struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []string
}

func startPage(t *testing.T) *page {
	t.Helper()
	profile := t.TempDir() // first: removed after Chromium exits
	shots := t.TempDir()
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1300, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"), // exact colours in the canvas
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	p := &page{t: t, ctx: ctx}
	consoleDone := make(chan struct{})
	messages := chromedp.Console(ctx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.console = append(p.console, m.String())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		allocCancel()
		<-consoleDone
	})
	t.Cleanup(func() {
		if t.Failed() {
			p.screenshot(shots)
			p.mu.Lock()
			for _, m := range p.console {
				t.Logf("browser console: %s", m)
			}
			p.mu.Unlock()
		}
	})
	// The first action starts Chromium and binds it to ctx, which has no
	// deadline: bound the start with a watchdog.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", chromiumPath, err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start within 30s", chromiumPath)
	}
	return p
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (p *page) screenshot(dir string) {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("failure screenshot: %v", err)
		return
	}
	dirs := []string{dir}
	if a := os.Getenv(artifactsEnv); a != "" {
		dirs = append(dirs, a)
	}
	for _, d := range dirs {
		path := filepath.Join(d, unsafeName.ReplaceAllString(p.t.Name(), "_")+".png")
		err := os.MkdirAll(d, 0o755)
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			p.t.Logf("writing the failure screenshot: %v", err)
			continue
		}
		p.t.Logf("failure screenshot: %s", path)
	}
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func eval[T any](p *page, js string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// waitJS waits, re-checking on DOM changes and every animation frame, until
// the expression is true.
func (p *page) waitJS(what, js string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		log, _ := eval[[]string](p, `window.demo ? window.demo.log : []`)
		p.t.Fatalf("waiting for %s: %v (page log %q)", what, err, log)
	}
}

const canvasJS = `document.querySelector('#screen canvas')`

// canvasRegion waits until the noVNC canvas is Width×Height and the title
// bar's corner pixel is drawn, then returns rows [y0, y1) as 0xRRGGBB.
func (p *page) canvasRegion(y0, y1 int) []uint32 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.PollFunction[string](`(w, h, y0, y1, rgb) => {
		const c = `+canvasJS+`;
		if (!c || c.width !== w || c.height !== h) return false;
		const ctx = c.getContext('2d');
		const d0 = ctx.getImageData(0, 0, 1, 1).data;
		if (((d0[0] << 16) | (d0[1] << 8) | d0[2]) !== rgb) return false;
		const d = ctx.getImageData(0, y0, w, y1 - y0).data;
		let s = '';
		for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
		return btoa(s);
	}`, chromedp.WithPollingArgs(Width, Height, y0, y1, StaticPixel(0, 0)), chromedp.WithPollingTimeout(stepTimeout)))
	if err != nil {
		p.t.Fatalf("reading the noVNC canvas: %v", err)
	}
	rgba, err := base64.StdEncoding.DecodeString(res)
	if err != nil || len(rgba) != Width*(y1-y0)*4 {
		p.t.Fatalf("reading the noVNC canvas: %d bytes, %v", len(rgba), err)
	}
	px := make([]uint32, len(rgba)/4)
	for i := range px {
		px[i] = uint32(rgba[4*i])<<16 | uint32(rgba[4*i+1])<<8 | uint32(rgba[4*i+2])
	}
	return px
}

// canvasOrigin is the canvas's top-left corner in the viewport.
func (p *page) canvasOrigin() (float64, float64) {
	p.t.Helper()
	r, err := eval[[]float64](p, `(() => { const r = `+canvasJS+`.getBoundingClientRect(); return [r.left, r.top]; })()`)
	if err != nil || len(r) != 2 {
		p.t.Fatalf("locating the canvas: %v", err)
	}
	return r[0], r[1]
}

// hookNoVNC makes the page count what noVNC itself sends: every keyEvent,
// QEMU key event and pointerEvent call, in window.__sent.
const hookNoVNC = `(() => {
	const M = window.demo.rfb.constructor.messages;
	const sent = window.__sent = [];
	for (const name of ['keyEvent', 'QEMUExtendedKeyEvent', 'pointerEvent']) {
		const orig = M[name];
		M[name] = function (sock, a, b, c, d) {
			sent.push(name === 'pointerEvent' ? ['pointer', c, a, b] : ['key', a, b ? 1 : 0]);
			return orig.apply(this, arguments);
		};
	}
	return true;
})()`

// sentByNoVNC returns window.__sent: ["key", keysym, down] and
// ["pointer", mask, x, y] entries.
func (p *page) sentByNoVNC() [][]any {
	p.t.Helper()
	v, err := eval[[][]any](p, `window.__sent`)
	if err != nil {
		p.t.Fatalf("reading what noVNC sent: %v", err)
	}
	return v
}

// marker sends a FramebufferUpdateRequest nobody else sends (1×1 at 7,7)
// on noVNC's own socket. It passes whoever has control and arrives after
// everything noVNC sent before it: a barrier for "nothing else arrived".
func (p *page) marker(id int) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const r = window.demo.rfb; r.constructor.messages.fbUpdateRequest(r._sock, true, 7, 7, %d, 1); return true; })()`, id)
	if _, err := eval[bool](p, js); err != nil {
		p.t.Fatalf("sending the marker: %v", err)
	}
}

func isMarker(id int) func(Msg) bool {
	return func(m Msg) bool {
		return m.Type == MsgFramebufferUpdateReq && binary.BigEndian.Uint16(m.Raw[2:]) == 7 &&
			binary.BigEndian.Uint16(m.Raw[4:]) == 7 && int(binary.BigEndian.Uint16(m.Raw[6:])) == id
	}
}

// controlKey is the CDP event for the left Control key going down or up.
func controlKey(down bool) input.DispatchKeyEventParams {
	ev := kb.Encode([]rune(kb.Control)[0])
	if down {
		p := *ev[0]
		p.Modifiers |= int64(chromedp.ModifierCtrl)
		return p
	}
	return *ev[len(ev)-1]
}

// input types letters, presses Ctrl+O, drags with the left button from a to
// b, right-clicks at c (all in desktop coordinates) and types end, through
// Chromium's input pipeline into the focused noVNC canvas.
func (p *page) input(letters string, a, b, c image2, end string) error {
	ox, oy := p.canvasOrigin()
	// Whole viewport pixels: Chromium rounds event coordinates, so a
	// fractional canvas offset would otherwise move a point by one.
	at := func(q image2) (float64, float64) { return math.Ceil(ox + float64(q.x)), math.Ceil(oy + float64(q.y)) }
	ax, ay := at(a)
	bx, by := at(b)
	cx, cy := at(c)
	dispatch := func(params input.DispatchKeyEventParams) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, input.DispatchKeyEvent, params)
			return err
		})
	}
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.KeyEvent(letters),
		dispatch(controlKey(true)),
		chromedp.KeyEvent("o", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		dispatch(controlKey(false)),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, ax, ay),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, ax, ay, chromedp.ButtonType(input.MouseButtonLeft), chromedp.ClickCount(1)),
	}
	for i := 1; i <= 4; i++ {
		x, y := math.Round(ax+(bx-ax)*float64(i)/4), math.Round(ay+(by-ay)*float64(i)/4)
		steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y, chromedp.ButtonType(input.MouseButtonLeft)))
	}
	steps = append(steps,
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, bx, by, chromedp.ButtonType(input.MouseButtonLeft), chromedp.ClickCount(1)),
		chromedp.MouseClickXY(cx, cy, chromedp.ButtonType(input.MouseButtonRight)),
		chromedp.KeyEvent(end),
	)
	for i, st := range steps {
		start := time.Now()
		err := p.do(st)
		if d := time.Since(start); d > time.Second {
			p.t.Logf("input step %d took %v", i+1, d)
		}
		if err != nil {
			return fmt.Errorf("input step %d of %d (after %v): %w", i+1, len(steps), time.Since(start).Round(time.Millisecond), err)
		}
	}
	return nil
}

type image2 struct{ x, y int }

func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestBrowserDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("real browser")
	}
	teststack.Require(t, "chromium")
	noVNC := requireNoVNC(t)

	srv := startServer(t, Options{FPS: 10})
	addr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	web := httptest.NewServer(Handler(PageConfig{ListenPort: port, NoVNCDir: noVNC}))
	t.Cleanup(web.Close)
	upstream, _ := url.Parse("tcp://" + srv.Addr())
	startProxy(t, proxy.Config{
		Addr:           addr,
		Resolver:       &proxy.TargetResolver{Upstream: upstream, Control: rfbparse.Agent},
		Policy:         rfbparse.DefaultPolicy(),
		AllowedOrigins: []string{web.URL}, // the page comes from another port
	})
	p := startPage(t) // after the servers: its failure screenshot runs while they are up

	if err := p.do(chromedp.Navigate(web.URL + "/?client_id=browser-test")); err != nil {
		t.Fatal(err)
	}
	p.waitJS("noVNC connected and the agent in control",
		`document.documentElement.dataset.vnc === 'connected' && document.documentElement.dataset.interactor === 'agent'`)
	if _, err := eval[bool](p, hookNoVNC); err != nil {
		t.Fatal(err)
	}

	// The static part of the desktop is pixel-exact in the canvas, and the
	// band shows one of its frames.
	region := p.canvasRegion(0, BandRect.Max.Y)
	bad := 0
	for y := range StaticRect.Max.Y {
		for x := range Width {
			if got, want := region[y*Width+x], StaticPixel(x, y); got != want {
				if bad++; bad <= 3 {
					t.Errorf("canvas (%d,%d) = %06x, want %06x", x, y, got, want)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d static pixels differ", bad)
	}
	if !bandMatches(region) {
		t.Fatal("the band in the canvas matches none of its frames")
	}

	y := CanvasRect.Min.Y + 120
	if _, err := eval[bool](p, canvasJS+`.focus({preventScroll: true}); document.activeElement === `+canvasJS); err != nil {
		t.Fatal(err)
	}

	agentPhase := func(t *testing.T, marker int) {
		from, sentFrom := len(srv.Messages()), len(p.sentByNoVNC())
		if err := p.input("ab", image2{100, y}, image2{200, y}, image2{150, y + 40}, "z"); err != nil {
			t.Fatal(err)
		}
		p.marker(marker)
		end, _, err := srv.WaitMessage(stepCtx(t), from, isMarker(marker))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range srv.Messages()[from:end] {
			switch m.Type {
			case MsgKeyEvent, MsgPointerEvent, MsgQEMU, MsgClientCutText:
				t.Errorf("message % x reached the VNC server while the agent had control", m.Raw)
			}
		}
		keys, pointers := 0, 0
		for _, s := range p.sentByNoVNC()[sentFrom:] {
			if s[0] == "key" {
				keys++
			} else {
				pointers++
			}
		}
		if keys == 0 || pointers == 0 {
			t.Errorf("noVNC itself sent %d keys and %d pointer events: the input did not reach it", keys, pointers)
		}
	}
	clickControl := func(t *testing.T, want, label string) {
		bx, err := eval[[]float64](p, `(() => { const b = document.getElementById('control'); b.scrollIntoView({block: 'nearest'}); const r = b.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()`)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.do(chromedp.MouseClickXY(bx[0], bx[1])); err != nil {
			t.Fatal(err)
		}
		p.waitJS("interactor "+want, `document.documentElement.dataset.interactor === '`+want+`'`)
		if got, _ := eval[string](p, `document.getElementById('control').textContent`); got != label {
			t.Errorf("the control button says %q, want %q", got, label)
		}
		if _, err := eval[bool](p, canvasJS+`.focus({preventScroll: true}); document.activeElement === `+canvasJS); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("agent", func(t *testing.T) { agentPhase(t, 1) })

	t.Run("user", func(t *testing.T) {
		clickControl(t, "user", "Hand back")
		from, sentFrom := len(srv.Messages()), len(p.sentByNoVNC())
		if err := p.input("hi", image2{300, y}, image2{400, y + 50}, image2{500, y}, "z"); err != nil {
			t.Fatal(err)
		}
		end, _, err := srv.WaitMessage(stepCtx(t), from, func(m Msg) bool {
			return m.Type == MsgKeyEvent && m.Raw[1] == 0 && binary.BigEndian.Uint32(m.Raw[4:]) == 'z'
		})
		if err != nil {
			t.Logf("noVNC sent %v", p.sentByNoVNC()[sentFrom:])
			for _, m := range srv.Messages()[from:] {
				t.Logf("the VNC server got % x", m.Raw)
			}
			t.Fatal(err)
		}
		downs := map[uint32]int{}
		leftDown, rightArea := false, false
		for _, m := range srv.Messages()[from : end+1] {
			switch m.Type {
			case MsgKeyEvent:
				if m.Raw[1] != 0 {
					downs[binary.BigEndian.Uint32(m.Raw[4:])]++
				}
			case MsgPointerEvent:
				mask, px, py := m.Raw[1], int(binary.BigEndian.Uint16(m.Raw[2:])), int(binary.BigEndian.Uint16(m.Raw[4:]))
				leftDown = leftDown || mask&1 != 0
				rightArea = rightArea || (px == 500 && py == y)
			}
		}
		for _, k := range []uint32{'h', 'i', 'z', 0xffe3} {
			if downs[k] != 1 {
				t.Errorf("key %#x went down %d times at the VNC server, want 1", k, downs[k])
			}
		}
		if !leftDown || !rightArea {
			var ps []string
			for _, m := range srv.Messages()[from : end+1] {
				if m.Type == MsgPointerEvent {
					ps = append(ps, fmt.Sprintf("%d@%d,%d", m.Raw[1], binary.BigEndian.Uint16(m.Raw[2:]), binary.BigEndian.Uint16(m.Raw[4:])))
				}
			}
			t.Errorf("pointer events %v: left button down %v, events at the right click %v", ps, leftDown, rightArea)
		}
		if got := srv.Keys(); got != "hi<Ctrl>z" {
			t.Errorf("the demo shows keys %q, want hi<Ctrl>z", got)
		}
		// The drag is drawn, and noVNC shows it.
		pen, _ := PenColour(1)
		p.waitJS("the trail in the canvas", fmt.Sprintf(`(() => {
			const d = %s.getContext('2d').getImageData(350, %d, 1, 1).data;
			return ((d[0] << 16) | (d[1] << 8) | d[2]) === %d;
		})()`, canvasJS, y+25, pen))
	})

	t.Run("handed-back", func(t *testing.T) {
		clickControl(t, "agent", "Take control")
		agentPhase(t, 2)
	})

	// Over the whole test: noVNC sent Ctrl+O and the right button, and
	// neither reached the VNC server.
	var sentO, sentRight bool
	for _, s := range p.sentByNoVNC() {
		if s[0] == "key" && (s[1] == float64('o') || s[1] == float64('O')) {
			sentO = true
		}
		if s[0] == "pointer" && int(s[1].(float64))&4 != 0 {
			sentRight = true
		}
	}
	if !sentO || !sentRight {
		t.Errorf("noVNC sent Ctrl+O: %v, the right button: %v; want both", sentO, sentRight)
	}
	for _, m := range srv.Messages() {
		if (m.Type == MsgKeyEvent || m.Type == MsgQEMU) && (binary.BigEndian.Uint32(m.Raw[4:]) == 'o' || binary.BigEndian.Uint32(m.Raw[4:]) == 'O') {
			t.Errorf("Ctrl+O reached the VNC server: % x", m.Raw)
		}
		if m.Type == MsgPointerEvent && m.Raw[1]&4 != 0 {
			t.Errorf("a right button reached the VNC server: % x", m.Raw)
		}
	}
}

// bandMatches reports whether rows [0, BandRect.Max.Y) show some band frame.
func bandMatches(region []uint32) bool {
next:
	for n := range BandPeriod {
		for y := BandRect.Min.Y; y < BandRect.Max.Y; y++ {
			for x := range Width {
				if region[y*Width+x] != BandPixel(n, x, y) {
					continue next
				}
			}
		}
		return true
	}
	return false
}

// pathRecorder is TargetResolver that remembers each request's path and query.
type pathRecorder struct {
	proxy.TargetResolver
	mu   sync.Mutex
	seen []string
}

func (r *pathRecorder) Resolve(ctx context.Context, req *upgrade.Request) (*proxy.Route, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Path+"?"+req.RawQuery)
	r.mu.Unlock()
	return r.TargetResolver.Resolve(ctx, req)
}

func (r *pathRecorder) paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestBrowserDemoSessionParams: the page drives a platform route (kind, id
// and the viewer's credential from its query, on both channels), and
// without a DevTools endpoint its Copy and Paste buttons are off and say why.
func TestBrowserDemoSessionParams(t *testing.T) {
	if testing.Short() {
		t.Skip("real browser")
	}
	teststack.Require(t, "chromium")
	noVNC := requireNoVNC(t)
	srv := startServer(t, Options{FPS: 10})
	addr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	web := httptest.NewServer(Handler(PageConfig{ListenPort: port, NoVNCDir: noVNC}))
	t.Cleanup(web.Close)
	upstream, _ := url.Parse("tcp://" + srv.Addr())
	rec := &pathRecorder{TargetResolver: proxy.TargetResolver{Upstream: upstream, Control: rfbparse.User}}
	startProxy(t, proxy.Config{Addr: addr, Resolver: rec, Policy: rfbparse.DefaultPolicy(), AllowedOrigins: []string{web.URL}})
	p := startPage(t)
	if err := p.do(chromedp.Navigate(web.URL + "/?client_id=c1&kind=browser_session&id=pbs_x&apikey=k123")); err != nil {
		t.Fatal(err)
	}
	p.waitJS("noVNC and the message channel connected",
		`document.documentElement.dataset.vnc === 'connected' && document.documentElement.dataset.messages === 'open'`)
	want := map[string]bool{
		"/v1/stream/vnc/browser_session/pbs_x?client_id=c1&apikey=k123":      false,
		"/v1/stream/messages/browser_session/pbs_x?client_id=c1&apikey=k123": false,
	}
	for _, s := range rec.paths() {
		if _, ok := want[s]; ok {
			want[s] = true
		}
	}
	for s, seen := range want {
		if !seen {
			t.Errorf("no upgrade for %s; saw %q", s, rec.paths())
		}
	}
	off, err := eval[bool](p, `document.getElementById('copy').disabled && document.getElementById('paste').disabled &&
		document.getElementById('copy').title.includes('no DevTools endpoint')`)
	if err != nil || !off {
		t.Errorf("Copy/Paste without a DevTools endpoint: disabled and explained = %v (%v)", off, err)
	}
}
