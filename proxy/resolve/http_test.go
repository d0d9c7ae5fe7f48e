package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/rfbparse"
)

// clock is a settable clock for the cache and the grace period.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// controlPlane is a fake control plane: sessions by "kind/id", the API key
// and bearer token that it accepts, per-session answers to force, and a
// count of requests.
type controlPlane struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu       sync.Mutex
	sessions map[string]SessionInfo
	force    map[string]int // kind/id → status to answer instead
	body     string         // when set, the raw 200 body
	gate     chan struct{}  // when set, requests wait for it to close
	lastReq  http.Header
	lastPath string
}

const (
	apiKey   = "sk-test-key"
	jwtToken = "aaa.bbb.ccc"
)

func newControlPlane(t *testing.T) *controlPlane {
	cp := &controlPlane{sessions: map[string]SessionInfo{}, force: map[string]int{}}
	cp.srv = httptest.NewServer(http.HandlerFunc(cp.serve))
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *controlPlane) serve(w http.ResponseWriter, r *http.Request) {
	cp.requests.Add(1)
	cp.mu.Lock()
	gate := cp.gate
	cp.lastReq = r.Header.Clone()
	cp.lastPath = r.URL.Path
	cp.mu.Unlock()
	if gate != nil {
		<-gate
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	key := strings.TrimPrefix(r.URL.Path, "/internal/sessions/")
	if code := cp.force[key]; code != 0 {
		w.WriteHeader(code)
		return
	}
	if r.Header.Get("X-Api-Key") != apiKey && r.Header.Get("Authorization") != "Bearer "+jwtToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if cp.body != "" {
		_, _ = w.Write([]byte(cp.body))
		return
	}
	s, ok := cp.sessions[key]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	_ = json.NewEncoder(w).Encode(s)
}

func (cp *controlPlane) set(key string, f func(*SessionInfo)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	s := cp.sessions[key]
	f(&s)
	cp.sessions[key] = s
}

func (cp *controlPlane) setForce(key string, code int) {
	cp.mu.Lock()
	cp.force[key] = code
	cp.mu.Unlock()
}

func newHTTPResolver(t *testing.T, cp *controlPlane, clk *clock) *HTTPResolver {
	t.Helper()
	h, err := NewHTTPResolver(HTTPConfig{
		Base:           cp.srv.URL + "/internal/sessions/",
		Client:         cp.srv.Client(),
		CacheTTL:       time.Second,
		Grace:          15 * time.Second,
		DefaultControl: rfbparse.Agent,
		Now:            clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func liveSession(s *SessionInfo) {
	*s = SessionInfo{OrganizationID: "o_1", Status: "running",
		BrowserAddress:  "wss://edge.example/pbs_1/tk/devtools/browser/b1",
		UpstreamHeaders: map[string]string{"X-Route": "r1"}}
}

func keyQuery() url.Values { return url.Values{"client_id": {"c1"}, "apikey": {apiKey}} }

func TestHTTPResolve(t *testing.T) {
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	h := newHTTPResolver(t, cp, &clock{t: t0})

	rt, err := h.Resolve(context.Background(), request(vncPath, keyQuery()))
	if err != nil {
		t.Fatal(err)
	}
	if cp.lastPath != "/internal/sessions/browser_session/pbs_1" {
		t.Errorf("control-plane path = %s", cp.lastPath)
	}
	if rt.Kind != "browser_session" || rt.ID != "pbs_1" || rt.Organization != "o_1" || rt.ClientID != "c1" || rt.Control != rfbparse.Agent {
		t.Errorf("route = %+v", rt)
	}
	if rt.Upstream.String() != "wss://edge.example/vnc/pbs_1/tk" {
		t.Errorf("upstream = %s", rt.Upstream)
	}
	if rt.Header.Get("x-api-key") != apiKey || rt.Header.Get("X-Route") != "r1" {
		t.Errorf("upstream header = %v", rt.Header)
	}
	if rt.CDPURL != "wss://edge.example/pbs_1/tk/devtools/browser/b1" {
		t.Errorf("cdp = %q", rt.CDPURL)
	}
	if rt.Live != h || rt.Credential != apiKey || !rt.Expires.IsZero() {
		t.Errorf("live %v, credential set %v, expires %v", rt.Live, rt.Credential == apiKey, rt.Expires)
	}
	if err := rt.Live.Verify(context.Background(), rt); err != nil {
		t.Errorf("verify live session: %v", err)
	}
}

func TestHTTPCredentialForwarding(t *testing.T) {
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	tests := []struct {
		name          string
		q             url.Values
		hdr           [][2]string
		wantKey       string
		wantAuth      string
		wantUpstreamK string
	}{
		{name: "query apikey", q: keyQuery(), wantKey: apiKey, wantUpstreamK: apiKey},
		{name: "header x-api-key", q: url.Values{"client_id": {"c1"}}, hdr: [][2]string{{"x-api-key", apiKey}}, wantKey: apiKey, wantUpstreamK: apiKey},
		{name: "query token", q: url.Values{"client_id": {"c1"}, "token": {"Bearer " + jwtToken}}, wantAuth: "Bearer " + jwtToken},
		{name: "authorization header", q: url.Values{"client_id": {"c1"}}, hdr: [][2]string{{"authorization", "Bearer " + jwtToken}}, wantAuth: "Bearer " + jwtToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Advance(time.Minute) // past the cache
			rt, err := h.Resolve(context.Background(), request(vncPath, tt.q, tt.hdr...))
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string) {
				cp.mu.Lock()
				got := cp.lastReq
				cp.mu.Unlock()
				if got.Get("X-Api-Key") != tt.wantKey || got.Get("Authorization") != tt.wantAuth {
					t.Errorf("%s: forwarded x-api-key %v authorization %v", when,
						got.Get("X-Api-Key") != "", got.Get("Authorization") != "")
				}
			}
			check("resolve")
			if rt.Header.Get("x-api-key") != tt.wantUpstreamK {
				t.Errorf("upstream x-api-key set = %v, want %v", rt.Header.Get("x-api-key") != "", tt.wantUpstreamK != "")
			}
			clk.Advance(time.Minute)
			if err := h.Verify(context.Background(), rt); err != nil {
				t.Fatal(err)
			}
			check("verify")
		})
	}
}

func TestHTTPConnectAnswers(t *testing.T) {
	cp := newControlPlane(t)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	tests := []struct {
		name   string
		path   string
		q      url.Values
		setup  func()
		status int
		noCall bool // refused before any control-plane call
	}{
		{name: "missing client_id", q: url.Values{"apikey": {apiKey}}, status: 400, noCall: true},
		{name: "no credentials", q: url.Values{"client_id": {"c1"}}, status: 401, noCall: true},
		{name: "unknown route", path: "/v1/stream/vnc/nope/pbs_1", status: 404, noCall: true},
		{name: "bad credentials", q: url.Values{"client_id": {"c1"}, "apikey": {"wrong"}}, status: 401},
		{name: "other organization", setup: func() { cp.setForce("browser_session/pbs_1", 403) }, status: 403},
		{name: "unknown session", setup: func() {}, status: 404},
		{name: "control plane 500", setup: func() { cp.setForce("browser_session/pbs_1", 500) }, status: 503},
		{name: "control plane 429", setup: func() { cp.setForce("browser_session/pbs_1", 429) }, status: 503},
		{name: "control plane 418", setup: func() { cp.setForce("browser_session/pbs_1", 418) }, status: 502},
		{name: "malformed body", setup: func() { cp.body = "{not json" }, status: 502},
		{name: "no organization", setup: func() { cp.body = `{"status":"running","browser_address":"10.0.0.1"}` }, status: 502},
		{name: "header injection", setup: func() {
			cp.body = `{"organization_id":"o","status":"running","browser_address":"10.0.0.1","upstream_headers":{"X":"a\r\nb"}}`
		}, status: 502},
		{name: "browser session completed", setup: func() {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.Status = "completed" })
		}, status: 409},
		{name: "browser session timeout", setup: func() {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.Status = "timeout" })
		}, status: 409},
		{name: "no browser yet", setup: func() {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { liveSession(s); s.BrowserAddress = "" })
		}, status: 409},
		{name: "task terminated", path: "/v1/stream/vnc/task/tsk_1", setup: func() {
			cp.set("task/tsk_1", func(s *SessionInfo) { liveSession(s); s.Status = "terminated" })
		}, status: 409},
		{name: "task paused is not live", path: "/v1/stream/vnc/task/tsk_1", setup: func() {
			cp.set("task/tsk_1", func(s *SessionInfo) { liveSession(s); s.Status = "paused" })
		}, status: 409},
		{name: "task queued", path: "/v1/stream/vnc/task/tsk_1", setup: func() {
			cp.set("task/tsk_1", func(s *SessionInfo) { liveSession(s); s.Status = "queued" })
		}},
		{name: "workflow run paused", path: "/api/v1/stream/vnc/workflow_run/wr_1", setup: func() {
			cp.set("workflow_run/wr_1", func(s *SessionInfo) { liveSession(s); s.Status = "paused" })
		}},
		{name: "workflow run completed", path: "/v1/stream/vnc/workflow_run/wr_1", setup: func() {
			cp.set("workflow_run/wr_1", func(s *SessionInfo) { liveSession(s); s.Status = "completed" })
		}, status: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp.mu.Lock()
			cp.sessions, cp.force, cp.body = map[string]SessionInfo{}, map[string]int{}, ""
			cp.mu.Unlock()
			if tt.setup != nil {
				tt.setup()
			}
			clk.Advance(time.Minute)
			path, q := tt.path, tt.q
			if path == "" {
				path = vncPath
			}
			if q == nil {
				q = keyQuery()
			}
			before := cp.requests.Load()
			rt, err := h.Resolve(context.Background(), request(path, q))
			if got := status(err); got != tt.status {
				t.Fatalf("route set %v, err = %v; want status %d", rt != nil, err, tt.status)
			}
			if called := cp.requests.Load() != before; called == tt.noCall {
				t.Errorf("control plane called: %v, want %v", called, !tt.noCall)
			}
			if err != nil && strings.Contains(err.Error(), apiKey) {
				t.Errorf("error quotes the credential: %v", err)
			}
		})
	}
}

func TestHTTPUnreachableAtConnect(t *testing.T) {
	cp := newControlPlane(t)
	h := newHTTPResolver(t, cp, &clock{t: t0})
	cp.srv.Close()
	if _, err := h.Resolve(context.Background(), request(vncPath, keyQuery())); status(err) != 503 {
		t.Fatalf("err = %v, want 503", err)
	}
}

// resolveLive resolves the session pbs_1, which must be live.
func resolveLive(t *testing.T, h *HTTPResolver) *proxy.Route {
	t.Helper()
	rt, err := h.Resolve(context.Background(), request(vncPath, keyQuery()))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func wantEnded(t *testing.T, err error, reason string) {
	t.Helper()
	if !errors.Is(err, proxy.ErrSessionEnded) || Reason(err) != reason {
		t.Fatalf("err = %v (reason %q), want ended with %q", err, Reason(err), reason)
	}
	if strings.Contains(err.Error(), apiKey) {
		t.Errorf("error quotes the credential: %v", err)
	}
}

func TestHTTPVerifyEnds(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(cp *controlPlane)
	}{
		{"status completed", func(cp *controlPlane) {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { s.Status = "completed" })
		}},
		{"status failed", func(cp *controlPlane) {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { s.Status = "failed" })
		}},
		{"404", func(cp *controlPlane) {
			cp.mu.Lock()
			delete(cp.sessions, "browser_session/pbs_1")
			cp.mu.Unlock()
		}},
		{"403 org mismatch", func(cp *controlPlane) { cp.setForce("browser_session/pbs_1", 403) }},
		{"401 key revoked", func(cp *controlPlane) { cp.setForce("browser_session/pbs_1", 401) }},
		{"organization changed", func(cp *controlPlane) {
			cp.set("browser_session/pbs_1", func(s *SessionInfo) { s.OrganizationID = "o_2" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := newControlPlane(t)
			cp.set("browser_session/pbs_1", liveSession)
			clk := &clock{t: t0}
			h := newHTTPResolver(t, cp, clk)
			rt := resolveLive(t, h)
			clk.Advance(5 * time.Second)
			if err := h.Verify(ctx, rt); err != nil {
				t.Fatalf("still live: %v", err)
			}
			tt.change(cp)
			// Within the cache TTL the old answer stands.
			if err := h.Verify(ctx, rt); err != nil {
				t.Fatalf("cached answer: %v", err)
			}
			clk.Advance(5 * time.Second)
			err := h.Verify(ctx, rt)
			wantEnded(t, err, "session-ended")
			if !errors.Is(err, ErrSessionFinished) {
				t.Errorf("err = %v, want ErrSessionFinished", err)
			}
		})
	}
}

func TestHTTPVerifyTaskAndWorkflowStatuses(t *testing.T) {
	ctx := context.Background()
	cp := newControlPlane(t)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	for _, tt := range []struct {
		kind, status string
		live         bool
	}{
		{"task", "created", true}, {"task", "queued", true}, {"task", "running", true},
		{"task", "paused", false}, {"task", "completed", false}, {"task", "failed", false},
		{"workflow_run", "created", true}, {"workflow_run", "queued", true},
		{"workflow_run", "running", true}, {"workflow_run", "paused", true},
		{"workflow_run", "canceled", false}, {"workflow_run", "terminated", false},
		{"browser_session", "created", true}, {"browser_session", "timeout", false},
	} {
		cp.set(tt.kind+"/x1", func(s *SessionInfo) { liveSession(s); s.Status = tt.status })
		clk.Advance(time.Minute)
		rt := &proxy.Route{Kind: tt.kind, ID: "x1", Organization: "o_1", Credential: apiKey}
		err := h.Verify(ctx, rt)
		if tt.live && err != nil || !tt.live && !errors.Is(err, proxy.ErrSessionEnded) {
			t.Errorf("%s %s: err = %v, want live %v", tt.kind, tt.status, err, tt.live)
		}
	}
}

func TestHTTPVerifyGrace(t *testing.T) {
	ctx := context.Background()
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk) // grace 15 s
	rt := resolveLive(t, h)

	poll := func(fail bool) error {
		t.Helper()
		code := 0
		if fail {
			code = http.StatusBadGateway
		}
		cp.setForce("browser_session/pbs_1", code)
		clk.Advance(5 * time.Second)
		return h.Verify(ctx, rt)
	}
	stillLive := func(err error) {
		t.Helper()
		if errors.Is(err, proxy.ErrSessionEnded) {
			t.Fatalf("ended within grace: %v", err)
		}
	}
	// Flapping: errors never last 15 s in a row.
	for range 4 {
		for range 2 {
			if err := poll(true); err == nil {
				t.Fatal("a failed check returned nil")
			} else {
				stillLive(err)
			}
		}
		if err := poll(false); err != nil {
			t.Fatalf("recovered: %v", err)
		}
	}
	// A streak: 5 s, 10 s after the last success: live; 15 s: ended.
	for range 2 {
		stillLive(poll(true))
	}
	err := poll(true)
	wantEnded(t, err, "control-plane-unreachable")
	if !errors.Is(err, ErrControlPlaneUnreachable) {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPVerifyUnreachablePastGrace(t *testing.T) {
	ctx := context.Background()
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	rt := resolveLive(t, h)
	cp.srv.Close() // network errors from now on

	clk.Advance(5 * time.Second)
	if err := h.Verify(ctx, rt); err == nil || errors.Is(err, proxy.ErrSessionEnded) {
		t.Fatalf("first failure: %v", err)
	}
	// A cached failure is not a new data point, and does not end anything.
	clk.Advance(500 * time.Millisecond)
	if err := h.Verify(ctx, rt); err == nil || errors.Is(err, proxy.ErrSessionEnded) {
		t.Fatalf("cached failure: %v", err)
	}
	clk.Advance(14500 * time.Millisecond)
	wantEnded(t, h.Verify(ctx, rt), "control-plane-unreachable")
}

// TestHTTPVerifyGapDoesNotRestart: failures count from the last success,
// however long nobody asked in between (a control plane too slow to be
// asked often must still fail closed).
func TestHTTPVerifyGapDoesNotRestart(t *testing.T) {
	ctx := context.Background()
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	rt := resolveLive(t, h)
	cp.setForce("browser_session/pbs_1", 503)
	clk.Advance(5 * time.Second)
	if err := h.Verify(ctx, rt); err == nil || errors.Is(err, proxy.ErrSessionEnded) {
		t.Fatalf("first failure: %v", err)
	}
	// Nobody checked for 30 s: the next failure is past grace, counted from
	// the resolve, the last success.
	clk.Advance(30 * time.Second)
	wantEnded(t, h.Verify(ctx, rt), "control-plane-unreachable")
}

// TestHTTPSharedCalls: 200 concurrent Resolve and Verify calls of one
// session make one control-plane request per cache TTL.
func TestHTTPSharedCalls(t *testing.T) {
	const callers = 200
	ctx := context.Background()
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	clk := &clock{t: t0}
	h := newHTTPResolver(t, cp, clk)
	rt := resolveLive(t, h) // request 1
	req := request(vncPath, keyQuery())

	for round := int64(2); round <= 4; round++ {
		clk.Advance(time.Second) // the cached answer is now stale
		gate := make(chan struct{})
		cp.mu.Lock()
		cp.gate = gate
		cp.mu.Unlock()
		// Every caller misses the cache and reaches the flight; the one
		// request is held until all of them have.
		var arrived, done sync.WaitGroup
		arrived.Add(callers)
		h.testHookBeforeFetch = arrived.Done
		start := make(chan struct{})
		errs := make(chan error, callers)
		for i := range callers {
			done.Go(func() {
				<-start
				if i%2 == 0 {
					_, err := h.Resolve(ctx, req)
					errs <- err
				} else {
					errs <- h.Verify(ctx, rt)
				}
			})
		}
		close(start)
		arrived.Wait()
		close(gate)
		done.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if got := cp.requests.Load(); got != round {
			t.Fatalf("round %d: %d control-plane requests in all, want %d", round, got, round)
		}
		// Later calls within the TTL are served from the cache.
		h.testHookBeforeFetch = nil
		clk.Advance(999 * time.Millisecond)
		for range 10 {
			if err := h.Verify(ctx, rt); err != nil {
				t.Fatal(err)
			}
		}
		if got := cp.requests.Load(); got != round {
			t.Fatalf("round %d: cached calls made requests: %d", round, got)
		}
		clk.Advance(-999 * time.Millisecond)
	}
}

func TestHTTPCallerCancelDoesNotCancelSharedCall(t *testing.T) {
	cp := newControlPlane(t)
	cp.set("browser_session/pbs_1", liveSession)
	h := newHTTPResolver(t, cp, &clock{t: t0})
	gate := make(chan struct{})
	cp.gate = gate

	ctx, cancel := context.WithCancel(context.Background())
	var arrived sync.WaitGroup
	arrived.Add(2)
	h.testHookBeforeFetch = arrived.Done
	first := make(chan error, 1)
	go func() { _, err := h.Resolve(ctx, request(vncPath, keyQuery())); first <- err }()
	second := make(chan error, 1)
	go func() { _, err := h.Resolve(context.Background(), request(vncPath, keyQuery())); second <- err }()
	arrived.Wait()
	cancel()
	if err := <-first; status(err) != 503 {
		t.Errorf("canceled caller: err = %v, want 503", err)
	}
	close(gate)
	if err := <-second; err != nil {
		t.Errorf("other caller: %v", err)
	}
	if n := cp.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestNewHTTPResolverConfig(t *testing.T) {
	for _, base := range []string{"", "ftp://x/", "/relative", "http://"} {
		if _, err := NewHTTPResolver(HTTPConfig{Base: base}); err == nil {
			t.Errorf("base %q accepted", base)
		}
	}
	h, err := NewHTTPResolver(HTTPConfig{Base: "https://cp.example/sessions"})
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.CacheTTL != time.Second || h.cfg.Grace != 15*time.Second || h.cfg.Client == nil || h.cfg.Now == nil {
		t.Errorf("defaults = %+v", h.cfg)
	}
}
