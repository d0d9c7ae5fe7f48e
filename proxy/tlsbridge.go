package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
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
// end; they touch no session field. Either side ending ends both.

// tlsWriteTimeout bounds one write to a TLS viewer: a viewer that takes
// nothing for this long is gone (the session's pings would have noticed
// sooner); it lets the bridge end once the session has.
const tlsWriteTimeout = 60 * time.Second

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
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		s.cfg.Logger.Warn("TLS bridge: socketpair", "err", err)
		tc.Close()
		return
	}
	mine, theirs, err := fileConns(fds)
	if err != nil {
		s.cfg.Logger.Warn("TLS bridge", "err", err)
		tc.Close()
		return
	}
	if _, err := loops.EnrollContext(theirs, vc); err != nil { // closes theirs
		mine.Close()
		tc.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { // viewer → loop
		_, _ = io.Copy(mine, tc)
		done <- struct{}{}
	}()
	go func() { // loop → viewer
		_, _ = io.Copy(deadlineWriter{tc}, mine)
		done <- struct{}{}
	}()
	<-done // either side ended: end both
	mine.Close()
	tc.Close()
	<-done
}

// fileConns wraps both socketpair descriptors as net.Conns.
func fileConns(fds [2]int) (a, b net.Conn, err error) {
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "vncedge-tls-bridge")
		c, ferr := net.FileConn(f)
		f.Close()
		if ferr != nil {
			err = errors.Join(err, ferr)
			if i == 0 {
				syscall.Close(fds[1])
			}
			continue
		}
		if i == 0 {
			a = c
		} else {
			b = c
		}
	}
	if err != nil {
		for _, c := range []net.Conn{a, b} {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, err
	}
	return a, b, nil
}

// deadlineWriter sets a write deadline before each write.
type deadlineWriter struct{ c *tls.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(tlsWriteTimeout))
	return w.c.Write(p)
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
