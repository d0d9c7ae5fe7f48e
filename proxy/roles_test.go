package proxy_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// rolesProxy serves one browser session from a sessions file with a
// controller key (kc) and a viewer key (kv); the session starts with control
// as given.
func rolesProxy(t *testing.T, control string, pol *rfbparse.Policy, tweak func(*proxy.Config)) (*rfbtest.Server, *proxy.Server, string) {
	t.Helper()
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
		"- {kind: browser_session, id: pbs_1, organization: o1, control: " + control +
		", cdp_url: 'http://127.0.0.1:9', upstream: 'tcp://" + vnc.Addr() + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{Resolver: sr, Policy: pol}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, addr := startProxy(t, cfg)
	return vnc, srv, addr
}

const rolesVNC, rolesMsg = "/v1/stream/vnc/browser_session/pbs_1", "/v1/stream/messages/browser_session/pbs_1"

// TestViewerRoleDropsAllInput: a viewer-role VNC channel's keys, pointer
// and clipboard never reach the server, even in a session that starts with
// the user in control and even without a policy; a controller's do.
func TestViewerRoleDropsAllInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  *rfbparse.Policy
	}{{"policy", rfbparse.DefaultPolicy()}, {"no-policy", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			vnc, srv, addr := rolesProxy(t, "user", tc.pol, nil)
			input := [][]byte{keyMsg(true, 'a'), keyMsg(false, 'a'), ptrMsg(1, 5, 6), ptrMsg(0, 5, 6), cutTextMsg([]byte("secret"))}
			v := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
			v.connect(rolesVNC+"?client_id=v1&apikey=kv", nil)
			v.send(input...)
			v.expectUpstream()

			c := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
			c.connect(rolesVNC+"?client_id=c1&apikey=kc", nil)
			c.send(input...)
			c.expectUpstream(input...)
		})
	}
}

// TestViewerRoleMessages: take-control and the clipboard answer error for a
// viewer; cede-control says who drives; a viewer sees control move between
// controllers; and a controller's message channel cannot give control to a
// viewer-role VNC channel of the same client_id.
func TestViewerRoleMessages(t *testing.T) {
	vnc, srv, addr := rolesProxy(t, "agent", rfbparse.DefaultPolicy(), func(c *proxy.Config) {
		c.NewClipboard = func(string, http.Header) proxy.ClipboardClient {
			return &fakeClipboard{selected: "leak", inserted: make(chan string, 4)}
		}
	})
	watch := dialMessages(t, addr, rolesMsg+"?client_id=v1&apikey=kv")
	watch.expect("interactor", "interactor", "agent")
	for _, kind := range []string{"take-control", "clipboard-copy", "clipboard-paste", "ask-for-clipboard-response"} {
		watch.send(map[string]any{"kind": kind, "text": "x"})
		watch.expect("error", "failed_kind", kind)
	}
	watch.send(map[string]any{"kind": "cede-control"})
	watch.expect("interactor", "interactor", "agent")

	// A controller takes control: the viewer is told the user drives.
	ctl := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	ctl.connect(rolesVNC+"?client_id=c1&apikey=kc", nil)
	ctlMsg := dialMessages(t, addr, rolesMsg+"?client_id=c1&apikey=kc")
	ctlMsg.expect("interactor", "interactor", "agent")
	ctlMsg.send(map[string]any{"kind": "take-control"})
	ctlMsg.expect("interactor", "interactor", "user")
	watch.expect("interactor", "interactor", "user")
	ctl.send(keyMsg(true, 'k'), keyMsg(false, 'k'))
	ctl.expectUpstream(keyMsg(true, 'k'), keyMsg(false, 'k'))
	ctlMsg.send(map[string]any{"kind": "cede-control"})
	ctlMsg.expect("interactor", "interactor", "agent")
	watch.expect("interactor", "interactor", "agent")

	// The driver's VNC channel goes: nobody drives; it comes back (its
	// control state kept for the reconnect): the user drives again.
	ctlMsg.send(map[string]any{"kind": "take-control"})
	ctlMsg.expect("interactor", "interactor", "user")
	watch.expect("interactor", "interactor", "user")
	ctl.view.Close()
	watch.expect("interactor", "interactor", "agent")
	ctl = &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	ctl.connect(rolesVNC+"?client_id=c1&apikey=kc", nil)
	watch.expect("interactor", "interactor", "user")
	ctlMsg.send(map[string]any{"kind": "cede-control"})
	ctlMsg.expect("interactor", "interactor", "agent")
	watch.expect("interactor", "interactor", "agent")

	// One client_id, one role: a viewer-role credential cannot join (or take
	// over) a controller's client_id, which would hand it the copied text,
	// nor the reverse.
	for _, tc := range []struct{ path string }{
		{rolesMsg + "?client_id=c1&apikey=kv"}, // the controller's pair, live
		{rolesVNC + "?client_id=c1&apikey=kv"},
		{rolesVNC + "?client_id=v1&apikey=kc"}, // the viewer's pair, live
	} {
		_, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+tc.path, []string{"binary"}, nil)
		var se *rfbclient.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusForbidden {
			t.Errorf("%s: %v, want 403", tc.path, err)
		}
	}
	// The refused ones replaced nothing: the controller still drives.
	ctlMsg.send(map[string]any{"kind": "take-control"})
	ctlMsg.expect("interactor", "interactor", "user")
	watch.expect("interactor", "interactor", "user")
	ctl.send(keyMsg(true, 'n'), keyMsg(false, 'n'))
	ctl.expectUpstream(keyMsg(true, 'n'), keyMsg(false, 'n'))

}

// TestClientIDRequiredCompat: under --compat=skyvern a platform route with
// no client_id is upgraded then closed 1002, on both channels.
func TestClientIDRequiredCompat(t *testing.T) {
	_, _, addr := rolesProxy(t, "agent", rfbparse.DefaultPolicy(), func(c *proxy.Config) { c.Compat = true })
	for _, p := range []string{rolesVNC + "?apikey=kc", rolesMsg + "?apikey=kc", rolesVNC + "?apikey=kv&client_id="} {
		ws, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+p, nil, nil)
		if err != nil {
			t.Fatalf("%s: the upgrade must succeed in compat mode: %v", p, err)
		}
		_ = ws.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = ws.Read(make([]byte, 16))
		var ce *rfbclient.CloseError
		if !errors.As(err, &ce) || ce.Code != 1002 || ce.Reason != "client_id is required" {
			t.Errorf("%s: %v, want close 1002 client_id is required", p, err)
		}
		ws.Close()
	}
}

// TestClientIDRequiredTarget: --target also requires client_id on platform
// routes, and only there (websockify-style paths need none).
func TestClientIDRequiredTarget(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	srv, addr := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User))
	for _, p := range []string{rolesVNC, rolesMsg} {
		_, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+p, []string{"binary"}, nil)
		var se *rfbclient.StatusError
		if !errors.As(err, &se) || se.Status != 400 {
			t.Errorf("%s: %v, want HTTP 400", p, err)
		}
	}
	e := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	e.connect("/websockify", nil)
	e.send(keyMsg(true, 'w'))
	e.expectUpstream(keyMsg(true, 'w'))
}
