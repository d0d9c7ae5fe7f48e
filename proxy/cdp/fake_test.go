package cdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeBrowser is a DevTools endpoint without a browser: /json/version, and a
// WebSocket at /devtools/browser/fake answering with answer (nil: never).
type fakeBrowser struct {
	srv    *httptest.Server
	answer func(method string) (result any, ok bool)

	mu      sync.Mutex
	keys    []string // x-api-key of every request
	methods []string
	params  []json.RawMessage
}

func newFakeBrowser(t *testing.T, answer func(string) (any, bool)) *fakeBrowser {
	f := &fakeBrowser{answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBrowser) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get("x-api-key"))
	f.mu.Unlock()
	switch r.URL.Path {
	case "/json/version":
		// The browser reports its own listening address, unreachable here.
		_, _ = w.Write([]byte(`{"Browser":"Fake/1","webSocketDebuggerUrl":"ws://10.255.0.1:9222/devtools/browser/fake"}`))
	case "/devtools/browser/fake":
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			data, err := wsutil.ReadClientText(conn)
			if err != nil {
				return
			}
			var req struct {
				ID     int64           `json:"id"`
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
			}
			if json.Unmarshal(data, &req) != nil {
				return
			}
			f.mu.Lock()
			f.methods = append(f.methods, req.Method)
			f.params = append(f.params, req.Params)
			f.mu.Unlock()
			res, ok := f.answer(req.Method)
			if !ok {
				continue
			}
			out, _ := json.Marshal(map[string]any{"id": req.ID, "result": res})
			if wsutil.WriteServerText(conn, out) != nil {
				return
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// onePage answers like a browser with one page whose selection is text.
func onePage(text string) func(string) (any, bool) {
	return func(method string) (any, bool) {
		switch method {
		case "Target.getTargets":
			return map[string]any{"targetInfos": []map[string]any{
				{"targetId": "T1", "type": "page", "url": "https://example.test/"},
				{"targetId": "T2", "type": "page", "url": "devtools://devtools/inspector.html"},
				{"targetId": "T3", "type": "service_worker", "url": "https://example.test/sw.js"},
			}}, true
		case "Target.attachToTarget":
			return map[string]any{"sessionId": "S1"}, true
		case "Runtime.evaluate":
			return map[string]any{"result": map[string]any{"type": "string", "value": text}}, true
		}
		return map[string]any{}, true
	}
}

func TestDiscoveryHeaderAndFlatten(t *testing.T) {
	f := newFakeBrowser(t, onePage("from fake"))
	c := newTestClient(t, f.srv.URL, Options{Header: http.Header{"X-Api-Key": {"k1"}}})
	got, err := c.SelectedText(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != "from fake" {
		t.Fatalf("SelectedText = %q", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keys) != 2 || f.keys[0] != "k1" || f.keys[1] != "k1" {
		t.Errorf("x-api-key on discovery and handshake: %q", f.keys)
	}
	want := []string{"Target.getTargets", "Target.attachToTarget", "Runtime.evaluate"}
	if strings.Join(f.methods, ",") != strings.Join(want, ",") {
		t.Fatalf("methods %v, want %v (a single page is not probed)", f.methods, want)
	}
	var attach attachParams
	if err := json.Unmarshal(f.params[1], &attach); err != nil || attach != (attachParams{TargetID: "T1", Flatten: true}) {
		t.Errorf("attach params %s", f.params[1])
	}
}

func TestCallTimeout(t *testing.T) {
	f := newFakeBrowser(t, func(string) (any, bool) { return nil, false })
	const timeout = 200 * time.Millisecond
	c := newTestClient(t, f.srv.URL, Options{CallTimeout: timeout})
	start := time.Now()
	_, err := c.SelectedText(testCtx(t))
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Fatalf("returned after %v, want about %v", took, timeout)
	}
	// A slow answer is not a broken connection: it is kept.
	c.mu.Lock()
	cn := c.cn
	c.mu.Unlock()
	if cn == nil || cn.dead() {
		t.Fatal("connection dropped after a call timeout")
	}
	if err := c.InsertText(testCtx(t), "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("InsertText err = %v, want a deadline error", err)
	}
}

func TestCallerContext(t *testing.T) {
	f := newFakeBrowser(t, func(string) (any, bool) { return nil, false })
	c := newTestClient(t, f.srv.URL, Options{CallTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.SelectedText(ctx)
		done <- err
	}()
	// Cancel once the request is on the wire.
	eventually(t, 5*time.Second, "request sent", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.methods) == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SelectedText ignored its context")
	}
}

func TestErrorsHideEndpointPath(t *testing.T) {
	c := newTestClient(t, "ws://127.0.0.1:1/sess-1234/tok-SECRET/devtools/browser/x", Options{DialTimeout: time.Second})
	_, err := c.SelectedText(testCtx(t))
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "sess-1234") {
		t.Fatalf("error leaks the endpoint path: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error does not name the host: %v", err)
	}
}

func TestScriptErrorHidesText(t *testing.T) {
	f := newFakeBrowser(t, func(method string) (any, bool) {
		if method == "Runtime.evaluate" {
			return map[string]any{
				"result":           map[string]any{"type": "object"},
				"exceptionDetails": map[string]any{"exceptionId": 1, "text": "Uncaught PAGE-SECRET"},
			}, true
		}
		return onePage("")(method)
	})
	c := newTestClient(t, f.srv.URL, Options{})
	_, err := c.SelectedText(testCtx(t))
	if !errors.Is(err, errScript) || strings.Contains(err.Error(), "PAGE-SECRET") {
		t.Fatalf("err = %v, want errScript without page text", err)
	}
}

func TestJSONURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9222":                          "http://127.0.0.1:9222/json/list",
		"ws://127.0.0.1:9222/devtools/browser/abc":       "http://127.0.0.1:9222/json/list",
		"wss://h.example/s1/t1/devtools/browser/abc?x=1": "https://h.example/s1/t1/json/list",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonURL(u, "list").String(); got != want {
			t.Errorf("jsonURL(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestRecencyWithoutJSONList(t *testing.T) {
	f := newFakeBrowser(t, onePage("")) // /json/list answers 404
	c := newTestClient(t, f.srv.URL, Options{})
	pages := []string{"T1", "T2", "T3"}
	if got := c.recency(testCtx(t), pages); fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("no hint: order %v, want getTargets order", got)
	}
	c.remember("T3")
	if got := c.recency(testCtx(t), pages); fmt.Sprint(got) != "[2 0 1]" {
		t.Fatalf("last chosen T3: order %v, want it first", got)
	}
}
