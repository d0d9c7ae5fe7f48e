package upgrade

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"
)

// acceptGUID is the fixed GUID of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for a Sec-WebSocket-Key:
// the base64 form of the SHA-1 of key followed by the RFC 6455 GUID.
func AcceptKey(key string) string {
	return string(appendAcceptKey(nil, key))
}

func appendAcceptKey(dst []byte, key string) []byte {
	var buf [64]byte // room for a 24-byte key and the GUID, on the stack
	sum := sha1.Sum(append(append(buf[:0], key...), acceptGUID...))
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// AppendResponse appends to dst the 101 Switching Protocols response that
// accepts r, which Check has passed, and returns the extended slice. It names
// protocol as the subprotocol unless protocol is "" (or not a token), and
// never accepts an extension.
func AppendResponse(dst []byte, r *Request, protocol string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "...)
	dst = appendAcceptKey(dst, r.Key)
	dst = append(dst, "\r\n"...)
	if isToken(protocol) {
		dst = append(dst, "Sec-WebSocket-Protocol: "...)
		dst = append(dst, protocol...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// AppendError appends to dst an HTTP/1.1 response for e and returns the
// extended slice. The body is e.Message and a newline, as
// "text/plain; charset=utf-8" with a Content-Length, and the response asks to
// close the connection. e.Header follows the fixed fields, except for fields
// that are malformed or that would contradict them (Connection,
// Content-Length, Content-Type, Transfer-Encoding). When e.Header holds an
// Upgrade field, Connection also lists "Upgrade", as RFC 9110 §7.8 requires.
// A Status outside 300 to 599 is sent as 500.
func AppendError(dst []byte, e *Error) []byte {
	status := e.Status
	if status < 300 || status > 599 {
		status = 500
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(e.Message)+1), 10)
	dst = append(dst, "\r\nConnection: "...)
	for _, f := range e.Header {
		if equalFold(f[0], "upgrade") {
			dst = append(dst, "Upgrade, "...)
			break
		}
	}
	dst = append(dst, "close\r\n"...)
	for _, f := range e.Header {
		if !isToken(f[0]) || !validValue(f[1]) || equalFold(f[0], "connection") ||
			equalFold(f[0], "content-length") || equalFold(f[0], "content-type") ||
			equalFold(f[0], "transfer-encoding") {
			continue
		}
		dst = append(dst, f[0]...)
		dst = append(dst, ": "...)
		dst = append(dst, f[1]...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, e.Message...)
	return append(dst, '\n')
}

// validValue reports whether v can be sent as a header field value.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return v == trimOWS(v)
}

// statusText returns the reason phrase for the statuses a WebSocket edge
// answers with, and "" for others (RFC 9112 §4 lets it be empty).
func statusText(code int) string {
	switch code {
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}
