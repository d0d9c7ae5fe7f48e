package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"vncedge/tracing"
)

// ErrLivenessUnverified is what EndReason is asked about for sessions whose
// route has not been verified for LivenessGrace: no check of theirs
// succeeded (the Verifier fails or hangs, or the organization's check budget
// is taken by a stalled control plane). It wraps ErrSessionEnded: liveness
// fails closed.
var ErrLivenessUnverified = fmt.Errorf("liveness unverified past grace: %w", ErrSessionEnded)

// Check budgets: at most this many liveness checks in flight per
// organization, and overall. A stalled control plane for one organization
// holds at most its own budget; the others' checks go on. An organization's
// sessions are verified at livePerOrg / (control-plane latency) per second
// (640/s at 100 ms): about 9,600 platform sessions within a 15 s grace.
const (
	livePerOrg = 64
	liveMax    = 512
)

// liveKey names a platform session: organization, kind, id.
type liveKey [3]string

// liveGroup is one platform session's viewers and its check state.
type liveGroup struct {
	rt       *Route
	sessions []*session
	lastOK   time.Time // the last successful check, or when first seen
	lastDone time.Time // the last completed check, or when first seen: who is due first
	busy     bool      // a check is in flight
	seen     bool      // had sessions in the latest round
}

// liveness schedules liveness checks. Each platform session is checked on
// its own goroutine, at most once per round and one at a time, within the
// budgets, least recently checked first; a round never waits for checks, so
// a slow session delays no other. A session whose route has had no
// successful check for grace ends, whatever its checks do meanwhile (fail,
// hang, or wait for budget): with a stalled control plane every session ends
// within grace plus one period.
type liveness struct {
	period, grace time.Duration
	perOrg, max   int
	// done acts on a completed check; expire ends sessions past grace.
	done   func(rt *Route, sessions []*session, err error, took time.Duration)
	expire func(rt *Route, sessions []*session)

	mu      sync.Mutex
	groups  map[liveKey]*liveGroup
	orgs    map[string]int // checks in flight per organization
	running int
}

func newLiveness(period, grace time.Duration) *liveness {
	return &liveness{period: period, grace: grace, perOrg: livePerOrg, max: liveMax,
		groups: map[liveKey]*liveGroup{}, orgs: map[string]int{}}
}

// round takes the live routes now (a route and its sessions per platform
// session, and in lastOK when a viewer's route was last resolved), ends those unverified past grace and starts the checks the
// budgets allow, oldest-verified first.
func (l *liveness) round(now time.Time, current map[liveKey]*liveGroup) {
	l.mu.Lock()
	for _, g := range l.groups {
		g.seen = false
	}
	var due []*liveGroup
	var expired []*liveGroup
	for k, in := range current {
		g := l.groups[k]
		if g == nil {
			g = &liveGroup{lastOK: now, lastDone: now}
			if !in.lastOK.IsZero() && in.lastOK.Before(now) {
				g.lastOK = in.lastOK // when its route was resolved: the first success
			}
			l.groups[k] = g
		} else if in.lastOK.After(g.lastOK) && !in.lastOK.After(now) {
			g.lastOK = in.lastOK // a viewer's route was resolved since: a success
		}
		g.rt, g.sessions, g.seen = in.rt, in.sessions, true
		if l.grace > 0 && now.Sub(g.lastOK) >= l.grace {
			expired = append(expired, &liveGroup{rt: g.rt, sessions: g.sessions})
			g.lastOK = now // ended: do not end again every round
			continue
		}
		if !g.busy {
			due = append(due, g)
		}
	}
	for k, g := range l.groups {
		if !g.seen && !g.busy {
			delete(l.groups, k)
		}
	}
	slices.SortFunc(due, func(a, b *liveGroup) int { return a.lastDone.Compare(b.lastDone) })
	var start []*liveGroup
	for _, g := range due {
		org := g.rt.Organization
		if l.running >= l.max {
			break
		}
		if l.orgs[org] >= l.perOrg {
			continue
		}
		g.busy = true
		l.orgs[org]++
		l.running++
		start = append(start, g)
	}
	l.mu.Unlock()
	for _, g := range expired {
		l.expire(g.rt, g.sessions)
	}
	for _, g := range start {
		rt, sessions := g.rt, g.sessions
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), l.period)
			began := time.Now()
			err := rt.Live.Verify(ctx, rt)
			took := time.Since(began)
			cancel()
			l.mu.Lock()
			g.busy = false
			g.lastDone = time.Now()
			if err == nil {
				g.lastOK = g.lastDone
			}
			if l.orgs[rt.Organization]--; l.orgs[rt.Organization] <= 0 {
				delete(l.orgs, rt.Organization)
			}
			l.running--
			l.mu.Unlock()
			l.done(rt, sessions, err, took)
		}()
	}
}

// liveCheckDone acts on one completed check of the Server's.
func (s *Server) liveCheckDone(rt *Route, sessions []*session, err error, took time.Duration) {
	if tr := s.cfg.Tracing; tr != nil {
		tr.ControlPlaneLatency("verify", took, err == nil || errors.Is(err, ErrSessionEnded))
	}
	if err == nil {
		return
	}
	if !errors.Is(err, ErrSessionEnded) {
		s.cfg.Logger.Warn("liveness check failed", "err", tracing.Redact(err.Error()), "kind", rt.Kind, "id", rt.ID)
		for _, sess := range sessions {
			sess.eventAsync("vnc.liveness.error")
		}
		return
	}
	reason := s.endText(err, reasonSessionEnded)
	s.cfg.Logger.Info("session ended upstream", "kind", rt.Kind, "id", rt.ID, "viewers", len(sessions), "reason", reason)
	for _, sess := range sessions {
		sess.endAsyncDetail(reasonSessionEnded, reason)
	}
}

// liveExpired ends sessions no check of which completed within LivenessGrace.
func (s *Server) liveExpired(rt *Route, sessions []*session) {
	reason := s.endText(ErrLivenessUnverified, reasonLivenessUnverified)
	s.cfg.Logger.Warn("liveness unverified past grace: ending", "kind", rt.Kind, "id", rt.ID, "viewers", len(sessions), "reason", reason)
	for _, sess := range sessions {
		sess.endAsyncDetail(reasonLivenessUnverified, reason)
	}
}

// endText is the close reason text for err: Config.EndReason's, else def's.
func (s *Server) endText(err error, def endReason) string {
	if s.cfg.EndReason != nil {
		if r := s.cfg.EndReason(err); r != "" {
			return r
		}
	}
	return def.text()
}
