// msgchannel.go holds the message channel, msgChannel: a viewer's second
// WebSocket, carrying JSON text frames (the protocol, the clipboard calls and
// the VNC side of a change of control are in messages.go). It rides on a
// session, the viewer-connection core it shares with the VNC channel
// (upgrade, admission, keepalive, close, logs, span); what only a message
// channel has and does is here: resolving and opening (no upstream is
// dialed), pairing, assembling data frames into messages and handling them,
// and writing replies within its outbound cap.

package proxy

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/proxy/upgrade"
	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

// maxMessagesOutbound bounds what is queued for a message channel: room for
// one copied-text of MaxClipboardText and small messages around it.
const maxMessagesOutbound = 2*maxMessage + 64<<10

// msgChannel is a viewer's message channel; s is its viewer connection
// (s.msg is this channel). s is set when the channel is made, before it is
// shared, and never changes; the other fields belong to s's loop, like a
// session's. Other goroutines and other channels' loops reach the channel
// only through send with onLoop false, which hands the message to its loop.
type msgChannel struct {
	s       *session
	buf     *bytebufferpool.ByteBuffer // the message being assembled; pooled between messages
	discard bool                       // the message being received is over the limit
}

// newMsgChannel makes s a message channel, when its request names one
// (readUpgrade): s.msg is set, and the viewer's outbound cap lowered to what
// messages need (viewerout.go).
func newMsgChannel(s *session) *msgChannel {
	m := &msgChannel{s: s}
	s.msg = m
	s.viewerCap = min(s.srv.cfg.MaxViewerBuffer, maxMessagesOutbound)
	return m
}

// resolveMessages runs off the loop for a message channel: authenticate and
// resolve the session (nothing is dialed), then open the channel on the loop
// (messagesResolved). Like dial, it reads no session field.
func (j *dialJob) resolveMessages() {
	defer j.cancel()
	route, err := j.srv.cfg.Resolver.Resolve(j.ctx, j.req)
	if err != nil {
		j.finish(failResult(resolveStatus(&j.srv.cfg, err, j.req)), messagesResolved)
		return
	}
	j.srv.vetCDP(route)
	r := &dialResult{route: route}
	if he := j.takeOrg(r); he != nil {
		j.finish(failResult(he), messagesResolved)
		return
	}
	j.finish(r, messagesResolved)
}

// open answers 101 and pairs the channel, on the loop; from then on the
// viewer's data frames come to onData.
func (m *msgChannel) open(rt *Route) {
	s := m.s
	if s.state != stDialing {
		return
	}
	if rt.ClientID == "" {
		s.refuse(&upgrade.Error{Status: http.StatusBadRequest, Message: "client_id is required"})
		return
	}
	p, replaced, control, ok := s.srv.reg.attachMessages(m, rt)
	if !ok {
		s.refuse(pairRefusal)
		return
	}
	if replaced != nil {
		// Now, not after the 101: a failed write finishes this channel
		// inside Write, and the replaced one is already out of the pair.
		replaced.s.endAsync(reasonReplaced)
	}
	s.route, s.pair, s.data = rt, p, m
	s.vdec.AllowText = true
	s.vdec.MaxPayload = maxMessage
	if _, err := s.viewer.Write(upgrade.AppendResponse(nil, s.req, s.proto)); err != nil {
		s.end(reasonViewerWriteFailed)
		return
	}
	s.state = stRelay
	s.deadline.Store(0)
	s.publish()
	s.logStart()
	s.startChecks()
	m.send(outMessage{Kind: "interactor", Interactor: s.srv.reg.shownControl(p, rt.Role, control).String()}, true)
	s.drainViewer()
}

// onData assembles the viewer's data frames into messages (dataSink).
func (m *msgChannel) onData(p []byte, fin bool) {
	if m.buf == nil {
		m.buf = bytebufferpool.Get()
	}
	if !m.discard {
		if m.buf.Len()+len(p) > maxMessage {
			m.discard = true
			m.buf.Reset()
		} else {
			_, _ = m.buf.Write(p)
		}
	}
	if !fin {
		return
	}
	if m.discard {
		m.discard = false
		bytebufferpool.Put(m.buf)
		m.buf = nil
		m.send(outMessage{Kind: "error", Message: "message too large"}, true)
		return
	}
	var in inMessage
	err := json.Unmarshal(m.buf.B, &in)
	bytebufferpool.Put(m.buf) // idle channels hold no buffer; the pool calibrates sizes
	m.buf = nil
	if err != nil {
		m.send(outMessage{Kind: "error", Message: "bad JSON message"}, true)
		return
	}
	m.handle(&in)
}

// handle acts on one message from the page, on the loop.
func (m *msgChannel) handle(in *inMessage) {
	s := m.s
	reg, p := s.srv.reg, s.pair
	if m.refuseByRole(in.Kind) {
		return
	}
	switch in.Kind {
	case "take-control", "cede-control":
		defer reg.notifyWatchers(p)
		to := rfbparse.User
		if in.Kind == "cede-control" {
			to = rfbparse.Agent
		}
		if reg.control(p) != to { // a flood of take-control logs once
			s.logger().Info("control changed", "to", to.String())
		}
		if vnc := reg.setControl(p, to); vnc != nil {
			// The confirmation goes out once the VNC channel applied it.
			err := vnc.viewer.EventLoop().Execute(context.Background(), &controlChange{s: vnc, to: to, confirm: m})
			if err == nil {
				return
			}
		}
		m.send(outMessage{Kind: "interactor", Interactor: to.String()}, true)
	case "clipboard-copy":
		s.startCopy(p, m)
	case "clipboard-paste", "ask-for-clipboard-response":
		if in.Text == nil {
			m.send(outMessage{Kind: "error", FailedKind: in.Kind, Message: "text is required"}, true)
			return
		}
		if len(*in.Text) > MaxClipboardText {
			m.send(outMessage{Kind: "error", FailedKind: in.Kind, Message: "text over 1 MiB"}, true)
			return
		}
		m.startPaste(in.Kind, *in.Text)
	default:
		kind := in.Kind
		if len(kind) > 64 { // echoed: a peer's 1 MiB kind is not worth 1 MiB of reply
			kind = kind[:64]
		}
		m.send(outMessage{Kind: "error", FailedKind: kind, Message: "unknown message kind"}, true)
	}
}

// send writes a JSON text frame to the channel; onLoop says whether the
// caller runs on the channel's loop (else it is handed there, post).
// Either way it counts against the channel's outbound cap (viewerout.go).
func (m *msgChannel) send(msg outMessage, onLoop bool) {
	if !onLoop {
		m.post(&msg)
		return
	}
	if body := messageFrame(&msg); body != nil {
		m.write(body)
	}
}

// write writes one JSON text frame to the viewer within the channel's cap,
// on the loop. The cap is checked before the write, so one message larger
// than the cap (a copied-text of 1 MiB whose JSON escapes grew it) still
// goes out to a viewer that reads: the outbound stays under the cap plus one
// message. body is not kept.
func (m *msgChannel) write(body []byte) {
	s := m.s
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
	m    *msgChannel
	body []byte
}

func (t *messageTask) Run(context.Context) error {
	t.m.write(t.body)
	return nil
}

// post hands a message to the channel's loop from any goroutine.
func (m *msgChannel) post(msg *outMessage) {
	body := messageFrame(msg)
	if body == nil {
		return
	}
	_ = m.s.viewer.EventLoop().Execute(context.Background(), gnet.Runnable(&messageTask{m: m, body: body}))
}
