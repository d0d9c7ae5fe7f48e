package resolve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy/upgrade"
)

func resolveStatusOf(err error) int {
	var he *upgrade.Error
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// TestHostileControlPlaneRedirect: the control plane answers 302 to
// another host. Neither the default client nor a caller's client follows
// it, so the other host never sees the viewer's credential.
func TestHostileControlPlaneRedirect(t *testing.T) {
	var hits atomic.Int32
	var got atomic.Value
	third := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		got.Store(r.Header.Get("X-Api-Key"))
	}))
	defer third.Close()
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, third.URL+r.URL.Path, http.StatusFound)
	}))
	defer cp.Close()
	for name, client := range map[string]*http.Client{"default": nil, "caller's": {}} {
		t.Run(name, func(t *testing.T) {
			h, err := NewHTTPResolver(HTTPConfig{Base: cp.URL + "/s/", Client: client})
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Resolve(context.Background(), request(vncPath, keyQuery()))
			if err == nil {
				t.Fatal("resolve through a redirect succeeded")
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("the redirect target got %d requests (x-api-key %q)", n, got.Load())
			}
		})
	}
}

// TestHostileControlPlaneEndlessHead: a control plane that answers with an
// endless header line fails the resolve at once; nothing is buffered past
// the head limit.
func TestHostileControlPlaneEndlessHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Endless: ")
				chunk := bytes.Repeat([]byte("a"), 64<<10)
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	h, err := NewHTTPResolver(HTTPConfig{Base: "http://" + ln.Addr().String() + "/s/", Timeout: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = h.Resolve(context.Background(), request(vncPath, keyQuery()))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("resolve: %v after %v; want a quick failure", err, time.Since(start))
	}
	if s := resolveStatusOf(err); s != http.StatusServiceUnavailable && s != http.StatusBadGateway {
		t.Errorf("status %d, want 502 or 503", s)
	}
}

// TestHostileUpstreamHeaders: upstream_headers (and cdp_headers) may not
// set Host, hop-by-hop or WebSocket handshake headers: such an answer is
// malformed (502), and nothing is dialed.
func TestHostileUpstreamHeaders(t *testing.T) {
	for _, name := range []string{"Host", "host", "Connection", "Upgrade", "Transfer-Encoding", "Sec-WebSocket-Key", "Proxy-Authorization", "Bad Name"} {
		for _, field := range []string{"upstream", "cdp"} {
			t.Run(field+"/"+name, func(t *testing.T) {
				cp := newControlPlane(t)
				cp.set("browser_session/pbs_1", func(s *SessionInfo) {
					liveSession(s)
					if field == "upstream" {
						s.UpstreamHeaders = map[string]string{name: "evil.example"}
					} else {
						s.CDPHeaders = map[string]string{name: "evil.example"}
					}
				})
				h := newHTTPResolver(t, cp, &clock{t: t0})
				_, err := h.Resolve(context.Background(), request(vncPath, keyQuery()))
				if s := resolveStatusOf(err); s != http.StatusBadGateway {
					t.Fatalf("resolve with %s_headers %q: %v, want 502", field, name, err)
				}
			})
		}
	}
}

// TestHostileManyUpstreamHeaders: a control plane cannot make vncedge send
// an upstream a huge handshake: more than 32 headers, or over 8 KiB, is a
// malformed answer.
func TestHostileManyUpstreamHeaders(t *testing.T) {
	many := map[string]string{}
	for i := range 33 {
		many[fmt.Sprintf("X-H%d", i)] = "v"
	}
	for name, h := range map[string]map[string]string{"count": many, "size": {"X-Big": strings.Repeat("v", 9<<10)}} {
		cp := newControlPlane(t)
		cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.UpstreamHeaders = h })
		h := newHTTPResolver(t, cp, &clock{t: t0})
		if _, err := h.Resolve(context.Background(), request(vncPath, keyQuery())); resolveStatusOf(err) != http.StatusBadGateway {
			t.Errorf("%s: %v, want 502", name, err)
		}
	}
}

// TestCDPHeaderScope: the route's upstream headers (the viewer's x-api-key
// included) never go to the DevTools endpoint; cdp_headers go to DevTools
// only.
func TestCDPHeaderScope(t *testing.T) {
	for _, c := range []struct {
		name, cdp  string
		cdpHeaders map[string]string
		wantKey    bool
		wantCDP    string
	}{
		{name: "plain http cdp", cdp: "http://10.0.0.5:9222", wantKey: false},
		{name: "other tls host", cdp: "wss://devtools.example/b", wantKey: false},
		{name: "same routed edge", cdp: "wss://edge.example/pbs_1/tk/devtools/browser/b1", wantKey: false},
		{name: "same routed edge, configured", cdp: "wss://edge.example/pbs_1/tk/devtools/browser/b1",
			cdpHeaders: map[string]string{"X-Api-Key": apiKey}, wantKey: true},
		{name: "configured", cdp: "http://127.0.0.1:9222", cdpHeaders: map[string]string{"X-Cdp": "c1"}, wantCDP: "c1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cp := newControlPlane(t)
			cp.set("browser_session/pbs_1", func(s *SessionInfo) {
				liveSession(s)
				s.CDPURL, s.CDPHeaders = c.cdp, c.cdpHeaders
			})
			h := newHTTPResolver(t, cp, &clock{t: t0})
			rt, err := h.Resolve(context.Background(), request(vncPath, keyQuery()))
			if err != nil {
				t.Fatal(err)
			}
			if rt.Header.Get("X-Api-Key") != apiKey || rt.Header.Get("X-Route") != "r1" {
				t.Fatalf("upstream header %v: want the key and route", rt.Header)
			}
			if got := rt.CDPHeader.Get("X-Api-Key") == apiKey; got != c.wantKey {
				t.Errorf("CDP gets x-api-key: %v, want %v", got, c.wantKey)
			}
			if rt.CDPHeader.Get("X-Route") != "" {
				t.Errorf("CDP gets the upstream's X-Route")
			}
			if got := rt.CDPHeader.Get("X-Cdp"); got != c.wantCDP {
				t.Errorf("CDP X-Cdp %q, want %q", got, c.wantCDP)
			}
		})
	}
}

// TestTokenCDPHeaderScope: the operator's --upstream-api-key goes to the
// routed wss upstream, and to DevTools only on that same edge over TLS;
// never to a plain or other DevTools endpoint.
func TestTokenCDPHeaderScope(t *testing.T) {
	k := mustKeys(t)
	r := newTokenResolver(t, func(c *TokenConfig) { c.UpstreamAPIKey = "platform-key" })
	for _, c := range []struct {
		cdp  string
		want bool
	}{
		{"", true}, // the browser address itself: the routed edge, wss
		{"ws://10.0.0.1:9222/devtools/browser/x", false},
		{"http://edge.example/pbs_1/tk", false},
		{"wss://other.example/pbs_1/tk/devtools/browser/b1", false},
	} {
		cl := claims()
		cl.CDPURL = c.cdp
		rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(mint(t, jwt.SigningMethodHS256, k.secret, cl), "c1")))
		if err != nil {
			t.Fatal(err)
		}
		if rt.Header.Get("X-Api-Key") != "platform-key" {
			t.Fatalf("the routed upstream lacks its key: %v", rt.Header)
		}
		if got := rt.CDPHeader.Get("X-Api-Key") != ""; got != c.want {
			t.Errorf("cdp %q (→ %s) gets the platform key: %v, want %v", c.cdp, rt.CDPURL, got, c.want)
		}
	}
}
