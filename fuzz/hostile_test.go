package fuzz

// The hostile-peer suite: each case runs the BUILT vncedge binary (with the
// race detector) against a peer written for the test — websockify, VNC
// server, DevTools endpoint or control plane — that plays the attacker, and
// checks the process: peak RSS (/proc/PID/status VmHWM), open descriptors
// (/proc/PID/fd) and where credentials went.
//
// VNCEDGE_HOSTILE_BIN=/path/to/vncedge runs the suite against another build
// (e.g. the code before the fixes, for the before/after figures: the cases
// then log their peaks and fail).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
)

// hostileProc is one running vncedge.
type hostileProc struct {
	cmd         *exec.Cmd
	listen      string
	admin       string
	log         *bytes.Buffer
	logMu       *sync.Mutex
	baselineRSS int64 // VmHWM once ready, kB
}

type hostileLockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w hostileLockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func hostileFreeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startHostileEdge runs vncedge with args and waits for /readyz.
func startHostileEdge(t *testing.T, args ...string) *hostileProc {
	t.Helper()
	bin := attackBinary(t)
	p := &hostileProc{listen: hostileFreeTCP(t), admin: hostileFreeTCP(t), log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	args = append([]string{"--listen", p.listen, "--admin", p.admin, "--log-format", "text", "--dial-timeout", "3s"}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = hostileLockedWriter{p.logMu, p.log}
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			p.logMu.Lock()
			t.Logf("vncedge log:\n%s", hostileTail(p.log.String(), 4000))
			p.logMu.Unlock()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vncedge never became ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we do not control: no event to await
	}
	p.baselineRSS = p.status(t, "VmHWM")
	return p
}

func hostileTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// status reads a kB (or count) field of /proc/PID/status.
func (p *hostileProc) status(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

func (p *hostileProc) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkPeak logs the process's peak RSS over its idle baseline and fails
// above limitMB.
func (p *hostileProc) checkPeak(t *testing.T, name string, limitMB int64) {
	t.Helper()
	peak := p.status(t, "VmHWM")
	t.Logf("HOSTILE %s: vncedge peak RSS %d MB (idle baseline %d MB, limit +%d MB)", name, peak>>10, p.baselineRSS>>10, limitMB)
	if peak-p.baselineRSS > limitMB<<10 {
		t.Errorf("%s: peak RSS %d MB, %d MB over the idle baseline (limit %d MB)", name, peak>>10, (peak-p.baselineRSS)>>10, limitMB)
	}
}

// peerServer accepts TCP (or TLS) connections and runs serve on each.
func peerServer(t *testing.T, host string, tlsConf *tls.Config, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// wsAccept answers a WebSocket handshake on c (the fake websockify).
func wsAccept(c net.Conn) (*bufio.Reader, *http.Request, error) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	proto := ""
	if strings.Contains(req.Header.Get("Sec-WebSocket-Protocol"), "binary") {
		proto = "Sec-WebSocket-Protocol: binary\r\n"
	}
	_, err = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n"+proto+"\r\n")
	return br, req, err
}

// rfbOverWS plays an RFB 3.8 server's handshake (security None) over a
// WebSocket, as websockify in front of a VNC server would.
func rfbOverWS(c net.Conn, br *bufio.Reader) error {
	send := func(b ...byte) error {
		_, err := c.Write(ws.MustCompileFrame(ws.NewBinaryFrame(b)))
		return err
	}
	var got []byte
	need := func(n int) error {
		for len(got) < n {
			f, err := ws.ReadFrame(br)
			if err != nil {
				return err
			}
			if f.Header.Masked {
				ws.Cipher(f.Payload, f.Header.Mask, 0)
			}
			got = append(got, f.Payload...)
		}
		got = got[n:]
		return nil
	}
	for _, st := range []func() error{
		func() error { return send([]byte("RFB 003.008\n")...) },
		func() error { return need(12) },
		func() error { return send(1, 1) },
		func() error { return need(1) },
		func() error {
			return send(0, 0, 0, 0, 0, 8, 0, 8, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 1, 'x')
		},
		func() error { return need(1) },
	} {
		if err := st(); err != nil {
			return err
		}
	}
	return nil
}

func viewerDial(t *testing.T, addr, path string) (*rfbclient.WSConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return rfbclient.DialWS(ctx, "ws://"+addr+path, []string{"binary"}, nil)
}

// msgChannel is a viewer's message channel.
type msgChannel struct {
	c  net.Conn
	rd io.Reader
}

func dialMsgChannel(t *testing.T, addr, path string) *msgChannel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, br, _, err := ws.Dialer{}.Dial(ctx, "ws://"+addr+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var rd io.Reader = c
	if br != nil {
		rd = io.MultiReader(br, c)
	}
	return &msgChannel{c: c, rd: rd}
}

func (m *msgChannel) send(t *testing.T, v any) {
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(m.c, b); err != nil {
		t.Fatal(err)
	}
}

// next returns the next message's kind and failed_kind; long texts are read
// and dropped (a copied-text may be huge before the fix).
func (m *msgChannel) next(t *testing.T) (kind, failed string, textLen int) {
	t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rw := struct {
		io.Reader
		io.Writer
	}{m.rd, m.c}
	b, err := wsutil.ReadServerText(rw)
	if err != nil {
		t.Fatalf("message channel: %v", err)
	}
	var v struct {
		Kind       string `json:"kind"`
		FailedKind string `json:"failed_kind"`
		Text       string `json:"text"`
	}
	_ = json.Unmarshal(b, &v)
	return v.Kind, v.FailedKind, len(v.Text)
}

// devtools is a fake DevTools WebSocket endpoint at /devtools/browser/h;
// answer writes the reply to each request.
func devtools(t *testing.T, host string, answer func(c net.Conn, id int64, method string) error) string {
	t.Helper()
	return peerServer(t, host, nil, func(c net.Conn) {
		br, _, err := wsAccept(c)
		if err != nil {
			return
		}
		rw := struct {
			io.Reader
			io.Writer
		}{br, c}
		for {
			data, err := wsutil.ReadClientText(rw)
			if err != nil {
				return
			}
			var req struct {
				ID     int64  `json:"id"`
				Method string `json:"method"`
			}
			if json.Unmarshal(data, &req) != nil || answer(c, req.ID, req.Method) != nil {
				return
			}
		}
	})
}

func writeJSONFrame(c net.Conn, v any) error {
	b, _ := json.Marshal(v)
	_, err := c.Write(ws.MustCompileFrame(ws.NewTextFrame(b)))
	return err
}

// TestHostileBinary runs every hostile case against the built binary.
func TestHostileBinary(t *testing.T) {
	t.Run("ws-endless-head", func(t *testing.T) {
		up := peerServer(t, "127.0.0.1", nil, func(c net.Conn) {
			if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
			chunk := bytes.Repeat([]byte("a"), 256<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		})
		p := startHostileEdge(t, "--target", "ws://"+up+"/")
		start := time.Now()
		_, err := viewerDial(t, p.listen, "/")
		var se *rfbclient.StatusError
		el := time.Since(start)
		p.checkPeak(t, "ws-endless-head", 64)
		if !errorsAs(err, &se) || se.Status != http.StatusBadGateway || el > 2*time.Second {
			t.Errorf("viewer: %v after %v, want 502 at once", err, el)
		}
	})

	t.Run("ws-ping-flood", func(t *testing.T) {
		const flood = 64 << 20
		up := peerServer(t, "127.0.0.1", nil, func(c net.Conn) {
			if _, _, err := wsAccept(c); err != nil {
				return
			}
			ping := ws.MustCompileFrame(ws.NewPingFrame(bytes.Repeat([]byte("p"), 125)))
			chunk := bytes.Repeat(ping, (256<<10)/len(ping))
			for sent := 0; sent < flood; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
			_, _ = c.Write(ws.MustCompileFrame(ws.NewBinaryFrame([]byte("RFB 003.008\n"))))
			<-time.After(30 * time.Second) // never reads
		})
		p := startHostileEdge(t, "--target", "ws://"+up+"/")
		v, err := viewerDial(t, p.listen, "/")
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		_ = v.NetConn().SetReadDeadline(time.Now().Add(60 * time.Second))
		banner := make([]byte, 12)
		_, err = io.ReadFull(v, banner)
		p.checkPeak(t, "ws-ping-flood (64 MB of pings, never reads)", 64)
		if err != nil {
			t.Errorf("viewer: %v, want the banner after the flood", err)
		}
	})

	t.Run("cdp-huge-selection", func(t *testing.T) {
		big := ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"id":3,"result":{"result":{"type":"string","value":"` +
			strings.Repeat("s", 60<<20) + `"}},"sessionId":"S1"}`)))
		ep := devtools(t, "127.0.0.1", func(c net.Conn, id int64, method string) error {
			switch method {
			case "Target.getTargets":
				return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{"targetInfos": []map[string]string{{"targetId": "T1", "type": "page", "url": "https://x.test/"}}}})
			case "Target.attachToTarget":
				return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]string{"sessionId": "S1"}})
			case "Runtime.evaluate":
				_, err := c.Write(big)
				return err
			}
			return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{}})
		})
		p := startHostileEdge(t, "--target", "tcp://"+hostileFreeTCP(t), "--cdp-url", "ws://"+ep+"/devtools/browser/h")
		mc := dialMsgChannel(t, p.listen, "/v1/stream/messages/browser_session/b1?client_id=c1")
		if k, _, _ := mc.next(t); k != "interactor" {
			t.Fatalf("first message %q", k)
		}
		mc.send(t, map[string]string{"kind": "clipboard-copy"})
		kind, failed, n := mc.next(t)
		p.checkPeak(t, "cdp-huge-selection (60 MB)", 96)
		if kind != "error" || failed != "clipboard-copy" {
			t.Errorf("copy of a 60 MB selection: %q %q (%d bytes of text), want an error", kind, failed, n)
		}
	})

	t.Run("cdp-many-pages", func(t *testing.T) {
		const pages = 100000
		var attaches atomic.Int64
		ep := devtools(t, "127.0.0.1", func(c net.Conn, id int64, method string) error {
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
				_, err := c.Write(ws.MustCompileFrame(ws.NewTextFrame(b.Bytes())))
				return err
			case "Target.attachToTarget":
				attaches.Add(1)
				return nil // never answers: every probe waits for its timeout
			}
			return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{}})
		})
		p := startHostileEdge(t, "--target", "tcp://"+hostileFreeTCP(t), "--cdp-url", "ws://"+ep+"/devtools/browser/h")
		mc := dialMsgChannel(t, p.listen, "/v1/stream/messages/browser_session/b1?client_id=c1")
		mc.next(t)
		mc.send(t, map[string]string{"kind": "clipboard-copy"})
		kind, _, _ := mc.next(t)
		// A 6 MB answer is held about three times over (its frame, the
		// message, the result) in a race-detector build: bounded by the
		// 8 MiB message cap, not by the number of pages.
		p.checkPeak(t, fmt.Sprintf("cdp-many-pages (%d pages, 6 MB)", pages), 128)
		t.Logf("copy answered %q; %d attaches tried", kind, attaches.Load())
		if a := attaches.Load(); a > 33 {
			t.Errorf("%d pages attached for one copy, want at most 32", a)
		}
	})

	t.Run("cdp-events-after-leave", func(t *testing.T) {
		event := ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"method":"Network.dataReceived","params":{"blob":"` +
			strings.Repeat("e", 10<<20) + `"}}`)))
		closed := make(chan time.Time, 1)
		var sentMB atomic.Int64
		ep := devtools(t, "127.0.0.1", func(c net.Conn, id int64, method string) error {
			switch method {
			case "Target.getTargets":
				return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{"targetInfos": []map[string]string{{"targetId": "T1", "type": "page", "url": "https://x.test/"}}}})
			case "Target.attachToTarget":
				return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]string{"sessionId": "S1"}})
			case "Runtime.evaluate":
				if err := writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{"result": map[string]string{"type": "string", "value": "sel"}}}); err != nil {
					return err
				}
				// Then events nobody asked for, for as long as vncedge reads them.
				go func() {
					for {
						if _, err := c.Write(event); err != nil {
							closed <- time.Now()
							return
						}
						sentMB.Add(10)
					}
				}()
				return nil
			}
			return writeJSONFrame(c, map[string]any{"id": id, "result": map[string]any{}})
		})
		p := startHostileEdge(t, "--target", "tcp://"+hostileFreeTCP(t), "--cdp-url", "ws://"+ep+"/devtools/browser/h")
		mc := dialMsgChannel(t, p.listen, "/v1/stream/messages/browser_session/b1?client_id=c1")
		mc.next(t)
		mc.send(t, map[string]string{"kind": "clipboard-copy"})
		if k, _, _ := mc.next(t); k != "copied-text" {
			t.Fatalf("copy: %q", k)
		}
		mc.c.Close()
		left := time.Now()
		select {
		case at := <-closed:
			t.Logf("HOSTILE cdp-events-after-leave: DevTools connection closed %v after the viewer left (%d MB of events sent)", at.Sub(left).Round(time.Millisecond), sentMB.Load())
		case <-time.After(10 * time.Second):
			t.Errorf("the DevTools connection outlived the pair's last channel by 10 s (%d MB of events read meanwhile)", sentMB.Load())
		}
		p.checkPeak(t, "cdp-events-after-leave", 96)
	})

	t.Run("cdp-credential", func(t *testing.T) {
		host := nonLoopbackIPv4(t)
		var leaked atomic.Value
		leaked.Store("")
		cdp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if k := r.Header.Get("X-Api-Key"); k != "" {
				leaked.Store(k)
			}
			http.NotFound(w, r)
		}))
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		cdp.Listener = ln
		cdp.Start()
		defer cdp.Close()
		var thirdHits atomic.Int64
		third := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { thirdHits.Add(1) }))
		defer third.Close()
		redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, third.URL+r.URL.Path, http.StatusFound)
		}))
		defer redir.Close()
		for _, c := range []struct{ name, cdpURL string }{{"plain http to " + host, cdp.URL}, {"302 to a third host", redir.URL}} {
			t.Run(c.name, func(t *testing.T) {
				up := peerServer(t, "127.0.0.1", nil, func(c net.Conn) {
					if br, _, err := wsAccept(c); err == nil {
						_, _ = io.Copy(io.Discard, br)
					}
				})
				p := startHostileEdge(t, "--target", "wss://"+up+"/", "--upstream-header", "x-api-key: PLATFORM-SECRET", "--cdp-url", c.cdpURL)
				mc := dialMsgChannel(t, p.listen, "/v1/stream/messages/browser_session/b1?client_id=c1")
				mc.next(t)
				mc.send(t, map[string]string{"kind": "clipboard-copy"})
				mc.next(t)
				if k := leaked.Load().(string); k != "" {
					t.Errorf("the DevTools endpoint at %s got x-api-key %q", host, k)
				}
				if n := thirdHits.Load(); n != 0 {
					t.Errorf("the redirect target got %d requests", n)
				}
			})
		}
	})

	t.Run("control-plane-redirect", func(t *testing.T) {
		var got atomic.Value
		got.Store("")
		third := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got.Store("request with x-api-key " + r.Header.Get("X-Api-Key"))
		}))
		defer third.Close()
		cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, third.URL+r.URL.Path, http.StatusFound)
		}))
		defer cp.Close()
		p := startHostileEdge(t, "--control-plane", cp.URL+"/s")
		_, err := viewerDial(t, p.listen, "/v1/stream/vnc/browser_session/b1?client_id=c1&apikey=VIEWER-SECRET")
		if err == nil {
			t.Error("a session through a redirecting control plane was served")
		}
		if g := got.Load().(string); g != "" {
			t.Errorf("the redirect target got a %s", g)
		}
	})

	t.Run("wss-silent-peer", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := teststack.WriteTestCert(dir); err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		up := peerServer(t, "127.0.0.1", &tls.Config{Certificates: []tls.Certificate{cert}}, func(c net.Conn) {
			br, _, err := wsAccept(c)
			if err != nil || rfbOverWS(c, br) != nil {
				return
			}
			<-stop // silent, never reads
		})
		defer close(stop)
		p := startHostileEdge(t, "--target", "wss://"+up+"/", "--upstream-ca", filepath.Join(dir, "ca.pem"))
		f0 := p.fds(t)
		const n = 10
		text := bytes.Repeat([]byte("x"), 1<<20-64)
		var vs []*rfbclient.WSConn
		for range n {
			v, err := viewerDial(t, p.listen, "/")
			if err != nil {
				t.Fatal(err)
			}
			cl, err := rfbclient.Handshake(v, rfbclient.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_ = v.NetConn().SetWriteDeadline(time.Now().Add(10 * time.Second))
			for range 4 {
				if err := cl.ClientCutText(text); err != nil {
					t.Fatal(err)
				}
			}
			vs = append(vs, v)
		}
		for _, v := range vs {
			v.Close()
		}
		deadline := time.Now().Add(15 * time.Second)
		f := p.fds(t)
		for f > f0+2 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling another process: the failure bound is the deadline
			f = p.fds(t)
		}
		p.checkPeak(t, "wss-silent-peer (10 sessions × 4 MiB up)", 96)
		t.Logf("HOSTILE wss-silent-peer: vncedge fds %d before, %d after the viewers left (the peer holds %d conns)", f0, f, n)
		if f > f0+2 {
			t.Errorf("vncedge holds %d descriptors more after the sessions ended (%d sessions)", f-f0, n)
		}
	})
}

func errorsAs(err error, target **rfbclient.StatusError) bool {
	for err != nil {
		if se, ok := err.(*rfbclient.StatusError); ok {
			*target = se
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// nonLoopbackIPv4 is an address of this machine that is not loopback: a
// DevTools endpoint there stands for one across a network.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}
