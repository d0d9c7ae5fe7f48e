package proxy

import (
	"io"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// viewerConn is the context a viewer conn is enrolled with: what the accept
// path knows about it that the socket gnet sees does not say. Read once, in
// OnOpen, on the conn's loop.
type viewerConn struct {
	remote   net.Addr  // the viewer's address (a TLS viewer's gnet socket is one end of a socketpair)
	tls      bool      // the viewer came through the TLS listener
	proxied  bool      // its PROXY protocol header was read before the handshake
	accepted time.Time // when it was accepted (its HandshakeTimeout runs from there)
	bridge   io.Closer // the TLS bridge, closed with the session
}

// enroll puts an accepted viewer on an event loop: directly, or for a TLS
// listener behind a handshake and a bridge (see tlsbridge.go). It never
// blocks on the viewer.
func (s *Server) enroll(c net.Conn, loops *gnet.Client) error {
	if s.cfg.TLS != nil {
		go s.serveTLS(c, loops)
		return nil
	}
	_, err := loops.EnrollContext(c, &viewerConn{remote: c.RemoteAddr()}) // closes c either way
	return err
}

// viewerAddr is the viewer's address for caps, logs and spans.
func (s *session) viewerAddr() net.Addr { return s.remote }
