package proxy

import (
	"strconv"
	"strings"
	"testing"

	"vncedge/rfbparse"
)

// TestPlatAttackIdlePairsUnbounded: ATTACK — any credential of an
// organization (a viewer-role key suffices, and a message channel dials
// nothing upstream) can open and close channels with fresh client_ids, each
// up to the 8 KiB request head long. Every one leaves a pair in the
// registry for ControlGrace (5 minutes by default), with no cap on their
// number or on the client_id's length: at a few thousand connections a
// second that is gigabytes held. Here 5,000 channels of one organization
// with 7 KiB client_ids come and go; what the registry then still holds for
// them must stay bounded (a cap on client_id length, on idle pairs per
// organization, or both), not grow with every reconnect.
func TestPlatAttackIdlePairsUnbounded(t *testing.T) {
	r := newRegistry()
	pad := strings.Repeat("x", 7<<10)
	for i := 0; i < 5000; i++ {
		s := &session{}
		p, _, _, ok := r.attachMessages(&msgChannel{s: s}, &Route{Kind: "browser_session", ID: "pbs_1", Organization: "o1",
			ClientID: pad + strconv.Itoa(i), Control: rfbparse.Agent, Role: RoleViewer})
		if !ok {
			continue // refused: holds nothing
		}
		s.pair = p
		r.detach(s)
	}
	r.mu.Lock()
	held := 0
	for k := range r.pairs {
		held += len(k.clientID)
	}
	n := len(r.pairs)
	r.mu.Unlock()
	const limit = 4 << 20
	if held > limit {
		t.Errorf("after 5,000 short-lived channels of one organization the registry holds %d idle pairs with %d bytes of client_id (limit %d)", n, held, limit)
	}
}
