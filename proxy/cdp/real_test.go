package cdp

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// testServer serves /page?text=T: a paragraph holding T, a textarea, a text
// input and a password input.
func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>
<p id="t">%s</p>
<textarea id="ta"></textarea>
<input id="in" type="text" value="">
<input id="pw" type="password" value="hunter2-secret">
</body></html>`, html.EscapeString(r.URL.Query().Get("text")))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func pageURL(srv *httptest.Server, text string) string {
	return srv.URL + "/page?text=" + url.QueryEscape(text)
}

// selectParagraph selects the paragraph's text in p and returns what the
// page itself reports as selected.
func (p *page) selectParagraph() string {
	p.d.t.Helper()
	var got string
	p.mustEval(`(() => {
  const r = document.createRange();
  r.selectNodeContents(document.getElementById("t"));
  const s = window.getSelection();
  s.removeAllRanges();
  s.addRange(r);
  return s.toString();
})()`, &got)
	return got
}

// state is what probeJS says about p.
func (p *page) state() (visible, focused bool) {
	p.d.t.Helper()
	var v struct{ Visible, Focused bool }
	p.mustEval(probeJS, &v)
	return v.Visible, v.Focused
}

// activate brings p to the front and waits until it is visible and focused.
func (p *page) activate() {
	p.d.t.Helper()
	p.d.must("", "Target.activateTarget", map[string]any{"targetId": p.targetID}, nil)
	eventually(p.d.t, 5*time.Second, "page becomes visible and focused", func() error {
		if v, f := p.state(); !v || !f {
			return fmt.Errorf("visible=%v focused=%v", v, f)
		}
		return nil
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestClient(t *testing.T, endpoint string, opts Options) *Client {
	c := New(endpoint, opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRealChromium runs the scenarios one after another on one headless
// Chromium; each opens its own pages and brings them to the front.
func TestRealChromium(t *testing.T) {
	t.Parallel()
	b := startChromium(t, "0")
	srv := testServer(t)
	d := newDriver(t, b)
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *browser, *httptest.Server, *driver)
	}{
		{"SelectedText", testSelectedText},
		{"VisiblePage", testVisiblePage},
		{"InsertText", testInsertText},
		{"Concurrent", testConcurrent},
		{"NoVisiblePage", testNoVisiblePage},
		{"Closed", testClosedClient},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, b, srv, d) })
	}
}

func testSelectedText(t *testing.T, b *browser, srv *httptest.Server, d *driver) {
	const text = "Hello, selected wörld ✓ <b>&amp;"
	p := d.open(pageURL(srv, text), false)
	p.activate()
	if got := p.selectParagraph(); got != text {
		t.Fatalf("page selected %q, want %q", got, text)
	}
	c := newTestClient(t, b.wsURL, Options{})
	ctx := testCtx(t)

	got, err := c.SelectedText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != text {
		t.Fatalf("SelectedText = %q, want %q", got, text)
	}

	// A selection inside a focused text field is read from the field.
	p.mustEval(`(() => { const ta = document.getElementById("ta");
  ta.value = "abc field text xyz"; ta.focus(); ta.setSelectionRange(4, 14); return true; })()`, new(bool))
	if got, err = c.SelectedText(ctx); err != nil || got != "field text" {
		t.Fatalf("SelectedText in textarea = %q, %v; want %q", got, err, "field text")
	}

	// A focused password field never yields its value.
	p.mustEval(`(() => { const pw = document.getElementById("pw");
  pw.focus(); pw.select(); return true; })()`, new(bool))
	if got, err = c.SelectedText(ctx); err != nil || got != "" {
		t.Fatalf("SelectedText in password field = %q, %v; want \"\"", got, err)
	}
}

func testVisiblePage(t *testing.T, b *browser, srv *httptest.Server, d *driver) {
	pages := map[string]*page{}
	texts := map[string]string{}
	for i, bg := range []bool{false, true, true} {
		text := fmt.Sprintf("text of page %d", i)
		p := d.open(pageURL(srv, text), bg)
		p.selectParagraph()
		pages[p.targetID], texts[p.targetID] = p, text
	}
	c := newTestClient(t, b.wsURL, Options{})
	ctx := testCtx(t)

	// Target.getTargets order of these pages: the check below must not
	// succeed just by taking the first one.
	var list struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	d.must("", "Target.getTargets", nil, &list)
	var order []string
	for _, ti := range list.TargetInfos {
		if pages[ti.TargetID] != nil {
			order = append(order, ti.TargetID)
		}
	}
	if len(order) != 3 {
		t.Fatalf("getTargets lists %d of our 3 pages", len(order))
	}
	// Show the last listed page, then the first: SelectedText follows.
	for _, id := range []string{order[2], order[0], order[1]} {
		p := pages[id]
		p.activate()
		for other, q := range pages {
			if v, f := q.state(); other != id && (v || f) {
				t.Fatalf("background page visible=%v focused=%v", v, f)
			}
		}
		got, err := c.SelectedText(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != texts[id] {
			t.Fatalf("SelectedText = %q, want the visible page's %q", got, texts[id])
		}
	}
}

// testNoVisiblePage minimises the window: no page is visible or focused,
// and the most recently active page (by /json/list) is read, whatever its
// place in Target.getTargets.
func testNoVisiblePage(t *testing.T, b *browser, srv *httptest.Server, d *driver) {
	pages := map[string]*page{}
	texts := map[string]string{}
	for i := range 2 {
		text := fmt.Sprintf("minimised page %d", i)
		p := d.open(pageURL(srv, text), false)
		p.selectParagraph()
		pages[p.targetID], texts[p.targetID] = p, text
	}
	var list struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	d.must("", "Target.getTargets", nil, &list)
	var last string // our page listed last by getTargets
	for _, ti := range list.TargetInfos {
		if pages[ti.TargetID] != nil {
			last = ti.TargetID
		}
	}
	pages[last].activate()

	var w struct {
		WindowID int `json:"windowId"`
	}
	d.must("", "Browser.getWindowForTarget", map[string]any{"targetId": last}, &w)
	setState := func(state string) error {
		return d.call("", "Browser.setWindowBounds", map[string]any{
			"windowId": w.WindowID, "bounds": map[string]any{"windowState": state}}, nil)
	}
	if err := setState("minimized"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := setState("normal"); err != nil {
			t.Errorf("restore window: %v", err)
		}
	})
	for _, p := range pages {
		eventually(t, 5*time.Second, "page hidden", func() error {
			if v, f := p.state(); v || f {
				return fmt.Errorf("visible=%v focused=%v", v, f)
			}
			return nil
		})
	}
	c := newTestClient(t, b.wsURL, Options{})
	got, err := c.SelectedText(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != texts[last] {
		t.Fatalf("SelectedText = %q, want the last active page's %q", got, texts[last])
	}
}

func testInsertText(t *testing.T, b *browser, srv *httptest.Server, d *driver) {
	d.open(pageURL(srv, "other page"), false).selectParagraph()
	p := d.open(pageURL(srv, "paste here"), false)
	p.activate()
	p.mustEval(`(() => { const ta = document.getElementById("ta");
  ta.value = "before:"; ta.focus(); ta.setSelectionRange(7, 7); return true; })()`, new(bool))

	c := newTestClient(t, b.wsURL, Options{})
	ctx := testCtx(t)
	const text = "pasted — ünïcode ✓ 🙂\nsecond line\t\"quoted\""
	if err := c.InsertText(ctx, text); err != nil {
		t.Fatal(err)
	}
	var got string
	p.mustEval(`document.getElementById("ta").value`, &got)
	if want := "before:" + text; got != want {
		t.Fatalf("textarea holds %q, want %q", got, want)
	}
	if err := c.InsertText(ctx, ""); err != nil {
		t.Fatalf("empty InsertText: %v", err)
	}
}

func TestBrowserRestart(t *testing.T) {
	t.Parallel()
	b := startChromium(t, "0")
	c := newTestClient(t, b.httpURL(), Options{DialTimeout: 2 * time.Second, CallTimeout: 2 * time.Second})
	ctx := testCtx(t)
	if _, err := c.SelectedText(ctx); err != nil {
		t.Fatalf("before restart: %v", err)
	}

	b.kill()
	start := time.Now()
	_, err := c.SelectedText(ctx)
	if err == nil {
		t.Fatal("SelectedText on a killed browser succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("error took %v, want within the timeouts", took)
	}
	t.Logf("closed browser: %v after %v", err, time.Since(start))
	if err := c.InsertText(ctx, "x"); err == nil {
		t.Fatal("InsertText on a killed browser succeeded")
	}

	// Same port, new browser id: /json/version discovery finds it.
	b2 := startChromium(t, b.port)
	srv := testServer(t)
	newDriver(t, b2).open(pageURL(srv, "after restart"), false).selectParagraph()
	got, err := c.SelectedText(ctx)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got != "after restart" {
		t.Fatalf("after restart SelectedText = %q", got)
	}
}

func testConcurrent(t *testing.T, b *browser, srv *httptest.Server, d *driver) {
	d.open(pageURL(srv, "background page"), false).selectParagraph()
	const text = "many readers at once"
	p := d.open(pageURL(srv, text), false)
	p.selectParagraph()
	p.activate()

	c := newTestClient(t, b.wsURL, Options{})
	ctx := testCtx(t)
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			<-start
			got, err := c.SelectedText(ctx)
			if err == nil && got != text {
				err = fmt.Errorf("got %q", got)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// One connection, every page attached once.
	var list struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	d.must("", "Target.getTargets", nil, &list)
	want := 0
	for _, ti := range list.TargetInfos {
		if userPage(ti) {
			want++
		}
	}
	c.mu.Lock()
	cn := c.cn
	c.mu.Unlock()
	// Attaches to pages not chosen may still be completing in the
	// background: wait for them, the count must then be exactly one each.
	eventually(t, 5*time.Second, "one session per page", func() error {
		cn.mu.Lock()
		sessions, attaching := len(cn.sessions), len(cn.attaching)
		cn.mu.Unlock()
		if attaching != 0 || sessions != want {
			return fmt.Errorf("%d cached sessions, %d attaching, want %d", sessions, attaching, want)
		}
		return nil
	})
}

func testClosedClient(t *testing.T, b *browser, _ *httptest.Server, _ *driver) {
	c := New(b.wsURL, Options{})
	ctx := testCtx(t)
	if _, err := c.SelectedText(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SelectedText(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
