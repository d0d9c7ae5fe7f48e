package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
)

// This file holds the real components the platform matrix shares: one Xvnc
// with xev watching its root window (the server-side truth of which keys
// arrived), and one remote Chromium (the browser session's browser) whose
// DevTools endpoint is every route's cdp_url.

// requireTool skips (or fails under VNCEDGE_REQUIRE_REAL=1) without tool.
func requireTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err == nil {
		return
	}
	if os.Getenv(teststack.RequireRealEnv) == "1" {
		t.Fatalf("missing %s (apt-get install %s) and %s=1", tool, pkg, teststack.RequireRealEnv)
	}
	t.Skipf("missing %s (apt-get install %s)", tool, pkg)
}

// xevKeys follows `xev -root -event keyboard` on an Xvnc display: the
// keysyms of KeyPress events, in the order the X server delivered them.
type xevKeys struct {
	ch chan uint32
}

var xevKeysym = regexp.MustCompile(`keysym 0x([0-9a-f]+),`)

func startXev(t *testing.T, x *teststack.Xvnc) *xevKeys {
	t.Helper()
	requireTool(t, "xev", "x11-utils")
	cmd := exec.Command("xev", "-root", "-event", "keyboard")
	cmd.Env = append(os.Environ(), "DISPLAY="+x.DisplayName())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	k := &xevKeys{ch: make(chan uint32, 4096)}
	go func() {
		sc := bufio.NewScanner(out)
		press := false
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "KeyPress event"):
				press = true
			case strings.HasPrefix(l, "KeyRelease event"):
				press = false
			}
			if m := xevKeysym.FindStringSubmatch(l); m != nil && press {
				v, _ := strconv.ParseUint(m[1], 16, 32)
				k.ch <- uint32(v)
				press = false
			}
		}
	}()
	return k
}

// expect waits for a press of want and returns the presses before it.
func (k *xevKeys) expect(t *testing.T, want uint32) []uint32 {
	t.Helper()
	var before []uint32
	timeout := time.After(15 * time.Second)
	for {
		select {
		case got := <-k.ch:
			if got == want {
				return before
			}
			before = append(before, got)
		case <-timeout:
			t.Fatalf("xev saw no press of %#x (saw %#x)", want, before)
			return nil
		}
	}
}

// directClient connects to Xvnc without vncedge.
func directClient(t *testing.T, addr string) *rfbclient.Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl, err := rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// waitXevReady presses a probe key through a direct connection until xev
// reports one: xev selects its events some time after it starts.
func (k *xevKeys) waitReady(t *testing.T, direct *rfbclient.Client) {
	t.Helper()
	const probe = 0xffc9 // F12
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = direct.KeyEvent(true, probe)
		_ = direct.KeyEvent(false, probe)
		select {
		case got := <-k.ch:
			if got == probe {
				for len(k.ch) > 0 { // later probes
					<-k.ch
				}
				return
			}
		case <-time.After(200 * time.Millisecond): // a retry period, not synchronisation
		}
	}
	t.Fatal("xev never reported a key pressed on its display")
}

// remotePage is the browser session's page: an editable text, focused and
// all selected; typing (CDP Input.insertText) replaces it and the page puts
// the new text in its title and selects it again.
const remotePage = `<!doctype html><meta charset="utf-8"><title>loading</title><div id=e contenteditable>remote selection ✓</div>
<script>
const e = document.getElementById('e');
function sel() { e.focus(); const r = document.createRange(); r.selectNodeContents(e); const s = getSelection(); s.removeAllRanges(); s.addRange(r); }
e.addEventListener('input', () => { document.title = 'pasted:' + e.textContent; sel(); });
sel(); document.title = 'ready';
</script>`

// remoteBrowser is a headless Chromium on remotePage.
type remoteBrowser struct {
	devtools string
	text     string // what the page holds (and has selected) now; cells run in order
}

func startRemoteBrowser(t *testing.T) *remoteBrowser {
	t.Helper()
	requireTool(t, "chromium", "chromium")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, remotePage)
	}))
	t.Cleanup(web.Close)
	cmd := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", web.URL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on ws://([^/]+)/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- "http://" + m[1]
			}
		}
	}()
	rb := &remoteBrowser{text: "remote selection ✓"}
	select {
	case rb.devtools = <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("chromium printed no DevTools address")
	}
	rb.waitTitle(t, "ready")
	return rb
}

// waitTitle polls DevTools' target list until the page has the title want:
// the page's script runs on its own time, with nothing the test can await.
func (rb *remoteBrowser) waitTitle(t *testing.T, want string) {
	t.Helper()
	var titles []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		titles = titles[:0]
		resp, err := http.Get(rb.devtools + "/json/list")
		if err == nil {
			var targets []struct{ Title string }
			_ = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Title == want {
					return
				}
				titles = append(titles, tg.Title)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling another process's page
	}
	t.Fatalf("remote page titles %q, want %q", titles, want)
}

// msgChannel is a viewer's message channel, as the platform's page opens it.
type msgChannel struct {
	c  net.Conn
	rw io.ReadWriter
}

// dialMsgChannel opens a message channel, closed when owner ends.
func dialMsgChannel(t, owner *testing.T, url string) (*msgChannel, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	owner.Cleanup(func() { c.Close() })
	m := &msgChannel{c: c, rw: c}
	if br != nil {
		m.rw = struct {
			io.Reader
			io.Writer
		}{br, c}
	}
	return m, nil
}

func (m *msgChannel) send(t *testing.T, kind string, text ...string) {
	t.Helper()
	v := map[string]string{"kind": kind}
	if len(text) > 0 {
		v["text"] = text[0]
	}
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(m.c, b); err != nil {
		t.Fatal(err)
	}
}

// next reads one message; a close frame is returned as {"kind": "close", "code": …, "reason": …}.
func (m *msgChannel) next(t *testing.T) map[string]any {
	t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := wsutil.ReadServerText(m.rw)
	if err != nil {
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return map[string]any{"kind": "close", "code": float64(ce.Code), "reason": ce.Reason}
		}
		t.Fatalf("read message: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("message %q: %v", b, err)
	}
	return v
}

// expect reads one message and checks its kind and, when given, a field.
func (m *msgChannel) expect(t *testing.T, kind, field, value string) map[string]any {
	t.Helper()
	v := m.next(t)
	if v["kind"] != kind || (field != "" && v[field] != value) {
		t.Fatalf("message %v, want kind %q %s=%q", v, kind, field, value)
	}
	return v
}

// copyText asks for the selection until the answer is not "in progress": a
// paste's effect can show on the page (its title) before vncedge has its
// DevTools answer and frees the pair's one clipboard slot.
func (m *msgChannel) copyText(t *testing.T, want string) {
	t.Helper()
	for range 100 {
		m.send(t, "clipboard-copy")
		v := m.next(t)
		if v["kind"] == "error" && v["message"] == "another clipboard operation is in progress" {
			time.Sleep(10 * time.Millisecond) // the slot frees when the paste's answer lands; no event reaches the viewer
			continue
		}
		if v["kind"] != "copied-text" || v["text"] != want {
			t.Fatalf("message %v, want kind \"copied-text\" text=%q", v, want)
		}
		return
	}
	t.Fatal("the clipboard stayed busy")
}

// vncChannel is a viewer's VNC channel with the RFB handshake done.
type vncChannel struct {
	ws *rfbclient.WSConn
	cl *rfbclient.Client
}

// dialVNCChannel opens a VNC channel, closed when owner ends.
func dialVNCChannel(t, owner *testing.T, url string) (*vncChannel, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, url, []string{"binary"}, nil)
	if err != nil {
		return nil, err
	}
	owner.Cleanup(func() { c.Close() })
	_ = c.NetConn().SetDeadline(time.Now().Add(60 * time.Second))
	cl, err := rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		return nil, err
	}
	return &vncChannel{ws: c, cl: cl}, nil
}

// press sends a key press and release.
func (v *vncChannel) press(t *testing.T, key uint32) {
	t.Helper()
	if err := v.cl.KeyEvent(true, key); err != nil {
		t.Fatal(err)
	}
	if err := v.cl.KeyEvent(false, key); err != nil {
		t.Fatal(err)
	}
}

// sync asks for a full update and reads until it arrives: vncedge relays
// in order, so everything sent before has been passed or dropped by then.
func (v *vncChannel) sync(t *testing.T) {
	t.Helper()
	if err := v.cl.RequestFull(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := v.cl.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for an update: %v", err)
		}
		if m.Type == 0 {
			return
		}
	}
}

// awaitClose reads until the channel closes and returns the close.
func (v *vncChannel) awaitClose(t *testing.T) *rfbclient.CloseError {
	t.Helper()
	_ = v.ws.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if err := v.cl.Request(true, 0, 0, 1, 1); err != nil {
			t.Fatalf("write before the close: %v", err)
		}
		if _, err := v.cl.ReadMessage(); err != nil {
			var ce *rfbclient.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("read %v, want a close frame", err)
			}
			return ce
		}
	}
}
