package proxy_test

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/proxy/record"
	"vncedge/rfbparse"
)

// TestReplayInNoVNC records a real noVNC session (Chromium, through
// vncedge, to real Xvnc showing a noise image) and replays the file into a
// second noVNC page: the replayed canvas equals the live canvas pixel for
// pixel, also when the replay starts at an offset (fast-forward).
func TestReplayInNoVNC(t *testing.T) {
	teststack.Require(t, "Xvnc", "chromium", "xwud")
	browser.Require(t)
	const w, h, seed = 320, 240, 31
	x := teststack.StartXvnc(t)
	x0, y0 := x.ShowNoise(t, w, h, seed)
	base := browser.ServeNoVNC(t)
	b := browser.Start(t)
	var samples []browser.Sample
	for i := 0; i < w*h; i += w*h/64 + 7 {
		samples = append(samples, browser.Sample{X: x0 + i%w, Y: y0 + i/w, RGB: teststack.NoisePixel(seed, i)})
	}
	samples = append(samples, browser.Sample{X: x0 + w - 1, Y: y0 + h - 1, RGB: teststack.NoisePixel(seed, w*h-1)})

	rc := newRecorder(t, record.Config{})
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.Recorder = rc
	_, live := noVNCPage(t, b, base, cfg, true)
	liveFB := exactNoise(t, live, samples, x0, y0, w, h, seed)
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	rc.Close() // the viewer left: its recording is written out
	files, _ := filepath.Glob(filepath.Join(rcDir(t, rc), "*", "*", "*", "*.vncrec"))
	if len(files) != 1 {
		t.Fatalf("%d recordings, want 1", len(files))
	}
	s, err := record.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := record.NoVNCFormat(s.PixelFormat); err != nil {
		t.Fatalf("noVNC's own session: %v", err)
	}
	var logBuf syncBuffer
	origin, err := browser.Origin(base)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(record.NewReplayer(s, record.ReplayOptions{Speed: 4, AllowedOrigins: []string{origin},
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}))
	t.Cleanup(hs.Close)
	for _, tc := range []struct{ path, offset string }{{"replay", "offset=0s"}, {"replay%3Foffset%3D0.2", "offset=200ms"}} {
		path := tc.path
		t.Run(path, func(t *testing.T) {
			p := b.NewPage(t)
			if err := p.OpenNoVNC(browser.NoVNCURL(base, "127.0.0.1", portOf(t, hs.Listener.Addr().String()), path, nil), browserStepTimeout); err != nil {
				t.Fatal(err)
			}
			fb := exactNoise(t, p, samples, x0, y0, w, h, seed)
			if !bytes.Equal(fb, liveFB) {
				diff := 0
				for i := 0; i+4 <= len(fb) && i+4 <= len(liveFB); i += 4 {
					if !bytes.Equal(fb[i:i+4], liveFB[i:i+4]) {
						diff++
					}
				}
				t.Fatalf("replayed canvas differs from the live canvas in %d pixels (sizes %d, %d)", diff, len(fb), len(liveFB))
			}
			if !strings.Contains(logBuf.String(), tc.offset) {
				t.Fatalf("replay log lacks %s:\n%s", tc.offset, logBuf.String())
			}
		})
	}
}

// exactNoise waits until the page's canvas shows the noise image exactly
// and returns the canvas.
func exactNoise(t *testing.T, p *browser.Page, samples []browser.Sample, x0, y0, w, h int, seed uint32) []byte {
	t.Helper()
	deadline := time.Now().Add(browserStepTimeout)
	for {
		fb, fbW, _, err := p.Canvas(time.Until(deadline), 0, samples...)
		if err != nil {
			t.Fatal(err)
		}
		if noiseError(fb, fbW, x0, y0, w, h, seed) == 0 {
			return fb
		}
		if time.Now().After(deadline) {
			t.Fatal("the noise image never showed exactly")
		}
	}
}
