package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// testWSKey is the sample Sec-WebSocket-Key of RFC 6455 §1.3.
const testWSKey = "dGhlIHNhbXBsZSBub25jZQ=="

// hdrs is an ordered list of request header fields.
type hdrs [][2]string

// upgradeHeaders returns the fields of a valid upgrade request to host.
func upgradeHeaders(host string) hdrs {
	return hdrs{
		{"Host", host},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Key", testWSKey},
		{"Sec-WebSocket-Version", "13"},
		{"Sec-WebSocket-Protocol", "binary"},
	}
}

// set returns a copy of h with name set to value (replaced, or appended).
func (h hdrs) set(name, value string) hdrs {
	out := append(hdrs(nil), h...)
	for i := range out {
		if strings.EqualFold(out[i][0], name) {
			out[i][1] = value
			return out
		}
	}
	return append(out, [2]string{name, value})
}

// del returns a copy of h without name.
func (h hdrs) del(name string) hdrs {
	var out hdrs
	for _, f := range h {
		if !strings.EqualFold(f[0], name) {
			out = append(out, f)
		}
	}
	return out
}

func requestHead(method, target, proto string, h hdrs) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " " + proto + "\r\n")
	for _, f := range h {
		b.WriteString(f[0] + ": " + f[1] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawDial opens a plain TCP conn to the proxy with a deadline that bounds the test.
func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// rawExchange writes raw in one write and reads the HTTP response.
func rawExchange(t *testing.T, addr, raw string) (net.Conn, *bufio.Reader, *http.Response, string) {
	t.Helper()
	c := rawDial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the proxy's answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return c, br, resp, string(body)
}

// awaitEOF reads from br until the peer closes; anything but EOF (or a
// reset) within the conn's deadline is a failure. It returns the bytes read.
func awaitEOF(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("waiting for the proxy to close the connection: %v (read %q)", err, b)
	}
	return b
}

// TestE2EUpgradeRefusals sends malformed or unacceptable upgrade requests
// over raw TCP and checks the HTTP answer the proxy/upgrade docs promise,
// and that the proxy then closes the connection.
func TestE2EUpgradeRefusals(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	srv, addr := startProxy(t, cfg)
	std := upgradeHeaders(addr)

	cases := []struct {
		name         string
		raw          string
		status       int
		header, want string // a response field that must be present
	}{
		{"wrong method", requestHead("POST", "/websockify", "HTTP/1.1", std), 405, "Allow", "GET"},
		{"HTTP/1.0", requestHead("GET", "/websockify", "HTTP/1.0", std), 400, "", ""},
		{"missing Upgrade", requestHead("GET", "/websockify", "HTTP/1.1", std.del("Upgrade")), 426, "Upgrade", "websocket"},
		{"version 8", requestHead("GET", "/websockify", "HTTP/1.1", std.set("Sec-WebSocket-Version", "8")), 426, "Sec-WebSocket-Version", "13"},
		{"missing key", requestHead("GET", "/websockify", "HTTP/1.1", std.del("Sec-WebSocket-Key")), 400, "", ""},
		{"short key", requestHead("GET", "/websockify", "HTTP/1.1", std.set("Sec-WebSocket-Key", "c2hvcnQ=")), 400, "", ""},
		{"oversize head", requestHead("GET", "/websockify", "HTTP/1.1", std.set("X-Pad", strings.Repeat("a", 9000))), 431, "", ""},
		{"oversize unfinished head", "GET /websockify HTTP/1.1\r\nHost: " + addr + "\r\nX-Pad: " + strings.Repeat("b", 9000), 431, "", ""},
		{"disallowed origin", requestHead("GET", "/websockify", "HTTP/1.1", std.set("Origin", "https://evil.example.com")), 403, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, br, resp, body := rawExchange(t, addr, tc.raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.header != "" && resp.Header.Get(tc.header) != tc.want {
				t.Errorf("%s: %q, want %q (header %v)", tc.header, resp.Header.Get(tc.header), tc.want, resp.Header)
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" {
				t.Errorf("refusal carries Sec-WebSocket-Accept")
			}
			if rest := awaitEOF(t, br); len(rest) > 0 {
				t.Errorf("bytes after the refusal: %q", rest)
			}
		})
	}
	if got := srv.Stats().UpgradeFailures; got != int64(len(cases)) {
		t.Errorf("Stats().UpgradeFailures = %d, want %d", got, len(cases))
	}
	if n := len(vnc.Conns()); n != 0 {
		t.Errorf("refused upgrades dialed the upstream %d times", n)
	}
}

// TestE2EUpgradeOrigins: a listed origin and the proxy's own host are let in.
func TestE2EUpgradeOrigins(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	_, addr := startProxy(t, cfg)
	for _, origin := range []string{"https://app.example.com", "HTTPS://APP.example.com", "http://" + addr} {
		t.Run(origin, func(t *testing.T) {
			_, _, resp, _ := rawExchange(t, addr, requestHead("GET", "/websockify", "HTTP/1.1",
				upgradeHeaders(addr).set("Origin", origin)))
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if got, want := resp.Header.Get("Sec-WebSocket-Accept"), upgrade.AcceptKey(testWSKey); got != want {
				t.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "binary" {
				t.Errorf("Sec-WebSocket-Protocol %q, want binary", got)
			}
		})
	}
}

// rawWS speaks WebSocket over a raw conn: Read returns the payload of the
// server's data frames as a stream, Write sends one masked binary frame.
type rawWS struct {
	c         net.Conn
	br        *bufio.Reader
	remaining int64
}

func (r *rawWS) Read(p []byte) (int, error) {
	for r.remaining == 0 {
		h, err := ws.ReadHeader(r.br)
		if err != nil {
			return 0, err
		}
		if h.OpCode.IsControl() {
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(r.br, payload); err != nil {
				return 0, err
			}
			if h.OpCode == ws.OpClose {
				code := 0
				if len(payload) >= 2 {
					code = int(payload[0])<<8 | int(payload[1])
					payload = payload[2:]
				}
				return 0, fmt.Errorf("close frame %d %q", code, payload)
			}
			continue
		}
		r.remaining = h.Length
	}
	n, err := r.br.Read(p[:min(int64(len(p)), r.remaining)])
	r.remaining -= int64(n)
	return n, err
}

func (r *rawWS) Write(p []byte) (int, error) {
	if _, err := r.c.Write(maskedFrame(ws.OpBinary, true, p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskedFrame encodes one client frame.
func maskedFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	var b strings.Builder
	_ = ws.WriteHeader(&b, h)
	m := append([]byte(nil), payload...)
	ws.Cipher(m, h.Mask, 0)
	return append([]byte(b.String()), m...)
}

// TestE2EUpgradePipelinedVersionCompletesHandshake: the viewer's first WebSocket frame (its
// RFB ProtocolVersion) arrives in the same TCP write as the HTTP request. The
// proxy must keep those bytes while it dials, and the RFB handshake must
// complete.
func TestE2EUpgradePipelinedVersionCompletesHandshake(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	_, addr := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User))
	raw := requestHead("GET", "/websockify", "HTTP/1.1", upgradeHeaders(addr)) +
		string(maskedFrame(ws.OpBinary, true, []byte("RFB 003.008\n")))
	c, br, resp, _ := rawExchange(t, addr, raw)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	rw := &rawWS{c: c, br: br}
	read := func(n int, what string) []byte {
		t.Helper()
		b := make([]byte, n)
		if _, err := io.ReadFull(rw, b); err != nil {
			t.Fatalf("reading %s: %v", what, err)
		}
		return b
	}
	b := make([]byte, 12)
	if _, err := io.ReadFull(rw, b); err != nil {
		// Failed this way before rfbparse accepted a client version that
		// arrives ahead of the server's: the proxy feeds pipelined bytes to
		// the parser as soon as the 101 is written, and the parser ended the
		// session with 1008 "client sent data out of turn in the handshake".
		t.Fatalf("BUG: session with a ProtocolVersion pipelined after the upgrade request was ended "+
			"instead of completing the RFB handshake: %v", err)
	}
	if v := b; string(v) != "RFB 003.008\n" {
		t.Fatalf("server version %q", v)
	}
	if st := read(2, "security types"); st[0] != 1 || st[1] != rfbtest.SecurityNone {
		t.Fatalf("security types %v", st)
	}
	if _, err := rw.Write([]byte{rfbtest.SecurityNone}); err != nil {
		t.Fatal(err)
	}
	if res := read(4, "SecurityResult"); string(res) != "\x00\x00\x00\x00" {
		t.Fatalf("SecurityResult %v", res)
	}
	if _, err := rw.Write([]byte{1}); err != nil { // ClientInit, shared
		t.Fatal(err)
	}
	si := read(24, "ServerInit")
	read(int(si[23]), "desktop name")

	ctx := ctxT(t)
	up, err := vnc.WaitConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if v := up.ClientVersion(); v != "RFB 003.008\n" {
		t.Fatalf("server got client version %q", v)
	}
	// And the relay runs.
	s := sentinel(1)
	if _, err := rw.Write(cat(keyMsg(true, 'x'), s)); err != nil {
		t.Fatal(err)
	}
	if got := awaitSentinel(t, vnc, s); !equalMsgs(got, [][]byte{keyMsg(true, 'x')}) {
		t.Fatalf("server received:\n%s", dumpMsgs(got))
	}
}

// closedPortAddr returns a 127.0.0.1 address nobody listens on.
func closedPortAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestE2EUpstreamRefused: a tcp:// upstream that refuses the connection
// answers the viewer 502.
func TestE2EUpstreamRefused(t *testing.T) {
	_, addr := startProxy(t, targetConfig(t, "tcp://"+closedPortAddr(t), rfbparse.User))
	_, br, resp, body := rawExchange(t, addr, requestHead("GET", "/websockify", "HTTP/1.1", upgradeHeaders(addr)))
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d (%q), want 502", resp.StatusCode, body)
	}
	awaitEOF(t, br)
}

// silentListener accepts connections and never writes to them.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestE2EUpstreamHandshakeTimeout: a ws:// upstream that accepts TCP but
// never answers its upgrade request answers the viewer 504 after DialTimeout.
func TestE2EUpstreamHandshakeTimeout(t *testing.T) {
	const dialTimeout = 300 * time.Millisecond
	cfg := targetConfig(t, "ws://"+silentListener(t)+"/", rfbparse.User)
	cfg.DialTimeout = dialTimeout
	_, addr := startProxy(t, cfg)
	start := time.Now()
	_, br, resp, body := rawExchange(t, addr, requestHead("GET", "/websockify", "HTTP/1.1", upgradeHeaders(addr)))
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d (%q), want 504", resp.StatusCode, body)
	}
	if el := time.Since(start); el < dialTimeout {
		t.Errorf("504 after %v, before DialTimeout %v", el, dialTimeout)
	}
	awaitEOF(t, br)
}

// TestE2EViewerHandshakeTimeout: a viewer that sends half a request head and
// stops is closed once HandshakeTimeout passes.
func TestE2EViewerHandshakeTimeout(t *testing.T) {
	const hsTimeout = 200 * time.Millisecond
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.HandshakeTimeout = hsTimeout
	_, addr := startProxy(t, cfg)
	start := time.Now()   // before the session exists, so its deadline is later
	c := rawDial(t, addr) // deadline 10s, well above the timeout
	if _, err := io.WriteString(c, "GET /websockify HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: webso"); err != nil {
		t.Fatal(err)
	}
	awaitEOF(t, c)
	if el := time.Since(start); el < hsTimeout {
		t.Errorf("closed after %v, before HandshakeTimeout %v", el, hsTimeout)
	}
	if n := len(vnc.Conns()); n != 0 {
		t.Errorf("half a request dialed the upstream %d times", n)
	}
}
