package proxy

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// TestIdlePairCapPerOrg: an organization's idle pairs past the cap are
// forgotten oldest first; a pair in use is never forgotten, a pair used
// again leaves the idle list, and another organization's pairs are not
// touched.
func TestIdlePairCapPerOrg(t *testing.T) {
	r := newRegistry()
	r.maxIdle = 10
	route := func(org, id string) *Route {
		return &Route{Kind: "task", ID: "t1", Organization: org, ClientID: id, Control: rfbparse.User}
	}
	open := func(org, id string) *session {
		s := &session{}
		p, _, _, ok := r.attachMessages(&msgChannel{s: s}, route(org, id))
		if !ok {
			t.Fatalf("attach %s/%s refused", org, id)
		}
		s.pair = p
		return s
	}
	live := open("o1", "live")
	other := open("o2", "other")
	r.detach(other)
	for i := 0; i < 1000; i++ {
		r.detach(open("o1", "c"+strconv.Itoa(i)))
		if i == 500 { // an old pair used again goes to the back of the list
			r.detach(open("o1", "c3"))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	o1 := 0
	for k := range r.pairs {
		if k.clientID != "live" && k.clientID != "other" {
			o1++
		}
	}
	if o1 != 10 || r.idle["o1"].n != 10 {
		t.Fatalf("o1 holds %d idle pairs (list %d), want the cap 10", o1, r.idle["o1"].n)
	}
	for _, id := range []string{"live", "other", "c999", "c990"} {
		if r.pairs[channelKey{id, "task", "t1"}] == nil {
			t.Errorf("pair %s forgotten", id)
		}
	}
	if r.pairs[channelKey{"c3", "task", "t1"}] != nil || r.pairs[channelKey{"c989", "task", "t1"}] != nil {
		t.Error("an idle pair older than the last 10 is still held")
	}
	if live.pair.idleList != nil {
		t.Error("a pair in use is on the idle list")
	}
}

// TestCheckClientID: one rule on every resolver (the e2e proof is
// TestPlatAttackBlankClientID and TestPlatAttackLongClientID).
func TestCheckClientID(t *testing.T) {
	for _, id := range []string{"c1", "3f2b8c1e-0d7a-4e55-9a61-2f5b8e0c9d11", strings.Repeat("x", MaxClientIDLen), "a:b@c.d_e~f+g"} {
		if err := checkClientID(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"", " ", "\t", "c1 ", "c\x001", "é", strings.Repeat("x", MaxClientIDLen+1)} {
		var ue *upgrade.Error
		if err := checkClientID(id); !errors.As(err, &ue) || ue.Status != 400 {
			t.Errorf("%q: %v, want a 400", id, err)
		}
	}
}
