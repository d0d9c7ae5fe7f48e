package upgrade

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Options says which upgrades Check accepts.
type Options struct {
	// AllowedOrigins lists the browser origins allowed to connect, exactly
	// as browsers send them ("https://app.example.com", no trailing slash,
	// compared without regard to ASCII case), or "*" for any origin. An
	// origin whose host[:port] equals the request's Host is always allowed,
	// and so is a request without an Origin field: only browsers send one,
	// and only browsers need protecting from cross-site use.
	AllowedOrigins []string

	// Subprotocol is the one subprotocol this server speaks, such as
	// "binary". Check answers with it when the client offers it, and with
	// no subprotocol otherwise: noVNC 1.3 offers ["binary"], noVNC 1.7
	// offers none.
	Subprotocol string
}

// Check decides whether a parsed request is an acceptable WebSocket opening
// handshake (RFC 6455 §4.2.1). It returns the subprotocol to answer with, ""
// for none, or an *[Error] with the status to refuse with:
//
//   - 400 for HTTP/1.0 (see below), a missing or malformed Host, an Upgrade
//     field without "websocket", a Connection field without "upgrade", a
//     missing or malformed Sec-WebSocket-Key, or a request body;
//   - 405 with "Allow: GET" for another method;
//   - 426 with "Upgrade: websocket" for a request without an Upgrade field:
//     plain HTTP, such as a browser opening the address as a page;
//   - 426 with "Sec-WebSocket-Version: 13" for a Sec-WebSocket-Version other
//     than 13, or none (pre-RFC drafts send none; RFC 6455 §4.4);
//   - 403 for a browser origin that o does not allow;
//   - 505 for an HTTP major version other than 1 (Parse already refuses those).
//
// HTTP/1.0 gets 400 rather than 505: 505 refuses the major version (RFC 9110
// §15.6.6) and HTTP/1.0 shares ours, while RFC 6455 §4.2.1 asks for 400 for a
// handshake that breaks its rules, the first of which is HTTP/1.1 or higher.
// HTTP/1.2 to 1.9 are treated as 1.1, as RFC 9112 §2.3 asks.
//
// A client that offers subprotocols none of which is o.Subprotocol is not
// refused: the response then names no subprotocol, which RFC 6455 allows; a
// browser that insisted on one fails the connection itself. o may be nil,
// which allows only same-host and non-browser clients and no subprotocol.
func Check(r *Request, o *Options) (protocol string, err error) {
	if o == nil {
		o = &Options{}
	}
	switch {
	case r.ProtoMajor != 1:
		return "", &Error{Status: 505, Message: "HTTP version not supported"}
	case r.ProtoMinor < 1:
		return "", badRequest("WebSocket needs HTTP/1.1")
	case r.Method != "GET":
		return "", &Error{Status: 405, Message: "method not allowed",
			Header: [][2]string{{"Allow", "GET"}}}
	case r.Host == "":
		return "", badRequest("missing Host header")
	case !validHost(r.Host):
		return "", badRequest("malformed Host header")
	case r.Get("upgrade") == "":
		return "", &Error{Status: 426, Message: "this address only speaks WebSocket",
			Header: [][2]string{{"Upgrade", "websocket"}}}
	case !r.UpgradeWebSocket:
		return "", badRequest("Upgrade header does not name websocket")
	case !r.ConnectionUpgrade:
		return "", badRequest("Connection header does not name upgrade")
	case r.Version != "13":
		return "", &Error{Status: 426, Message: "unsupported WebSocket version",
			Header: [][2]string{{"Sec-WebSocket-Version", "13"}}}
	case !validKey(r.Key):
		return "", badRequest("missing or malformed Sec-WebSocket-Key")
	case hasBody(r):
		// Bytes after the head are read as WebSocket frames: a body would
		// be misread as one.
		return "", badRequest("upgrade request must not have a body")
	case !originAllowed(r.Origin, r.Host, o.AllowedOrigins):
		return "", originError(r.Origin, r.Host)
	}
	if o.Subprotocol != "" {
		for _, p := range r.Protocols {
			if p == o.Subprotocol {
				return p, nil
			}
		}
	}
	return "", nil
}

// validKey reports whether key is the base64 form of exactly 16 bytes (RFC
// 6455 §4.1), in the one canonical spelling.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var nonce [18]byte
	n, err := base64.StdEncoding.Strict().Decode(nonce[:], []byte(key))
	return err == nil && n == 16
}

// hasBody reports whether r declares a body.
func hasBody(r *Request) bool {
	if r.Get("transfer-encoding") != "" {
		return true
	}
	for _, f := range r.Header {
		if f[0] == "content-length" {
			return f[1] != "0" // also an empty or malformed one: refused, as net/http does
		}
	}
	return false
}

// validHost reports whether h is made only of the bytes a host[:port] may
// hold: a reg-name, an IP literal in brackets (with a zone), and a port.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0:
		default:
			return false
		}
	}
	return h != ""
}

// originAllowed reports whether a request from origin to host may connect.
func originAllowed(origin, host string, allowed []string) bool {
	if origin == "" {
		return true
	}
	for _, a := range allowed {
		if a == "*" || equalFold(a, origin) {
			return true
		}
	}
	scheme, hostport, ok := strings.Cut(origin, "://")
	if !ok || hostport == "" || strings.ContainsAny(hostport, "/?#@") {
		return false // "null", or not a serialized origin
	}
	if equalFold(hostport, host) {
		return true
	}
	// An origin leaves out its scheme's default port; a Host field may
	// spell it out (or the other way round).
	var def string
	switch strings.ToLower(scheme) {
	case "http", "ws":
		def = "80"
	case "https", "wss":
		def = "443"
	default:
		return false
	}
	if h, p := splitPort(host); p == def && equalFold(h, hostport) {
		return true
	}
	h, p := splitPort(hostport)
	return p == def && equalFold(h, host)
}

// splitPort splits "host:port" or "[v6]:port"; port is "" when there is none.
func splitPort(hostport string) (host, port string) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.IndexByte(hostport[i:], ']') >= 0 {
		return hostport, ""
	}
	return hostport[:i], hostport[i+1:]
}

// originError explains a refused origin in one sentence: the refused Origin,
// the Host it asked for, and the flag that allows it. Both values come from
// the request (quoted, and cut to a bounded length).
func originError(origin, host string) *Error {
	const most = 200
	if len(origin) > most {
		origin = origin[:most] + "…"
	}
	if len(host) > most {
		host = host[:most] + "…"
	}
	return &Error{Status: 403, Message: "origin " + strconv.Quote(origin) + " may not connect to host " +
		strconv.Quote(host) + ": only pages of the same host may, unless --allowed-origins lists the origin"}
}
