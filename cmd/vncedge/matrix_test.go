package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy/proxytest/browser"
	"vncedge/proxy/proxytest/teststack"
)

// TestPlatformMatrix holds every resolver to the whole platform flow,
// against the built binary, real Xvnc (xev reporting what the X server got),
// a real remote Chromium over CDP for the clipboard, and real noVNC in
// Chromium (the novnc cell, every row):
//
//	rows:  target (--target), sessions (--sessions), tokens (--token-secret-file),
//	       controlplane (--control-plane)
//	cells: vnc, messages, take-control, cede-control, reconnect, clipboard,
//	       viewer-role, novnc, session-end
//
// A --target route has no credential to carry a role and no lifecycle to
// end: those two cells skip there, saying so.
func TestPlatformMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("real stack")
	}
	teststack.Require(t, "Xvnc")
	requireTool(t, "xev", "x11-utils")
	x := teststack.StartXvnc(t)
	keys := startXev(t, x)
	direct := directClient(t, x.Addr())
	keys.waitReady(t, direct)
	rb := startRemoteBrowser(t)
	// One noVNC server and one Chromium for the noVNC cells; the noVNC
	// origin is allowed by every binary.
	browser.Require(t)
	novnc := browser.ServeNoVNC(t)
	br := browser.Start(t)
	upstream := "tcp://" + x.Addr()
	// Sessions start with the user in control: a viewer-role viewer's pair
	// then has control too, and only its role keeps its input out.
	common := []string{"--liveness-period", "200ms", "--allowed-origins", novnc, "--control", "user"}

	for _, r := range []*matrixRow{
		targetRow(upstream, rb.devtools),
		sessionsRow(t, upstream, rb.devtools),
		tokensRow(t, upstream, rb.devtools),
		controlPlaneRow(t, upstream, rb.devtools),
	} {
		t.Run(r.name, func(t *testing.T) {
			p := startBinary(t, append(slices.Clone(common), r.args...)...)
			m := &matrixRun{t: t, r: r, p: p, keys: keys, direct: direct, rb: rb, br: br, novnc: novnc}
			m.run()
		})
	}
}

// matrixRow is one resolver's setup.
type matrixRow struct {
	name string
	args []string
	// cred is the credential query for a viewer of role ("controller" or
	// "viewer"); nil: no credentials (and no roles).
	cred func(role string) string
	// endQuery, when set, is the credential of the viewer whose session the
	// session-end cell ends (tokens: one about to expire).
	endQuery func() string
	// end ends the session; nil with endQuery nil: the row has no lifecycle.
	end    func(t *testing.T)
	reason string // close reason of the ended session
}

func targetRow(upstream, devtools string) *matrixRow {
	return &matrixRow{name: "target", args: []string{"--target", upstream, "--cdp-url", devtools}}
}

func sessionsRow(t *testing.T, upstream, devtools string) *matrixRow {
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := func(withSession bool) string {
		s := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
			"- {kind: task, id: other, organization: o1, upstream: '" + upstream + "'}\n"
		if withSession {
			s += "- {kind: browser_session, id: pbs_m, organization: o1, upstream: '" + upstream + "', cdp_url: '" + devtools + "'}\n"
		}
		return s
	}
	if err := os.WriteFile(f, []byte(doc(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &matrixRow{
		name: "sessions", args: []string{"--sessions", f},
		cred: func(role string) string {
			if role == "viewer" {
				return "apikey=kv"
			}
			return "apikey=kc"
		},
		end: func(t *testing.T) { // the session leaves the file: the reload ends it
			if err := os.WriteFile(f, []byte(doc(false)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		reason: "session-ended",
	}
}

func tokensRow(t *testing.T, upstream, devtools string) *matrixRow {
	secret := strings.Repeat("matrix-secret-", 3)
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	mint := func(role string, exp time.Time) string {
		c := jwt.MapClaims{"org": "o1", "kind": "browser_session", "id": "pbs_m", "upstream": upstream,
			"cdp_url": devtools, "exp": exp.Unix()}
		if role == "viewer" {
			c["role"] = "viewer"
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return "token=" + url.QueryEscape("Bearer "+s)
	}
	return &matrixRow{
		name: "tokens", args: []string{"--token-secret-file", f},
		cred: func(role string) string { return mint(role, time.Now().Add(time.Hour)) },
		// vncedge allows 5 s of clock skew: a token 2–3 s past exp (exp is
		// whole seconds) is still accepted, for more than 2 s, in which both
		// channels open under CI load, and then expires.
		endQuery: func() string { return mint("controller", time.Now().Add(-2*time.Second)) },
		reason:   "token-expired",
	}
}

func controlPlaneRow(t *testing.T, upstream, devtools string) *matrixRow {
	var mu sync.Mutex
	status := "running"
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role := map[string]string{"kc": "controller", "kv": "viewer"}[r.Header.Get("X-Api-Key")]
		if role == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/internal/browser_session/pbs_m" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		mu.Lock()
		st := status
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"organization_id": "o1", "status": st,
			"vnc_url": upstream, "cdp_url": devtools, "role": role})
	}))
	t.Cleanup(cp.Close)
	return &matrixRow{
		name: "controlplane", args: []string{"--control-plane", cp.URL + "/internal"},
		cred: func(role string) string {
			if role == "viewer" {
				return "apikey=kv"
			}
			return "apikey=kc"
		},
		end: func(*testing.T) {
			mu.Lock()
			status = "completed"
			mu.Unlock()
		},
		reason: "session-ended",
	}
}

// matrixRun runs one row's cells in order; each cell builds on the state
// the previous ones left (control taken, clipboard text).
type matrixRun struct {
	t      *testing.T
	r      *matrixRow
	p      *binProc
	keys   *xevKeys
	direct interface {
		KeyEvent(bool, uint32) error
	}
	rb    *remoteBrowser
	br    *browser.Browser
	novnc string

	vnc *vncChannel
	msg *msgChannel
}

const matrixPath = "/v1/stream/%s/browser_session/pbs_m"

func (m *matrixRun) url(channel, clientID, role string) string {
	q := "client_id=" + clientID
	if m.r.cred != nil {
		q += "&" + m.r.cred(role)
	}
	return "ws://" + m.p.listen + strings.Replace(matrixPath, "%s", channel, 1) + "?" + q
}

// sentinel presses key on Xvnc directly and returns what xev saw before it.
func (m *matrixRun) sentinel(t *testing.T, key uint32) []uint32 {
	t.Helper()
	if err := m.direct.KeyEvent(true, key); err != nil {
		t.Fatal(err)
	}
	if err := m.direct.KeyEvent(false, key); err != nil {
		t.Fatal(err)
	}
	return m.keys.expect(t, key)
}

func (m *matrixRun) run() {
	t := m.t
	client := "c-" + m.r.name
	ok := t.Run("vnc", func(t *testing.T) {
		v, err := dialVNCChannel(t, m.t, m.url("vnc", client, "controller"))
		if err != nil {
			t.Fatal(err)
		}
		if v.cl.Width() != 1024 || v.cl.Height() != 768 {
			t.Fatalf("desktop %dx%d, want Xvnc's 1024x768", v.cl.Width(), v.cl.Height())
		}
		m.vnc = v
	})
	ok = ok && t.Run("messages", func(t *testing.T) {
		mc, err := dialMsgChannel(t, m.t, m.url("messages", client, "controller"))
		if err != nil {
			t.Fatal(err)
		}
		mc.expect(t, "interactor", "interactor", "user")
		m.msg = mc
	})
	if !ok {
		t.Fatal("the channels do not open: the other cells cannot run")
	}
	t.Run("take-control", func(t *testing.T) {
		m.msg.send(t, "cede-control") // from the agent
		m.msg.expect(t, "interactor", "interactor", "agent")
		m.msg.send(t, "take-control")
		m.msg.expect(t, "interactor", "interactor", "user")
		m.vnc.press(t, 'a')
		m.keys.expect(t, 'a')
	})
	t.Run("cede-control", func(t *testing.T) {
		m.msg.send(t, "cede-control")
		m.msg.expect(t, "interactor", "interactor", "agent")
		m.vnc.press(t, 'b')
		m.vnc.sync(t)
		if before := m.sentinel(t, 'z'); slices.Contains(before, 'b') {
			t.Fatalf("a key sent after cede-control reached the X server (%#x)", before)
		}
		m.msg.send(t, "take-control") // the next cells start in control
		m.msg.expect(t, "interactor", "interactor", "user")
	})
	t.Run("reconnect", func(t *testing.T) {
		m.vnc.ws.Close()
		m.msg.c.Close()
		mc, err := dialMsgChannel(t, m.t, m.url("messages", client, "controller"))
		if err != nil {
			t.Fatal(err)
		}
		mc.expect(t, "interactor", "interactor", "user")
		v, err := dialVNCChannel(t, m.t, m.url("vnc", client, "controller"))
		if err != nil {
			t.Fatal(err)
		}
		m.vnc, m.msg = v, mc
		v.press(t, 'c')
		m.keys.expect(t, 'c')
	})
	t.Run("clipboard", func(t *testing.T) {
		m.msg.send(t, "clipboard-copy")
		m.msg.expect(t, "copied-text", "text", m.rb.text)
		text := "pasted through vncedge " + m.r.name
		m.msg.send(t, "clipboard-paste", text)
		m.rb.waitTitle(t, "pasted:"+text)
		m.rb.text = text
		m.msg.copyText(t, text) // the page selected what was pasted
	})
	t.Run("viewer-role", func(t *testing.T) {
		if m.r.cred == nil {
			t.Skip("--target: no credential, so no role (every viewer is a controller)")
		}
		w, err := dialMsgChannel(t, m.t, m.url("messages", "v-"+m.r.name, "viewer"))
		if err != nil {
			t.Fatal(err)
		}
		w.expect(t, "interactor", "interactor", "user") // the controller drives
		for _, kind := range []string{"take-control", "clipboard-copy", "clipboard-paste"} {
			w.send(t, kind, "x")
			w.expect(t, "error", "failed_kind", kind)
		}
		v, err := dialVNCChannel(t, m.t, m.url("vnc", "v-"+m.r.name, "viewer"))
		if err != nil {
			t.Fatal(err)
		}
		// Its pair starts with the user in control (--control user): only
		// its role keeps its input out.
		v.press(t, 'd')
		if err := v.cl.ClientCutText([]byte("viewer clipboard")); err != nil {
			t.Fatal(err)
		}
		v.sync(t)
		if before := m.sentinel(t, 'y'); slices.Contains(before, 'd') {
			t.Fatalf("a viewer-role key reached the X server (%#x)", before)
		}
		// Control moves between others: the viewer is told.
		m.msg.send(t, "cede-control")
		m.msg.expect(t, "interactor", "interactor", "agent")
		w.expect(t, "interactor", "interactor", "agent")
		m.msg.send(t, "take-control")
		m.msg.expect(t, "interactor", "interactor", "user")
		w.expect(t, "interactor", "interactor", "user")
		m.vnc.press(t, 'g') // the controller still drives
		m.keys.expect(t, 'g')
	})
	t.Run("novnc", func(t *testing.T) { m.novncCell(t) })
	t.Run("session-end", func(t *testing.T) {
		if m.r.end == nil && m.r.endQuery == nil {
			t.Skip("--target: nothing but the upstream ends a session")
		}
		v, mc := m.vnc, m.msg
		if m.r.endQuery != nil {
			base := "ws://" + m.p.listen + strings.Replace(matrixPath, "%s", "vnc", 1) + "?client_id=e-" + m.r.name + "&" + m.r.endQuery()
			var err error
			if v, err = dialVNCChannel(t, m.t, base); err != nil {
				t.Fatal(err)
			}
			if mc, err = dialMsgChannel(t, m.t, strings.Replace(base, "/vnc/", "/messages/", 1)); err != nil {
				t.Fatal(err)
			}
			mc.expect(t, "interactor", "interactor", "user")
		}
		if m.r.end != nil {
			m.r.end(t)
		}
		ce := v.awaitClose(t)
		if ce.Code != 1000 || ce.Reason != m.r.reason {
			t.Errorf("VNC channel closed %d %q, want 1000 %q", ce.Code, ce.Reason, m.r.reason)
		}
		got := mc.next(t)
		for got["kind"] == "interactor" { // control news still in flight
			got = mc.next(t)
		}
		if got["kind"] != "close" || got["code"] != float64(1000) {
			t.Errorf("message channel: %v, want close 1000", got)
		}
	})
}

// novncCell: real noVNC in Chromium on the VNC channel, the message channel
// beside it; typing in the page reaches the X server only in control.
func (m *matrixRun) novncCell(t *testing.T) {
	client := "n-" + m.r.name
	page := m.br.NewPage(t)
	path := strings.TrimPrefix(strings.Replace(matrixPath, "%s", "vnc", 1), "/") + "?client_id=" + client
	if m.r.cred != nil {
		path += "&" + m.r.cred("controller")
	}
	_, port, _ := strings.Cut(m.p.listen, ":")
	pn, _ := strconv.Atoi(port)
	if err := page.OpenNoVNC(browser.NoVNCURL(m.novnc, "127.0.0.1", pn, path, nil), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	mc, err := dialMsgChannel(t, m.t, m.url("messages", client, "controller"))
	if err != nil {
		t.Fatal(err)
	}
	mc.expect(t, "interactor", "interactor", "user")
	mc.send(t, "cede-control")
	mc.expect(t, "interactor", "interactor", "agent")
	mc.send(t, "take-control")
	mc.expect(t, "interactor", "interactor", "user")
	typeIn(t, page, browser.CanvasJS, "e")
	m.keys.expect(t, 'e')
	mc.send(t, "cede-control")
	mc.expect(t, "interactor", "interactor", "agent")
	typeIn(t, page, browser.CanvasJS, "f")
	// Closing the page ends the session: its log line counts the dropped
	// keys (they reached vncedge), and everything it let through was
	// written to Xvnc before the sentinel.
	if err := page.Close(); err != nil {
		t.Fatal(err)
	}
	line := m.p.awaitLog(t, "session end", "channel=vnc", "client_id="+client)
	if !strings.Contains(line, "dropped.agent-control=") {
		t.Errorf("the keys typed without control never reached vncedge: %s", line)
	}
	if before := m.sentinel(t, 'x'); slices.Contains(before, 'f') {
		t.Fatalf("a key typed in noVNC after cede-control reached the X server (%#x)", before)
	}
}

// typeIn focuses the canvas canvasJS finds and types keys through
// Chromium's input pipeline.
func typeIn(t *testing.T, p *browser.Page, canvasJS, keys string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const c = `+canvasJS+`; c.focus(); if (document.activeElement !== c) throw new Error('no focus'); return true })()`)); err != nil {
		t.Fatalf("focusing the noVNC canvas: %v", err)
	}
	if err := p.Do(15*time.Second, chromedp.KeyEvent(keys)); err != nil {
		t.Fatalf("typing %q: %v", keys, err)
	}
}
