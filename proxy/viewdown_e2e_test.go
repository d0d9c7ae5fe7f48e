package proxy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// TestViewerRoleNoClipboardOverWebsockify: the viewer-role filter on a ws
// upstream (real websockify, which splits and merges frames freely, in
// front of real Xvnc): the remote clipboard reaches the controller (the
// oracle) but not the viewer, whose updates keep flowing after it.
func TestViewerRoleNoClipboardOverWebsockify(t *testing.T) {
	teststack.Require(t, "python3", "websockify")
	if err := exec.Command("python3", "-c", "import tkinter").Run(); err != nil {
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("missing python3 tkinter (apt-get install python3-tk) and %s=1", teststack.RequireRealEnv)
		}
		t.Skip("missing python3 tkinter (apt-get install python3-tk)")
	}
	x := teststack.StartXvnc(t)
	ws := teststack.StartWebsockify(t, x.Addr())
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
		"- {kind: browser_session, id: pbs_1, organization: o1, control: user, upstream: 'ws://" + ws + "/'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy()})
	const secret = "viewdown-ws-secret-0815"
	viewer := platattackRFB(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=v1&apikey=kv")
	ctl := platattackRFB(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=c1&apikey=kc")
	x.StartClient(t, "python3", "-c", `import tkinter,sys
r=tkinter.Tk(); r.withdraw(); r.clipboard_clear(); r.clipboard_append(sys.argv[1]); r.update(); r.mainloop()`, secret)
	for {
		m, err := ctl.ReadMessage()
		if err != nil {
			t.Fatalf("controller never got the remote clipboard (oracle): %v", err)
		}
		if m.Type == rfbclient.MsgServerCutText && bytes.Contains(m.Raw, []byte(secret)) {
			break
		}
	}
	for i := 0; i < 2; i++ { // two full updates after the push
		if err := viewer.Request(false, 0, 0, 64, 64); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := viewer.ReadMessage()
			if err != nil {
				t.Fatalf("viewer: %v", err)
			}
			if m.Type == rfbclient.MsgServerCutText {
				t.Fatalf("a viewer-role channel over websockify was sent the remote clipboard: %q", m.Raw[8:])
			}
			if m.Type == rfbclient.MsgFramebufferUpdate {
				break
			}
		}
	}
}
