package cdp

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"vncedge/proxy/upgrade"
)

// Bounds on what a DevTools endpoint can make vncedge hold: the endpoint is
// the browser's, and the browser visits arbitrary sites.
const (
	// MaxText bounds the text SelectedText returns, as paste is bounded:
	// a longer selection is ErrTextTooLarge.
	MaxText = 1 << 20
	// maxResponseHead bounds an HTTP or WebSocket handshake response head.
	maxResponseHead = upgrade.MaxResponseHead
	// maxPages bounds the pages probed to choose one; the rest are ignored.
	maxPages = 32
	// probeConcurrency bounds the probes in flight at once.
	probeConcurrency = 8
	// headSize is how much of a message is read to decide whether to keep it.
	headSize = 128
)

// ErrTextTooLarge is returned by SelectedText when the selection is longer
// than MaxText.
var ErrTextTooLarge = fmt.Errorf("cdp: selection larger than %d bytes", MaxText)

// errMessageTooLarge answers a call whose answer passed maxMessage.
var errMessageTooLarge = fmt.Errorf("answer larger than %d bytes", maxMessage)

// httpClient makes the DevTools HTTP requests (/json/version, /json/list):
// a bounded response head, and no redirects, which would carry our headers
// (x-api-key included: Go copies them) to wherever the endpoint points.
var httpClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  http.ProxyFromEnvironment, // as before; never used for loopback
		DialContext:            (&net.Dialer{Timeout: DefaultDialTimeout}).DialContext,
		MaxResponseHeaderBytes: maxResponseHead,
		TLSHandshakeTimeout:    DefaultDialTimeout,
		ResponseHeaderTimeout:  DefaultCallTimeout,
		IdleConnTimeout:        30 * time.Second,
		MaxIdleConnsPerHost:    2,
		ForceAttemptHTTP2:      false,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// headersFor returns h when it may go to a server at scheme://host: over TLS,
// or to this machine; nil otherwise (never credentials in clear).
func headersFor(h http.Header, scheme, host string) http.Header {
	if len(h) == 0 {
		return nil
	}
	if scheme == "https" || scheme == "wss" || isLoopback(host) {
		return h
	}
	return nil
}

func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// classify looks at the start of a message as Chromium writes it (compact
// JSON, "id" or "method" first) and says whether it is the answer to id, or
// an event named method. ok is false when the start is in another shape; the
// message must then be read whole to tell.
func classify(head []byte) (id int64, method string, ok bool) {
	s := string(head)
	if rest, found := strings.CutPrefix(s, `{"id":`); found {
		end := strings.IndexAny(rest, ",}")
		if end <= 0 {
			return 0, "", false
		}
		v, err := strconv.ParseInt(rest[:end], 10, 64)
		if err != nil || v == 0 {
			return 0, "", false
		}
		return v, "", true
	}
	if rest, found := strings.CutPrefix(s, `{"method":"`); found {
		end := strings.IndexByte(rest, '"')
		if end <= 0 {
			return 0, "", false
		}
		return 0, rest[:end], true
	}
	return 0, "", false
}
