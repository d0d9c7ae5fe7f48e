package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"vncedge/proxy"

	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// rawGet sends one raw HTTP request (target as given, not cleaned by a
// client library) and returns the response.
func rawGet(t *testing.T, conn net.Conn, method, target string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(conn, method+" "+target+" HTTP/1.1\r\nHost: "+conn.RemoteAddr().String()+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

func webDir(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"index.html":     "<title>index</title>",
		"app/rfb.js":     "export default 1;",
		".secret":        "s3cret",
		"empty/none.txt": "x",
		"app/index.html": "<title>app</title>",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "outside.txt")
	if err := os.WriteFile(outside, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWebDir: --web serves files on the viewer port (index.html for a
// directory, HEAD without a body), refuses dot-files, listings, traversal
// and symlinks out of the directory, and upgrades still work on that port.
func TestWebDir(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(webDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)

	cases := []struct {
		method, target string
		status         int
		body           string
	}{
		{"GET", "/", 200, "<title>index</title>"},
		{"GET", "/app/rfb.js", 200, "export default 1;"},
		{"GET", "/app/", 200, "<title>app</title>"},
		{"HEAD", "/app/rfb.js", 200, ""},
		{"GET", "/.secret", 404, ""},
		{"GET", "/empty/", 404, ""},
		{"GET", "/link.txt", 404, ""},
		{"GET", "/../../../../etc/passwd", 404, ""},
		{"GET", "/%2e%2e/%2e%2e/etc/passwd", 404, ""},
		{"GET", "/nope.html", 404, ""},
	}
	for _, c := range cases {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		resp := rawGet(t, conn, c.method, c.target)
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != c.status || c.status == 200 && string(body) != c.body {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.target, resp.StatusCode, body, c.status, c.body)
		}
		if c.status != 200 && strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "outside") || strings.Contains(string(body), "root:") {
			t.Errorf("%s %s leaked a file: %q", c.method, c.target, body)
		}
		if c.target == "/app/rfb.js" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("rfb.js Content-Type %q", resp.Header.Get("Content-Type"))
		}
	}
	// The same port still upgrades.
	ws := dialWS(t, addr, "/websockify")
	if _, _, err := rfbclient.Fetch(ws, rfbclient.Options{}); err != nil {
		t.Fatalf("upgrade next to --web: %v", err)
	}
}

// TestTLSListener: a viewer over TLS (a real TLS client, wss://) reaches a
// real Xvnc through vncedge, and --web answers over https on that port too.
func TestTLSListener(t *testing.T) {
	x := teststack.StartXvnc(t)
	dir := t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if cfg.Web, err = proxy.WebDir(webDir(t)); err != nil {
		t.Fatal(err)
	}
	srv, addr := startProxy(t, cfg)
	_, port, _ := net.SplitHostPort(addr)

	// A plain-text client gets no WebSocket: the handshake fails.
	if _, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/websockify", []string{"binary"}, nil); err == nil {
		t.Error("a ws:// (plain) viewer was upgraded on the TLS listener")
	}

	ws, err := rfbclient.Dialer{Protocols: []string{"binary"}, TLSConfig: &tls.Config{RootCAs: pool}}.Dial(ctxT(t), "wss://localhost:"+port+"/websockify")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	init, fb, err := rfbclient.Fetch(ws, rfbclient.Options{})
	if err != nil {
		t.Fatalf("RFB over wss:// to Xvnc: %v", err)
	}
	if init.Width == 0 || len(fb) != int(init.Width)*int(init.Height)*4 {
		t.Fatalf("framebuffer %d bytes for %dx%d", len(fb), init.Width, init.Height)
	}
	if st := srv.Stats(); st.Active < 1 {
		t.Errorf("stats %+v: the TLS viewer is not counted", st)
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get((&url.URL{Scheme: "https", Host: "localhost:" + port, Path: "/"}).String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "<title>index</title>" {
		t.Errorf("https GET /: %d %q", resp.StatusCode, body)
	}
}

// TestUnixTarget: a unix:// upstream (websockify's --unix-target) reaches a
// real Xvnc listening on a unix socket.
func TestUnixTarget(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vnc.sock")
	teststack.StartXvnc(t, "-rfbunixpath", sock)
	u, err := proxy.ParseTarget("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: &proxy.TargetResolver{Upstream: u, Control: rfbparse.User}, Policy: rfbparse.DefaultPolicy()})
	ws := dialWS(t, addr, "/websockify")
	init, fb, err := rfbclient.Fetch(ws, rfbclient.Options{})
	if err != nil {
		t.Fatalf("RFB to Xvnc on %s: %v", sock, err)
	}
	if len(fb) != int(init.Width)*int(init.Height)*4 {
		t.Fatalf("framebuffer %d bytes for %dx%d", len(fb), init.Width, init.Height)
	}
	for _, bad := range []string{"unix://host/x.sock", "unix://", "unix:relative.sock"} {
		if _, err := proxy.ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
	// A resolver's answer (sessions file, token, control plane) may not
	// aim vncedge at a local socket.
	if _, err := proxy.ParseUpstream("unix://" + sock); err == nil {
		t.Error("ParseUpstream accepted a unix socket")
	}
}

// TestNoVNCOverTLSAndWeb is the websockify user's setup on a VM: vncedge
// serves noVNC itself (--web) over TLS (--cert/--key), and real noVNC in
// Chromium loads the page over https and connects over wss:// on the same
// origin to a real Xvnc.
func TestNoVNCOverTLSAndWeb(t *testing.T) {
	browser.Require(t)
	x := teststack.StartXvnc(t)
	dir := t.TempDir()
	if _, err := teststack.WriteTestCert(dir); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if cfg.Web, err = proxy.WebDir(browser.NoVNCDir); err != nil {
		t.Fatal(err)
	}
	srv, addr := startProxy(t, cfg)
	port := portOf(t, addr)
	b := browser.Start(t, chromedp.Flag("ignore-certificate-errors", true))
	p := b.NewPage(t)
	page := browser.NoVNCURL("https://127.0.0.1:"+strconv.Itoa(port), "127.0.0.1", port, "websockify", url.Values{"encrypt": {"1"}})
	if err := p.OpenNoVNC(page, browserStepTimeout); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Active < 1 {
		t.Errorf("stats %+v: no live session", st)
	}
}
