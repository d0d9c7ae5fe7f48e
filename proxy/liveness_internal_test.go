package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// graceVerifier is a fake control plane behind a Verifier with the HTTP
// resolver's rule: transient failures end a session once they have lasted
// grace since its last success. Organizations in stalled hang until the
// caller's context ends (a control plane that accepts and never answers).
type graceVerifier struct {
	grace   time.Duration
	stalled map[string]bool
	mu      sync.Mutex
	lastOK  map[*Route]time.Time
	calls   atomic.Int64
}

func (v *graceVerifier) Verify(ctx context.Context, rt *Route) error {
	v.calls.Add(1)
	if !v.stalled[rt.Organization] {
		v.mu.Lock()
		v.lastOK[rt] = time.Now()
		v.mu.Unlock()
		return nil
	}
	<-ctx.Done()
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.lastOK[rt]) >= v.grace {
		return fmt.Errorf("control plane unreachable past grace: %w", ErrSessionEnded)
	}
	return fmt.Errorf("control plane: %w", ctx.Err())
}

// TestLivenessStalledControlPlaneFailsClosed (unit level: the liveness
// scheduler with a fake Verifier and 500 fake sessions, no sockets): 500
// platform sessions of one organization whose control plane stalls, and 10
// of another whose control plane answers. Every stalled session ends within
// grace + one period of the stall (checked, or starved of its
// organization's check budget); the other organization's sessions are
// checked every round meanwhile and none ends.
func TestLivenessStalledControlPlaneFailsClosed(t *testing.T) {
	const (
		stalledN = 500
		healthyN = 10
		period   = 100 * time.Millisecond
		grace    = 300 * time.Millisecond
	)
	v := &graceVerifier{grace: grace, stalled: map[string]bool{"stalled": true}, lastOK: map[*Route]time.Time{}}
	l := newLiveness(period, grace)
	var mu sync.Mutex
	endedAt := map[*Route]time.Time{}
	healthyEnded := atomic.Int64{}
	end := func(rt *Route) {
		if rt.Organization != "stalled" {
			healthyEnded.Add(1)
			return
		}
		mu.Lock()
		if _, ok := endedAt[rt]; !ok {
			endedAt[rt] = time.Now()
		}
		n := len(endedAt)
		mu.Unlock()
		if n == stalledN {
			select {
			case allEnded <- struct{}{}:
			default:
			}
		}
	}
	l.done = func(rt *Route, _ []*session, err error, _ time.Duration) {
		if errors.Is(err, ErrSessionEnded) {
			end(rt)
		}
	}
	l.expire = func(rt *Route, _ []*session) { end(rt) }

	current := map[liveKey]*liveGroup{}
	start := time.Now()
	for i := range stalledN + healthyN {
		org := "stalled"
		if i >= stalledN {
			org = "healthy"
		}
		rt := &Route{Organization: org, Kind: "browser_session", ID: fmt.Sprint(i), Live: v}
		v.lastOK[rt] = start // resolved (a success) at the start
		current[liveKey{org, rt.Kind, rt.ID}] = &liveGroup{rt: rt, sessions: []*session{{}}}
	}
	// The server's ticker: one round per period, with the sessions not yet ended.
	tick := time.NewTicker(period)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	l.round(time.Now(), current)
	rounds := 1
loop:
	for {
		select {
		case <-allEnded:
			break loop
		case <-deadline:
			mu.Lock()
			n := len(endedAt)
			mu.Unlock()
			t.Fatalf("after 20 s only %d of %d stalled sessions ended", n, stalledN)
		case now := <-tick.C:
			mu.Lock()
			for k, g := range current {
				if _, ok := endedAt[g.rt]; ok {
					delete(current, k)
				}
			}
			mu.Unlock()
			l.round(now, current)
			rounds++
		}
	}
	var latest time.Duration
	for _, at := range endedAt {
		latest = max(latest, at.Sub(start))
	}
	bound := grace + period + latencyLimit(2*period)
	t.Logf("%d stalled sessions all ended %v after the stall (bound grace %v + period %v + slack); %d rounds, %d Verify calls",
		stalledN, latest, grace, period, rounds, v.calls.Load())
	if latest > bound {
		t.Errorf("the last stalled session ended %v after the stall, want ≤ %v", latest, bound)
	}
	if n := healthyEnded.Load(); n != 0 {
		t.Errorf("%d sessions of the healthy organization ended", n)
	}
	v.mu.Lock()
	for rt, at := range v.lastOK {
		if rt.Organization == "healthy" && time.Since(at) > 2*period+latencyLimit(2*period) {
			t.Errorf("healthy session %s last verified %v ago: starved by the stalled organization", rt.ID, time.Since(at))
		}
	}
	v.mu.Unlock()
}

var allEnded = make(chan struct{}, 1)

// latencyLimit loosens a latency bound under the race detector.
func latencyLimit(d time.Duration) time.Duration {
	if raceOn {
		return 5 * d
	}
	return d
}
