package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TLS on the listener. gnet has no TLS, so a TLS viewer is bridged: the
// handshake runs in a goroutine (bounded by HandshakeTimeout), then one end
// of a socketpair goes on an event loop as the viewer conn and two
// goroutines copy between it and the tls.Conn. The session on the loop is
// the same as for a plain viewer; it learns the real address from the
// enroll context. Cost per TLS viewer: two goroutines and two 32 KiB copy
// buffers, and each byte crosses user space twice more (decrypt, then the
// socketpair) — see docs/BENCHMARKS.md.
//
// Ownership: the bridge goroutines own the tls.Conn and their socketpair
// end; they touch no session field. Either side ending ends both, and a
// viewer that stops reading is cut after bridgeWriteTimeout per write.

// serveTLS runs one TLS viewer's PROXY header and handshake, then puts it on
// a loop behind the bridge. From accept to its session the viewer counts:
// its socket in the open-socket cap (MaxConns, room for the bridge's three
// and an upstream checked first), its address in the per-IP cap for
// handshakes in flight, and in tlsPending, which Shutdown waits for. The
// session's HandshakeTimeout runs from accept, not from the handshake's
// end.
func (s *Server) serveTLS(raw net.Conn, loops *gnet.Client) {
	accepted := time.Now()
	s.tlsPending.Add(1)
	defer s.tlsPending.Add(-1)
	// Reserve what the viewer will hold: its socket, both socketpair ends,
	// and one more for the dups Enroll and FileConn make on the way. The
	// bridge and OnOpen count the three it keeps once it is on a loop.
	const reserve = 4
	n := s.conns.Add(reserve)
	counted := true
	defer func() {
		if counted {
			s.conns.Add(-reserve)
		}
	}()
	if m := s.cfg.MaxConns; m > 0 && n+1 > int64(m) { // +1: its upstream
		if s.shed.Add(1)%1000 == 1 {
			s.cfg.Logger.Warn("connection limit reached: closing new viewers", "max_conns", m)
		}
		raw.Close()
		return
	}
	ip := ipOf(raw.RemoteAddr())
	if !s.admitHandshake(ip) {
		raw.Close()
		return
	}
	defer s.endHandshake(ip)
	vc := &viewerConn{remote: raw.RemoteAddr(), tls: true, accepted: accepted}
	deadline := accepted.Add(s.cfg.HandshakeTimeout)
	var under net.Conn = raw
	if s.cfg.ProxyProtocol { // the balancer's header comes before the ClientHello
		_ = raw.SetReadDeadline(deadline)
		br := bufio.NewReaderSize(raw, maxProxyHeader)
		addr, err := readProxyHeader(br)
		if err != nil {
			s.upgradeFailures.Add(1)
			s.cfg.Logger.Info("connection refused: bad PROXY protocol header", "peer", addrString(raw.RemoteAddr()), "err", err.Error())
			raw.Close()
			return
		}
		_ = raw.SetReadDeadline(time.Time{})
		if addr != nil {
			vc.remote = addr
		}
		vc.proxied = true
		under = &prefixConn{Conn: raw, r: br}
	}
	tc := tls.Server(under, s.cfg.TLS)
	ctx, cancel := context.WithDeadline(s.quit, deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.tlsFailed(raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	if s.stopping.Load() {
		tc.Close()
		return
	}
	b, loopSide, err := bridge(tc, raw, nil, &s.conns) // upstream.go: the wss bridge, the other way round
	if err != nil {
		s.cfg.Logger.Warn("TLS bridge", "err", err)
		tc.Close()
		return
	}
	s.conns.Add(-reserve) // the bridge counts two now, OnOpen the third
	counted = false
	vc.bridge = b
	if _, err := loops.EnrollContext(loopSide, vc); err != nil { // closes loopSide
		b.Close()
	}
}

// admitHandshake counts a TLS handshake against the per-IP cap.
func (s *Server) admitHandshake(ip string) bool {
	if s.cfg.MaxPerIP <= 0 || s.addrMayChangeFor(ip) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsPerIP[ip]+s.perIP[ip] >= s.cfg.MaxPerIP {
		return false
	}
	s.tlsPerIP[ip]++
	return true
}

func (s *Server) endHandshake(ip string) {
	if s.cfg.MaxPerIP <= 0 || s.addrMayChangeFor(ip) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsPerIP[ip]--; s.tlsPerIP[ip] <= 0 {
		delete(s.tlsPerIP, ip)
	}
}

// tlsFailed counts a failed handshake (Stats.TLSFailures) and logs the first
// and then every 1000th at Info, the rest at Debug: a flood stays visible
// without flooding the log.
func (s *Server) tlsFailed(peer net.Addr, err error) {
	n := s.tlsFailures.Add(1)
	level := slog.LevelDebug
	if n%1000 == 1 {
		level = slog.LevelInfo
	}
	s.cfg.Logger.Log(context.Background(), level, "TLS handshake failed", "viewer", addrString(peer), "err", err.Error(), "failures", n)
}

// prefixConn reads what a bufio.Reader already holds, then the conn.
type prefixConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	c.r = nil
	return c.Conn.Read(p)
}
