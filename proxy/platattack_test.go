package proxy_test

// Attacks on the platform flow and viewer roles (issue 14). Every test here
// failed on the code it was written against; each says what the attack is.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
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
		if os.Getenv(teststack.RequireRealEnv) == "1" {
			t.Fatalf("missing python3 tkinter (apt-get install python3-tk) and %s=1", teststack.RequireRealEnv)
		}
		t.Skip("missing python3 tkinter (apt-get install python3-tk)")
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

// TestPlatAttackSessionsErrorLeaksSecrets: ATTACK (careless operator) — a
// sessions file error is logged as is (at start, and on every failed reload:
// "configuration reload failed … err=…", never passed through
// tracing.Redact). Writing an API key as a mapping ("- sk_live_…: viewer",
// the natural guess at "key: role") makes the error quote the key as an
// unknown key; a mistyped upstream or cdp_url with credentials in it is
// quoted whole. The error must name the line, not the secret.
func TestPlatAttackSessionsErrorLeaksSecrets(t *testing.T) {
	const secret = "SECRET4711"
	for _, tc := range []struct{ name, from, to string }{
		{"api key written as key: role", "      - k1\n", "      - sk_live_" + secret + ": viewer\n"},
		{"api key as a flow mapping", "      - k1\n", "      - {sk_live_" + secret + ": viewer}\n"},
		{"upstream scheme typo with userinfo", "tcp://127.0.0.1:5900", "wsss://svc:" + secret + "@host/"},
		{"upstream bad port with userinfo", "tcp://127.0.0.1:5900", "wss://svc:" + secret + "@host:bad/"},
		{"cdp_url bad port with userinfo", "http://127.0.0.1:9222", "http://u:" + secret + "@h:badport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(goodSessions, tc.from, tc.to, 1)
			if doc == goodSessions {
				t.Fatal("test edit did not apply")
			}
			_, err := proxy.ParseSessionsFile("s.yaml", []byte(doc), rfbparse.Agent)
			if err == nil {
				t.Fatal("bad file accepted")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error that goes to the log quotes the secret: %v", err)
			}
		})
	}
}

// TestPlatAttackSessionsHeadersStrict: ATTACK (careless operator) — the
// sessions file is "read strictly", yet upstream_headers and cdp_headers
// accept header names and values that SafeHeaders later drops without a
// word (a name with a space or colon, a value with CR/LF, a hop-by-hop or
// handshake header): the operator's credential header is silently never
// sent and the upstream refuses every viewer. A header name given twice
// with a different case is also accepted when the first value is empty
// (h.Get("") cannot tell it was set). Each must be a load error naming the
// line.
func TestPlatAttackSessionsHeadersStrict(t *testing.T) {
	for _, tc := range []struct{ name, hdr string }{
		{"name with space and colon", `{"bad name:": v}`},
		{"value with CRLF", `{x-api-key: "a\r\nHost: evil"}`},
		{"handshake header", `{Sec-WebSocket-Key: abc}`},
		{"host header", `{Host: other.example}`},
		{"twice, first empty", `{x-api-key: '', X-Api-Key: other}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, field := range []string{"upstream_headers", "cdp_headers"} {
				doc := strings.Replace(goodSessions, "{x-api-key: up-secret}", tc.hdr, 1)
				if field == "cdp_headers" {
					doc = strings.Replace(goodSessions, "{x-api-key: cdp-secret}", tc.hdr, 1)
				}
				f, err := proxy.ParseSessionsFile("s.yaml", []byte(doc), rfbparse.Agent)
				if err == nil {
					var h []string
					for _, rt := range f.Sessions {
						for k, v := range rt.Header {
							h = append(h, k+"="+strings.Join(v, ","))
						}
						for k, v := range rt.CDPHeader {
							h = append(h, k+"="+strings.Join(v, ","))
						}
					}
					t.Errorf("%s %s accepted (headers %q); at send time it is dropped or one value silently wins", field, tc.hdr, h)
				} else if !strings.Contains(err.Error(), "line ") {
					t.Errorf("%s: error names no line: %v", field, err)
				}
			}
		})
	}
}

// TestPlatAttackLongClientID: ATTACK — client_id has no length limit: a
// 7 KiB client_id (anything up to the 8 KiB request head) is upgraded on
// both channels, kept as a registry key for ControlGrace after the channel
// closes (see TestPlatAttackIdlePairsUnbounded) and repeated in every log
// line of the session. The reference platform's client_ids are UUIDs; a
// client_id longer than a sane bound must be refused before the upgrade.
func TestPlatAttackLongClientID(t *testing.T) {
	_, _, addr := rolesProxy(t, "agent", rfbparse.DefaultPolicy(), nil)
	long := strings.Repeat("c", 7<<10)
	for _, path := range []string{rolesMsg, rolesVNC} {
		c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path+"?apikey=kv&client_id="+long, []string{"binary"}, nil)
		if err == nil {
			c.Close()
			t.Errorf("%s: a %d-byte client_id was upgraded", path, len(long))
			continue
		}
		var se *rfbclient.StatusError
		if !asStatus(err, &se) || se.Status != 400 {
			t.Errorf("%s: %v, want 400", path, err)
		}
	}
}

// TestPlatAttackRevokedKeyKeepsSession: ATTACK — an API key leaks and the
// operator removes it from the sessions file. The reload succeeds, new
// connections with the key get 401, but the attacker's live channels go on
// for as long as it keeps them open: StaticResolver.Verify checks only that
// the session is still listed for its organization, never the credential
// that admitted the channel (a token at least expires). The same holds for
// a key downgraded from controller to viewer: its live channel keeps
// control and input. A revoked credential's live channels must end at the
// next liveness check, as a removed session's do.
func TestPlatAttackRevokedKeyKeepsSession(t *testing.T) {
	for _, tc := range []struct{ name, keys string }{
		{"key removed", "kept"},
		{"key downgraded to viewer", "{key: leaked, role: viewer}, kept"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
			doc := func(keys string) string {
				return "organizations: [{id: o1, api_keys: [" + keys + "]}]\nsessions:\n" +
					"- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
			}
			f := filepath.Join(t.TempDir(), "s.yaml")
			if err := os.WriteFile(f, []byte(doc("leaked, kept")), 0o600); err != nil {
				t.Fatal(err)
			}
			sr, err := proxy.LoadStaticResolver(f, rfbparse.User)
			if err != nil {
				t.Fatal(err)
			}
			srv, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy(), LivenessPeriod: 50 * time.Millisecond})
			attacker := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
			attacker.connect("/v1/stream/vnc/task/t1?client_id=a&apikey=leaked", nil)
			if err := os.WriteFile(f, []byte(doc(tc.keys)), 0o600); err != nil {
				t.Fatal(err)
			}
			if changed, err := sr.Reload(f); err != nil || !changed {
				t.Fatalf("reload: %v %v", changed, err)
			}
			// Failure bound only: 60 liveness periods.
			_ = attacker.view.NetConn().SetDeadline(time.Now().Add(3 * time.Second))
			for err == nil {
				_, err = attacker.rfb.ReadMessage()
			}
			var ce *rfbclient.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("a controller channel of a revoked/downgraded API key is still live after the reload: %v", err)
			}
		})
	}
}

// TestPlatAttackEmptyRoleWidens: ATTACK (careless operator) — the strict
// sessions file refuses "role: owner" and "role: Viewer", but an explicit
// empty role (role: "" — what a template with an unset variable renders
// when it quotes) silently makes the key a controller: the one mistake
// that widens access is the one not caught. Only an absent role may mean
// the default.
func TestPlatAttackEmptyRoleWidens(t *testing.T) {
	for _, role := range []string{`''`, `""`} {
		doc := strings.Replace(goodSessions, "role: viewer", "role: "+role, 1)
		f, err := proxy.ParseSessionsFile("s.yaml", []byte(doc), rfbparse.Agent)
		if err == nil {
			t.Errorf("role: %s accepted (%d organizations): the key it was meant to restrict is now a controller", role, len(f.Organizations))
		}
	}
}

// TestPlatAttackBlankClientID: ATTACK — "client_id is required
// for every resolver", and the token and control-plane resolvers trim it
// (resolve.Credentials: client_id=%20 is "missing client_id", 400). The
// sessions-file resolver takes it raw, so a blank client_id ("%20", a tab)
// is upgraded on both channels under --sessions, and "c1" and "c1%20" are
// two different viewers' pairs there but one under tokens. A blank
// client_id must be refused with 400 whatever the resolver.
// The --target resolver (TargetResolver) takes it raw too.
func TestPlatAttackBlankClientID(t *testing.T) {
	_, _, sessions := rolesProxy(t, "agent", rfbparse.DefaultPolicy(), nil)
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	_, target := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.Agent))
	for _, addr := range []string{sessions, target} {
		for _, id := range []string{"%20", "%09", "%20%20"} {
			for _, path := range []string{rolesMsg, rolesVNC} {
				c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path+"?apikey=kc&client_id="+id, []string{"binary"}, nil)
				if err == nil {
					c.Close()
					t.Errorf("%s: client_id=%s (blank) was upgraded", path, id)
					continue
				}
				var se *rfbclient.StatusError
				if !asStatus(err, &se) || se.Status != 400 {
					t.Errorf("%s client_id=%s: %v, want 400", path, id, err)
				}
			}
		}
	}
}

// TestPlatAttackHugeSessionsFile: ATTACK (careless operator, or anyone who
// can write the watched directory outside Kubernetes' 1 MiB ConfigMap cap) —
// the sessions file is read and parsed whole, with no size bound: the YAML
// node tree of a file costs ~60x its size, and the first mistake is found
// only after the whole tree is built. Measured: a 32 MiB file takes 22 s and
// allocates ~2 GB in the watcher's reload on a live proxy. Here a 1.25 MiB
// file (an accidental `cat log >> sessions.yaml`) must be refused without
// allocating more than a small multiple of its size.
func TestPlatAttackHugeSessionsFile(t *testing.T) {
	var b strings.Builder
	b.WriteString("organizations:\n  - id: o1\n    api_keys:\n")
	for b.Len() < 5<<18 { // 1.25 MiB: just over a ConfigMap
		b.WriteString("      - [a, b, c, d, e, f, g, h]\n")
	}
	f := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Fatal("junk file accepted")
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 24<<20 {
		t.Errorf("refusing a %d-byte sessions file allocated %d MiB (%v)", b.Len(), alloc>>20, err)
	}
}
