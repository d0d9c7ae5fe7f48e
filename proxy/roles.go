package proxy

import (
	"context"
	"fmt"
	"net/http"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// Role is what a viewer's credential allows it to do in a session.
type Role uint8

const (
	// RoleController may take control, send input once it has control, and
	// use the clipboard: the behaviour of every viewer before roles existed,
	// and the default.
	RoleController Role = iota
	// RoleViewer only watches: take-control answers an error, all input is
	// dropped whatever the control state, and the clipboard is refused.
	RoleViewer
)

// String returns "controller" or "viewer".
func (r Role) String() string {
	if r == RoleViewer {
		return "viewer"
	}
	return "controller"
}

// ParseRole parses "controller" or "viewer"; "" is the default, controller.
func ParseRole(s string) (Role, error) {
	switch s {
	case "", "controller":
		return RoleController, nil
	case "viewer":
		return RoleViewer, nil
	}
	return 0, fmt.Errorf("role %q: want controller or viewer", s)
}

// viewOnlyPolicy inspects a viewer-role stream when the server runs without
// a policy: nothing is forbidden, but the agent gate (which drops all input)
// needs a policy to act.
var viewOnlyPolicy = &rfbparse.Policy{RightButton: rfbparse.RightAllow, AllowXVP: true,
	AllowGIIEvents: true, MaxCutText: rfbparse.DefaultMaxCutText}

// newRoleStream returns the RFB stream of a VNC channel: a viewer-role
// channel starts, and stays, with the agent in control, so none of its input
// reaches the server.
func newRoleStream(pol *rfbparse.Policy, role Role, control rfbparse.Interactor) *rfbparse.Stream {
	if role == RoleViewer {
		if pol == nil {
			pol = viewOnlyPolicy
		}
		control = rfbparse.Agent
		st := rfbparse.NewStream(pol, control)
		st.SetViewOnly() // encodings the server stream's filter can frame (viewdown.go)
		return st
	}
	return rfbparse.NewStream(pol, control)
}

// roleControl is the control a VNC channel of role r may be given when i is
// asked for: a viewer-role channel never gets it.
func roleControl(r Role, i rfbparse.Interactor) rfbparse.Interactor {
	if r == RoleViewer {
		return rfbparse.Agent
	}
	return i
}

// refuseByRole answers a message a viewer-role message channel may not
// send, on its loop, and reports whether it did.
func (m *msgChannel) refuseByRole(kind string) bool {
	s := m.s
	if s.route == nil || s.route.Role != RoleViewer {
		return false
	}
	switch kind {
	case "cede-control": // nothing to cede: say who drives
		to := s.srv.reg.shownControl(s.pair, RoleViewer, rfbparse.Agent)
		m.send(outMessage{Kind: "interactor", Interactor: to.String()}, true)
		return true
	case "take-control":
		m.send(outMessage{Kind: "error", FailedKind: kind, Message: "viewer role cannot take control"}, true)
	case "clipboard-copy", "clipboard-paste", "ask-for-clipboard-response":
		m.send(outMessage{Kind: "error", FailedKind: kind, Message: "viewer role cannot use the clipboard"}, true)
	default:
		return false
	}
	s.logger().Info("refused by role", "kind", kind, "role", "viewer")
	return true
}

// sessionKey names a platform session; its pairs are indexed by it so that
// a change of control costs the session's viewers, not every viewer.
type sessionKey struct{ kind, id string }

// sessionPairs are the pairs of one platform session, and what its
// viewer-role viewers were last told. Guarded by registry.mu.
type sessionPairs struct {
	pairs map[*pair]struct{}
	shown map[string]rfbparse.Interactor // by organization
}

// index adds a new pair to bySession; the caller holds r.mu.
func (r *registry) index(p *pair) {
	k := sessionKey{p.key.kind, p.key.id}
	if r.bySession == nil {
		r.bySession = map[sessionKey]*sessionPairs{}
	}
	sp := r.bySession[k]
	if sp == nil {
		sp = &sessionPairs{pairs: map[*pair]struct{}{}, shown: map[string]rfbparse.Interactor{}}
		r.bySession[k] = sp
	}
	sp.pairs[p] = struct{}{}
}

// unindex removes a swept pair; the caller holds r.mu.
func (r *registry) unindex(p *pair) {
	k := sessionKey{p.key.kind, p.key.id}
	if sp := r.bySession[k]; sp != nil {
		delete(sp.pairs, p)
		if len(sp.pairs) == 0 {
			delete(r.bySession, k)
		}
	}
}

// watchedControl is who drives p's platform session as a viewer-role viewer
// sees it: the user when a controller-role viewer of the session, with its
// VNC channel open, has control; else the agent. The caller holds r.mu.
func (r *registry) watchedControl(p *pair) rfbparse.Interactor {
	if sp := r.bySession[sessionKey{p.key.kind, p.key.id}]; sp != nil {
		for q := range sp.pairs {
			if q.org == p.org && q.vnc != nil && q.role == RoleController && q.control == rfbparse.User {
				return rfbparse.User
			}
		}
	}
	return rfbparse.Agent
}

// roleFits reports whether a channel of role may join p: every live channel
// of a pair has one role, so a viewer-role credential cannot take over (or
// receive the copied text of) a controller's client_id, nor the reverse.
// The caller holds r.mu.
func roleFits(p *pair, role Role) bool {
	return (p.vnc == nil || p.role == role) && (p.msg == nil || p.msgRole == role)
}

// pairRefusal answers a channel registry.attach refused.
var pairRefusal = &upgrade.Error{Status: http.StatusForbidden, Message: "client_id is in use by another organization or role"}

// shownControl is the interactor a message channel of role role in pair p
// is told: its own pair's control for a controller, the session's driver
// for a viewer.
func (r *registry) shownControl(p *pair, role Role, own rfbparse.Interactor) rfbparse.Interactor {
	if role != RoleViewer {
		return own
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watchedControl(p)
}

// notifyWatchers tells every viewer-role message channel of p's platform
// session who drives, when that changed since they were last told; any
// goroutine, nil p is nothing. It runs when control changes and when a VNC
// channel comes or goes.
func (r *registry) notifyWatchers(p *pair) {
	if p == nil {
		return
	}
	r.mu.Lock()
	sp := r.bySession[sessionKey{p.key.kind, p.key.id}]
	if sp == nil {
		r.mu.Unlock()
		return
	}
	to := r.watchedControl(p)
	if last, ok := sp.shown[p.org]; (ok && last == to) || (!ok && to == rfbparse.Agent) {
		r.mu.Unlock()
		return // nothing new (watchers open with the agent unless told)
	}
	sp.shown[p.org] = to
	var watchers []*msgChannel
	for q := range sp.pairs {
		if q.org == p.org && q.msg != nil && q.msgRole == RoleViewer {
			watchers = append(watchers, q.msg)
		}
	}
	r.mu.Unlock()
	for _, w := range watchers {
		w.send(outMessage{Kind: "interactor", Interactor: to.String()}, false)
	}
}

// clientIDRequired refuses platform routes without client_id, whatever the
// resolver: control state and the pairing of a viewer's two channels are
// keyed by it. The refusal is a resolver error, so --compat=skyvern answers
// it with close 1002 after the upgrade, like the reference platform.
type clientIDRequired struct{ Resolver }

// Resolve implements Resolver.
func (c clientIDRequired) Resolve(ctx context.Context, r *upgrade.Request) (*Route, error) {
	rt, err := c.Resolver.Resolve(ctx, r)
	if err == nil && rt.Kind != "" {
		if err := checkClientID(r.Query.Get("client_id")); err != nil {
			return nil, err // blank, too long, or not printable ASCII (idlecap.go)
		}
	}
	if err == nil && rt.Kind != "" && rt.ClientID == "" {
		return nil, &upgrade.Error{Status: http.StatusBadRequest, Message: "client_id is required"}
	}
	return rt, err
}
