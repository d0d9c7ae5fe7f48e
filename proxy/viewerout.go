package proxy

import (
	"context"
	"encoding/json"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/wsframe"
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
// may hold its cap plus the one message written while under it.

// maxMessagesOutbound bounds what is queued for a message channel: room for
// one copied-text of MaxClipboardText and small messages around it.
const maxMessagesOutbound = 2*maxMessage + 64<<10

// viewerCap is the viewer's outbound cap for its channel kind.
func (s *session) viewerCap() int {
	if s.mode == modeMessages {
		return min(s.srv.cfg.MaxViewerBuffer, maxMessagesOutbound)
	}
	return s.srv.cfg.MaxViewerBuffer
}

// overViewerCap ends the session with slow-consumer if the viewer's outbound
// is over its cap, and reports whether it was. On the loop.
func (s *session) overViewerCap() bool {
	if s.viewer.OutboundBuffered() <= s.viewerCap() {
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

// writeMessage writes one JSON text frame to a message channel within its
// cap, on the loop. The cap is checked before the write, so one message
// larger than the cap (a copied-text of 1 MiB whose JSON escapes grew it)
// still goes out to a viewer that reads: the outbound stays under the cap
// plus one message. body is not kept.
func (s *session) writeMessage(body []byte) {
	if s.state != stRelay || s.overViewerCap() {
		return
	}
	var hdr [wsframe.MaxHeaderSize]byte
	n := wsframe.PutHeader(hdr[:], ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(body))})
	s.vec[0], s.vec[1] = hdr[:n], body
	_, _ = s.viewer.Writev(s.vec[:])
	s.vec[0], s.vec[1] = nil, nil
}

// messageFrame is the JSON of m (fixed messages are encoded once).
func messageFrame(m *outMessage) []byte {
	if m.Text == nil && m.Interactor == "" {
		if b, ok := fixedMessages[*m]; ok {
			return b
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return body
}

// fixedMessages are replies whose JSON never changes (errors a flood of bad
// input earns): encoded once, no allocation per reply.
var fixedMessages = func() map[outMessage][]byte {
	out := map[outMessage][]byte{}
	for _, m := range []outMessage{
		{Kind: "error", Message: "bad JSON message"},
		{Kind: "error", Message: "message too large"},
		{Kind: "ask-for-clipboard"},
	} {
		b, _ := json.Marshal(m)
		out[m] = b
	}
	return out
}()

// messageTask delivers a message to a channel on its own loop (from a
// clipboard goroutine or another channel's loop): the same capped path.
type messageTask struct {
	s    *session
	body []byte
}

func (m *messageTask) Run(context.Context) error {
	m.s.writeMessage(m.body)
	return nil
}

// postMessage hands a message to s's loop from any goroutine.
func (s *session) postMessage(m *outMessage) {
	body := messageFrame(m)
	if body == nil {
		return
	}
	_ = s.viewer.EventLoop().Execute(context.Background(), gnet.Runnable(&messageTask{s: s, body: body}))
}
