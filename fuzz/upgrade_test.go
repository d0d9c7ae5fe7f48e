package fuzz

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"vncedge/proxy/upgrade"
)

// hasToken reports whether a comma-separated header value lists token.
func hasToken(v, token string) bool {
	for _, e := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(e), token) {
			return true
		}
	}
	return false
}

// checkAccepted checks with net/http that an accepted head is a valid
// WebSocket opening handshake.
func checkAccepted(t *testing.T, head []byte, req *upgrade.Request, proto string) {
	t.Helper()
	hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("Check accepted %q, net/http refuses it: %v", head, err)
	}
	values := func(name string) string { return strings.Join(hr.Header.Values(name), ", ") }
	switch {
	case hr.Method != http.MethodGet:
		t.Fatalf("accepted method %q", hr.Method)
	case !hr.ProtoAtLeast(1, 1) || hr.ProtoMajor != 1:
		t.Fatalf("accepted %s", hr.Proto)
	case hr.Host == "":
		t.Fatalf("accepted a request without Host")
	case !hasToken(values("Upgrade"), "websocket"):
		t.Fatalf("accepted Upgrade %q", values("Upgrade"))
	case !hasToken(values("Connection"), "upgrade"):
		t.Fatalf("accepted Connection %q", values("Connection"))
	case values("Sec-WebSocket-Version") != "13":
		t.Fatalf("accepted version %q", values("Sec-WebSocket-Version"))
	case hr.ContentLength > 0 || len(hr.TransferEncoding) > 0:
		t.Fatalf("accepted a request with a body")
	}
	key, err := base64.StdEncoding.DecodeString(values("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		t.Fatalf("accepted key %q", values("Sec-WebSocket-Key"))
	}
	if req.Host != hr.Host || req.Key != values("Sec-WebSocket-Key") || req.Method != hr.Method {
		t.Fatalf("parsed %q %q %q, net/http %q %q %q", req.Method, req.Host, req.Key, hr.Method, hr.Host, values("Sec-WebSocket-Key"))
	}
	if req.Path != hr.URL.Path || req.RawQuery != hr.URL.RawQuery {
		t.Fatalf("path %q query %q, net/http %q %q", req.Path, req.RawQuery, hr.URL.Path, hr.URL.RawQuery)
	}
	if proto != "" && proto != "binary" {
		t.Fatalf("answered with subprotocol %q", proto)
	}
	// The 101 must be a valid response with the right accept key.
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(upgrade.AppendResponse(nil, req, proto))), hr)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("101 response: %v %v", resp, err)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), upgrade.AcceptKey(req.Key); got != want || want == "" {
		t.Fatalf("accept key %q, want %q", got, want)
	}
}

// FuzzUpgrade: arbitrary bytes, arriving in two reads split at split. End on
// the first read never reports a head end beyond it and agrees with End on
// both; Parse and Check refuse with a known status or accept a request that
// net/http reads as a valid WebSocket upgrade; memory stays bounded.
func FuzzUpgrade(f *testing.F) {
	f.Add([]byte("GET /websockify HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x82\x80"), uint16(30))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		cut := int(split) % (len(data) + 1)
		n1 := upgrade.End(data[:cut])
		n := upgrade.End(data)
		if n1 > cut || n > len(data) {
			t.Fatalf("End beyond the data: %d of %d, %d of %d", n1, cut, n, len(data))
		}
		if n1 >= 0 && n1 != n {
			t.Fatalf("End on the first read %d, on both %d", n1, n)
		}
		if n < 0 {
			return
		}
		if h := data[:n]; !bytes.HasSuffix(h, []byte("\n\n")) && !bytes.HasSuffix(h, []byte("\n\r\n")) {
			t.Fatalf("head %q does not end with an empty line", h)
		}
		if upgrade.End(data[:n-1]) >= 0 {
			t.Fatalf("End %d is not the first empty line", n)
		}
		head := data[:n]
		var ms0, ms1 runtime.MemStats
		measure := len(head) > 4096
		if measure {
			runtime.ReadMemStats(&ms0)
		}
		req, err := upgrade.Parse(head)
		var proto string
		if err == nil {
			proto, err = upgrade.Check(req, &upgrade.Options{Subprotocol: "binary", AllowedOrigins: []string{"https://app.example.com"}})
		}
		if measure {
			runtime.ReadMemStats(&ms1)
			if d := ms1.TotalAlloc - ms0.TotalAlloc; d > 4<<20 {
				t.Fatalf("parsing a %d-byte head allocated %d bytes", len(head), d)
			}
		}
		if n > upgrade.MaxRequestSize && !errors.Is(err, upgrade.ErrTooLarge) {
			t.Fatalf("head of %d bytes: %v, want 431", n, err)
		}
		if err != nil {
			var he *upgrade.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v is not an *upgrade.Error", err)
			}
			switch he.Status {
			case 400, 403, 405, 426, 431, 505:
			default:
				t.Fatalf("status %d", he.Status)
			}
			resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(upgrade.AppendError(nil, he))), nil)
			if rerr != nil || resp.StatusCode != he.Status {
				t.Fatalf("error response for %d: %v %v", he.Status, resp, rerr)
			}
			return
		}
		checkAccepted(t, head, req, proto)
	})
}
