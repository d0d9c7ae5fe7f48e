package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

const goodSessions = `organizations:
  - id: o1
    api_keys:
      - k1
      - {key: kv, role: viewer}
  - id: o2
    api_keys: [k2]
sessions:
  - kind: browser_session
    id: pbs_1
    organization: o1
    upstream: tcp://127.0.0.1:5900
    control: user
    cdp_url: http://127.0.0.1:9222
    cdp_headers: {x-api-key: cdp-secret}
  - kind: task
    id: t1
    organization: o2
    upstream: ws://127.0.0.1:6080/
    upstream_headers: {x-api-key: up-secret}
`

// TestSessionsFileStrict: every kind of mistake is refused with the file's
// name and the line of the mistake.
func TestSessionsFileStrict(t *testing.T) {
	if _, err := proxy.ParseSessionsFile("s.yaml", []byte(goodSessions), rfbparse.Agent); err != nil {
		t.Fatalf("good file refused: %v", err)
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown session key", strings.Replace(goodSessions, "    control: user\n", "    contrl: user\n", 1), `line 13: unknown key "contrl"`},
		{"unknown top key", goodSessions + "extra: 1\n", `line 21: unknown key "extra"`},
		{"unknown org key", strings.Replace(goodSessions, "  - id: o2\n", "  - id: o2\n    name: x\n", 1), `line 7: unknown key "name"`},
		{"unknown api key field", strings.Replace(goodSessions, "role: viewer", "rol: viewer", 1), `line 5: unknown key "rol"`},
		{"bad role", strings.Replace(goodSessions, "role: viewer", "role: owner", 1), `line 5: role "owner"`},
		{"unlisted organization", strings.Replace(goodSessions, "organization: o2", "organization: o3", 1), `line 16: session task/t1: organization "o3" is not listed`},
		{"key in two organizations", strings.Replace(goodSessions, "api_keys: [k2]", "api_keys: [k1]", 1), "line 7: an api key is listed twice (first on line 4)"},
		{"duplicate session", strings.Replace(strings.Replace(goodSessions, "kind: task", "kind: browser_session", 1), "id: t1", "id: pbs_1", 1),
			"line 16: session browser_session/pbs_1 is listed twice (first on line 9)"},
		{"duplicate organization", strings.Replace(goodSessions, "id: o2", "id: o1", 1), `line 6: organization "o1" is listed twice (first on line 2)`},
		{"no sessions", "organizations: [{id: o1, api_keys: [k1]}]\nsessions: []\n", "line 2: no sessions"},
		{"sessions missing", "organizations: [{id: o1, api_keys: [k1]}]\n", "line 1: no sessions"},
		{"no organizations", "sessions:\n- {kind: task, id: t1, organization: o1, upstream: 'tcp://127.0.0.1:1'}\n", "line 1: no organizations"},
		{"empty file", "", "empty"},
		{"comment only", "# nothing\n", "empty"},
		{"repeated key", strings.Replace(goodSessions, "    control: user\n", "    control: user\n    control: agent\n", 1), `line 14: key "control" given twice`},
		{"bad kind", strings.Replace(goodSessions, "kind: task", "kind: job", 1), `line 16: session kind "job"`},
		{"bad upstream", strings.Replace(goodSessions, "ws://127.0.0.1:6080/", "http://x/", 1), "line 16: session task/t1: upstream"},
		{"bad cdp_url", strings.Replace(goodSessions, "http://127.0.0.1:9222", "ftp://x", 1), "line 9: session browser_session/pbs_1: cdp_url"},
		{"cdp_headers alone", strings.Replace(goodSessions, "    cdp_url: http://127.0.0.1:9222\n", "", 1), "cdp_headers without cdp_url"},
		{"empty api key", strings.Replace(goodSessions, "[k2]", "[\"\"]", 1), "line 7: empty api key"},
		{"api keys not a list", strings.Replace(goodSessions, "[k2]", "k2", 1), "line 7: api_keys: want a list"},
		{"header not a string", strings.Replace(goodSessions, "{x-api-key: up-secret}", "{x-api-key: [a]}", 1), "line 20: upstream_headers.x-api-key: want a string"},
		{"missing upstream", strings.Replace(goodSessions, "    upstream: tcp://127.0.0.1:5900\n", "", 1), "line 9: upstream is required"},
		{"not yaml", "organizations: [\n", "s.yaml"},
		{"two documents", goodSessions + "---\norganizations: []\n", "line 21: a second YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proxy.ParseSessionsFile("s.yaml", []byte(tc.doc), rfbparse.Agent)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !strings.Contains(err.Error(), "s.yaml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want the file name and %q", err, tc.want)
			}
		})
	}
}

// TestSessionsFileFields: every field reaches the route, roles come from
// the API key, and both channels are served.
func TestSessionsFileFields(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(f, []byte(goodSessions), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	req := func(path, key string) *upgrade.Request {
		return &upgrade.Request{Path: path, Query: url.Values{"apikey": {key}, "client_id": {"c1"}}}
	}
	for _, ch := range []string{"vnc", "messages"} {
		rt, err := sr.Resolve(context.Background(), req("/v1/stream/"+ch+"/browser_session/pbs_1", "k1"))
		if err != nil {
			t.Fatalf("%s channel: %v", ch, err)
		}
		if rt.CDPURL != "http://127.0.0.1:9222" || rt.CDPHeader.Get("x-api-key") != "cdp-secret" || len(rt.Header) != 0 {
			t.Errorf("%s: cdp %q %v, upstream headers %v", ch, rt.CDPURL, rt.CDPHeader, rt.Header)
		}
		if rt.Control != rfbparse.User || rt.Role != proxy.RoleController || rt.ClientID != "c1" {
			t.Errorf("%s: control %v role %v client %q", ch, rt.Control, rt.Role, rt.ClientID)
		}
		if rt.Record != nil {
			t.Errorf("%s: record %v, want nil (follow --record)", ch, *rt.Record)
		}
	}
	rt, err := sr.Resolve(context.Background(), req("/api/v1/stream/messages/browser_session/pbs_1", "kv"))
	if err != nil || rt.Role != proxy.RoleViewer {
		t.Fatalf("viewer key: %v %v", rt, err)
	}
	rt, err = sr.Resolve(context.Background(), req("/v1/stream/vnc/task/t1", "k2"))
	if err != nil || rt.Control != rfbparse.Agent || rt.Header.Get("x-api-key") != "up-secret" || rt.CDPURL != "" {
		t.Fatalf("task: %+v %v", rt, err)
	}
	if _, err := sr.Resolve(context.Background(), req("/v1/stream/vnc/task/t1", "k1")); statusOf(err) != http.StatusForbidden {
		t.Errorf("other organization's session: %v, want 403", err)
	}

	// A bad reload keeps the table; an unchanged file is not swapped.
	if changed, err := sr.Reload(f); err != nil || changed {
		t.Errorf("reload of the same bytes: changed %v, %v", changed, err)
	}
	if err := os.WriteFile(f, []byte(strings.Replace(goodSessions, "organization: o2", "organization: nope", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.Reload(f); err == nil || !strings.Contains(err.Error(), "line 16") {
		t.Errorf("bad reload: %v", err)
	}
	if _, err := sr.Resolve(context.Background(), req("/v1/stream/vnc/task/t1", "k2")); err != nil {
		t.Errorf("after a bad reload the old table must serve: %v", err)
	}
}

func statusOf(err error) int {
	var he *upgrade.Error
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// TestSessionsFileRemovedSessionEnds: a reload that drops a session ends its
// live viewers with 1000 session-ended; a session still listed keeps going.
func TestSessionsFileRemovedSessionEnds(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	doc := func(ids ...string) string {
		s := "organizations: [{id: o1, api_keys: [k1]}]\nsessions:\n"
		for _, id := range ids {
			s += "- {kind: task, id: " + id + ", organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
		}
		return s
	}
	f := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(f, []byte(doc("t1", "t2")), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.User)
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy(), LivenessPeriod: 50 * time.Millisecond})
	gone := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	gone.connect("/v1/stream/vnc/task/t1?client_id=a&apikey=k1", nil)
	kept := &e2e{t: t, vnc: vnc, srv: srv, addr: addr}
	kept.connect("/v1/stream/vnc/task/t2?client_id=b&apikey=k1", nil)
	if err := os.WriteFile(f, []byte(doc("t2")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.Reload(f); err != nil {
		t.Fatal(err)
	}
	var ce *rfbclient.CloseError
	for err == nil {
		_, err = gone.rfb.ReadMessage()
	}
	if !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "session-ended" {
		t.Fatalf("removed session: %v, want close 1000 session-ended", err)
	}
	kept.send(keyMsg(true, 'k'))
	kept.expectUpstream(keyMsg(true, 'k'))
}

// TestSessionsReloadConcurrent: resolves racing reloads (good and bad files)
// always see one whole table: under -race, and every answer is the session
// or 401 (the key is not in the table in use), never anything else.
func TestSessionsReloadConcurrent(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s.yaml")
	doc := func(key string) string {
		return "organizations: [{id: o1, api_keys: [" + key + "]}]\nsessions:\n- {kind: task, id: t1, organization: o1, upstream: 'tcp://127.0.0.1:1'}\n"
	}
	if err := os.WriteFile(f, []byte(doc("ka")), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				for _, key := range []string{"ka", "kb"} {
					rt, err := sr.Resolve(context.Background(), &upgrade.Request{Path: "/v1/stream/vnc/task/t1",
						Query: url.Values{"apikey": {key}, "client_id": {"c"}}})
					if err != nil && statusOf(err) != http.StatusUnauthorized || err == nil && rt.ID != "t1" {
						errs <- fmt.Errorf("key %s: %v %v: want t1 or 401", key, rt, err)
						return
					}
				}
			}
		}()
	}
	for i := range 200 {
		key := "ka"
		if i%2 == 1 {
			key = "kb"
		}
		body := doc(key)
		if i%7 == 0 {
			body = "organizations: [\n" // bad: refused, the table stays
		}
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = sr.Reload(f)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if sr.Sessions() != 1 {
		t.Fatalf("table has %d sessions", sr.Sessions())
	}
}

// FuzzSessionsFile: no input panics the parser; what it accepts has
// sessions of listed organizations and no key twice.
func FuzzSessionsFile(f *testing.F) {
	f.Add([]byte(goodSessions))
	f.Add([]byte("organizations: [{id: o1, api_keys: [! k1]}]\nsessions: [{kind: task, id: !x t, organization: o1, upstream: 'tcp://h:1'}]\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := proxy.ParseSessionsFile("f.yaml", b, rfbparse.Agent)
		if err != nil {
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		orgs, keys := map[string]bool{}, map[string]bool{}
		for _, o := range sf.Organizations {
			orgs[o.ID] = true
			for _, k := range o.APIKeys {
				if keys[k.Key] || k.Key == "" {
					t.Fatalf("key %q twice or empty", k.Key)
				}
				keys[k.Key] = true
			}
		}
		if len(sf.Sessions) == 0 {
			t.Fatal("accepted an empty table")
		}
		for _, rt := range sf.Sessions {
			if !orgs[rt.Organization] || rt.Upstream == nil {
				t.Fatalf("session %+v", rt)
			}
		}
	})
}

// TestSessionsFileRecord: a session's record field overrides --record
// (true or false); anything else is an error naming the line.
func TestSessionsFileRecord(t *testing.T) {
	for _, v := range []bool{true, false} {
		doc := strings.Replace(goodSessions, "    control: user\n", "    control: user\n    record: "+strconv.FormatBool(v)+"\n", 1)
		f := filepath.Join(t.TempDir(), "s.yaml")
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
		if err != nil {
			t.Fatalf("record: %v: %v", v, err)
		}
		rt, err := sr.Resolve(context.Background(), &upgrade.Request{Path: "/v1/stream/vnc/browser_session/pbs_1",
			Query: url.Values{"apikey": {"k1"}, "client_id": {"c1"}}})
		if err != nil || rt.Record == nil || *rt.Record != v {
			t.Errorf("record: %v: route %+v %v", v, rt, err)
		}
	}
	bad := strings.Replace(goodSessions, "    control: user\n", "    control: user\n    record: sometimes\n", 1)
	if _, err := proxy.ParseSessionsFile("s.yaml", []byte(bad), rfbparse.Agent); err == nil || !strings.Contains(err.Error(), "line 14: record: want true or false") {
		t.Errorf("record: sometimes: %v", err)
	}
}
