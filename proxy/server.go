package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"vncedge/proxy/upgrade"
)

// Server is a vncedge relay. Create it with New, run it with ListenAndServe,
// stop it with Shutdown.
type Server struct {
	gnet.BuiltinEventEngine
	cfg Config

	mu       sync.Mutex
	sessions map[*session]struct{}
	reg      *registry
	admitted int
	perIP    map[string]int
	perOrg   map[string]int
	desktops map[string]*desktop // by upstream, under mu (desktop.go)
	draining atomic.Bool
	now      atomic.Int64 // coarse clock (unix ns), set each tick: sessions read it per frame
	ln       net.Listener
	booted   chan struct{}
	stopped  chan struct{} // closed when the event loops have returned
	stopping atomic.Bool
	live     *liveness // owned by livenessLoop
	guard    *destGuard

	// Counters, read with Stats.
	active, total, upgradeFailures atomic.Int64
	conns, shed                    atomic.Int64    // open sockets; viewers closed at once for MaxConns
	tlsPending, tlsFailures        atomic.Int64    // TLS viewers before their session; failed handshakes (tlsbridge.go)
	spliced                        atomic.Int64    // sessions handed to a down pump (downpump.go)
	tlsPerIP                       map[string]int  // TLS handshakes in flight per IP, under mu
	quit                           context.Context // cancelled by Shutdown: handshakes in flight stop
	quitNow                        context.CancelFunc
	web                            *webServer // --web: requests that are not upgrades (web.go)
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("proxy: Config.Resolver is required")
	}
	if cfg.Addr == "" {
		return nil, errors.New("proxy: Config.Addr is required")
	}
	cfg.setDefaults()
	cfg.Resolver = clientIDRequired{cfg.Resolver} // platform routes need client_id (roles.go)
	guard, err := newDestGuard(cfg.UpstreamAllow, cfg.Addr, cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	quit, quitNow := context.WithCancel(context.Background())
	return &Server{quit: quit, quitNow: quitNow, tlsPerIP: map[string]int{}, guard: guard, cfg: cfg, sessions: map[*session]struct{}{}, reg: newRegistry(), perIP: map[string]int{}, perOrg: map[string]int{}, desktops: map[string]*desktop{}, booted: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Stats is a snapshot of server-wide counters.
type Stats struct {
	Active, Total, UpgradeFailures int64
	// TLSFailures counts failed TLS handshakes on the listener.
	TLSFailures int64
	// Conns is the open sockets counted against MaxConns (viewers,
	// upstreams, paused upstreams, TLS bridges).
	Conns int64
	// Spliced counts sessions whose server stream went by splice(2).
	Spliced int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Active: s.active.Load(), Total: s.total.Load(), UpgradeFailures: s.upgradeFailures.Load(),
		TLSFailures: s.tlsFailures.Load(), Conns: s.conns.Load(), Spliced: s.spliced.Load()}
}

// ListenAndServe runs the event loops until Shutdown; it returns the error
// that stopped them (nil after Shutdown).
//
// Viewers are accepted by a loop of our own and enrolled on gnet's event
// loops (least connections first), not by gnet's acceptor: gnet v2.9.7 stops
// its whole engine when accept fails with EMFILE, where this loop backs off
// and goes on, as net/http does. One goroutine, not one per connection.
func (s *Server) ListenAndServe() error {
	defer close(s.stopped)
	ln, err := net.Listen("tcp", s.cfg.Addr) // SO_REUSEADDR is set by Go on Unix
	if err != nil {
		return fmt.Errorf("proxy: listen %s: %w", s.cfg.Addr, err)
	}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(logging.WarnLevel),
		gnet.WithLogger(gnetLogger{s.cfg.Logger}),
		gnet.WithNumEventLoop(s.cfg.Loops),
	}
	loops, err := gnet.NewClient(s, opts...)
	if err != nil {
		ln.Close()
		return fmt.Errorf("proxy: event loops: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	if s.stopping.Load() { // Shutdown came first
		ln.Close()
		return nil
	}
	if s.cfg.Web != nil { // before any viewer: read by the loops, never written again
		s.web = newWebServer(s.cfg.Web, s.cfg.Logger, s.cfg.HandshakeTimeout)
		defer s.web.close()
	}
	if err := loops.Start(); err != nil { // OnBoot: Ready
		ln.Close()
		return fmt.Errorf("proxy: event loops: %w", err)
	}
	err = s.accept(ln, loops)
	ln.Close()
	_ = loops.Stop()
	if err != nil && !s.stopping.Load() {
		return fmt.Errorf("proxy: serve %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// accept takes viewers until the listener closes.
func (s *Server) accept(ln net.Listener, loops *gnet.Client) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors or memory for a moment: back off and
				// retry; live sessions go on. Not synchronisation: a pause.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("accept failed; retrying", "err", err, "in", delay.String())
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if err := s.enroll(c, loops); err != nil { // closes c either way
			if s.stopping.Load() {
				return nil
			}
			s.cfg.Logger.Warn("cannot put a viewer on an event loop", "err", err)
		}
	}
}

// Addr is the address the listener is bound to (the port chosen for ":0"),
// or nil before it is.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Ready is closed once the listener is up.
func (s *Server) Ready() <-chan struct{} { return s.booted }

// Shutdown closes every session with 1001 going-away, waits for them to end
// (or ctx), then stops the event loops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true) // new viewers are closed at once (OnOpen)
	s.quitNow()            // TLS handshakes in flight end
	s.mu.Lock()
	for sess := range s.sessions {
		_ = sess.viewer.EventLoop().Execute(ctx, (*goingAway)(sess))
	}
	s.mu.Unlock()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			goto stop
		case <-t.C:
		}
	}
	for s.tlsPending.Load() > 0 { // none may enroll on stopped loops
		select {
		case <-ctx.Done():
			goto stop
		case <-t.C:
		}
	}
stop:
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return nil // never served
	}
	ln.Close() // sessions are gone: end the accept loop, which stops the event loops
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(gnet.Engine) gnet.Action {
	s.now.Store(time.Now().UnixNano())
	close(s.booted)
	go s.livenessLoop()
	return gnet.None
}

// livenessLoop re-verifies live routes every LivenessPeriod, once per
// platform session however many viewers it has, and ends the sessions whose
// browser session, task or workflow run is over (or whose token expired).
func (s *Server) livenessLoop() {
	t := time.NewTicker(s.cfg.LivenessPeriod)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		s.checkLiveness(time.Now())
		s.reg.sweep(time.Now(), s.cfg.ControlGrace)
	}
}

// checkLiveness ends sessions whose token expired and hands the live routes
// to the liveness scheduler (liveness.go), which checks each platform
// session on its own, within per-organization budgets. Called from
// livenessLoop only.
func (s *Server) checkLiveness(now time.Time) {
	if s.live == nil {
		s.live = newLiveness(s.cfg.LivenessPeriod, s.cfg.LivenessGrace)
		s.live.done, s.live.expire = s.liveCheckDone, s.liveExpired
	}
	groups := map[liveKey]*liveGroup{}
	s.mu.Lock()
	for sess := range s.sessions {
		rt := sess.published.Load()
		if rt == nil {
			continue
		}
		if !rt.Expires.IsZero() && now.After(rt.Expires) {
			sess.endAsync(reasonTokenExpired)
			continue
		}
		if rt.Live == nil {
			continue
		}
		k := liveKey{rt.Organization, rt.Kind, rt.ID}
		g := groups[k]
		if g == nil {
			g = &liveGroup{rt: rt, lastOK: sess.start}
			groups[k] = g
		}
		if sess.start.After(g.lastOK) {
			g.lastOK = sess.start // the newest resolve: its route was live then
		}
		g.sessions = append(g.sessions, sess)
	}
	s.mu.Unlock()
	s.live.round(now, groups)
}

// OnOpen implements gnet.EventHandler: a new viewer, or an enrolled upstream.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s.conns.Add(1)
	if up, ok := c.Context().(*upstreamConn); ok {
		return nil, up.s.upstreamOpen(c, up)
	}
	if s.stopping.Load() {
		return nil, gnet.Close
	}
	if m := s.cfg.MaxConns; m > 0 && s.conns.Load()+1 > int64(m) { // +1: its upstream
		if s.shed.Add(1)%1000 == 1 {
			s.cfg.Logger.Warn("connection limit reached: closing new viewers", "max_conns", m)
		}
		return nil, gnet.Close
	}
	sess := newSession(s, c)
	if vc, ok := c.Context().(*viewerConn); ok {
		sess.remote, sess.proxied, sess.vbridge = vc.remote, vc.proxied, vc.bridge
		if !vc.accepted.IsZero() { // HandshakeTimeout from accept, TLS handshake included
			sess.deadline.Store(vc.accepted.Add(s.cfg.HandshakeTimeout).UnixNano())
		}
	}
	c.SetContext(sess)
	if !sess.admitOpen() {
		return nil, gnet.None // over a cap: refused at accept, before any byte is read
	}
	// Shutdown sets stopping, then walks sessions under mu: a session is
	// either in the set it walks or sees stopping here.
	s.mu.Lock()
	stopping := s.stopping.Load()
	if !stopping {
		s.sessions[sess] = struct{}{}
	}
	s.mu.Unlock()
	if stopping {
		sess.drop(reasonServerShutdown)
	}
	return nil, gnet.None
}

// OnTraffic implements gnet.EventHandler.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		return x.viewerTraffic(c)
	case *upstreamConn:
		return x.s.upstreamTraffic(c)
	}
	_, _ = c.Discard(-1)
	return gnet.Close
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	if up, ok := c.Context().(*upstreamConn); !ok || !up.s.paused && up.s.pump == nil {
		s.conns.Add(-1) // a paused or pumped upstream's socket stays open: still counted
	}
	switch x := c.Context().(type) {
	case *session:
		x.finish(err)
		s.mu.Lock()
		delete(s.sessions, x)
		s.mu.Unlock()
	case *upstreamConn:
		x.s.upstreamClosed(err)
	}
	return gnet.None
}

// OnTick sweeps sessions past their deadline (slow upgrade, unanswered close).
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	s.now.Store(now)
	s.mu.Lock()
	for sess := range s.sessions {
		if d := sess.deadline.Load(); d != 0 && d < now {
			_ = sess.viewer.EventLoop().Execute(context.Background(), (*expire)(sess))
		} else if c := sess.nextCheck.Load(); c != 0 && c < now {
			sess.nextCheck.Store(0) // one check in flight; it sets the next
			_ = sess.viewer.EventLoop().Execute(context.Background(), (*relayCheck)(sess))
		}
	}
	s.mu.Unlock()
	return s.tick(), gnet.None
}

// tick is the sweep period: a quarter of the shortest timeout, within [10ms, 1s].
func (s *Server) tick() time.Duration {
	t := min(s.cfg.HandshakeTimeout, s.cfg.CloseTimeout)
	for _, d := range []time.Duration{s.cfg.PingInterval, s.cfg.IdleTimeout, s.cfg.MaxDuration, s.cfg.UpstreamIdleTimeout} {
		if d > 0 {
			t = min(t, d)
		}
	}
	return min(max(t/4, 10*time.Millisecond), time.Second)
}

// Drain stops taking new sessions (503, /readyz false) and leaves live ones be.
func (s *Server) Drain() { s.draining.Store(true) }

// admit counts a new viewer against the total and per-IP caps.
func (s *Server) admit(ip string) *upgrade.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() || s.stopping.Load() {
		return &upgrade.Error{Status: http.StatusServiceUnavailable, Message: "draining", Header: [][2]string{{"Retry-After", "5"}}}
	}
	if s.cfg.MaxSessions > 0 && s.admitted >= s.cfg.MaxSessions {
		return &upgrade.Error{Status: http.StatusServiceUnavailable, Message: "too many sessions", Header: [][2]string{{"Retry-After", "5"}}}
	}
	if ip != "" && s.cfg.MaxPerIP > 0 && s.perIP[ip] >= s.cfg.MaxPerIP {
		return tooManyFromIP()
	}
	s.admitted++
	if ip != "" {
		s.perIP[ip]++
	}
	return nil
}

// admitIP counts an admitted viewer's real address (learned after accept)
// against the per-IP cap.
func (s *Server) admitIP(ip string) *upgrade.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxPerIP > 0 && s.perIP[ip] >= s.cfg.MaxPerIP {
		return tooManyFromIP()
	}
	s.perIP[ip]++
	return nil
}

func tooManyFromIP() *upgrade.Error {
	return &upgrade.Error{Status: http.StatusTooManyRequests, Message: "too many sessions from this address"}
}

// admitOrg counts a resolved session against its organization's cap.
func (s *Server) admitOrg(org string) *upgrade.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxPerOrg > 0 && s.perOrg[org] >= s.cfg.MaxPerOrg {
		return &upgrade.Error{Status: http.StatusTooManyRequests, Message: "too many sessions for this organization"}
	}
	s.perOrg[org]++
	return nil
}

// release undoes admit and admitOrg.
func (s *Server) release(ip, org string, orgCounted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admitted--
	if ip != "" { // "": counted in the total only (its real address never arrived)
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
	}
	if orgCounted {
		if s.perOrg[org]--; s.perOrg[org] <= 0 {
			delete(s.perOrg, org)
		}
	}
}

// Serving reports whether the listener is up and the server is neither
// draining nor shutting down.
func (s *Server) Serving() bool {
	select {
	case <-s.booted:
		return !s.stopping.Load() && !s.draining.Load()
	default:
		return false
	}
}
