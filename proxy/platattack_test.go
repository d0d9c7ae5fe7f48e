package proxy_test

// Attacks on the platform flow and viewer roles (issue 14). Every test here
// failed on the code it was written against; each says what the attack is.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// platattackXvncProxy serves one browser session on a real Xvnc from a
// sessions file with a controller key (kc) and a viewer key (kv).
func platattackXvncProxy(t *testing.T) (*teststack.Xvnc, string) {
	t.Helper()
	x := teststack.StartXvnc(t)
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
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy()})
	return x, addr
}

// platattackRFB opens a VNC channel through the proxy and completes the RFB
// handshake (shared), every read and write bounded by a deadline.
func platattackRFB(t *testing.T, addr, path string) *rfbclient.Client {
	t.Helper()
	c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path, []string{"binary"}, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.NetConn().SetDeadline(time.Now().Add(15 * time.Second))
	rc, err := rfbclient.Handshake(c, rfbclient.Options{})
	if err != nil {
		t.Fatalf("RFB handshake %s: %v", path, err)
	}
	if err := rc.SetEncodings(0); err != nil { // Raw only: a legacy client, sent cut text directly
		t.Fatal(err)
	}
	return rc
}

// TestPlatAttackViewerReadsRemoteClipboard: ATTACK — a viewer-role
// credential is refused clipboard-copy on the message channel ("viewer role
// cannot use the clipboard"), yet its VNC channel is relayed the server's
// ServerCutText untouched: whatever anyone copies on the remote desktop
// (a password from a password manager, a token) reaches the read-only
// viewer. Real Xvnc: an X client (python3 tkinter) takes the CLIPBOARD
// selection, Xvnc pushes it to its legacy (non-extended-clipboard) clients.
// The controller's channel is the oracle that the push happened; the viewer
// then asks for a full update after it, which it must get with no cut text
// before it.
func TestPlatAttackViewerReadsRemoteClipboard(t *testing.T) {
	teststack.Require(t, "python3")
	if err := exec.Command("python3", "-c", "import tkinter").Run(); err != nil {
		t.Skip("python3 tkinter (python3-tk) not installed")
	}
	x, addr := platattackXvncProxy(t)
	const secret = "platattack-secret-clipboard-4711"
	viewer := platattackRFB(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=v1&apikey=kv")
	ctl := platattackRFB(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=c1&apikey=kc")

	x.StartClient(t, "python3", "-c", `import tkinter,sys
r=tkinter.Tk(); r.withdraw(); r.clipboard_clear(); r.clipboard_append(sys.argv[1]); r.update(); r.mainloop()`, secret)

	for { // the oracle: Xvnc pushed the selection to its clients
		m, err := ctl.ReadMessage()
		if err != nil {
			t.Fatalf("controller never got the remote clipboard (oracle): %v", err)
		}
		if m.Type == rfbclient.MsgServerCutText && bytes.Contains(m.Raw, []byte(secret)) {
			break
		}
	}
	if err := viewer.Request(false, 0, 0, 1, 1); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := viewer.ReadMessage()
		if err != nil {
			t.Fatalf("viewer: %v", err)
		}
		if m.Type == rfbclient.MsgServerCutText {
			t.Fatalf("a viewer-role VNC channel was sent the remote clipboard: %q", m.Raw[8:])
		}
		if m.Type == rfbclient.MsgFramebufferUpdate {
			return // the update asked for after the push, with no cut text before it
		}
	}
}

var _ = strings.Contains
