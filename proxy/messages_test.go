package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// fakeClipboard stands in for the browser in unit tests; the real-Chromium
// test lives with the CDP client.
type fakeClipboard struct {
	mu       sync.Mutex
	selected string
	inserted chan string
	fail     bool
}

func (f *fakeClipboard) SelectedText(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return "", errors.New("devtools down")
	}
	return f.selected, nil
}

func (f *fakeClipboard) InsertText(_ context.Context, text string) error {
	f.inserted <- text
	return nil
}

func (f *fakeClipboard) Close() error { return nil }

type msgConn struct {
	t  *testing.T
	c  net.Conn
	rw io.ReadWriter // reads through the dialer's buffer: the first message may ride with the 101
}

func dialMessages(t *testing.T, addr, path string) *msgConn {
	t.Helper()
	c, br, _, err := ws.Dialer{}.Dial(ctxT(t), "ws://"+addr+path)
	if err != nil {
		t.Fatalf("dial message channel: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	m := &msgConn{t: t, c: c, rw: c}
	if br != nil {
		m.rw = struct {
			io.Reader
			io.Writer
		}{br, c}
	}
	return m
}

func (m *msgConn) send(v any) {
	m.t.Helper()
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(m.c, b); err != nil {
		m.t.Fatal(err)
	}
}

func (m *msgConn) next() map[string]any {
	m.t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(m.rw)
	if err != nil {
		m.t.Fatalf("read message: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		m.t.Fatalf("message %q: %v", b, err)
	}
	return v
}

func (m *msgConn) expect(kind string, field, value string) map[string]any {
	m.t.Helper()
	v := m.next()
	if v["kind"] != kind || (field != "" && v[field] != value) {
		m.t.Fatalf("got %v, want kind %q %s=%q", v, kind, field, value)
	}
	return v
}

// vncViewer opens the VNC channel and completes the RFB handshake.
func vncViewer(t *testing.T, addr, path string) (*rfbclient.WSConn, *rfbclient.Client) {
	t.Helper()
	c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path, []string{"binary"}, nil)
	if err != nil {
		t.Fatalf("dial vnc channel: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	cl, err := rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c, cl
}

// until reads recorded messages until the sentinel FramebufferUpdateRequest
// and returns those before it.
func until(t *testing.T, vnc *rfbtest.Server, cl *rfbclient.Client) []rfbtest.Msg {
	t.Helper()
	if err := cl.Request(true, 1, 2, 3, 4); err != nil {
		t.Fatal(err)
	}
	var got []rfbtest.Msg
	for {
		m, err := vnc.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == rfbtest.TypeFramebufferUpdateReq && m.Raw[1] == 1 && m.Raw[3] == 1 {
			return got
		}
		if m.Type == rfbtest.TypeKeyEvent || m.Type == rfbtest.TypePointerEvent || m.Type == rfbtest.TypeClientCutText {
			got = append(got, m)
		}
	}
}

func keysOf(ms []rfbtest.Msg) string {
	var b strings.Builder
	for _, m := range ms {
		if m.Type == rfbtest.TypeKeyEvent {
			if m.Raw[1] != 0 {
				b.WriteString("+")
			} else {
				b.WriteString("-")
			}
			b.WriteByte(m.Raw[7])
		}
	}
	return b.String()
}

func TestMessageChannelControl(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	clip := &fakeClipboard{selected: "selected words", inserted: make(chan string, 4)}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.Agent)
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient { return clip }
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	const q = "/v1/stream/%s/browser_session/pbs_1?client_id=c1"
	path := func(ch string) string { return strings.Replace(q, "%s", ch, 1) }

	mc := dialMessages(t, addr, path("messages"))
	mc.expect("interactor", "interactor", "agent")

	// take-control before the VNC channel exists is remembered.
	mc.send(map[string]string{"kind": "take-control"})
	mc.expect("interactor", "interactor", "user")
	_, cl := vncViewer(t, addr, path("vnc"))
	cl.KeyEvent(true, 'a')
	if got := keysOf(until(t, vnc, cl)); got != "+a" {
		t.Fatalf("user input reached the server as %q, want +a", got)
	}

	// cede-control releases the held key, then drops input.
	mc.send(map[string]string{"kind": "cede-control"})
	mc.expect("interactor", "interactor", "agent")
	cl.KeyEvent(true, 'b')
	if got := keysOf(until(t, vnc, cl)); got != "-a" {
		t.Fatalf("after cede-control the server saw %q, want only the release -a", got)
	}

	// Control survives a VNC reconnect.
	mc.send(map[string]string{"kind": "take-control"})
	mc.expect("interactor", "interactor", "user")
	ws2, cl2 := vncViewer(t, addr, path("vnc"))
	_ = ws2
	cl2.KeyEvent(true, 'c')
	cl2.KeyEvent(false, 'c')
	if got := keysOf(until(t, vnc, cl2)); got != "+c-c" {
		t.Fatalf("after reconnect the server saw %q, want +c-c (user keeps control)", got)
	}

	// Copy: Ctrl+C through the VNC channel yields copied-text.
	cl2.KeyEvent(true, rfbparse.KeysymControlL)
	cl2.KeyEvent(true, 'c')
	if v := mc.expect("copied-text", "text", "selected words"); v == nil {
		t.Fatal()
	}
	cl2.KeyEvent(false, 'c')

	// Paste: Ctrl+V asks the page, the answer is typed into the browser.
	cl2.KeyEvent(true, 'v')
	mc.expect("ask-for-clipboard", "", "")
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "pasted text"})
	select {
	case got := <-clip.inserted:
		if got != "pasted text" {
			t.Fatalf("inserted %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("paste never reached the browser")
	}
	cl2.KeyEvent(false, 'v')

	// A paste right after the viewer sent its clipboard needs no round trip:
	// the next message is the copied-text of the explicit copy below.
	if err := cl2.ClientCutText([]byte("local clip")); err != nil {
		t.Fatal(err)
	}
	cl2.KeyEvent(true, 'v')
	cl2.KeyEvent(false, 'v')
	until(t, vnc, cl2)
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("copied-text", "text", "selected words")

	// Bad input gets an error message, not a disconnect.
	if err := wsutil.WriteClientText(mc.c, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	mc.expect("error", "message", "bad JSON message")
	mc.send(map[string]string{"kind": "launch-missiles"})
	mc.expect("error", "failed_kind", "launch-missiles")
	mc.send(map[string]string{"kind": "clipboard-paste", "text": strings.Repeat("x", proxy.MaxClipboardText+1)})
	mc.expect("error", "failed_kind", "clipboard-paste")
	clip.mu.Lock()
	clip.fail = true
	clip.mu.Unlock()
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("error", "failed_kind", "clipboard-copy")
	mc.send(map[string]string{"kind": "take-control"})
	mc.expect("interactor", "interactor", "user")
}

func TestVNCChannelReplaced(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	_, addr := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User))
	p := "/v1/stream/vnc/task/tsk_1?client_id=c9"
	first, cl1 := vncViewer(t, addr, p)
	vncViewer(t, addr, p)
	_ = first.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	var err error
	for err == nil {
		_, err = cl1.ReadMessage()
	}
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "replaced" {
		t.Fatalf("first channel: %v, want close 1000 replaced", err)
	}
}
