package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"log/slog"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"go.opentelemetry.io/otel/attribute"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// The message channel: a second WebSocket per viewer carrying JSON text
// frames, compatible with the reference platform's page. From the page:
// take-control, cede-control, clipboard-copy, clipboard-paste {text},
// ask-for-clipboard-response {text}. To the page: interactor {interactor},
// copied-text {text}, ask-for-clipboard {}, error {failed_kind, message}.

// MaxClipboardText bounds the text of one paste.
const MaxClipboardText = 1 << 20

// maxMessage bounds one assembled message-channel message (text + JSON).
const maxMessage = MaxClipboardText + 4<<10

// pasteAfterCutText: a paste shortcut within this long after the viewer sent
// its clipboard as ClientCutText needs no ask-for-clipboard round trip.
const pasteAfterCutText = 2 * time.Second

// ClipboardClient reaches the remote browser for copy and paste (the Chrome
// DevTools Protocol in production). Calls run off the event loop.
type ClipboardClient interface {
	// SelectedText returns the selection of the page the user looks at.
	SelectedText(ctx context.Context) (string, error)
	// InsertText types text into that page.
	InsertText(ctx context.Context, text string) error
	Close() error
}

// clipboard opens a pair's ClipboardClient lazily and keeps it.
type clipboard struct {
	mu     sync.Mutex
	url    string
	header http.Header
	c      ClipboardClient
}

func (c *clipboard) reset(url string, h http.Header) {
	c.mu.Lock()
	old := c.c
	c.url, c.header, c.c = url, h, nil
	c.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (c *clipboard) get(newClient func(url string, h http.Header) ClipboardClient) (ClipboardClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	if c.url == "" || newClient == nil {
		return nil, errors.New("no DevTools endpoint for this session")
	}
	c.c = newClient(c.url, c.header)
	return c.c, nil
}

func (c *clipboard) close() { c.reset("", nil) }

// msgState is the message channel's part of a session.
type msgState struct {
	buf     *bytebufferpool.ByteBuffer // the message being assembled; pooled between messages
	discard bool                       // the message being received is over the limit
}

// inMessage is a message from the page.
type inMessage struct {
	Kind string  `json:"kind"`
	Text *string `json:"text"`
}

type outMessage struct {
	Kind       string  `json:"kind"`
	Interactor string  `json:"interactor,omitempty"`
	Text       *string `json:"text,omitempty"`
	FailedKind string  `json:"failed_kind,omitempty"`
	Message    string  `json:"message,omitempty"`
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

// openMessages answers 101 and pairs the channel, on the loop.
func (s *session) openMessages(rt *Route) {
	if s.state != stDialing {
		return
	}
	if rt.ClientID == "" {
		s.refuse(&upgrade.Error{Status: http.StatusBadRequest, Message: "client_id is required"})
		return
	}
	p, replaced, control, ok := s.srv.reg.attach(s, rt)
	if !ok {
		s.refuse(pairRefusal)
		return
	}
	s.route, s.pair, s.msg = rt, p, &msgState{}
	s.vdec.AllowText = true
	s.vdec.MaxPayload = maxMessage
	if _, err := s.viewer.Write(upgrade.AppendResponse(nil, s.req, s.proto)); err != nil {
		s.end(reasonViewerWriteFailed)
		return
	}
	s.state = stRelay
	s.publish()
	s.logStart()
	s.startChecks()
	if replaced != nil {
		replaced.endAsync(reasonReplaced)
	}
	s.sendMessage(outMessage{Kind: "interactor", Interactor: s.srv.reg.shownControl(p, rt.Role, control).String()}, true)
	s.drainViewer()
}

// onMessageData assembles message-channel frames into messages.
func (s *session) onMessageData(p []byte, fin bool) {
	m := s.msg
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
		s.sendMessage(outMessage{Kind: "error", Message: "message too large"}, true)
		return
	}
	var in inMessage
	err := json.Unmarshal(m.buf.B, &in)
	bytebufferpool.Put(m.buf) // idle channels hold no buffer; the pool calibrates sizes
	m.buf = nil
	if err != nil {
		s.sendMessage(outMessage{Kind: "error", Message: "bad JSON message"}, true)
		return
	}
	s.handleMessage(&in)
}

func (s *session) handleMessage(in *inMessage) {
	reg, p := s.srv.reg, s.pair
	if s.refuseByRole(in.Kind) {
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
			err := vnc.viewer.EventLoop().Execute(context.Background(), &controlChange{s: vnc, to: to, confirm: s})
			if err == nil {
				return
			}
		}
		s.sendMessage(outMessage{Kind: "interactor", Interactor: to.String()}, true)
	case "clipboard-copy":
		s.startCopy(p, s)
	case "clipboard-paste", "ask-for-clipboard-response":
		if in.Text == nil {
			s.sendMessage(outMessage{Kind: "error", FailedKind: in.Kind, Message: "text is required"}, true)
			return
		}
		if len(*in.Text) > MaxClipboardText {
			s.sendMessage(outMessage{Kind: "error", FailedKind: in.Kind, Message: "text over 1 MiB"}, true)
			return
		}
		s.startPaste(in.Kind, *in.Text)
	default:
		kind := in.Kind
		if len(kind) > 64 { // echoed: a peer's 1 MiB kind is not worth 1 MiB of reply
			kind = kind[:64]
		}
		s.sendMessage(outMessage{Kind: "error", FailedKind: kind, Message: "unknown message kind"}, true)
	}
}

// sendMessage writes a JSON text frame to a message channel; onLoop says
// whether the caller runs on the channel's loop (else it is handed there).
// Either way it counts against the channel's outbound cap (viewerout.go).
func (s *session) sendMessage(m outMessage, onLoop bool) {
	if !onLoop {
		s.postMessage(&m)
		return
	}
	if body := messageFrame(&m); body != nil {
		s.writeMessage(body)
	}
}

// controlChange applies a change of control to a VNC channel, on its loop:
// keys and buttons the user still holds are released on the server.
type controlChange struct {
	s       *session
	to      rfbparse.Interactor
	confirm *session // message channel to confirm to
}

func (c *controlChange) Run(context.Context) error {
	s := c.s
	s.events.Add("vnc.control", attribute.String("to", c.to.String()))
	s.recNote(c.to)
	if s.state == stRelay && s.rfb != nil {
		if rel := s.rfb.SetInteractor(roleControl(s.route.Role, c.to)); len(rel) > 0 {
			_, _ = (*upstreamWriter)(s).Write(rel)
			_ = s.flushUp()
		}
	}
	if c.confirm != nil {
		c.confirm.sendMessage(outMessage{Kind: "interactor", Interactor: c.to.String()}, false)
	}
	return nil
}

// onEvents acts on what the policy noticed in the viewer's input, on the
// VNC channel's loop. Clipboard work goes to goroutines.
func (s *session) onEvents(ev rfbparse.Event) {
	if ev&rfbparse.EventBlocked != 0 {
		s.events.Add("vnc.policy.drop", attribute.String("reason", "shortcut"))
	}
	p := s.pair
	if p == nil {
		return
	}
	if ev&rfbparse.EventCutText != 0 {
		p.lastCutText.Store(time.Now().UnixNano())
	}
	if ev&rfbparse.EventCopy != 0 {
		s.events.Add("vnc.clipboard", attribute.String("op", "copy"))
		_, msg := s.srv.reg.peers(p)
		s.startCopy(p, msg)
	}
	if ev&rfbparse.EventPaste != 0 && time.Since(time.Unix(0, p.lastCutText.Load())) > pasteAfterCutText {
		if msg := s.srv.reg.ask(p, time.Now()); msg != nil { // only while the user has control
			msg.sendMessage(outMessage{Kind: "ask-for-clipboard"}, false)
		}
	}
}

// copyText reads the remote selection and sends it to the page (off loop);
// tctx carries the session span the call's span hangs under.
// release ends the pair's clipboard operation; it runs before the answer
// goes out, so a viewer that acts on the answer finds the pair free.
func (srv *Server) copyText(tctx context.Context, log *slog.Logger, p *pair, release func()) {
	_, msg := srv.reg.peers(p)
	if msg == nil {
		return // nobody to tell
	}
	defer srv.dropIfIdle(p)
	ctx, cancel := context.WithTimeout(tctx, srv.cfg.ClipboardTimeout)
	defer cancel()
	done := srv.clipboardCall(ctx, "copy")
	c, err := p.clip.get(srv.cfg.NewClipboard)
	var text string
	if err == nil {
		text, err = c.SelectedText(ctx)
	}
	if err == nil {
		err = copyTooLarge(text)
	}
	done(err)
	release()
	if err != nil {
		log.Warn("clipboard copy failed", "err", tracing.Redact(err.Error()))
		msg.sendMessage(outMessage{Kind: "error", FailedKind: "clipboard-copy", Message: "could not read the selection"}, false)
		return
	}
	msg.sendMessage(outMessage{Kind: "copied-text", Text: &text}, false)
}

// pasteText types text into the remote page (off loop).
func (srv *Server) pasteText(tctx context.Context, log *slog.Logger, p *pair, kind, text string, release func()) {
	defer srv.dropIfIdle(p)
	ctx, cancel := context.WithTimeout(tctx, srv.cfg.ClipboardTimeout)
	defer cancel()
	done := srv.clipboardCall(ctx, "paste")
	c, err := p.clip.get(srv.cfg.NewClipboard)
	if err == nil {
		err = c.InsertText(ctx, text)
	}
	done(err)
	release()
	if err != nil {
		log.Warn("clipboard paste failed", "err", tracing.Redact(err.Error()))
		if _, msg := srv.reg.peers(p); msg != nil {
			msg.sendMessage(outMessage{Kind: "error", FailedKind: kind, Message: "could not paste"}, false)
		}
	}
}

// clipboardCall starts the span and timer of one CDP call; the returned
// func ends them. No clipboard text goes into spans.
func (srv *Server) clipboardCall(ctx context.Context, op string) func(error) {
	tr := srv.cfg.Tracing
	if tr == nil {
		return func(error) {}
	}
	_, span := tr.StartChild(ctx, "vnc.cdp."+op)
	began := time.Now()
	return func(err error) {
		tr.CDPLatency(op, time.Since(began), err == nil)
		tracing.EndChild(span, err)
	}
}

// eventAsync records a span event on the session's loop.
func (s *session) eventAsync(name string) {
	if s.srv.cfg.Tracing == nil {
		return
	}
	_ = s.viewer.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		s.events.Add(name)
		return nil
	}))
}

// endAsyncWith ends a session from any goroutine (endWith). Call sites use
// endAsync or endAsyncDetail (reasons.go), not this.
func (s *session) endAsyncWith(code ws.StatusCode, reason string) {
	_ = s.viewer.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if s.state == stRelay {
			s.events.Add("vnc.end", attribute.String("reason", reason))
			s.endWith(code, reason)
		}
		return nil
	}))
}
