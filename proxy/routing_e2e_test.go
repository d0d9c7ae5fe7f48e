package proxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

type sessionEntry struct {
	kind, id, org, upstream string
	headers                 map[string]string
}

// sessionsYAML renders a sessions file: keys maps organization → API key.
func sessionsYAML(keys map[string]string, sessions []sessionEntry) string {
	var b strings.Builder
	b.WriteString("organizations:\n")
	orgs := make([]string, 0, len(keys))
	for o := range keys {
		orgs = append(orgs, o)
	}
	sort.Strings(orgs)
	for _, o := range orgs {
		b.WriteString("  - id: " + o + "\n    api_keys: [\"" + keys[o] + "\"]\n")
	}
	b.WriteString("sessions:\n")
	for _, s := range sessions {
		b.WriteString("  - kind: " + s.kind + "\n    id: " + s.id + "\n    organization: " + s.org +
			"\n    upstream: \"" + s.upstream + "\"\n")
		if len(s.headers) > 0 {
			b.WriteString("    upstream_headers:\n")
			for k, v := range s.headers {
				b.WriteString("      " + k + ": \"" + v + "\"\n")
			}
		}
	}
	return b.String()
}

func writeSessionsFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sessions.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wsRelay is a small ws:// upstream, like websockify: it accepts WebSocket
// upgrades (recording the x-api-key request header), then relays the frames'
// payload to a TCP VNC server and the server's bytes back as binary frames.
type wsRelay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	keys   []string // x-api-key of each upgrade, "" when absent
}

func startWSRelay(t *testing.T, target string) *wsRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &wsRelay{ln: ln, target: target}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.serve(c, &conns, &wg)
			}()
		}
	}()
	return r
}

func (r *wsRelay) apiKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

func (r *wsRelay) serve(c net.Conn, conns *sync.Map, wg *sync.WaitGroup) {
	defer c.Close()
	key := ""
	u := ws.Upgrader{
		Protocol: func(p []byte) bool { return string(p) == "binary" },
		OnHeader: func(k, v []byte) error {
			if strings.EqualFold(string(k), "x-api-key") {
				key = string(v)
			}
			return nil
		},
	}
	if _, err := u.Upgrade(c); err != nil {
		return
	}
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	vnc, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	conns.Store(vnc, nil)
	defer vnc.Close()
	var wmu sync.Mutex
	writeFrame := func(op ws.OpCode, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		if err := ws.WriteHeader(c, ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}); err != nil {
			return err
		}
		_, err := c.Write(p)
		return err
	}
	wg.Add(1)
	go func() { // server → viewer
		defer wg.Done()
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := vnc.Read(buf)
			if n > 0 && writeFrame(ws.OpBinary, buf[:n]) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for { // viewer → server
		h, err := ws.ReadHeader(c)
		if err != nil {
			return
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c, p); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			_ = writeFrame(ws.OpClose, p[:min(2, len(p))])
			return
		case ws.OpPing:
			_ = writeFrame(ws.OpPong, p)
		case ws.OpPong:
		default:
			if _, err := vnc.Write(p); err != nil {
				return
			}
		}
	}
}

// TestE2ERouting drives the static resolver: platform routes with the API
// key in the query or the x-api-key header, refusals, upstream headers to a
// ws:// upstream, and Reload.
func TestE2ERouting(t *testing.T) {
	vncA := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true}) // tcp:// sessions
	vncB := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true}) // behind the ws relay
	vncC := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true}) // bs1 after the reload
	relay := startWSRelay(t, vncB.Addr())
	keys := map[string]string{"org-a": "key-a", "org-b": "key-b"}
	path := writeSessionsFile(t, sessionsYAML(keys, []sessionEntry{
		{kind: "browser_session", id: "bs1", org: "org-a", upstream: "tcp://" + vncA.Addr()},
		{kind: "task", id: "t1", org: "org-a", upstream: "ws://" + relay.ln.Addr().String() + "/websockify",
			headers: map[string]string{"x-api-key": "upstream-secret-t1"}},
		{kind: "workflow_run", id: "w1", org: "org-b", upstream: "tcp://" + vncA.Addr()},
	}))
	res, err := proxy.LoadStaticResolver(path, rfbparse.User)
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := startProxy(t, proxy.Config{Resolver: res, Policy: rfbparse.DefaultPolicy()})

	refuse := func(t *testing.T, path string, header http.Header, status int) {
		t.Helper()
		_, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path, []string{"binary"}, header)
		var se *rfbclient.StatusError
		if !errors.As(err, &se) || se.Status != status {
			t.Fatalf("dial %s: %v, want HTTP %d", path, err, status)
		}
	}

	t.Run("browser_session apikey query", func(t *testing.T) {
		e := &e2e{t: t, vnc: vncA, srv: srv, addr: addr}
		e.connect("/v1/stream/vnc/browser_session/bs1?apikey=key-a&client_id=c1", nil)
		e.send(keyMsg(true, 'a'), keyMsg(true, ctrlL), keyMsg(true, 'o'))
		e.expectUpstream(keyMsg(true, 'a'), keyMsg(true, ctrlL)) // policy applies on routed sessions
		// Nothing left held, so the session's end releases nothing on vncA.
		e.send(keyMsg(false, ctrlL), keyMsg(false, 'a'))
		e.expectUpstream(keyMsg(false, ctrlL), keyMsg(false, 'a'))
	})
	t.Run("task x-api-key header via ws upstream", func(t *testing.T) {
		e := &e2e{t: t, vnc: vncB, srv: srv, addr: addr}
		e.connect("/api/v1/stream/vnc/task/t1?client_id=c1", map[string]string{"x-api-key": "key-a"})
		e.send(keyMsg(true, 'b'), cutTextMsg([]byte("through websockify")))
		e.expectUpstream(keyMsg(true, 'b'), cutTextMsg([]byte("through websockify")))
		if got := relay.apiKeys(); len(got) != 1 || got[0] != "upstream-secret-t1" {
			t.Errorf("ws upstream saw x-api-key %q, want [upstream-secret-t1] from the sessions file", got)
		}
	})
	t.Run("unknown session", func(t *testing.T) { refuse(t, "/v1/stream/vnc/browser_session/nope?apikey=key-a", nil, 404) })
	t.Run("no key", func(t *testing.T) { refuse(t, "/v1/stream/vnc/browser_session/bs1", nil, 401) })
	t.Run("wrong key", func(t *testing.T) { refuse(t, "/v1/stream/vnc/browser_session/bs1?apikey=key-x", nil, 401) })
	t.Run("wrong key header", func(t *testing.T) {
		refuse(t, "/v1/stream/vnc/browser_session/bs1", http.Header{"X-Api-Key": {"key-x"}}, 401)
	})
	t.Run("other organization", func(t *testing.T) {
		refuse(t, "/v1/stream/vnc/browser_session/bs1?apikey=key-b", nil, 403)
		refuse(t, "/v1/stream/vnc/workflow_run/w1?apikey=key-a", nil, 403)
	})
	t.Run("unknown path", func(t *testing.T) {
		for _, p := range []string{"/websockify?apikey=key-a", "/v1/stream/rdp/browser_session/bs1?apikey=key-a",
			"/v1/stream/vnc/desktop/bs1?apikey=key-a", "/v1/stream/vnc/browser_session/bs1/extra?apikey=key-a"} {
			refuse(t, p, nil, 404)
		}
	})
	t.Run("client_id required", func(t *testing.T) {
		for _, p := range []string{"/v1/stream/vnc/browser_session/bs1?apikey=key-a",
			"/v1/stream/messages/browser_session/bs1?apikey=key-a", "/api/v1/stream/vnc/task/t1?apikey=key-a&client_id="} {
			refuse(t, p, nil, 400)
		}
	})
	if t.Failed() {
		return
	}
	if n := len(vncA.Conns()) + len(vncB.Conns()); n != 2 {
		t.Fatalf("upstream conns: %d, want 2 (refused viewers must not dial)", n)
	}

	t.Run("reload", func(t *testing.T) {
		// live is a session opened before the reload; it must survive it.
		live := &e2e{t: t, vnc: vncA, srv: srv, addr: addr}
		live.connect("/v1/stream/vnc/browser_session/bs1?apikey=key-a&client_id=live", nil)
		live.send(keyMsg(true, 'c'))
		live.expectUpstream(keyMsg(true, 'c'))

		// bs1 moves to vncC, t1 is gone, org-a's key changes.
		keys2 := map[string]string{"org-a": "key-a2", "org-b": "key-b"}
		if err := os.WriteFile(path, []byte(sessionsYAML(keys2, []sessionEntry{
			{kind: "browser_session", id: "bs1", org: "org-a", upstream: "tcp://" + vncC.Addr()},
		})), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Reload(path); err != nil {
			t.Fatal(err)
		}
		refuse(t, "/v1/stream/vnc/browser_session/bs1?apikey=key-a", nil, 401)
		refuse(t, "/api/v1/stream/vnc/task/t1?apikey=key-a2", nil, 404)
		moved := &e2e{t: t, vnc: vncC, srv: srv, addr: addr}
		moved.connect("/v1/stream/vnc/browser_session/bs1?apikey=key-a2&client_id=moved", nil) // waits for vncC's conn
		moved.send(keyMsg(true, 'd'))
		moved.expectUpstream(keyMsg(true, 'd'))

		// The session opened before the reload keeps its upstream.
		live.send(keyMsg(false, 'c'), ptrMsg(1, 2, 3))
		live.expectUpstream(keyMsg(false, 'c'), ptrMsg(1, 2, 3))
		if n := len(vncA.Conns()); n != 2 {
			t.Errorf("vncA conns %d, want 2", n)
		}
	})
}
