package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
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

func (s *Server) serveTLS(raw net.Conn, loops *gnet.Client) {
	s.bridges.Add(1)
	defer s.bridges.Add(-1)
	vc := &viewerConn{remote: raw.RemoteAddr(), tls: true}
	var under net.Conn = raw
	if s.cfg.ProxyProtocol { // the balancer's header comes before the ClientHello
		_ = raw.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
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
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.cfg.Logger.Debug("TLS handshake failed", "viewer", addrString(raw.RemoteAddr()), "err", err)
		raw.Close()
		return
	}
	b, loopSide, err := bridge(tc, raw, nil, &s.conns) // upstream.go: the wss bridge, the other way round
	if err != nil {
		s.cfg.Logger.Warn("TLS bridge", "err", err)
		tc.Close()
		return
	}
	if _, err := loops.EnrollContext(loopSide, vc); err != nil { // closes loopSide
		b.Close()
	}
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
