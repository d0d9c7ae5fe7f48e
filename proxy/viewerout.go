package proxy

import (
	"vncedge/proxy/wsframe"

	"github.com/gobwas/ws"
)

// viewerOut is the scratch space of frames we write to the viewer.
type viewerOut struct {
	vhdr     [wsframe.MaxHeaderSize]byte       // header of a data frame
	vec      [2][]byte                         // writev vector (gnet modifies it in place)
	ctl      [wsframe.MaxHeaderSize + 125]byte // control frames
	pongOwed bool                              // a pong was queued and the outbound was not empty after
}

// Every byte vncedge queues for a viewer counts against one cap: RFB data
// (serverBytes), pongs, close frames and message-channel messages. gnet's
// outbound buffer is unbounded, so the cap is checked after every write; a
// viewer over it is closed with 1008 slow-consumer. Past the cap only the
// close frame goes out (one per session: end runs once); a message channel
// may hold its cap plus the one message written while under it. The cap is
// session.viewerCap: MaxViewerBuffer, lowered for a message channel to
// maxMessagesOutbound (newMsgChannel; its writes are in msgchannel.go).

// overViewerCap ends the session with slow-consumer if the viewer's outbound
// is over its cap, and reports whether it was. On the loop.
func (s *session) overViewerCap() bool {
	if s.viewer.OutboundBuffered() <= s.viewerCap {
		return false
	}
	if s.state == stRelay {
		s.end(reasonSlowConsumer)
	}
	return true
}

// pongViewer answers a viewer's ping. At most one pong is owed: while the
// previous one may still be unsent (the outbound is not empty since it was
// queued), a new ping gets none (RFC 6455 §5.5.3 allows answering only the
// most recent). A ping flood from a viewer that does not read thus queues
// nothing. On the loop.
func (s *session) pongViewer(payload []byte) {
	if s.pongOwed && s.viewer.OutboundBuffered() > 0 {
		return
	}
	if s.overViewerCap() {
		return
	}
	s.sendControl(s.viewer, ws.OpPong, payload, false)
	s.pongOwed = s.viewer.OutboundBuffered() > 0
}
