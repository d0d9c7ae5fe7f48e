package proxy

import (
	"time"

	"vncedge/rfbparse"
)

// Clipboard guards, on the channels' loops:
//   - one clipboard operation (copy or paste) in flight per pair: more get an
//     error at once, without a goroutine (pair.clipBusy, an atomic taken on
//     the loop and released by the clipboard goroutine when its call, bounded
//     by ClipboardTimeout, returns);
//   - a paste is input: clipboard-paste is refused unless the user has
//     control, and ask-for-clipboard-response is accepted only as the answer
//     to an ask-for-clipboard vncedge sent while the user had control (and
//     still has it), once, within askWindow.

// askWindow is how long an ask-for-clipboard stays answerable.
const askWindow = 30 * time.Second

// Error messages of refused clipboard operations.
const (
	msgClipboardBusy = "another clipboard operation is in progress"
	msgAgentControl  = "the agent has control"
	msgNotAsked      = "no clipboard request is pending"
)

// startCopy starts a copy for the pair unless one is in flight, from either
// channel s of the pair; tell is the message channel told when one is (nil:
// nobody to tell): s's own, or the VNC channel's peer.
func (s *session) startCopy(p *pair, tell *msgChannel) {
	if !p.clipBusy.CompareAndSwap(false, true) {
		if tell != nil {
			tell.send(outMessage{Kind: "error", FailedKind: "clipboard-copy", Message: msgClipboardBusy}, tell.s == s)
		}
		return
	}
	srv, ctx, log := s.srv, s.traceCtx(), s.logger()
	go func() {
		defer p.clipBusy.Store(false) // also when copyText returns early
		srv.copyText(ctx, log, p, func() { p.clipBusy.Store(false) })
	}()
}

// startPaste checks and starts a paste from the message channel m.
func (m *msgChannel) startPaste(kind, text string) {
	s := m.s
	p := s.pair
	fail := func(msg string) {
		m.send(outMessage{Kind: "error", FailedKind: kind, Message: msg}, true)
	}
	if kind == "ask-for-clipboard-response" {
		if !s.srv.reg.takeAsk(p, time.Now()) {
			fail(msgNotAsked)
			return
		}
	} else if s.srv.reg.control(p) != rfbparse.User {
		fail(msgAgentControl)
		return
	}
	if !p.clipBusy.CompareAndSwap(false, true) {
		fail(msgClipboardBusy)
		return
	}
	srv, ctx, log := s.srv, s.traceCtx(), s.logger()
	go func() {
		defer p.clipBusy.Store(false)
		srv.pasteText(ctx, log, p, kind, text, func() { p.clipBusy.Store(false) })
	}()
}

// control is who has control of the pair.
func (r *registry) control(p *pair) rfbparse.Interactor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.control
}

// ask records an ask-for-clipboard about to be sent, if the user has
// control, and returns the message channel to send it to (nil: do not ask).
func (r *registry) ask(p *pair, now time.Time) *msgChannel {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.control != rfbparse.User || p.msg == nil {
		return nil
	}
	p.askedAt = now
	return p.msg
}

// takeAsk consumes a pending ask: true if one was sent within askWindow and
// the user still has control.
func (r *registry) takeAsk(p *pair, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := !p.askedAt.IsZero() && now.Sub(p.askedAt) <= askWindow && p.control == rfbparse.User
	p.askedAt = time.Time{}
	return ok
}
