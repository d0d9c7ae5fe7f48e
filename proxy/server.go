package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"vncedge/rfbparse"
)

// Config configures a Server. Zero durations and sizes take the defaults below.
type Config struct {
	// Addr is the listen address, host:port.
	Addr string
	// Loops is the number of event loops; 0 means one per CPU.
	Loops int
	// Resolver maps each upgrade request to its upstream. Required.
	Resolver Resolver
	// Policy is the input policy; nil relays viewer input uninspected.
	Policy *rfbparse.Policy
	// AllowedOrigins lists browser origins allowed besides the same host; "*" allows any.
	AllowedOrigins []string
	// UpstreamTLS configures wss:// upstreams (RootCAs for a private CA).
	UpstreamTLS *tls.Config

	DialTimeout      time.Duration // resolve + dial + ws handshake; default 10s
	HandshakeTimeout time.Duration // viewer's HTTP request head must arrive within; default 10s
	CloseTimeout     time.Duration // wait for the viewer's close reply; default 3s
	MaxFramePayload  int64         // largest viewer frame payload (1009 above); default 1 MiB
	MaxViewerBuffer  int           // viewer outbound bytes before the session is cut (slow viewer); default 64 MiB
	ViewerHighWater  int           // viewer outbound bytes above which the upstream is not read; default 1 MiB
	ViewerLowWater   int           // ... and below which reading resumes; default 256 KiB
	MaxEarlyBytes    int           // viewer bytes buffered while the upstream is dialed; default 64 KiB

	// Compat answers resolver refusals as the reference platform does: the
	// upgrade succeeds, then close 1002 (credentials) or 1013 (not ready).
	Compat bool
	// LivenessPeriod is how often live routes are re-verified; default 5s.
	LivenessPeriod time.Duration
	// ControlGrace keeps a viewer's control state after both its channels
	// closed, so a reconnect finds it; default 5m.
	ControlGrace time.Duration
	// NewClipboard opens the clipboard client for a DevTools endpoint; nil
	// disables the clipboard (copy and paste answer with an error message).
	NewClipboard func(cdpURL string, header http.Header) ClipboardClient
	// ClipboardTimeout bounds one copy or paste; default 5s.
	ClipboardTimeout time.Duration

	// Logger receives one line per session end and errors; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, 10*time.Second)
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.CloseTimeout, 3*time.Second)
	def(&c.LivenessPeriod, 5*time.Second)
	def(&c.ControlGrace, 5*time.Minute)
	def(&c.ClipboardTimeout, 5*time.Second)
	if c.MaxFramePayload <= 0 {
		c.MaxFramePayload = 1 << 20
	}
	if c.MaxViewerBuffer <= 0 {
		c.MaxViewerBuffer = 64 << 20
	}
	if c.ViewerHighWater <= 0 {
		c.ViewerHighWater = 1 << 20
	}
	if c.ViewerLowWater <= 0 || c.ViewerLowWater >= c.ViewerHighWater {
		c.ViewerLowWater = c.ViewerHighWater / 4
	}
	if c.MaxEarlyBytes <= 0 {
		c.MaxEarlyBytes = 64 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is a vncedge relay. Create it with New, run it with ListenAndServe,
// stop it with Shutdown.
type Server struct {
	gnet.BuiltinEventEngine
	cfg Config

	mu       sync.Mutex
	sessions map[*session]struct{}
	reg      *registry
	eng      gnet.Engine
	booted   chan struct{}
	stopped  chan struct{} // closed when the event loops have returned
	stopping atomic.Bool

	// Counters, read with Stats.
	active, total, upgradeFailures atomic.Int64
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
	return &Server{cfg: cfg, sessions: map[*session]struct{}{}, reg: newRegistry(), booted: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Stats is a snapshot of server-wide counters.
type Stats struct {
	Active, Total, UpgradeFailures int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Active: s.active.Load(), Total: s.total.Load(), UpgradeFailures: s.upgradeFailures.Load()}
}

// ListenAndServe runs the event loops until Shutdown; it returns the error
// that stopped them (nil after Shutdown).
func (s *Server) ListenAndServe() error {
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(logging.WarnLevel),
	}
	if s.cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.cfg.Loops))
	}
	err := gnet.Run(s, "tcp://"+s.cfg.Addr, opts...)
	close(s.stopped)
	if err != nil && !s.stopping.Load() {
		return fmt.Errorf("proxy: serve %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Ready is closed once the listener is up.
func (s *Server) Ready() <-chan struct{} { return s.booted }

// Shutdown closes every session with 1001 going-away, waits for them to end
// (or ctx), then stops the event loops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
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
stop:
	select {
	case <-s.booted:
	default:
		return nil
	}
	// Engine.Stop polls for the end every 500ms; the loops' own return is sooner.
	stopErr := make(chan error, 1)
	go func() { stopErr <- s.eng.Stop(ctx) }()
	select {
	case <-s.stopped:
		return nil
	case err := <-stopErr:
		return err
	}
}

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
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

func (s *Server) checkLiveness(now time.Time) {
	type group struct {
		rt       *Route
		sessions []*session
	}
	groups := map[[3]string]*group{}
	s.mu.Lock()
	for sess := range s.sessions {
		rt := sess.published.Load()
		if rt == nil {
			continue
		}
		if !rt.Expires.IsZero() && now.After(rt.Expires) {
			sess.endAsync(ws.StatusNormalClosure, "token-expired")
			continue
		}
		if rt.Live == nil {
			continue
		}
		k := [3]string{rt.Organization, rt.Kind, rt.ID}
		g := groups[k]
		if g == nil {
			g = &group{rt: rt}
			groups[k] = g
		}
		g.sessions = append(g.sessions, sess)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, g := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LivenessPeriod)
			defer cancel()
			err := g.rt.Live.Verify(ctx, g.rt)
			if err == nil {
				return
			}
			if !errors.Is(err, ErrSessionEnded) {
				s.cfg.Logger.Warn("liveness check failed", "err", err, "kind", g.rt.Kind, "id", g.rt.ID)
				return
			}
			s.cfg.Logger.Info("session ended upstream", "kind", g.rt.Kind, "id", g.rt.ID, "viewers", len(g.sessions))
			for _, sess := range g.sessions {
				sess.endAsync(ws.StatusNormalClosure, "session-ended")
			}
		}()
	}
	wg.Wait()
}

// OnOpen implements gnet.EventHandler: a new viewer, or an enrolled upstream.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if up, ok := c.Context().(*upstreamConn); ok {
		return nil, up.s.upstreamOpen(c, up)
	}
	if s.stopping.Load() {
		return nil, gnet.Close
	}
	sess := newSession(s, c)
	c.SetContext(sess)
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
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
	switch x := c.Context().(type) {
	case *session:
		x.viewerClosed(err)
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
	s.mu.Lock()
	for sess := range s.sessions {
		if d := sess.deadline.Load(); d != 0 && d < now {
			_ = sess.viewer.EventLoop().Execute(context.Background(), (*expire)(sess))
		}
	}
	s.mu.Unlock()
	tick := min(s.cfg.HandshakeTimeout, s.cfg.CloseTimeout) / 4
	return max(tick, 10*time.Millisecond), gnet.None
}

// Serving reports whether the listener is up and the server is not shutting down.
func (s *Server) Serving() bool {
	select {
	case <-s.booted:
		return !s.stopping.Load()
	default:
		return false
	}
}
