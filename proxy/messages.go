// messages.go holds the message channel's protocol and the clipboard: the
// messages a page sends and gets (inMessage, outMessage), a pair's DevTools
// client (clipboard), the copy and paste calls run off the loop, and the VNC
// channel's side of a change of control (controlChange) and of clipboard
// shortcuts (onEvents). The channel itself, msgChannel, is in msgchannel.go.

package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

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

// controlChange applies a change of control to a VNC channel, on its loop:
// keys and buttons the user still holds are released on the server.
type controlChange struct {
	s       *session
	to      rfbparse.Interactor
	confirm *msgChannel // message channel to confirm to
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
		c.confirm.send(outMessage{Kind: "interactor", Interactor: c.to.String()}, false)
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
			msg.send(outMessage{Kind: "ask-for-clipboard"}, false)
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
		msg.send(outMessage{Kind: "error", FailedKind: "clipboard-copy", Message: "could not read the selection"}, false)
		return
	}
	msg.send(outMessage{Kind: "copied-text", Text: &text}, false)
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
			msg.send(outMessage{Kind: "error", FailedKind: kind, Message: "could not paste"}, false)
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
