package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"vncedge/rfbparse"
)

// channelKey names one viewer's pair of channels: its client_id and the
// platform session both channels belong to.
type channelKey struct{ clientID, kind, id string }

// pair is the state a viewer's VNC channel and message channel share: who has
// control (kept across a VNC reconnect) and the clipboard's CDP client.
type pair struct {
	key channelKey

	// Guarded by registry.mu.
	org        string
	vnc        *session
	msg        *msgChannel
	control    rfbparse.Interactor
	controlSet bool
	idleSince  time.Time // both channels gone since; swept after ControlGrace
	cdpURL     string
	role       Role // of the VNC channel
	msgRole    Role // of the message channel
	clip       clipboard
	askedAt    time.Time // when an ask-for-clipboard was sent with the user in control; zero: none pending

	idleList           *idleList // set while idle (idlecap.go); guarded by registry.mu
	idlePrev, idleNext *pair

	lastCutText atomic.Int64 // unix ns of the viewer's last ClientCutText
	clipBusy    atomic.Bool  // a clipboard operation is in flight (clipguard.go)
}

// registry pairs channels by channelKey. Its lock is taken only when channels
// open, close or change control, never per frame.
type registry struct {
	mu    sync.Mutex
	pairs map[channelKey]*pair

	bySession map[sessionKey]*sessionPairs // the pairs of each platform session (roles.go)
	idle      map[string]*idleList         // idle pairs per organization (idlecap.go)
	maxIdle   int                          // idle pairs per organization; 0: DefaultMaxIdlePairsPerOrg
}

func newRegistry() *registry { return &registry{pairs: map[channelKey]*pair{}} }

// attachVNC registers s, a VNC channel of route rt, and returns its pair,
// the VNC channel it replaces (to be closed with "replaced"), and who has
// control. It fails as join does.
func (r *registry) attachVNC(s *session, rt *Route) (p *pair, replaced *session, control rfbparse.Interactor, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p = r.join(rt); p == nil {
		return nil, nil, 0, false
	}
	replaced, p.vnc, p.role = p.vnc, s, rt.Role
	return p, replaced, p.control, true
}

// attachMessages registers m, a message channel of route rt, and returns
// its pair, the message channel it replaces (to be closed with "replaced"),
// and who has control. It fails as join does.
func (r *registry) attachMessages(m *msgChannel, rt *Route) (p *pair, replaced *msgChannel, control rfbparse.Interactor, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p = r.join(rt); p == nil {
		return nil, nil, 0, false
	}
	replaced, p.msg, p.msgRole = p.msg, m, rt.Role
	return p, replaced, p.control, true
}

// join returns the pair a channel of route rt attaches to, made if needed,
// with its control and CDP endpoint set from rt; the caller holds r.mu and
// puts the channel in. It is nil when the pair belongs to another
// organization, or has a live channel of another role (roles.go).
func (r *registry) join(rt *Route) *pair {
	if len(rt.ClientID) > MaxClientIDLen {
		return nil // resolvers refuse it first (idlecap.go)
	}
	key := channelKey{rt.ClientID, rt.Kind, rt.ID}
	p := r.pairs[key]
	if p != nil && p.vnc == nil && p.msg == nil && p.org != rt.Organization {
		// An idle pair taken over by another organization starts fresh:
		// nothing of the previous one (control state, a pending ask, its
		// CDP client) carries over.
		go p.clip.close()
		r.unindex(p)
		r.unmarkIdle(p)
		p = nil
	}
	if p == nil {
		p = &pair{key: key, org: rt.Organization}
		r.pairs[key] = p
		r.index(p)
	}
	if p.org != rt.Organization || !roleFits(p, rt.Role) {
		return nil
	}
	r.unmarkIdle(p) // in use again (idlecap.go)
	if !p.controlSet {
		p.control, p.controlSet = rt.Control, true
	}
	if rt.CDPURL != "" && rt.CDPURL != p.cdpURL {
		p.cdpURL = rt.CDPURL
		p.clip.reset(rt.CDPURL, rt.CDPHeader)
	}
	return p
}

// detach forgets s, a VNC channel or a message channel's session; the pair's
// control state stays for ControlGrace.
func (r *registry) detach(s *session) {
	p := s.pair
	if p == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.vnc == s {
		p.vnc = nil
	}
	if p.msg != nil && p.msg.s == s { // msgChannel.s never changes
		p.msg = nil
	}
	if p.vnc == nil && p.msg == nil {
		p.idleSince = time.Now()
		p.clip.drop() // no channel left: close the DevTools connection
		r.markIdle(p)
	}
}

// setControl records who has control and returns the VNC channel to apply it to.
func (r *registry) setControl(p *pair, i rfbparse.Interactor) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.control, p.controlSet = i, true
	if i != rfbparse.User {
		p.askedAt = time.Time{} // an ask sent while the user had control is void
	}
	return p.vnc
}

// peers returns the pair's current channels.
func (r *registry) peers(p *pair) (vnc *session, msg *msgChannel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.vnc, p.msg
}

// sweep drops pairs idle for longer than grace, closing their CDP clients.
func (r *registry) sweep(now time.Time, grace time.Duration) {
	r.mu.Lock()
	var idle []*pair
	for k, p := range r.pairs {
		if p.vnc == nil && p.msg == nil && now.Sub(p.idleSince) > grace {
			delete(r.pairs, k)
			r.unindex(p)
			r.unmarkIdle(p)
			idle = append(idle, p)
		}
	}
	r.mu.Unlock()
	for _, p := range idle {
		p.clip.close()
	}
}
