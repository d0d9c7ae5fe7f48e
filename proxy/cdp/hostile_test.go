package cdp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// hostileBrowser is a DevTools endpoint written for the tests: its
// WebSocket at /devtools/browser/h hands every request to answer, which
// writes whatever it likes back (raw frames included).
type hostileBrowser struct {
	srv    *httptest.Server
	answer func(conn net.Conn, id int64, method string) error
	// onOpen, when set, runs on each new WebSocket before requests are read.
	onOpen func(conn net.Conn)
}

func newHostileBrowser(t *testing.T, answer func(conn net.Conn, id int64, method string) error) *hostileBrowser {
	h := &hostileBrowser{answer: answer}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/devtools/browser/h" {
			http.NotFound(w, r)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		var wmu sync.Mutex
		if h.onOpen != nil {
			go func() { wmu.Lock(); defer wmu.Unlock(); h.onOpen(conn) }()
		}
		for {
			data, err := wsutil.ReadClientText(conn)
			if err != nil {
				return
			}
			var req struct {
				ID     int64  `json:"id"`
				Method string `json:"method"`
			}
			if json.Unmarshal(data, &req) != nil {
				return
			}
			wmu.Lock()
			err = h.answer(conn, req.ID, req.Method)
			wmu.Unlock()
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(h.srv.CloseClientConnections)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hostileBrowser) endpoint() string {
	return "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/devtools/browser/h"
}

func writeJSON(conn net.Conn, v any) error {
	b, _ := json.Marshal(v)
	return wsutil.WriteServerText(conn, b)
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// peakHeap samples the heap in use while f runs and returns the highest.
func peakHeap(f func()) uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak.Load()
}

// onePageAnswer answers getTargets with one page, attach with S1, and
// evaluate with value (raw JSON).
func onePageAnswer(value func() []byte) func(net.Conn, int64, string) error {
	return func(conn net.Conn, id int64, method string) error {
		switch method {
		case "Target.getTargets":
			return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{"targetInfos": []map[string]any{
				{"targetId": "T1", "type": "page", "url": "https://example.test/"}}}})
		case "Target.attachToTarget":
			return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{"sessionId": "S1"}})
		case "Runtime.evaluate":
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"id":%d,"result":{"result":{"type":"string","value":`, id)
			b.Write(value())
			b.WriteString(`}},"sessionId":"S1"}`)
			return wsutil.WriteServerText(conn, b.Bytes())
		}
		return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{}})
	}
}

// TestHostileHugeSelection: a page whose "selection" is 40 MB (the browser
// ignores the length check in the expression). SelectedText fails with
// ErrTextTooLarge, the heap never holds the message, and the connection
// stays usable for the next call.
func TestHostileHugeSelection(t *testing.T) {
	// The answer is built before the heap's base is taken: the test's own
	// 40 MB must not count. Ids run 1 getTargets, 2 attach, 3 evaluate.
	big := ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"id":3,"result":{"result":{"type":"string","value":"` +
		strings.Repeat("s", 40<<20) + `"}},"sessionId":"S1"}`)))
	normal := onePageAnswer(func() []byte { return []byte(`"ok"`) })
	h := newHostileBrowser(t, func(conn net.Conn, id int64, method string) error {
		if method == "Runtime.evaluate" && id == 3 {
			_, err := conn.Write(big)
			return err
		}
		return normal(conn, id, method)
	})
	c := newTestClient(t, h.endpoint(), Options{})
	base := liveHeap()
	var err error
	peak := peakHeap(func() { _, err = c.SelectedText(testCtx(t)) })
	if !errors.Is(err, ErrTextTooLarge) {
		t.Fatalf("SelectedText of 40 MB: %v, want ErrTextTooLarge", err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("40 MB selection: error %q, heap peak %d bytes over the base", err, grew)
	if grew > 16<<20 { // the kept chunks (≤ maxMessage) and collector slack
		t.Errorf("heap peaked %d bytes over the base during a 40 MB answer", grew)
	}
	if got, err := c.SelectedText(testCtx(t)); err != nil || got != "ok" {
		t.Fatalf("next copy: %q, %v; want ok on the same connection", got, err)
	}
}

// TestHostileSelectionOverMaxText: a selection just over MaxText bytes
// (under maxMessage) is refused too.
func TestHostileSelectionOverMaxText(t *testing.T) {
	v, _ := json.Marshal(strings.Repeat("é", MaxText/2+1))
	h := newHostileBrowser(t, onePageAnswer(func() []byte { return v }))
	c := newTestClient(t, h.endpoint(), Options{})
	if _, err := c.SelectedText(testCtx(t)); !errors.Is(err, ErrTextTooLarge) {
		t.Fatalf("SelectedText of %d bytes: %v, want ErrTextTooLarge", MaxText+2, err)
	}
}

// TestHostileManyPages: Target.getTargets lists 50,000 pages. At most
// maxPages are probed, at most probeConcurrency at a time.
func TestHostileManyPages(t *testing.T) {
	const pages = 50000
	var attaches, inflight, most atomic.Int32
	h := newHostileBrowser(t, func(conn net.Conn, id int64, method string) error {
		switch method {
		case "Target.getTargets":
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"id":%d,"result":{"targetInfos":[`, id)
			for i := range pages {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"targetId":"T%d","type":"page","url":"https://x.test/"}`, i)
			}
			b.WriteString(`]}}`)
			return wsutil.WriteServerText(conn, b.Bytes())
		case "Target.attachToTarget":
			attaches.Add(1)
			n := inflight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{"sessionId": fmt.Sprintf("S%d", id)}})
		case "Runtime.evaluate":
			inflight.Add(-1)
			return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{"result": map[string]any{"type": "object", "value": map[string]bool{"visible": false, "focused": false}}}})
		}
		return writeJSON(conn, map[string]any{"id": id, "result": map[string]any{}})
	})
	c := newTestClient(t, h.endpoint(), Options{})
	g0 := runtime.NumGoroutine()
	var peakG atomic.Int32
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int32(runtime.NumGoroutine()); n > peakG.Load() {
				peakG.Store(n)
			}
			runtime.Gosched()
		}
	}()
	_, _ = c.SelectedText(testCtx(t))
	close(stop)
	t.Logf("%d pages: %d attached, %d at most at once, goroutines %d → peak %d", pages, attaches.Load(), most.Load(), g0, peakG.Load())
	if a := attaches.Load(); a > maxPages+1 {
		t.Errorf("%d pages attached, want at most %d (+1 for the chosen one)", a, maxPages)
	}
	if p := peakG.Load(); int(p) > g0+maxPages+16 {
		t.Errorf("goroutines peaked at %d (from %d) for %d pages", p, g0, pages)
	}
}

// TestHostileUnsolicitedEvents: the endpoint pushes 10 MB events nobody
// asked for, back to back. They are discarded as they arrive: the heap stays
// flat, and calls are still answered between them.
func TestHostileUnsolicitedEvents(t *testing.T) {
	event := []byte(`{"method":"Network.dataReceived","params":{"blob":"` + strings.Repeat("e", 10<<20) + `"}}`)
	frame := ws.MustCompileFrame(ws.NewTextFrame(event))
	h := newHostileBrowser(t, onePageAnswer(func() []byte { return []byte(`"after events"`) }))
	sent := make(chan struct{})
	h.onOpen = func(conn net.Conn) {
		defer close(sent)
		for range 8 {
			if _, err := conn.Write(frame); err != nil {
				return
			}
		}
	}
	c := newTestClient(t, h.endpoint(), Options{})
	base := liveHeap()
	var got string
	var err error
	peak := peakHeap(func() {
		got, err = c.SelectedText(testCtx(t))
		<-sent
	})
	if err != nil || got != "after events" {
		t.Fatalf("SelectedText: %q, %v", got, err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("80 MB of events: heap peak %d bytes over the base", grew)
	if grew > 8<<20 {
		t.Errorf("heap peaked %d bytes over the base under unsolicited events", grew)
	}
}

// TestHostileEndlessHandshakeHead: the DevTools WebSocket answers 101 and
// then an endless header line: the dial fails at once (bounded head).
func TestHostileEndlessHandshakeHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	c := newTestClient(t, "ws://"+ln.Addr().String()+"/devtools/browser/x", Options{DialTimeout: 8 * time.Second})
	start := time.Now()
	_, err = c.SelectedText(testCtx(t))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("SelectedText: %v after %v; want a quick failure", err, time.Since(start))
	}
}

// TestHostileRedirectNotFollowed: /json/version answers 302 to another
// host; the client does not follow it (the header would go along), so the
// other host gets no request at all.
func TestHostileRedirectNotFollowed(t *testing.T) {
	var hits atomic.Int32
	third := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer third.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, third.URL+"/json/version", http.StatusFound)
	}))
	defer redir.Close()
	c := newTestClient(t, redir.URL, Options{Header: http.Header{"X-Api-Key": {"secret"}}})
	if _, err := c.SelectedText(testCtx(t)); err == nil {
		t.Fatal("SelectedText through a redirect succeeded")
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// TestHeadersOnlyOverTLSOrLoopback: headers go to https/wss and to loopback
// hosts, never in clear to another host.
func TestHeadersOnlyOverTLSOrLoopback(t *testing.T) {
	h := http.Header{"X-Api-Key": {"k"}}
	for _, c := range []struct {
		scheme, host string
		want         bool
	}{
		{"http", "127.0.0.1", true}, {"ws", "localhost", true}, {"ws", "::1", true},
		{"https", "cdp.example", true}, {"wss", "10.0.0.5", true},
		{"http", "10.0.0.5", false}, {"ws", "cdp.example", false}, {"http", "127.0.0.1.example", false},
	} {
		if got := headersFor(h, c.scheme, c.host) != nil; got != c.want {
			t.Errorf("headersFor(%s://%s) sends: %v, want %v", c.scheme, c.host, got, c.want)
		}
	}
}

// TestHostileControlRefusesDial: Options.Control sees every address the
// client connects to (discovery and WebSocket); a refusal fails the call and
// the endpoint gets no request.
func TestHostileControlRefusesDial(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	var seen atomic.Value
	refuse := func(_, address string, _ syscall.RawConn) error {
		seen.Store(address)
		return errors.New("not allowed")
	}
	for _, ep := range []string{srv.URL, "ws" + strings.TrimPrefix(srv.URL, "http") + "/devtools/browser/x"} {
		c := newTestClient(t, ep, Options{Control: refuse})
		if _, err := c.SelectedText(testCtx(t)); err == nil {
			t.Fatalf("%s: SelectedText through a refusing Control succeeded", ep)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the endpoint got %d requests", n)
	}
	if a, _ := seen.Load().(string); a != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("Control saw %q, want the endpoint's address", a)
	}
}
