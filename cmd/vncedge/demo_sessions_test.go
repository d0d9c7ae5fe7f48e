package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"vncedge/cmd/vncedge/demo"
	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/teststack"
)

// TestSessionsDemoPage: `vncedge demo --sessions FILE` (what make
// run-sessions runs) serves the viewer page for the file's browser session;
// in a real Chromium it connects both channels with the file's API key, takes
// control, types into Xvnc (xev sees it), copies the remote browser's
// selection and pastes into it over CDP.
func TestSessionsDemoPage(t *testing.T) {
	if testing.Short() {
		t.Skip("real stack")
	}
	teststack.Require(t, "Xvnc")
	requireTool(t, "xev", "x11-utils")
	browser.Require(t)
	web := demo.WebDir()
	if web == "" {
		t.Fatal("the demo's web directory is not beside the test source")
	}
	if _, err := os.Stat(filepath.Join(web, "node_modules", "@novnc", "novnc", "core", "rfb.js")); err != nil {
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("the demo page needs @novnc/novnc in %s (make web) and %s=1", web, teststack.RequireRealEnv)
		}
		t.Skipf("the demo page needs @novnc/novnc in %s: make web", web)
	}
	x := teststack.StartXvnc(t)
	keys := startXev(t, x)
	keys.waitReady(t, directClient(t, x.Addr()))
	rb := startRemoteBrowser(t)
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o_demo\n  api_keys: [{key: watcher, role: viewer}, demo-key]\nsessions:\n" +
		"- {kind: task, id: t1, organization: o_demo, upstream: 'tcp://" + x.Addr() + "'}\n" +
		"- {kind: browser_session, id: pbs_demo, organization: o_demo, upstream: 'tcp://" + x.Addr() + "', cdp_url: '" + rb.devtools + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "demo", "--sessions", f)
	page := browser.Start(t).NewPage(t)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := page.Do(20*time.Second, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait := func(what, js string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(page.Context(), 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingMutation())); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	step("open the page", chromedp.Navigate("http://"+p.admin+"/?apikey=demo-key"))
	wait("both channels, agent in control", `document.documentElement.dataset.vnc === 'connected' && document.documentElement.dataset.interactor === 'agent'`)
	click := func(id string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(page.Context(), 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const b = document.getElementById('`+id+`'); b.click(); return !b.disabled })()`)); err != nil {
			t.Fatalf("clicking #%s: %v", id, err)
		}
	}
	click("control")
	wait("user in control", `document.documentElement.dataset.interactor === 'user'`)
	typeIn(t, page, `document.querySelector('#screen canvas')`, "h")
	keys.expect(t, 'h')
	click("copy")
	wait("the remote selection in the clipboard box", `document.getElementById('clip').value === `+jsString(rb.text))
	ctx, cancel := context.WithTimeout(page.Context(), 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { document.getElementById('clip').value = 'from the demo page'; return true })()`)); err != nil {
		t.Fatal(err)
	}
	click("paste")
	rb.waitTitle(t, "pasted:from the demo page")
}

func jsString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			b = append(b, '\\', byte(r))
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
