package fuzz

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
)

// attackN scales the loop counts (VNCEDGE_ATTACK_N overrides the default).
func attackN(def int) int {
	if n, err := strconv.Atoi(os.Getenv("VNCEDGE_ATTACK_N")); err == nil && n > 0 {
		return n
	}
	return def
}

// hammer runs n tries of f over workers goroutines.
func hammer(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// TestAttackCloseDuringDial: viewers that send a complete upgrade request and
// close at once (FIN or RST), thousands of times, must neither race nor crash
// vncedge (issue 13: a nil span in AnnotateSession killed the process within
// ~200 tries). Two upstreams: one that answers at once (the close lands
// anywhere in resolve/dial/enroll) and a ws:// one that never answers its
// handshake (every close lands mid-dial, which must be cancelled: goroutines
// and descriptors return to baseline).
func TestAttackCloseDuringDial(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	mute, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers the ws handshake
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	var held sync.WaitGroup
	var mu sync.Mutex
	var mutes []net.Conn
	accepted := make(chan struct{}, 1<<16)
	held.Add(1)
	go func() {
		defer held.Done()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			mutes = append(mutes, c)
			mu.Unlock()
			accepted <- struct{}{}
		}
	}()
	defer func() {
		mute.Close()
		held.Wait()
		for _, c := range mutes {
			c.Close()
		}
	}()

	for _, tc := range []struct {
		name, target string
		n            int
	}{
		{"tcp", "tcp://" + vnc.Addr(), 3000},
		{"ws-mute", "ws://" + mute.Addr().String() + "/", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startEdge(t, "--target", tc.target)
			base := p.fds()
			baseG := p.metric("go_goroutines")
			n := attackN(tc.n)
			req := upgradeRequest(p.addr, "/websockify")
			var failed atomic.Int64
			hammer(n, 8, func(i int) {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					failed.Add(1)
					return
				}
				_, _ = c.Write(req)
				if tc.name == "ws-mute" {
					// Close only once a dial reached the upstream (one per
					// viewer): every close lands in the ws handshake.
					select {
					case <-accepted:
					case <-time.After(10 * time.Second):
						failed.Add(1)
					}
				}
				if i%2 == 1 {
					_ = c.(*net.TCPConn).SetLinger(0) // RST
				}
				_ = c.Close()
			})
			p.alive()
			if f := failed.Load(); f > int64(n/100) {
				t.Fatalf("%d of %d connects failed", f, n)
			}
			if !settle(20*time.Second, func() bool { return p.fds() <= base+4 && p.metric("go_goroutines") <= baseG+4 }) {
				t.Fatalf("after %d close-during-dial viewers: %d fds (baseline %d), %v goroutines (baseline %v)",
					n, p.fds(), base, p.metric("go_goroutines"), baseG)
			}
			p.alive()
			if tc.name == "ws-mute" {
				mu.Lock()
				reached := len(mutes)
				mu.Unlock()
				if reached < n-int(failed.Load()) { // else the closes did not land mid-dial
					t.Fatalf("only %d of %d viewers reached the dial", reached, n)
				}
			}
			t.Logf("%d tries: alive, %d fds (baseline %d), VmHWM %d kB", n, p.fds(), base, p.status("VmHWM"))
		})
	}
}

// silentListener accepts connections and never answers (a stalled CDP
// endpoint or upstream); closed at cleanup.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// floodRSSBound is the most a single flooding viewer may add to vncedge's
// peak RSS (VmHWM), race detector included (a bad-JSON flood's garbage,
// with the race runtime's shadow memory, reached +53 MB; the plain binary
// +16 MB). Before issue 13 a ping flood added 1.2–3.7 GB, 15 MiB of bad
// JSON 680 MB.
const floodRSSBound = 128 << 10 // kB

// TestAttackViewerFloods: one viewer that never reads floods pings, bad JSON
// or clipboard pastes (to a DevTools endpoint that never answers). vncedge's
// peak RSS must stay within floodRSSBound of its baseline and the process
// must live; and, whatever rate the (race-built, loaded) server managed:
// pings get at most half as many pongs (at most one owed at a time: main
// answered every one), a bad-JSON flood is ended (slow-consumer) once its
// replies pass the channel's cap, and a paste flood does not start
// a goroutine per message (main: one each, blocked on the silent endpoint).
func TestAttackViewerFloods(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cdp := silentListener(t)
	const pingFrame = 2 + 4 + 125
	ping := bytes.Repeat(clientFrame(ws.OpPing, bytes.Repeat([]byte{'p'}, 125)), 512)
	badJSON := bytes.Repeat(clientFrame(ws.OpText, []byte("{x")), 8192)
	paste := clientFrame(ws.OpText, []byte(`{"kind":"clipboard-paste","text":"`+strings.Repeat("v", 16<<10)+`"}`))
	takeFrame := clientFrame(ws.OpText, []byte(`{"kind":"take-control"}`))
	takeControl := bytes.Repeat(takeFrame, 1024)
	msgs := "/v1/stream/messages/browser_session/pbs_flood?client_id=c1"
	for _, tc := range []struct {
		name, path string
		batch      []byte
		total      int64
		banner     bool // a VNC channel: its RFB banner frame comes first
		per        int  // bytes per flooding frame
	}{
		{"ping-vnc", "/websockify", ping, 256 << 20, true, pingFrame},
		{"ping-messages", msgs, ping, 256 << 20, false, pingFrame},
		{"bad-json", msgs, badJSON, 64 << 20, false, 8},
		{"paste-silent-cdp", msgs, paste, 256 << 20, false, len(paste)},
		{"take-control", msgs, takeControl, 64 << 20, false, len(takeFrame)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startEdge(t, "--target", "tcp://"+vnc.Addr(), "--cdp-url", "http://"+cdp, "--control", "user")
			base, baseG := p.status("VmHWM"), p.metric("go_goroutines")
			c := openRaw(t, "", p.addr, tc.path)
			defer c.Close()
			if tc.banner {
				readBanner(t, c)
			}
			var peakG float64
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() { // goroutines while the flood runs
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					peakG = max(peakG, p.metric("go_goroutines"))
				}
			}()
			sent := flood(c, tc.batch, tc.total, 3*time.Second)
			close(stop)
			<-watched
			p.alive()
			hwm := p.status("VmHWM")
			got := drainFrames(c, time.Second)
			t.Logf("%s: sent %d KiB; VmHWM %d kB (baseline %d kB, +%d kB); goroutines peak %v (baseline %v); read back %d pongs, %d messages, close %q, ended %v",
				tc.name, sent>>10, hwm, base, hwm-base, peakG, baseG, got.pongs, got.data, got.reason, got.ended)
			if hwm-base > floodRSSBound {
				t.Errorf("peak RSS grew by %d kB (bound %d kB)", hwm-base, floodRSSBound)
			}
			if peakG > baseG+16 {
				t.Errorf("goroutines rose to %v during the flood (baseline %v)", peakG, baseG)
			}
			switch tc.name {
			case "ping-vnc", "ping-messages":
				if pings := int(sent) / tc.per; got.pongs > pings/2 {
					t.Errorf("%d pongs for %d pings: more than one owed at a time", got.pongs, pings)
				}
			case "bad-json": // (a take-control flood is slower to answer: its replies may all fit in the kernel's buffers)
				// Past the cap the session ends (slow-consumer) and, the
				// viewer reading nothing, is closed after CloseTimeout with
				// what was queued: few replies, then the end of the stream.
				msgs := int(sent) / tc.per
				if !got.ended && got.reason != "slow-consumer" || got.data > msgs/2 {
					t.Errorf("%d replies for %d messages, close %q, ended %v", got.data, msgs, got.reason, got.ended)
				}
			}
		})
	}
}

// refusedOrClosed reads from c until EOF or error (bounded) and returns what
// it read: the HTTP refusal, if any.
func refusedOrClosed(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return string(b), err
	}
	return string(b), nil
}

// TestAttackIdleSocketsPerIP: with --max-per-ip 5, 60 idle sockets from one
// address (no byte sent): the 55 beyond the cap are refused (429) and closed
// at once, the 5 within it still upgrade. Before issue 13 all 60 stayed open.
func TestAttackIdleSocketsPerIP(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	p := startEdge(t, "--target", "tcp://"+vnc.Addr(), "--max-per-ip", "5")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 60; i++ {
		c, err := dialFrom("127.0.0.2", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Another address is not affected.
	other := openRaw(t, "127.0.0.3", p.addr, "/websockify")
	other.Close()
	for i, c := range conns[5:] {
		got, err := refusedOrClosed(c)
		if err != nil {
			t.Fatalf("idle socket %d beyond the cap still open: %v", 5+i, err)
		}
		if !strings.HasPrefix(got, "HTTP/1.1 429") {
			t.Fatalf("idle socket %d beyond the cap: got %q, want a 429", 5+i, got)
		}
	}
	for i, c := range conns[:5] {
		if _, err := c.Write(upgradeRequest(p.addr, "/websockify")); err != nil {
			t.Fatal(err)
		}
		if head, err := readHead(c); err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
			t.Fatalf("socket %d within the cap: %q %v", i, head, err)
		}
	}
	p.alive()
}

// TestAttackHandshakeTimeout: sockets that send nothing, or a request head a
// byte at a time (slowloris), are closed once --handshake-timeout passes.
func TestAttackHandshakeTimeout(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	p := startEdge(t, "--target", "tcp://"+vnc.Addr(), "--handshake-timeout", "300ms")
	base := p.fds()
	idle, err := dialFrom("127.0.0.4", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	slow, err := dialFrom("127.0.0.4", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		req := upgradeRequest(p.addr, "/websockify")
		for i := 0; i < len(req)-1; i++ { // never completes the head
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // the attack is the pacing
			}
			if _, err := slow.Write(req[i : i+1]); err != nil {
				return
			}
		}
	}()
	began := time.Now()
	for name, c := range map[string]net.Conn{"idle": idle, "slowloris": slow} {
		if _, err := refusedOrClosed(c); err != nil {
			t.Fatalf("%s socket still open after %v: %v", name, time.Since(began), err)
		}
	}
	if !settle(10*time.Second, func() bool { return p.fds() <= base }) {
		t.Fatalf("descriptors: %d, baseline %d", p.fds(), base)
	}
	p.alive()
}

// TestAttackOrgSlots: with --max-per-org 2, failed dials (502) and viewers
// leaving mid-dial must give their organization's slot back: afterwards two
// healthy sessions of that organization open, and a third gets 429.
func TestAttackOrgSlots(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	mute := silentListener(t)
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLn.Addr().String()
	deadLn.Close() // connection refused
	file := t.TempDir() + "/sessions.yaml"
	yaml := "organizations:\n  - id: o1\n    api_keys: [k1]\nsessions:\n" +
		"  - {kind: browser_session, id: pbs_ok, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n" +
		"  - {kind: browser_session, id: pbs_dead, organization: o1, upstream: 'tcp://" + dead + "'}\n" +
		"  - {kind: browser_session, id: pbs_mute, organization: o1, upstream: 'ws://" + mute + "/'}\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEdge(t, "--sessions", file, "--max-per-org", "2", "--dial-timeout", "20s")
	path := func(id string) string { return "/v1/stream/vnc/browser_session/" + id + "?client_id=c&apikey=k1" }
	try := func(id string) (net.Conn, string) {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(upgradeRequest(p.addr, path(id))); err != nil {
			t.Fatal(err)
		}
		head, _ := readHead(c)
		return c, head
	}
	for i := 0; i < 5; i++ {
		c, head := try("pbs_dead")
		c.Close()
		if !strings.HasPrefix(head, "HTTP/1.1 502") {
			t.Fatalf("dial of a dead upstream: %q, want 502", head)
		}
	}
	for i := 0; i < 5; i++ { // leave while the ws handshake hangs
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(upgradeRequest(p.addr, path("pbs_mute")))
		c.Close()
	}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for len(open) < 2 {
		var c net.Conn
		var head string
		// A slot given back by a cancelled dial returns a moment after the
		// viewer's close: retry within a bound.
		ok := settle(10*time.Second, func() bool {
			c, head = try("pbs_ok")
			if strings.HasPrefix(head, "HTTP/1.1 101") {
				return true
			}
			c.Close()
			return false
		})
		if !ok {
			t.Fatalf("healthy session %d of the organization: %q (slots leaked)", len(open)+1, head)
		}
		open = append(open, c)
	}
	c, head := try("pbs_ok")
	c.Close()
	if !strings.HasPrefix(head, "HTTP/1.1 429") {
		t.Fatalf("third session with --max-per-org 2: %q, want 429", head)
	}
	p.alive()
}

// TestAttackIDs: ids that are dot segments (plain or percent-encoded), hold an
// encoded slash, or sit behind an encoded slash are refused with 404 and
// never reach the control plane; a valid id reaches it path-escaped.
func TestAttackIDs(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.EscapedPath())
		mu.Unlock()
		http.Error(w, "no such session", http.StatusNotFound)
	}))
	defer cp.Close()
	p := startEdge(t, "--control-plane", cp.URL+"/sessions")
	for _, target := range []string{
		"/v1/stream/vnc/browser_session/.",
		"/v1/stream/vnc/browser_session/..",
		"/v1/stream/vnc/browser_session/%2e%2e",
		"/v1/stream/vnc/browser_session/%2E",
		"/v1/stream/vnc/browser_session/a%2Fb",
		"/v1/stream/vnc/browser_session/..%2F..%2Fadmin",
		"/v1/stream%2Fvnc/browser_session/pbs_1",
		"/api/v1/stream/messages/task/%2e%2e",
		"/v1/stream/vnc/browser_session/" + strings.Repeat("a", proxy.MaxIDLength+1),
	} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(upgradeRequest(p.addr, target+"?client_id=c&apikey=k"))
		head, _ := readHead(c)
		c.Close()
		if !strings.HasPrefix(head, "HTTP/1.1 404") {
			t.Errorf("%s: %q, want 404", target, head)
		}
	}
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(upgradeRequest(p.addr, "/v1/stream/vnc/browser_session/pbs_ok.1?client_id=c&apikey=k"))
	head, _ := readHead(c)
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "/sessions/browser_session/pbs_ok.1" {
		t.Fatalf("control plane saw %q (want only the valid id); its answer gave %q", seen, head)
	}
	p.alive()
}

// TestAttackCloseReasonLabels: 70 viewers each end their session with a
// different "unknown client message type N"; the close_reason label stays
// in its fixed set (one rfb-unknown-message series), and a real reason that
// follows (viewer-closed) keeps its own label (before issue 13 the 64-value budget filled
// and later reasons counted as "other").
func TestAttackCloseReasonLabels(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	p := startEdge(t, "--target", "tcp://"+vnc.Addr())
	const n = 70
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := rfbclient.DialWS(ctx, "ws://"+p.addr+"/websockify", []string{"binary"}, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cl, err := rfbclient.Handshake(c, rfbclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.WriteRaw([]byte{byte(160 + i), 0, 0, 0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
		for err == nil {
			_, err = cl.ReadMessage()
		}
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, "ws://"+p.addr+"/websockify", []string{"binary"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rfbclient.Handshake(c, rfbclient.Options{}); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWith(1000, "bye") // a real reason: viewer-closed
	var text string
	ok := settle(10*time.Second, func() bool {
		text = p.metricsText()
		return strings.Contains(text, `vncedge_sessions_total{close_reason="rfb-unknown-message"} 70`) &&
			strings.Contains(text, `vncedge_sessions_total{close_reason="viewer-closed"} 1`)
	})
	if !ok {
		t.Fatalf("close_reason series:\n%s", grepLines(text, "vncedge_sessions_total{"))
	}
	if strings.Contains(text, "unknown client message type") {
		t.Fatalf("a peer-chosen reason became a label:\n%s", grepLines(text, "vncedge_sessions_total{"))
	}
	p.alive()
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAttackHalfOpenAndOversize: a viewer that upgrades and then never
// answers a ping is closed (ping-timeout); one that announces a 1 GiB frame
// gets 1009 and is closed, without vncedge buffering the frame.
func TestAttackHalfOpenAndOversize(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	p := startEdge(t, "--target", "tcp://"+vnc.Addr(), "--ping-interval", "200ms", "--max-frame", "65536")
	base := p.fds()

	half := openRaw(t, "127.0.0.5", p.addr, "/websockify")
	defer half.Close()
	readBanner(t, half)
	got := drainFrames(half, 15*time.Second) // reads, never answers: pings pile up unanswered
	if !got.ended {
		t.Fatalf("half-open viewer not closed: %+v", got)
	}

	big := openRaw(t, "127.0.0.5", p.addr, "/websockify")
	defer big.Close()
	readBanner(t, big) // so that what follows is only frames
	if _, err := big.Write([]byte{0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	flood(big, bytes.Repeat([]byte{0xaa}, 64<<10), 32<<20, 2*time.Second) // the promised payload, in part
	got = drainFrames(big, 10*time.Second)
	if !got.ended && !got.closed {
		t.Fatalf("oversize frame: viewer not closed: %+v", got)
	}
	if got.closed && !strings.Contains(got.reason, "too big") {
		t.Fatalf("oversize frame: close reason %q", got.reason)
	}
	if !settle(10*time.Second, func() bool { return p.fds() <= base }) {
		t.Fatalf("descriptors: %d, baseline %d", p.fds(), base)
	}
	if hwm := p.status("VmHWM"); hwm > 128<<10 {
		t.Fatalf("VmHWM %d kB after a 1 GiB frame header", hwm)
	}
	p.alive()
}

// readBanner reads the binary frame carrying the server's 12-byte RFB
// ProtocolVersion, the first frame of a VNC channel.
func readBanner(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 2+12)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 0x82 || b[1] != 12 || !bytes.HasPrefix(b[2:], []byte("RFB ")) {
		t.Fatalf("banner frame: % x %v", b, err)
	}
}
