package resolve

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"vncedge/proxy"
)

// DefaultVNCPort is the websockify port next to a platform browser.
const DefaultVNCPort = 6080

// ErrNoBrowserAddress is returned by [UpstreamFromBrowserAddress] when there
// is neither a VNC URL nor a browser address: the session has no browser yet.
var ErrNoBrowserAddress = errors.New("session has no browser address")

// errBadAddress does not quote the address: routed addresses carry tokens.
var errBadAddress = errors.New("browser address: malformed or without a host")

// UpstreamFromBrowserAddress derives the VNC upstream of a platform browser,
// following the reference platform:
//
//   - an explicit vncURL wins (tcp://, ws:// or wss://);
//   - a loopback host (localhost, 127.0.0.0/8, ::1) → ws://host:vncPort;
//   - a routed address wss://h/{sid}/{tok}/devtools/… → wss://h/vnc/{sid}/{tok};
//   - a legacy routed address wss://h/{sid}?token=… → wss://h/vnc/{sid}?{query};
//   - an IP address, with or without port → ws://ip:vncPort;
//   - anything else → ws://hostname:vncPort.
//
// vncPort ≤ 0 means [DefaultVNCPort]. The returned header is never nil; it
// holds x-api-key: apiKey for wss upstreams when apiKey is not empty (the
// routed edge authenticates with it) and nothing otherwise.
func UpstreamFromBrowserAddress(browserAddress, vncURL string, vncPort int, apiKey string) (*url.URL, http.Header, error) {
	if vncPort <= 0 {
		vncPort = DefaultVNCPort
	}
	var u *url.URL
	if vncURL = strings.TrimSpace(vncURL); vncURL != "" {
		var err error
		if u, err = proxy.ParseUpstream(vncURL); err != nil {
			// Not wrapped: the parse error quotes the URL, which may hold a token.
			return nil, nil, errors.New("vnc url: not a tcp://host:port, ws:// or wss:// URL with a host")
		}
	} else {
		var err error
		if u, err = fromBrowserAddress(strings.TrimSpace(browserAddress), vncPort); err != nil {
			return nil, nil, err
		}
	}
	h := http.Header{}
	if u.Scheme == "wss" && apiKey != "" {
		h.Set("x-api-key", apiKey)
	}
	return u, h, nil
}

func fromBrowserAddress(addr string, vncPort int) (*url.URL, error) {
	if addr == "" {
		return nil, ErrNoBrowserAddress
	}
	port := strconv.Itoa(vncPort)
	websockify := func(host string) *url.URL {
		return &url.URL{Scheme: "ws", Host: net.JoinHostPort(host, port)}
	}
	if !strings.Contains(addr, "://") {
		// host, host:port, ip, ip:port or [ipv6]:port.
		host := addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		} else if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
			host = a.String()
		}
		if host == "" || strings.ContainsAny(host, "/?#@ ") {
			return nil, errBadAddress
		}
		return websockify(host), nil
	}
	b, err := url.Parse(addr)
	if err != nil {
		// Not wrapped: the parse error quotes the address, which may hold a token.
		return nil, errBadAddress
	}
	host := b.Hostname()
	if host == "" {
		return nil, errBadAddress
	}
	if isLoopback(host) {
		return websockify(host), nil
	}
	if b.Scheme == "wss" || b.Scheme == "ws" {
		parts := strings.Split(strings.Trim(b.EscapedPath(), "/"), "/")
		routed := ""
		switch {
		case len(parts) >= 4 && parts[2] == "devtools" && parts[0] != "" && parts[1] != "":
			routed = b.Scheme + "://" + b.Host + "/vnc/" + parts[0] + "/" + parts[1]
		case len(parts) == 1 && parts[0] != "" && b.Query().Get("token") != "":
			routed = b.Scheme + "://" + b.Host + "/vnc/" + parts[0] + "?" + b.RawQuery
		}
		if routed != "" {
			u, err := url.Parse(routed)
			if err != nil {
				return nil, errBadAddress
			}
			return u, nil
		}
	}
	return websockify(host), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
