package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// blockingClipboard holds InsertText until release is closed.
type blockingClipboard struct {
	fakeClipboard
	release chan struct{}
	calls   atomic.Int32
}

func (b *blockingClipboard) InsertText(ctx context.Context, text string) error {
	b.calls.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.fakeClipboard.InsertText(ctx, text)
}

// noInsert fails if a paste reached the browser.
func noInsert(t *testing.T, clip *fakeClipboard, what string) {
	t.Helper()
	select {
	case got := <-clip.inserted:
		t.Fatalf("%s: %q was typed into the browser", what, got)
	default:
	}
}

// TestPasteNeedsUserControl (issue 12 point 4): clipboard-paste and an
// unsolicited ask-for-clipboard-response are refused with an error unless
// the user has control; an answer counts only for an ask-for-clipboard sent
// while the user had control, once.
func TestPasteNeedsUserControl(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	clip := &fakeClipboard{inserted: make(chan string, 4)}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.Agent)
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient { return clip }
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	path := func(ch string) string { return "/v1/stream/" + ch + "/browser_session/pbs_1?client_id=c1" }
	mc := dialMessages(t, addr, path("messages"))
	mc.expect("interactor", "interactor", "agent")
	_, cl := vncViewer(t, addr, path("vnc"))

	// Agent in control: both refused (the error is written before any
	// clipboard call could start, so noInsert after it is conclusive).
	mc.send(map[string]string{"kind": "clipboard-paste", "text": "typed by the user"})
	mc.expect("error", "failed_kind", "clipboard-paste")
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "unsolicited"})
	mc.expect("error", "failed_kind", "ask-for-clipboard-response")
	noInsert(t, clip, "paste with the agent in control")

	// User in control, but nothing was asked: the response is refused.
	mc.send(map[string]string{"kind": "take-control"})
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "unsolicited"})
	mc.expect("error", "message", "no clipboard request is pending")
	noInsert(t, clip, "unsolicited response")

	// Asked while the user had control, then control went to the agent: void.
	cl.KeyEvent(true, rfbparse.KeysymControlL)
	cl.KeyEvent(true, 'v')
	mc.expect("ask-for-clipboard", "", "")
	mc.send(map[string]string{"kind": "cede-control"})
	mc.expect("interactor", "interactor", "agent")
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "late"})
	mc.expect("error", "failed_kind", "ask-for-clipboard-response")
	noInsert(t, clip, "answer after cede-control")

	// Asked with the user in control: the answer is typed, once. (The hand-
	// over released Ctrl and v on the server, and the policy follows the
	// server: the shortcut needs a fresh Ctrl press.)
	mc.send(map[string]string{"kind": "take-control"})
	mc.expect("interactor", "interactor", "user")
	cl.KeyEvent(false, 'v')
	cl.KeyEvent(false, rfbparse.KeysymControlL)
	cl.KeyEvent(true, rfbparse.KeysymControlL)
	cl.KeyEvent(true, 'v')
	mc.expect("ask-for-clipboard", "", "")
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "answer"})
	select {
	case got := <-clip.inserted:
		if got != "answer" {
			t.Fatalf("inserted %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the solicited answer never reached the browser")
	}
	mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "again"})
	mc.expect("error", "message", "no clipboard request is pending")
	mc.send(map[string]string{"kind": "clipboard-paste", "text": "explicit"})
	select {
	case got := <-clip.inserted:
		if got != "explicit" {
			t.Fatalf("inserted %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("clipboard-paste with the user in control never reached the browser")
	}
}

// TestClipboardOneInFlight: while a paste is in flight for a pair, more
// clipboard operations get an error at once (no goroutine each).
func TestClipboardOneInFlight(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	clip := &blockingClipboard{fakeClipboard: fakeClipboard{inserted: make(chan string, 4)}, release: make(chan struct{})}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient { return clip }
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	mc := dialMessages(t, addr, "/v1/stream/messages/browser_session/pbs_1?client_id=c1")
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "clipboard-paste", "text": "first"})
	for i := 0; i < 50; i++ {
		mc.send(map[string]string{"kind": "clipboard-paste", "text": "more"})
		mc.expect("error", "message", "another clipboard operation is in progress")
	}
	mc.send(map[string]string{"kind": "clipboard-copy"})
	mc.expect("error", "message", "another clipboard operation is in progress")
	close(clip.release)
	select {
	case got := <-clip.inserted:
		if got != "first" {
			t.Fatalf("inserted %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first paste never finished")
	}
	if n := clip.calls.Load(); n != 1 {
		t.Fatalf("%d InsertText calls, want 1", n)
	}
}

// orgResolver gives each request the organization named by its apikey.
type orgResolver struct {
	upstream string
	cdp      map[string]string // organization → CDP URL
}

func (o *orgResolver) Resolve(_ context.Context, r *upgrade.Request) (*proxy.Route, error) {
	_, kind, id, _ := proxy.ParseStreamPath(r.Path)
	org := r.Query.Get("apikey")
	u, _ := proxy.ParseUpstream(o.upstream)
	return &proxy.Route{Upstream: u, Kind: kind, ID: id, Organization: org, ClientID: r.Query.Get("client_id"),
		Control: rfbparse.Agent, CDPURL: o.cdp[org]}, nil
}

// TestPairTakeoverStartsFresh (issue 18 point 7): a pair left idle by one
// organization and taken by another keeps nothing: not the control state,
// not the CDP client.
func TestPairTakeoverStartsFresh(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	clipA := &fakeClipboard{selected: "org A's secret selection", inserted: make(chan string, 4)}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.Agent)
	cfg.Resolver = &orgResolver{upstream: "tcp://" + vnc.Addr(), cdp: map[string]string{"A": "http://a.invalid"}}
	cfg.NewClipboard = func(url string, _ http.Header) proxy.ClipboardClient {
		if !strings.Contains(url, "a.invalid") {
			t.Errorf("clipboard client for %q", url)
		}
		return clipA
	}
	srv, addr := startProxy(t, cfg)
	path := func(org string) string { return "/v1/stream/messages/browser_session/pbs_1?client_id=c1&apikey=" + org }
	a := dialMessages(t, addr, path("A"))
	a.expect("interactor", "interactor", "agent")
	a.send(map[string]string{"kind": "take-control"})
	a.expect("interactor", "interactor", "user")
	a.send(map[string]string{"kind": "clipboard-copy"})
	a.expect("copied-text", "text", "org A's secret selection")
	a.c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Active > 0 { // the pair goes idle once A's channel is closed
		if time.Now().After(deadline) {
			t.Fatal("A's channel never closed")
		}
		time.Sleep(5 * time.Millisecond) // no event to await from outside the server
	}
	b := dialMessages(t, addr, path("B"))
	b.expect("interactor", "interactor", "agent") // not A's "user"
	b.send(map[string]string{"kind": "clipboard-copy"})
	b.expect("error", "failed_kind", "clipboard-copy") // B has no DevTools endpoint; never A's
}

// TestLargeCopiedTextReachesReadingViewer: a copied-text whose JSON is larger
// than the message channel's outbound cap (1 MiB of '<', escaped to 6 MiB)
// still reaches a viewer that reads: the cap is checked before a write.
func TestLargeCopiedTextReachesReadingViewer(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	big := strings.Repeat("<", proxy.MaxClipboardText)
	clip := &fakeClipboard{selected: big, inserted: make(chan string, 1)}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.NewClipboard = func(string, http.Header) proxy.ClipboardClient { return clip }
	cfg.Resolver.(*proxy.TargetResolver).CDPURL = "http://127.0.0.1:1"
	_, addr := startProxy(t, cfg)
	mc := dialMessages(t, addr, "/v1/stream/messages/browser_session/pbs_1?client_id=c1")
	mc.expect("interactor", "interactor", "user")
	mc.send(map[string]string{"kind": "clipboard-copy"})
	v := mc.next()
	if text, _ := v["text"].(string); v["kind"] != "copied-text" || text != big {
		t.Fatalf("got kind %v with %d bytes of text (%v), want the whole copied-text", v["kind"], len(text), v["message"])
	}
}
