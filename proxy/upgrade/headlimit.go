package upgrade

import (
	"fmt"
	"net"
)

// MaxResponseHead bounds what vncedge reads of a peer's handshake response
// (a ws/wss upstream's or a DevTools endpoint's 101, head and any bytes
// riding with it).
const MaxResponseHead = 8 << 10

// ErrResponseTooLarge is returned by a HeadLimit's reads past MaxResponseHead.
var ErrResponseTooLarge = fmt.Errorf("handshake response larger than %d bytes", MaxResponseHead)

// HeadLimit is a net.Conn that lets at most MaxResponseHead bytes be read
// through it until Lift: gobwas/ws's dialer reads response lines without a
// bound, so a hostile peer's endless header line would grow memory.
type HeadLimit struct {
	net.Conn
	read   int
	lifted bool
}

// NewHeadLimit wraps c.
func NewHeadLimit(c net.Conn) *HeadLimit { return &HeadLimit{Conn: c} }

// Read reads from the conn, within the bound until Lift.
func (h *HeadLimit) Read(p []byte) (int, error) {
	if h.lifted {
		return h.Conn.Read(p)
	}
	left := MaxResponseHead - h.read
	if left <= 0 {
		return 0, ErrResponseTooLarge
	}
	if len(p) > left {
		p = p[:left]
	}
	n, err := h.Conn.Read(p)
	h.read += n
	return n, err
}

// Lift ends the bound (the handshake is over; what follows has its own).
func (h *HeadLimit) Lift() { h.lifted = true }
