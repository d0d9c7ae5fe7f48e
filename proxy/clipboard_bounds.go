package proxy

import (
	"fmt"
)

// errCopyTooLarge: the remote selection is longer than a paste may be; the
// page gets an error instead of the text.
var errCopyTooLarge = fmt.Errorf("selection larger than %d bytes", MaxClipboardText)

// drop closes the pair's DevTools client, if open, keeping its endpoint: the
// pair has no live channel, and a hostile endpoint must not keep costing
// (events, memory) until the pair is swept. The next copy or paste opens a
// new one. The close runs on its own goroutine: drop is called on event loops.
func (c *clipboard) drop() {
	c.mu.Lock()
	old := c.c
	c.c = nil
	c.mu.Unlock()
	if old != nil {
		go func() { _ = old.Close() }()
	}
}

// copyTooLarge reports whether text may not go to the page as copied-text.
func copyTooLarge(text string) error {
	if len(text) > MaxClipboardText {
		return errCopyTooLarge
	}
	return nil
}

// dropIfIdle closes the pair's DevTools client when the pair lost its last
// channel while a copy or paste was in flight (that call may have opened it
// after registry.detach dropped the previous one).
func (srv *Server) dropIfIdle(p *pair) {
	if vnc, msg := srv.reg.peers(p); vnc == nil && msg == nil {
		p.clip.drop()
	}
}
