package proxy_test

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// TestViewerRoleNoVNCLossless: real noVNC in Chromium on a viewer-role VNC
// channel (sessions file) against real Xvnc. noVNC asks for Tight and JPEG
// first; the viewer-role channel's SetEncodings keeps only encodings the
// server stream's filter frames, so TigerVNC falls back to a lossless one
// and the desktop arrives pixel-exact — a Tight rectangle would have ended
// the session (fail closed), a misframed one would garble the canvas.
// Hextile must be among them: with Raw alone TigerVNC sends Raw, which
// Debian's noVNC 1.3 draws transparent (its Raw decoder sets alpha from
// the start of its queue, not at the rectangle: the canvas stays empty).
func TestViewerRoleNoVNCLossless(t *testing.T) {
	teststack.Require(t, "Xvnc", "chromium", "xwud")
	browser.Require(t)
	const w, h, seed = 320, 240, 31
	x := teststack.StartXvnc(t)
	x0, y0 := x.ShowNoise(t, w, h, seed)
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
		"- {kind: browser_session, id: pbs_1, organization: o1, control: user, upstream: 'tcp://" + x.Addr() + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	base := browser.ServeNoVNC(t)
	origin, err := browser.Origin(base)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy(), AllowedOrigins: []string{origin}})
	b := browser.Start(t)
	p := b.NewPage(t)
	path := "v1/stream/vnc/browser_session/pbs_1?client_id=v1&apikey=kv"
	if err := p.OpenNoVNC(browser.NoVNCURL(base, "127.0.0.1", portOf(t, addr), path, url.Values{"quality": {"2"}}), browserStepTimeout); err != nil {
		t.Fatal(err)
	}
	var samples []browser.Sample
	for _, i := range []int{0, 1, w - 1, w * (h - 1), w*h - 1} {
		samples = append(samples, browser.Sample{X: x0 + i%w, Y: y0 + i/w, RGB: teststack.NoisePixel(seed, i)})
	}
	deadline := time.Now().Add(browserStepTimeout)
	for {
		fb, fbW, fbH, err := p.Canvas(time.Until(deadline), 0, samples...)
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
		if worst == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a viewer-role noVNC canvas is off by %d per channel: not lossless", worst)
		}
	}
}
