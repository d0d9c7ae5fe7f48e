package proxy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// TestViewerRoleFailsClosed: ATTACK (hostile or unexpected server) — a
// viewer-role channel is pushed a ServerCutText with the extended-clipboard
// length form (dropped: the Bell after it arrives, the text does not), then
// a rectangle in an encoding its SetEncodings never allowed (Tight): the
// channel ends with 1008 and the filter's reason, and nothing of the
// unframeable update reaches it.
func TestViewerRoleFailsClosed(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations:\n- id: o1\n  api_keys: [kc, {key: kv, role: viewer}]\nsessions:\n" +
		"- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.User)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy()})
	viewer := platattackRFB(t, addr, "/v1/stream/vnc/task/t1?client_id=v1&apikey=kv")
	conn, err := vnc.WaitConn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const secret = "failclosed-secret"
	ext := append([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff - byte(len(secret)) + 1}, secret...) // length -len
	tight := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 7, 'T', 'I', 'G', 'H', 'T'}
	if err := conn.Push(append(append(ext, 2), tight...)); err != nil {
		t.Fatal(err)
	}
	m, err := viewer.ReadMessage()
	if err != nil || m.Type != rfbclient.MsgBell {
		t.Fatalf("after the dropped extended cut text: %+v %v, want the Bell", m, err)
	}
	for err == nil {
		m, err = viewer.ReadMessage()
		if err == nil && (m.Type == rfbclient.MsgServerCutText || strings.Contains(string(m.Raw), "TIGHT")) {
			t.Fatalf("passed: %+v", m)
		}
	}
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) || ce.Code != 1008 || !strings.Contains(ce.Reason, "cannot be framed") {
		t.Fatalf("viewer got %v, want close 1008 with the filter's reason", err)
	}
}
