package upgrade

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// head joins request lines with CRLF and ends the head with an empty line.
func head(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3, with the accept value it gives
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	chromeUA  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36"
)

// novnc13 is what Chromium sends for noVNC 1.3, which offers ["binary"].
var novnc13 = head(
	"GET /vnc/s1?token=t1 HTTP/1.1",
	"Host: edge.example.com",
	"Connection: Upgrade",
	"Pragma: no-cache",
	"Cache-Control: no-cache",
	"User-Agent: "+chromeUA,
	"Upgrade: websocket",
	"Origin: https://edge.example.com",
	"Sec-WebSocket-Version: 13",
	"Accept-Encoding: gzip, deflate, br, zstd",
	"Accept-Language: en-US,en;q=0.9",
	"Sec-WebSocket-Key: "+rfcKey,
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
	"Sec-WebSocket-Protocol: binary",
)

// withLine returns novnc13 with the header line starting with prefix
// replaced by repl, or removed when repl is "".
func withLine(prefix, repl string) string {
	lines := strings.Split(strings.TrimSuffix(novnc13, "\r\n\r\n"), "\r\n")
	out := lines[:0]
	found := false
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			found = true
			if repl == "" {
				continue
			}
			l = repl
		}
		out = append(out, l)
	}
	if !found {
		panic("withLine: no line " + prefix)
	}
	return head(out...)
}

// addLine returns novnc13 with extra header lines.
func addLine(lines ...string) string {
	return strings.TrimSuffix(novnc13, "\r\n") + strings.Join(lines, "\r\n") + "\r\n\r\n"
}

var defaultOpts = &Options{
	AllowedOrigins: []string{"https://app.example.com"},
	Subprotocol:    "binary",
}

type upgradeCase struct {
	name   string
	raw    string
	opts   *Options // defaultOpts when nil
	status int      // 0: accepted
	header [][2]string
	proto  string
	check  func(t *testing.T, r *Request)
}

var cases = []upgradeCase{
	// Accepted.
	{name: "noVNC 1.3 binary", raw: novnc13, proto: "binary", check: func(t *testing.T, r *Request) {
		want := &Request{
			Method: "GET", Target: "/vnc/s1?token=t1", Path: "/vnc/s1", RawQuery: "token=t1",
			Query: url.Values{"token": {"t1"}}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Host: "edge.example.com", Origin: "https://edge.example.com", Key: rfcKey,
			Version: "13", UserAgent: chromeUA, Protocols: []string{"binary"},
			Extensions:       "permessage-deflate; client_max_window_bits",
			UpgradeWebSocket: true, ConnectionUpgrade: true,
		}
		got := *r
		got.Header = nil
		if !reflect.DeepEqual(&got, want) {
			t.Errorf("got  %+v\nwant %+v", got, *want)
		}
		if len(r.Header) != 13 || r.Header[0] != [2]string{"host", "edge.example.com"} {
			t.Errorf("Header = %q", r.Header)
		}
	}},
	{name: "noVNC 1.7 no protocol", raw: withLine("Sec-WebSocket-Protocol:", ""), check: func(t *testing.T, r *Request) {
		if r.Protocols != nil {
			t.Errorf("Protocols = %q, want nil", r.Protocols)
		}
	}},
	{name: "Chromium with extensions from allowed origin", raw: head(
		"GET /websockify HTTP/1.1",
		"Host: vnc.internal:6080",
		"Connection: Upgrade",
		"Upgrade: websocket",
		"Origin: https://app.example.com",
		"Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: "+rfcKey,
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
	), check: func(t *testing.T, r *Request) {
		if r.Extensions != "permessage-deflate; client_max_window_bits" {
			t.Errorf("Extensions = %q", r.Extensions)
		}
	}},
	{name: "lowercase header names", raw: head(
		"GET /vnc/s1 HTTP/1.1",
		"host: edge.example.com",
		"connection: Upgrade",
		"upgrade: websocket",
		"sec-websocket-version: 13",
		"sec-websocket-key: "+rfcKey,
		"sec-websocket-protocol: binary",
	), proto: "binary"},
	{name: "Firefox keep-alive and mixed case", raw: head(
		"GET /vnc/s1 HTTP/1.1",
		"HOST: Edge.Example.com",
		"Connection: keep-alive, Upgrade",
		"Upgrade: WebSocket",
		"origin: https://EDGE.example.com",
		"Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: "+rfcKey,
		"Sec-WebSocket-Protocol: binary",
	), proto: "binary"},
	{name: "bare LF line ends", raw: strings.ReplaceAll(novnc13, "\r\n", "\n"), proto: "binary"},
	{name: "no Origin from non-browser client", raw: withLine("Origin:", ""), proto: "binary"},
	{name: "any origin with wildcard", raw: withLine("Origin:", "Origin: https://elsewhere.example"),
		opts: &Options{AllowedOrigins: []string{"*"}}},
	{name: "same host with default port", raw: withLine("Host:", "Host: edge.example.com:443"), proto: "binary"},
	{name: "IPv6 same host", raw: head(
		"GET / HTTP/1.1",
		"Host: [::1]:6080",
		"Origin: http://[::1]:6080",
		"Connection: Upgrade",
		"Upgrade: websocket",
		"Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: "+rfcKey,
	)},
	{name: "protocol chosen from several", raw: withLine("Sec-WebSocket-Protocol:", "Sec-WebSocket-Protocol: chat, , binary"),
		proto: "binary", check: func(t *testing.T, r *Request) {
			if !reflect.DeepEqual(r.Protocols, []string{"chat", "binary"}) {
				t.Errorf("Protocols = %q", r.Protocols)
			}
		}},
	{name: "unsupported protocol is not chosen", raw: withLine("Sec-WebSocket-Protocol:", "Sec-WebSocket-Protocol: base64")},
	{name: "escaped path and query", raw: withLine("GET ", "GET /vnc/a%20b?token=x%2By&client_id=c1 HTTP/1.1"),
		proto: "binary", check: func(t *testing.T, r *Request) {
			if r.Path != "/vnc/a b" || r.RawQuery != "token=x%2By&client_id=c1" ||
				r.Query.Get("token") != "x+y" || r.Query.Get("client_id") != "c1" {
				t.Errorf("Path %q RawQuery %q Query %v", r.Path, r.RawQuery, r.Query)
			}
		}},
	{name: "repeated field joined", raw: addLine("X-Api-Key: a", "x-api-key: b"), proto: "binary",
		check: func(t *testing.T, r *Request) {
			if got := r.Get("X-API-KEY"); got != "a, b" {
				t.Errorf(`Get("X-API-KEY") = %q`, got)
			}
		}},
	{name: "HTTP/1.2 as 1.1", raw: withLine("GET ", "GET /vnc/s1 HTTP/1.2"), proto: "binary"},
	{name: "zero Content-Length", raw: addLine("Content-Length: 0"), proto: "binary"},

	// Malformed HTTP.
	{name: "POST", raw: withLine("GET ", "POST /vnc/s1 HTTP/1.1"), status: 405, header: [][2]string{{"Allow", "GET"}}},
	{name: "HTTP/1.0", raw: withLine("GET ", "GET /vnc/s1 HTTP/1.0"), status: 400},
	{name: "HTTP/2.0", raw: withLine("GET ", "GET /vnc/s1 HTTP/2.0"), status: 505},
	{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\n", status: 505},
	{name: "double space in request line", raw: withLine("GET ", "GET  /vnc/s1 HTTP/1.1"), status: 400},
	{name: "lowercase protocol name", raw: withLine("GET ", "GET /vnc/s1 http/1.1"), status: 400},
	{name: "two-digit version", raw: withLine("GET ", "GET /vnc/s1 HTTP/1.10"), status: 400},
	{name: "leading empty line", raw: "\r\n" + novnc13, status: 400},
	{name: "header without colon", raw: addLine("X-Broken"), status: 400},
	{name: "whitespace before colon", raw: withLine("Host:", "Host : edge.example.com"), status: 400},
	{name: "obs-fold", raw: addLine("X-Long: a", " b"), status: 400},
	{name: "empty header name", raw: addLine(": x"), status: 400},
	{name: "bad header name", raw: addLine("X(y): z"), status: 400},
	{name: "NUL in header value", raw: addLine("X-Y: a\x00b"), status: 400},
	{name: "bare CR in header value", raw: addLine("X-Y: a\rb"), status: 400},
	{name: "absolute-form target", raw: withLine("GET ", "GET http://edge.example.com/vnc/s1 HTTP/1.1"), status: 400},
	{name: "fragment in target", raw: withLine("GET ", "GET /vnc/s1#x HTTP/1.1"), status: 400},
	{name: "bad path escape", raw: withLine("GET ", "GET /vnc/%zz HTTP/1.1"), status: 400},
	{name: "bad query escape", raw: withLine("GET ", "GET /vnc/s1?token=%zz HTTP/1.1"), status: 400},
	{name: "semicolon in query", raw: withLine("GET ", "GET /vnc/s1?a=1;b=2 HTTP/1.1"), status: 400},
	{name: "too many header lines", raw: addLine(strings.Repeat("X: y\r\n", maxHeaderLines) + "X: y"), status: 431},
	{name: "missing Host", raw: withLine("Host:", ""), status: 400},
	{name: "empty Host", raw: withLine("Host:", "Host:"), status: 400},
	{name: "repeated Host", raw: addLine("Host: other.example.com"), status: 400},
	{name: "malformed Host", raw: withLine("Host:", "Host: edge.example.com/x"), status: 400},

	// Not a WebSocket upgrade.
	{name: "plain HTTP GET", raw: head("GET /vnc/s1 HTTP/1.1", "Host: edge.example.com", "Accept: text/html"),
		status: 426, header: [][2]string{{"Upgrade", "websocket"}}},
	{name: "Upgrade h2c", raw: withLine("Upgrade:", "Upgrade: h2c"), status: 400},
	{name: "Connection keep-alive only", raw: withLine("Connection:", "Connection: keep-alive"), status: 400},
	{name: "missing Connection", raw: withLine("Connection:", ""), status: 400},
	{name: "version 8", raw: withLine("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"),
		status: 426, header: [][2]string{{"Sec-WebSocket-Version", "13"}}},
	{name: "missing version", raw: withLine("Sec-WebSocket-Version:", ""),
		status: 426, header: [][2]string{{"Sec-WebSocket-Version", "13"}}},
	{name: "missing key", raw: withLine("Sec-WebSocket-Key:", ""), status: 400},
	{name: "key not base64", raw: withLine("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!"), status: 400},
	{name: "key of 15 bytes", raw: withLine("Sec-WebSocket-Key:", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"), status: 400},
	{name: "key of 17 bytes", raw: withLine("Sec-WebSocket-Key:", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="), status: 400},
	{name: "key not canonical", raw: withLine("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="), status: 400},
	{name: "key repeated", raw: addLine("Sec-WebSocket-Key: " + rfcKey), status: 400},
	{name: "request body", raw: addLine("Content-Length: 5"), status: 400},
	{name: "chunked body", raw: addLine("Transfer-Encoding: chunked"), status: 400},
	{name: "foreign origin", raw: withLine("Origin:", "Origin: https://evil.example"), status: 403},
	{name: "origin on other port", raw: withLine("Origin:", "Origin: https://edge.example.com:8443"), status: 403},
	{name: "null origin", raw: withLine("Origin:", "Origin: null"), status: 403},
}

// parseCheck runs Parse and Check on raw, which must be exactly one head.
func parseCheck(t *testing.T, raw string, o *Options) (*Request, string, error) {
	t.Helper()
	if n := End([]byte(raw)); n != len(raw) {
		t.Fatalf("End = %d, want %d", n, len(raw))
	}
	r, err := Parse([]byte(raw))
	if err != nil {
		return nil, "", err
	}
	proto, err := Check(r, o)
	return r, proto, err
}

func (c *upgradeCase) options() *Options {
	if c.opts != nil {
		return c.opts
	}
	return defaultOpts
}

func TestParseCheck(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, proto, err := parseCheck(t, c.raw, c.options())
			if c.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if proto != c.proto {
					t.Errorf("protocol = %q, want %q", proto, c.proto)
				}
				if c.check != nil {
					c.check(t, r)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error with status %d", err, err, c.status)
			}
			if e.Status != c.status || !reflect.DeepEqual(e.Header, c.header) {
				t.Fatalf("got %d %q (%s), want %d %q", e.Status, e.Header, e.Message, c.status, c.header)
			}
			// The response must be a valid HTTP response carrying the same.
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(AppendError(nil, e))), nil)
			if err != nil {
				t.Fatalf("AppendError output: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || string(body) != e.Message+"\n" || !resp.Close {
				t.Errorf("response %d %q close=%v", resp.StatusCode, body, resp.Close)
			}
			for _, h := range c.header {
				if got := resp.Header.Get(h[0]); got != h[1] {
					t.Errorf("response %s = %q, want %q", h[0], got, h[1])
				}
			}
		})
	}
}

// TestCrossNetHTTP checks that net/http reads the accepted requests the same.
func TestCrossNetHTTP(t *testing.T) {
	for _, c := range cases {
		if c.status != 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			r, _, err := parseCheck(t, c.raw, c.options())
			if err != nil {
				t.Fatal(err)
			}
			hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(c.raw)))
			if err != nil {
				t.Fatalf("net/http: %v", err)
			}
			if hr.Method != r.Method || hr.RequestURI != r.Target || hr.URL.Path != r.Path ||
				hr.URL.RawQuery != r.RawQuery || !reflect.DeepEqual(hr.URL.Query(), r.Query) || hr.Host != r.Host {
				t.Errorf("net/http: %s %q path %q query %q %v host %q", hr.Method, hr.RequestURI,
					hr.URL.Path, hr.URL.RawQuery, hr.URL.Query(), hr.Host)
			}
			// net/http moves Host out of Header into Request.Host.
			if len(hr.Header) != len(r.Header)-1 {
				t.Errorf("net/http has %d fields besides Host, we have %d", len(hr.Header), len(r.Header)-1)
			}
			for _, f := range r.Header {
				if f[0] == "host" {
					continue
				}
				if got := strings.Join(hr.Header.Values(f[0]), ", "); got != f[1] {
					t.Errorf("field %s: net/http %q, we %q", f[0], got, f[1])
				}
			}
		})
	}
}

// gobwasUpgrade runs gobwas/ws's server handshake over raw and returns what
// it wrote.
func gobwasUpgrade(t *testing.T, raw, subprotocol string) []byte {
	t.Helper()
	var out bytes.Buffer
	u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == subprotocol }}
	if _, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(raw), &out}); err != nil {
		t.Fatalf("gobwas/ws refused: %v\n%s", err, out.Bytes())
	}
	return out.Bytes()
}

func readResponse(t *testing.T, b []byte) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("%v in %q", err, b)
	}
	return resp
}

// TestCrossGobwas checks the 101 for each accepted request against the one
// gobwas/ws writes for the same bytes.
func TestCrossGobwas(t *testing.T) {
	for _, c := range cases {
		if c.status != 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			r, proto, err := parseCheck(t, c.raw, c.options())
			if err != nil {
				t.Fatal(err)
			}
			ours := AppendResponse(nil, r, proto)
			theirs := gobwasUpgrade(t, c.raw, c.options().Subprotocol)
			a, b := readResponse(t, ours), readResponse(t, theirs)
			if a.StatusCode != 101 || b.StatusCode != 101 {
				t.Fatalf("status ours %d, gobwas %d", a.StatusCode, b.StatusCode)
			}
			for _, name := range []string{"Upgrade", "Connection", "Sec-WebSocket-Accept",
				"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
				if x, y := a.Header.Values(name), b.Header.Values(name); !reflect.DeepEqual(x, y) {
					t.Errorf("%s: ours %q, gobwas %q", name, x, y)
				}
			}
			if len(a.Header) != len(b.Header) {
				t.Errorf("ours has fields %v, gobwas %v", a.Header, b.Header)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("ours\n%q\ngobwas\n%q", ours, theirs)
			}
		})
	}
}

func TestAcceptKeyRFC(t *testing.T) {
	if got := AcceptKey(rfcKey); got != rfcAccept {
		t.Errorf("AcceptKey(%q) = %q, want %q", rfcKey, got, rfcAccept)
	}
}

// TestAcceptKeyGobwas compares AcceptKey with gobwas/ws on random keys.
func TestAcceptKeyGobwas(t *testing.T) {
	for range 50 {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		key := base64.StdEncoding.EncodeToString(nonce[:])
		raw := withLine("Sec-WebSocket-Key:", "Sec-WebSocket-Key: "+key)
		resp := readResponse(t, gobwasUpgrade(t, raw, ""))
		if got, want := AcceptKey(key), resp.Header.Get("Sec-WebSocket-Accept"); got != want {
			t.Fatalf("AcceptKey(%q) = %q, gobwas/ws %q", key, got, want)
		}
	}
}

func TestAppendResponse(t *testing.T) {
	r := &Request{Key: rfcKey}
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + rfcAccept + "\r\n"
	if got := string(AppendResponse([]byte("x"), r, "")); got != "x"+want+"\r\n" {
		t.Errorf("no protocol:\n%q\nwant\n%q", got, "x"+want+"\r\n")
	}
	want += "Sec-WebSocket-Protocol: binary\r\n\r\n"
	if got := string(AppendResponse(nil, r, "binary")); got != want {
		t.Errorf("binary:\n%q\nwant\n%q", got, want)
	}
	if got := string(AppendResponse(nil, r, "a\r\nX-Injected: 1")); strings.Contains(got, "Injected") {
		t.Errorf("malformed protocol written: %q", got)
	}
}

func TestAppendError(t *testing.T) {
	_, _, err := parseCheck(t, head("GET / HTTP/1.1", "Host: h"), nil)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v", err)
	}
	want := "HTTP/1.1 426 Upgrade Required\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 35\r\n" +
		"Connection: Upgrade, close\r\n" +
		"Upgrade: websocket\r\n" +
		"\r\n" +
		"this address only speaks WebSocket\n"
	if got := string(AppendError(nil, e)); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}

	want = "HTTP/1.1 431 Request Header Fields Too Large\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 32\r\n" +
		"Connection: close\r\n" +
		"\r\n" +
		"request header fields too large\n"
	if got := string(AppendError(nil, ErrTooLarge)); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}

	// Fields that would break the response are left out.
	got := string(AppendError(nil, &Error{Status: 99, Message: "m", Header: [][2]string{
		{"Content-Length", "0"}, {"X-A", "1\r\nX-Injected: 1"}, {"Bad Name", "1"}, {"Retry-After", "5"},
	}}))
	want = "HTTP/1.1 500 Internal Server Error\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 2\r\n" +
		"Connection: close\r\n" +
		"Retry-After: 5\r\n" +
		"\r\n" +
		"m\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if got := (&Error{Status: 403, Message: "origin not allowed"}).Error(); got != "upgrade: 403 origin not allowed" {
		t.Errorf("Error() = %q", got)
	}
}

func TestEnd(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"GET / HTTP/1.1\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: h\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r", -1},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27},
		{"GET / HTTP/1.1\nHost: h\n\n", 24},
		{"GET / HTTP/1.1\r\nHost: h\n\r\n", 26},
		{"GET / HTTP/1.1\r\nHost: h\r\n\nrest", 26},
		{"GET / HTTP/1.1\r\nX: \r\r\n\r\n", 24},
		{"\n\n", 2},
	} {
		if got := End([]byte(c.in)); got != c.want {
			t.Errorf("End(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestEndPipelined: a client may send its first frame right behind the head;
// End must measure the head alone, whichever read the bytes arrive in.
func TestEndPipelined(t *testing.T) {
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte("RFB 003.008\n"))))
	// A masked frame may hold CR and LF bytes; these follow the head.
	frame = append(frame, "\r\n\r\n\n\n"...)
	buf := append([]byte(novnc13), frame...)
	if got := End(buf); got != len(novnc13) {
		t.Fatalf("End = %d, want %d", got, len(novnc13))
	}
	for i := range len(buf) + 1 {
		want := -1
		if i >= len(novnc13) {
			want = len(novnc13)
		}
		if got := End(buf[:i]); got != want {
			t.Fatalf("End(first %d bytes) = %d, want %d", i, got, want)
		}
	}
	// gobwas/ws cannot be handed the whole buffer (its read-ahead takes the
	// frame), but reads exactly the measured head fine.
	gobwasUpgrade(t, string(buf[:End(buf)]), "binary")
}

// TestParseNeedsExactHead: Parse refuses a head that End would not measure
// as the whole input.
func TestParseNeedsExactHead(t *testing.T) {
	for _, in := range []string{"", novnc13[:len(novnc13)-1], novnc13 + "x", "GET / HTTP/1.1\r\n"} {
		var e *Error
		if _, err := Parse([]byte(in)); !errors.As(err, &e) || e.Status != 400 {
			t.Errorf("Parse(%q) error = %v, want 400", in, err)
		}
	}
	big := addLine("X-Pad: " + strings.Repeat("a", MaxRequestSize))
	if _, err := Parse([]byte(big)); err != ErrTooLarge {
		t.Errorf("Parse(%d bytes) error = %v, want ErrTooLarge", len(big), err)
	}
}

// TestParseCopies: a Request must not share memory with the buffer it was
// parsed from, which gnet reuses.
func TestParseCopies(t *testing.T) {
	buf := []byte(novnc13)
	r, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	before := *r
	before.Header = append([][2]string(nil), r.Header...)
	for i := range buf {
		buf[i] = 'X'
	}
	if !reflect.DeepEqual(*r, before) || r.Host != "edge.example.com" || r.Get("origin") != "https://edge.example.com" {
		t.Errorf("Request changed with its input buffer: %+v", *r)
	}
}

// A refused origin is explained in one sentence: the Origin, the Host and the flag.
func TestCheckOriginMessage(t *testing.T) {
	raw := withLine("Origin:", "Origin: https://app.example.com")
	_, _, err := parseCheck(t, raw, &Options{})
	var he *Error
	if !errors.As(err, &he) || he.Status != 403 {
		t.Fatalf("err = %v, want a 403", err)
	}
	for _, want := range []string{`"https://app.example.com"`, `"edge.example.com"`, "--allowed-origins"} {
		if !strings.Contains(he.Message, want) {
			t.Errorf("message %q lacks %s", he.Message, want)
		}
	}
	long := withLine("Origin:", "Origin: https://"+strings.Repeat("a", 5000)+".example")
	if _, _, err := parseCheck(t, long, &Options{}); !errors.As(err, &he) || len(he.Message) > 600 {
		t.Errorf("long origin: message of %d bytes, want it cut", len(he.Message))
	}
}

func TestCheckNilOptions(t *testing.T) {
	// Same host and no Origin pass; a configured origin does not.
	for raw, want := range map[string]int{
		novnc13:                 0,
		withLine("Origin:", ""): 0,
		withLine("Origin:", "Origin: https://app.example.com"): 403,
	} {
		_, proto, err := parseCheck(t, raw, nil)
		var e *Error
		switch {
		case want == 0 && (err != nil || proto != ""):
			t.Errorf("got %q, %v; want no protocol, no error", proto, err)
		case want != 0 && (!errors.As(err, &e) || e.Status != want):
			t.Errorf("err = %v, want %d", err, want)
		}
	}
}

func BenchmarkParseCheck(b *testing.B) {
	buf := []byte(novnc13)
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		r, err := Parse(buf[:End(buf)])
		if err != nil {
			b.Fatal(err)
		}
		proto, err := Check(r, defaultOpts)
		if err != nil {
			b.Fatal(err)
		}
		out = AppendResponse(out[:0], r, proto)
	}
}

// FuzzParse: no input makes Parse or Check panic, every error is an *Error
// with a status this package uses, and what Check accepts net/http reads as
// the same GET with the handshake fields present.
func FuzzParse(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c.raw))
	}
	f.Add([]byte(novnc13 + "\x82\x8c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := End(data)
		if n < 0 {
			if _, err := Parse(data); err == nil {
				t.Fatal("Parse accepted an incomplete head")
			}
			return
		}
		r, err := Parse(data[:n])
		if err == nil {
			_, err = Check(r, defaultOpts)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *Error", err, err)
			}
			switch e.Status {
			case 400, 403, 405, 426, 431, 505:
			default:
				t.Fatalf("unexpected status %d", e.Status)
			}
			_ = AppendError(nil, e)
			return
		}
		hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:n])))
		if err != nil {
			t.Fatalf("accepted %q but net/http says %v", data[:n], err)
		}
		if hr.Method != "GET" || hr.URL.Path != r.Path || hr.URL.RawQuery != r.RawQuery || hr.Host != r.Host {
			t.Fatalf("net/http reads %s %q %q host %q; we %s %q %q host %q", hr.Method, hr.URL.Path,
				hr.URL.RawQuery, hr.Host, r.Method, r.Path, r.RawQuery, r.Host)
		}
		if hr.ContentLength > 0 || len(hr.TransferEncoding) > 0 {
			t.Fatalf("accepted a request with a body: %q", data[:n])
		}
		if hr.Header.Get("Sec-WebSocket-Key") != r.Key || hr.Header.Get("Sec-WebSocket-Version") != "13" ||
			!headerHasToken(hr.Header, "Upgrade", "websocket") || !headerHasToken(hr.Header, "Connection", "upgrade") {
			t.Fatalf("accepted %q without the handshake fields net/http sees", data[:n])
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(AppendResponse(nil, r, "binary"))), nil)
		if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(r.Key) {
			t.Fatalf("bad 101: %v", err)
		}
	})
}

// headerHasToken is an independent token check over net/http's fields.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, e := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(e), token) {
				return true
			}
		}
	}
	return false
}
