// Package browser drives real noVNC in a real headless Chromium for
// end-to-end tests: it starts Chromium with chromedp, serves the installed
// noVNC over a local HTTP server, opens noVNC pages, reads the noVNC canvas,
// and saves a screenshot and the page's console when a test fails.
//
// Everything listens and connects on 127.0.0.1 only. Tests are skipped when
// Chromium or noVNC is missing, unless VNCEDGE_REQUIRE_REAL=1.
package browser

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"vncedge/proxy/proxytest/teststack"
)

const (
	// ChromiumPath is Debian's Chromium.
	ChromiumPath = "/usr/bin/chromium"
	// NoVNCDir is where Debian's novnc package (1.3) installs noVNC.
	NoVNCDir = "/usr/share/novnc"
	// ArtifactsEnv names a directory that also receives failure screenshots,
	// so they outlive t.TempDir().
	ArtifactsEnv = "VNCEDGE_ARTIFACTS"
	// StartTimeout bounds Chromium's start and the opening of a tab.
	StartTimeout = 20 * time.Second
)

// Require skips the test (or fails it when VNCEDGE_REQUIRE_REAL=1) when
// Chromium or noVNC is not installed.
func Require(t testing.TB) {
	t.Helper()
	teststack.Require(t, "chromium")
	if _, err := os.Stat(filepath.Join(NoVNCDir, "vnc.html")); err != nil {
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("missing noVNC at %s (apt-get install novnc) and %s=1", NoVNCDir, teststack.RequireRealEnv)
		}
		t.Skipf("missing noVNC at %s (apt-get install novnc)", NoVNCDir)
	}
}

// ServeNoVNC serves NoVNCDir over HTTP on 127.0.0.1 until the test ends and
// returns the server's base URL ("http://127.0.0.1:PORT").
func ServeNoVNC(t testing.TB) string {
	t.Helper()
	Require(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(NoVNCDir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Origin returns the origin ("scheme://host:port") of a URL, as a browser
// sends it in the Origin field of a WebSocket upgrade.
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host, nil
}

// NoVNCURL returns the address of noVNC's vnc.html under base that connects
// at once, without scaling or remote resizing, to ws://host:port/path
// (noVNC 1.3 reads host, port, path, autoconnect, resize and its other
// settings such as quality from the query). extra adds or overrides
// settings.
func NoVNCURL(base, host string, port int, path string, extra url.Values) string {
	q := url.Values{}
	q.Set("host", host)
	q.Set("port", strconv.Itoa(port))
	q.Set("path", path)
	q.Set("autoconnect", "true")
	q.Set("resize", "off")
	q.Set("reconnect", "false")
	q.Set("logging", "info")
	for k, v := range extra {
		q[k] = v
	}
	return base + "/vnc.html?" + q.Encode()
}

// Browser is a headless Chromium started for one test.
type Browser struct {
	ctx context.Context
}

// Start starts a headless Chromium with a fresh profile in t.TempDir() and
// stops it when the test ends; extra adds allocator options (such as
// chromedp.Flag("ignore-certificate-errors", true) for a test certificate).
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	Require(t)
	// TempDir first: its removal then runs after Chromium has exited.
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		// Exact colours in the canvas: no colour management.
		chromedp.Flag("force-color-profile", "srgb"),
	}
	opts = append(opts, extra...)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		allocCancel()
	})
	// The first Do binds the browser's life to ctx: no timeout on ctx itself,
	// so bound the start with a watchdog instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browser: starting %s: %v", ChromiumPath, err)
		}
	case <-time.After(StartTimeout):
		cancel()
		t.Fatalf("browser: %s did not start within %v", ChromiumPath, StartTimeout)
	}
	return &Browser{ctx: ctx}
}

// Page is one browser tab.
type Page struct {
	t   testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// NewPage opens a new tab, closed when the test ends. When the test has
// failed by then, a full screenshot is written to t.TempDir() (and to
// $VNCEDGE_ARTIFACTS when set) and the page's console is logged.
func (b *Browser) NewPage(t testing.TB) *Page {
	t.Helper()
	shotDir := t.TempDir()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{t: t, ctx: ctx}
	// Subscribe before anything runs in the tab; the iterator opens the tab.
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
		<-consoleDone
	})
	t.Cleanup(func() {
		if t.Failed() {
			p.saveScreenshot(shotDir)
			p.logConsole()
		}
	})
	opened, stop := context.WithTimeout(ctx, StartTimeout)
	defer stop()
	if err := chromedp.Do(opened); err != nil {
		t.Fatalf("browser: opening a tab: %v", err)
	}
	return p
}

// Close closes the tab, and with it the page's WebSockets.
func (p *Page) Close() error {
	return chromedp.Cancel(p.ctx)
}

// Context returns the tab's chromedp context. Derive per-action timeouts from
// it with context.WithTimeout; do not cancel it.
func (p *Page) Context() context.Context { return p.ctx }

// Do runs actions in the tab with a timeout.
func (p *Page) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Console returns the console messages the page has written so far.
func (p *Page) Console() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

// unsafeName keeps file names portable.
var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (p *Page) saveScreenshot(dir string) {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("browser: failure screenshot: %v", err)
		return
	}
	name := unsafeName.ReplaceAllString(p.t.Name(), "_") + ".png"
	dirs := []string{dir}
	if a := os.Getenv(ArtifactsEnv); a != "" {
		dirs = append(dirs, a)
	}
	for _, d := range dirs {
		path := filepath.Join(d, name)
		err := os.MkdirAll(d, 0o755)
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			p.t.Logf("browser: writing failure screenshot: %v", err)
			continue
		}
		p.t.Logf("browser: failure screenshot: %s", path)
	}
}

func (p *Page) logConsole() {
	for _, m := range p.Console() {
		p.t.Logf("browser console: %s", m)
	}
}

// ConnectedJS is true once noVNC 1.3's UI shows a live connection.
const ConnectedJS = `document.documentElement.classList.contains('noVNC_connected')`

// FailedJS is true once noVNC 1.3's UI shows an error status, as after a
// refused or failed connection.
const FailedJS = `(document.getElementById('noVNC_status') || {classList: {contains: () => false}}).classList.contains('noVNC_status_error')`

// statusJS is the text of noVNC's status bar.
const statusJS = `(document.getElementById('noVNC_status') || {}).textContent || ''`

// openNoVNC navigates to a noVNC page and waits, reacting to DOM changes,
// until noVNC is connected or shows an error. It returns whether it
// connected, and the status text.
func (p *Page) openNoVNC(pageURL string, timeout time.Duration) (connected bool, status string, err error) {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		return false, "", fmt.Errorf("opening %s: %w", pageURL, err)
	}
	state, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(`+ConnectedJS+`) ? 'connected' : (`+FailedJS+`) ? 'failed' : ''`,
		chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(timeout)))
	status, _ = chromedp.Run(ctx, chromedp.Evaluate[string](statusJS))
	if err != nil {
		return false, status, fmt.Errorf("waiting for noVNC to connect or fail (status %q): %w", status, err)
	}
	return state == "connected", status, nil
}

// OpenNoVNC navigates to a noVNC page and waits, reacting to DOM changes,
// until noVNC reports the connection up. An error status fails at once.
func (p *Page) OpenNoVNC(pageURL string, timeout time.Duration) error {
	ok, status, err := p.openNoVNC(pageURL, timeout)
	if err == nil && !ok {
		err = fmt.Errorf("noVNC did not connect: %q", status)
	}
	return err
}

// OpenNoVNCFailing navigates to a noVNC page that must not connect, waits
// until noVNC shows an error, and returns the status text.
func (p *Page) OpenNoVNCFailing(pageURL string, timeout time.Duration) (string, error) {
	ok, status, err := p.openNoVNC(pageURL, timeout)
	if err == nil && ok {
		err = errors.New("noVNC connected")
	}
	return status, err
}

// CanvasJS finds the canvas noVNC 1.3 draws the remote desktop on: RFB puts
// a screen div holding one canvas into #noVNC_container.
const CanvasJS = `document.querySelector('#noVNC_container canvas')`

// canvasPoll returns the noVNC canvas as [width, height, base64 RGBA] once
// every sample [x, y, 0xRRGGBB] matches it within tol per channel (at once
// when there are no samples), or false. It reads the whole canvas only when
// the samples match.
const canvasPoll = `(samples, tol) => {
	const c = ` + CanvasJS + `;
	if (!c || c.width === 0 || c.height === 0) return false;
	const ctx = c.getContext('2d');
	for (const [x, y, rgb] of samples) {
		if (x >= c.width || y >= c.height) return false;
		const d = ctx.getImageData(x, y, 1, 1).data;
		if (Math.abs(d[0] - ((rgb >> 16) & 255)) > tol ||
			Math.abs(d[1] - ((rgb >> 8) & 255)) > tol ||
			Math.abs(d[2] - (rgb & 255)) > tol) return false;
	}
	const d = ctx.getImageData(0, 0, c.width, c.height).data;
	let s = '';
	for (let i = 0; i < d.length; i += 0x8000) {
		s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
	}
	return [c.width, c.height, btoa(s)];
}`

// Sample is a canvas pixel the poll waits for: its 0xRRGGBB colour at X, Y.
type Sample struct {
	X, Y int
	RGB  uint32
}

// Canvas waits, polling every 20 ms until timeout, until every
// sample matches the noVNC canvas within tolerance in each colour channel
// (0: exactly), and returns the canvas converted to the TrueColor32 layout
// of rfbclient and teststack (4 bytes a pixel, 0xRRGGBB little-endian: B, G,
// R, 0) with its size. With no samples it returns the canvas as soon as it
// has a size.
func (p *Page) Canvas(timeout time.Duration, tolerance int, samples ...Sample) (fb []byte, w, h int, err error) {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	// The samples go into the source: chromedp v0.23.0 passes an empty
	// array given to WithPollingArgs as undefined (omitempty on the
	// argument's JSON value).
	var js strings.Builder
	js.WriteString("() => (" + canvasPoll + ")([")
	for i, s := range samples {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, "[%d,%d,%d]", s.X, s.Y, s.RGB)
	}
	fmt.Fprintf(&js, "], %d)", tolerance)
	// An interval, not animation frames: those stop in a tab that is not
	// in front.
	res, err := chromedp.Run(ctx, chromedp.PollFunction[[]any](js.String(),
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("reading the noVNC canvas: %w", err)
	}
	if len(res) != 3 {
		return nil, 0, 0, fmt.Errorf("reading the noVNC canvas: result %v", res)
	}
	wf, _ := res[0].(float64)
	hf, _ := res[1].(float64)
	b64, _ := res[2].(string)
	rgba, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("reading the noVNC canvas: %w", err)
	}
	w, h = int(wf), int(hf)
	if w <= 0 || h <= 0 || len(rgba) != w*h*4 {
		return nil, 0, 0, fmt.Errorf("reading the noVNC canvas: %d bytes for %dx%d", len(rgba), w, h)
	}
	return RGBAToTrueColor32(rgba), w, h, nil
}

// RGBAToTrueColor32 converts canvas ImageData bytes (R, G, B, A) to the
// TrueColor32 framebuffer layout (B, G, R, 0).
func RGBAToTrueColor32(rgba []byte) []byte {
	fb := make([]byte, len(rgba))
	for i := 0; i+4 <= len(rgba); i += 4 {
		fb[i], fb[i+1], fb[i+2], fb[i+3] = rgba[i+2], rgba[i+1], rgba[i], 0
	}
	return fb
}

// sentRecorder wraps WebSocket.prototype.send so that every byte the page
// sends over a WebSocket is kept in window.__vncedgeSent.
const sentRecorder = `(() => {
	const sent = [];
	Object.defineProperty(window, '__vncedgeSent', {value: sent});
	const send = WebSocket.prototype.send;
	WebSocket.prototype.send = function (data) {
		if (data instanceof ArrayBuffer) {
			sent.push(new Uint8Array(data.slice(0)));
		} else if (ArrayBuffer.isView(data)) {
			sent.push(new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
		} else if (typeof data === 'string') {
			sent.push(new TextEncoder().encode(data));
		}
		return send.call(this, data);
	};
})()`

// noJPEG drops the JPEG quality-level pseudo-encodings (−32 … −23) from the
// SetEncodings messages the page sends. noVNC always sends one, and a TigerVNC
// server then encodes high-entropy areas as Tight JPEG, even its "lossless"
// refresh (JPEG quality 100: channel errors of ±1 after decoding); without
// one it uses lossless Tight, and the canvas can be compared pixel for pixel.
// noVNC 1.3 sends each client message in a WebSocket message of its own.
const noJPEG = `(() => {
	const send = WebSocket.prototype.send;
	WebSocket.prototype.send = function (data) {
		let b = null;
		if (data instanceof ArrayBuffer) {
			b = new Uint8Array(data);
		} else if (ArrayBuffer.isView(data)) {
			b = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
		}
		if (b && b.length >= 4 && b[0] === 2 && b.length === 4 + 4 * ((b[2] << 8) | b[3])) {
			const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
			const keep = [];
			for (let i = 4; i < b.length; i += 4) {
				const e = v.getInt32(i);
				if (e < -32 || e > -23) keep.push(e);
			}
			const out = new Uint8Array(4 + 4 * keep.length);
			const o = new DataView(out.buffer);
			o.setUint8(0, 2);
			o.setUint16(2, keep.length);
			keep.forEach((e, i) => o.setInt32(4 + 4 * i, e));
			data = out;
		}
		return send.call(this, data);
	};
})()`

// NoJPEG makes pages opened afterwards in this tab send SetEncodings without
// the JPEG quality-level pseudo-encodings, so that a TigerVNC server sends
// only lossless encodings. Call it before navigating (and after
// RecordWebSocketSends, to record what is really sent).
func (p *Page) NoJPEG() error {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: noJPEG})
	return err
}

// RecordWebSocketSends makes every page opened afterwards in this tab keep a
// copy of the bytes it sends over WebSockets, for SentBytes. Call it before
// navigating.
func (p *Page) RecordWebSocketSends() error {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: sentRecorder})
	return err
}

// SentBytes returns everything the page has sent over WebSockets so far,
// concatenated, as recorded after RecordWebSocketSends.
func (p *Page) SentBytes() ([]byte, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	b64, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const sent = window.__vncedgeSent;
		if (!sent) throw new Error('WebSocket sends are not recorded');
		let s = '';
		for (const a of sent) {
			for (let i = 0; i < a.length; i += 0x8000) {
				s += String.fromCharCode.apply(null, a.subarray(i, i + 0x8000));
			}
		}
		return btoa(s);
	})()`))
	if err != nil {
		return nil, fmt.Errorf("reading the page's WebSocket sends: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.Join(errors.New("reading the page's WebSocket sends"), err)
	}
	return b, nil
}
