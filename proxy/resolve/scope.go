package resolve

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"vncedge/proxy"
)

// maxResponseHead bounds a control-plane response head, and the headers a
// control plane may ask vncedge to send (upstream_headers, cdp_headers).
const maxResponseHead = 8 << 10

// maxRouteHeaders bounds the number of headers in upstream_headers or
// cdp_headers.
const maxRouteHeaders = 32

// noRedirects is every vncedge HTTP client's CheckRedirect: a redirect would
// carry the viewer's credential (Go copies non-standard headers along, https
// to http included) to wherever the control plane points.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newControlPlaneClient is the default control-plane client: bounded time,
// bounded response head, no redirects.
func newControlPlaneClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = maxResponseHead
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: noRedirects}
}

// checkHeaders validates headers a control plane asks vncedge to send
// (upstream_headers, cdp_headers): valid fields, neither Host nor a
// hop-by-hop or handshake header.
func checkHeaders(field string, h map[string]string) error {
	if len(h) > maxRouteHeaders {
		return fmt.Errorf("%w: %s: more than %d headers", errMalformed, field, maxRouteHeaders)
	}
	size := 0
	for k, v := range h {
		if size += len(k) + len(v) + 4; size > maxResponseHead {
			return fmt.Errorf("%w: %s: over %d bytes", errMalformed, field, maxResponseHead)
		}
		if err := proxy.CheckUpstreamHeader(k, v); err != nil {
			return fmt.Errorf("%w: %s: %w", errMalformed, field, err)
		}
	}
	return nil
}

// cdpHeader builds a route's CDPHeader: the headers configured for the
// DevTools endpoint (cdp_headers), plus, when up is given (the token
// resolver: the operator's --upstream-api-key for routed edges), its
// x-api-key only when the DevTools endpoint is that same edge over TLS
// (wss/https, same host and port as the wss upstream). Nothing else of the
// upstream's headers goes to DevTools.
func cdpHeader(up *url.URL, upHeader http.Header, cdp string, configured map[string]string) http.Header {
	h := http.Header{}
	for k, v := range configured {
		h.Set(k, v)
	}
	if key := upHeader.Get("x-api-key"); key != "" && h.Get("x-api-key") == "" && sameTLSHost(up, cdp) {
		h.Set("x-api-key", key)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

// sameTLSHost reports whether cdp is reached over TLS at the host:port of
// the wss upstream up.
func sameTLSHost(up *url.URL, cdp string) bool {
	if up == nil || up.Scheme != "wss" {
		return false
	}
	c, err := url.Parse(cdp)
	if err != nil || (c.Scheme != "wss" && c.Scheme != "https") {
		return false
	}
	return strings.EqualFold(hostPort(c, "443"), hostPort(up, "443"))
}

func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return u.Hostname() + ":" + def
}
