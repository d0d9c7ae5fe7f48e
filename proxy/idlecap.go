package proxy

import (
	"net/http"
	"strings"

	"vncedge/proxy/upgrade"
)

// MaxClientIDLen bounds a client_id: the reference platform's are UUIDs (36
// bytes). A client_id is a registry key held for ControlGrace after its
// channels close and is repeated in every log line of its session.
const MaxClientIDLen = 128

// DefaultMaxIdlePairsPerOrg bounds the idle pairs (both channels closed,
// control state kept for ControlGrace) one organization holds: past it the
// oldest idle pair of the organization is forgotten, so that channels
// opened and closed with fresh client_ids cannot grow the registry without
// bound. A forgotten pair's viewer reconnects with the session's initial
// control state, as after ControlGrace.
const DefaultMaxIdlePairsPerOrg = 4096

// checkClientID applies one rule on every resolver to the client_id of a
// platform route, as the query gave it: present and not blank, at most
// MaxClientIDLen bytes of printable ASCII other than space (letters, digits
// and punctuation; a UUID fits). A bad one is a 400 before the upgrade.
func checkClientID(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return &upgrade.Error{Status: http.StatusBadRequest, Message: "client_id is required"}
	}
	if len(raw) > MaxClientIDLen {
		return &upgrade.Error{Status: http.StatusBadRequest, Message: "client_id is longer than 128 bytes"}
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f {
			return &upgrade.Error{Status: http.StatusBadRequest, Message: "client_id: only printable ASCII without spaces"}
		}
	}
	return nil
}

// idleList is one organization's idle pairs, oldest first. Guarded by
// registry.mu.
type idleList struct {
	head, tail *pair
	n          int
}

// markIdle notes that p has no channel left, and forgets the organization's
// oldest idle pairs over the cap. The caller holds r.mu.
func (r *registry) markIdle(p *pair) {
	if p.idleList != nil {
		return
	}
	if r.idle == nil {
		r.idle = map[string]*idleList{}
	}
	l := r.idle[p.org]
	if l == nil {
		l = &idleList{}
		r.idle[p.org] = l
	}
	p.idleList, p.idlePrev, p.idleNext = l, l.tail, nil
	if l.tail != nil {
		l.tail.idleNext = p
	} else {
		l.head = p
	}
	l.tail = p
	l.n++
	max := r.maxIdle
	if max <= 0 {
		max = DefaultMaxIdlePairsPerOrg
	}
	for l.n > max {
		q := l.head
		r.unmarkIdle(q)
		delete(r.pairs, q.key)
		r.unindex(q)
		go q.clip.close()
	}
}

// unmarkIdle takes p off its organization's idle list, if it is on one. The
// caller holds r.mu.
func (r *registry) unmarkIdle(p *pair) {
	l := p.idleList
	if l == nil {
		return
	}
	if p.idlePrev != nil {
		p.idlePrev.idleNext = p.idleNext
	} else {
		l.head = p.idleNext
	}
	if p.idleNext != nil {
		p.idleNext.idlePrev = p.idlePrev
	} else {
		l.tail = p.idlePrev
	}
	p.idleList, p.idlePrev, p.idleNext = nil, nil, nil
	l.n--
	if l.n == 0 {
		delete(r.idle, p.org)
	}
}
