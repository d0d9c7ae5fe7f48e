package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// closingClipboard is a ClipboardClient that reports its Close.
type closingClipboard struct {
	selected string
	closed   chan struct{}
}

func (c *closingClipboard) SelectedText(context.Context) (string, error) { return c.selected, nil }
func (c *closingClipboard) InsertText(context.Context, string) error     { return nil }
func (c *closingClipboard) Close() error                                 { close(c.closed); return nil }

// TestHostileCDPClosedWithLastChannel: once a pair has no live channel its
// DevTools client is closed at once (a hostile endpoint's events cost
// nothing for the rest of the control grace), and a copy from a new channel
// opens a fresh one.
func TestHostileCDPClosedWithLastChannel(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	clips := make(chan *closingClipboard, 4)
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.ControlGrace = time.Hour
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient {
		c := &closingClipboard{selected: "words", closed: make(chan struct{})}
		clips <- c
		return c
	}
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	path := "/v1/stream/messages/browser_session/pbs_1?client_id=c1"
	mc := dialMessages(t, addr, path)
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("copied-text", "text", "words")
	first := <-clips
	mc.c.Close()
	select {
	case <-first.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the DevTools client outlived the pair's last channel")
	}
	mc2 := dialMessages(t, addr, path)
	mc2.expect("interactor", "interactor", "user")
	mc2.send(map[string]string{"kind": "clipboard-copy"})
	mc2.expect("copied-text", "text", "words")
	if len(clips) != 1 {
		t.Fatalf("the second copy opened %d clients, want a fresh one", len(clips))
	}
}

// TestHostileCopyTooLarge: a selection over MaxClipboardText (from any
// ClipboardClient) reaches the page as an error, not as copied-text.
func TestHostileCopyTooLarge(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	big := strings.Repeat("s", proxy.MaxClipboardText+1)
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient {
		return &closingClipboard{selected: big, closed: make(chan struct{})}
	}
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	mc := dialMessages(t, addr, "/v1/stream/messages/browser_session/pbs_1?client_id=c1")
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("error", "failed_kind", "clipboard-copy")
}
