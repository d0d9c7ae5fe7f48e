package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forbiddenUpstream are the header names a route may not set on an upstream
// (or DevTools) handshake: the request line's own (Host), the hop-by-hop ones
// (RFC 9110 §7.6.1) and the WebSocket handshake's, which the dialer writes.
var forbiddenUpstream = map[string]bool{
	"Host": true, "Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Sec-Websocket-Key": true, "Sec-Websocket-Version": true, "Sec-Websocket-Protocol": true,
	"Sec-Websocket-Extensions": true, "Sec-Websocket-Accept": true,
}

// CheckUpstreamHeader reports whether name: value may be sent to an
// upstream as a route header: a valid field, and neither Host, a hop-by-hop
// header nor a WebSocket handshake header. The error never quotes the value
// (it may be a credential).
func CheckUpstreamHeader(name, value string) error {
	if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
		return fmt.Errorf("upstream header %q: invalid name or value", name)
	}
	if forbiddenUpstream[http.CanonicalHeaderKey(name)] {
		return fmt.Errorf("upstream header %q: may not be set by a route", name)
	}
	return nil
}

// IsLoopbackHost reports whether host (a name or an address, without port)
// is this machine: localhost, *.localhost, 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// SafeHeaders returns the headers of h that may go to a server at host over
// scheme: none over a plain (ws, http) connection to a host that is not
// loopback, where anyone on the path reads them; otherwise those that pass
// CheckUpstreamHeader. It returns nil when nothing is left; h is not
// modified.
func SafeHeaders(h http.Header, scheme, host string) http.Header {
	if len(h) == 0 {
		return nil
	}
	if scheme != "wss" && scheme != "https" && !IsLoopbackHost(host) {
		return nil
	}
	var out http.Header
	for k, vs := range h {
		ok := true
		for _, v := range vs {
			if CheckUpstreamHeader(k, v) != nil {
				ok = false
			}
		}
		if !ok || len(vs) == 0 {
			continue
		}
		if out == nil {
			out = http.Header{}
		}
		out[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	return out
}
