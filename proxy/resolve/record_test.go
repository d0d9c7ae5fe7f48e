package resolve

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// A token's record claim and the control plane's record field override
// --record for the session; absent, the route follows the server.
func TestRecordOverride(t *testing.T) {
	yes, no := true, false
	k := mustKeys(t)
	r := newTokenResolver(t, nil)
	cp := newControlPlane(t)
	for _, v := range []*bool{nil, &yes, &no} {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, with(claims(), func(c *TokenClaims) { c.Record = v }))
		rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(tok, "c1")))
		if err != nil || !sameBool(rt.Record, v) {
			t.Errorf("token record claim %v: route record %v, %v", show(v), show(rt.Record), err)
		}
		cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.Record = v })
		h := newHTTPResolver(t, cp, &clock{t: t0}) // no cached answer
		rt, err = h.Resolve(context.Background(), request(vncPath, keyQuery()))
		if err != nil || !sameBool(rt.Record, v) {
			t.Errorf("control-plane record %v: route record %v, %v", show(v), show(rt.Record), err)
		}
	}
}

func sameBool(a, b *bool) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func show(b *bool) any {
	if b == nil {
		return "absent"
	}
	return *b
}
