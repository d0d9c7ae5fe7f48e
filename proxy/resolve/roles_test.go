package resolve

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
)

// TestTokenRoleClaim: the role claim sets the route's role; no claim is a
// controller; an unknown role is refused, never widened.
func TestTokenRoleClaim(t *testing.T) {
	k := mustKeys(t)
	r := newTokenResolver(t, nil)
	for _, tc := range []struct {
		claim  string
		want   proxy.Role
		status int
	}{
		{"", proxy.RoleController, 0},
		{"controller", proxy.RoleController, 0},
		{"viewer", proxy.RoleViewer, 0},
		{"owner", 0, http.StatusUnauthorized},
		{"Viewer", 0, http.StatusUnauthorized},
	} {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, with(claims(), func(c *TokenClaims) { c.Role = tc.claim }))
		rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(tok, "c1")))
		if tc.status != 0 {
			var he *upgrade.Error
			if !errors.As(err, &he) || he.Status != tc.status {
				t.Errorf("role %q: %v, want %d", tc.claim, err, tc.status)
			}
			continue
		}
		if err != nil || rt.Role != tc.want {
			t.Errorf("role %q: %v %v, want %v", tc.claim, rt, err, tc.want)
		}
	}
}

// TestHTTPRoleField: the control plane's role field sets the route's role.
func TestHTTPRoleField(t *testing.T) {
	cp := newControlPlane(t)
	for _, tc := range []struct {
		field  string
		want   proxy.Role
		status int
	}{
		{"", proxy.RoleController, 0},
		{"viewer", proxy.RoleViewer, 0},
		{"admin", 0, http.StatusBadGateway},
	} {
		cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.Role = tc.field })
		h := newHTTPResolver(t, cp, &clock{t: t0}) // no cached answer
		rt, err := h.Resolve(context.Background(), request(vncPath, keyQuery()))
		if tc.status != 0 {
			var he *upgrade.Error
			if !errors.As(err, &he) || he.Status != tc.status {
				t.Errorf("role %q: %v, want %d", tc.field, err, tc.status)
			}
			continue
		}
		if err != nil || rt.Role != tc.want {
			t.Errorf("role %q: %v %v, want %v", tc.field, rt, err, tc.want)
		}
	}
}

// TestTokenCDPHeader: the operator's upstream key goes to a TLS DevTools
// endpoint of the routed edge (as it did through the upstream headers before
// CDPHeader), and never to a plain one.
func TestTokenCDPHeader(t *testing.T) {
	k := mustKeys(t)
	r := newTokenResolver(t, func(c *TokenConfig) { c.UpstreamAPIKey = "edge-key" })
	for _, tc := range []struct{ cdp, want string }{
		{"wss://edge.example/pbs_1/tk/devtools/browser/b1", "edge-key"},
		{"ws://10.0.0.1:9222/devtools/browser/x", ""},
		{"http://10.0.0.1:9222", ""},
	} {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, with(claims(), func(c *TokenClaims) { c.CDPURL = tc.cdp }))
		rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(tok, "c1")))
		if err != nil {
			t.Fatal(err)
		}
		if got := rt.CDPHeader.Get("x-api-key"); got != tc.want {
			t.Errorf("%s: x-api-key %q, want %q", tc.cdp, got, tc.want)
		}
	}
}
