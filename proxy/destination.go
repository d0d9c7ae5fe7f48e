package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrDestinationDenied is returned (wrapped) when a resolver's answer points
// at an address vncedge may not dial: vncedge's own listen or admin address,
// or one outside Config.UpstreamAllow.
var ErrDestinationDenied = errors.New("upstream destination not allowed")

// destGuard decides where upstream dials may go. Names are matched before
// the dial; addresses at connect time (net.Dialer.Control), so a name that
// resolves elsewhere later (DNS rebinding) is caught too.
type destGuard struct {
	nets  []netip.Prefix // allowed address ranges
	names []string       // allowed host names; "*.example.com" matches subdomains
	any   bool           // no allow list: every address but the denied ones
	deny  []netip.AddrPort
	local []netip.Addr // this machine's addresses, for a denied unspecified host
}

// ParseUpstreamAllow parses a comma-separated list of CIDRs, addresses and
// host names ("*.example.com" for its subdomains). Empty allows everything.
func ParseUpstreamAllow(list string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if _, err := parseAllowEntry(e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func parseAllowEntry(e string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(e); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(e); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	name := strings.TrimPrefix(e, "*.")
	if name == "" || strings.ContainsAny(name, "/:*@ ") {
		return netip.Prefix{}, fmt.Errorf("upstream-allow %q: not a CIDR, address or host name", e)
	}
	return netip.Prefix{}, nil
}

// newDestGuard builds the guard from allow entries and the addresses that
// are never dialed (host:port; an unspecified host means every local one).
func newDestGuard(allow []string, deny ...string) (*destGuard, error) {
	g := &destGuard{any: len(allow) == 0}
	for _, e := range allow {
		p, err := parseAllowEntry(e)
		if err != nil {
			return nil, err
		}
		if p.IsValid() {
			g.nets = append(g.nets, p)
		} else {
			g.names = append(g.names, strings.ToLower(strings.TrimSuffix(e, ".")))
		}
	}
	for _, d := range deny {
		if d == "" {
			continue
		}
		host, port, err := net.SplitHostPort(d)
		if err != nil {
			return nil, fmt.Errorf("denied address %q: %w", d, err)
		}
		pn, err := strconv.Atoi(port)
		if err != nil || pn <= 0 || pn > 65535 {
			continue // port 0 or a name: nothing fixed to deny
		}
		var a netip.Addr
		switch {
		case host == "" || host == "localhost":
			if host == "" {
				a = netip.IPv4Unspecified()
			} else {
				a = netip.MustParseAddr("127.0.0.1")
			}
		default:
			if a, err = netip.ParseAddr(host); err != nil {
				continue
			}
		}
		g.deny = append(g.deny, netip.AddrPortFrom(a.Unmap(), uint16(pn)))
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					g.local = append(g.local, a.Unmap())
				}
			}
		}
	}
	return g, nil
}

// nameAllowed reports whether host (a name, not an address) is listed.
func (g *destGuard) nameAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range g.names {
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
		} else if host == n {
			return true
		}
	}
	return false
}

// denied reports whether ap is one of vncedge's own listening addresses.
func (g *destGuard) denied(ap netip.AddrPort) bool {
	a := ap.Addr().Unmap()
	if a.IsUnspecified() {
		a = netip.MustParseAddr("127.0.0.1") // connecting to 0.0.0.0 or :: reaches this machine
	}
	for _, d := range g.deny {
		switch {
		case d.Port() != ap.Port():
		case d.Addr() == a:
			return true
		case d.Addr().IsLoopback() && a.IsLoopback():
			return true
		case d.Addr().IsUnspecified() && (a.IsLoopback() || a.IsUnspecified() || slices.Contains(g.local, a)):
			return true
		}
	}
	return false
}

// checkAddr decides on the address a dial connects to; byName says the
// URL's host name was already allowed.
func (g *destGuard) checkAddr(address string, byName bool) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrDestinationDenied, address)
	}
	if g.denied(ap) {
		return fmt.Errorf("%w: %s is vncedge's own", ErrDestinationDenied, address)
	}
	if g.any || byName {
		return nil
	}
	a := ap.Addr().Unmap()
	for _, p := range g.nets {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is outside --upstream-allow", ErrDestinationDenied, address)
}

// control returns a net.Dialer.Control for a dial to the URL host host.
func (g *destGuard) control(host string) func(network, address string, c syscall.RawConn) error {
	if g == nil {
		return nil
	}
	byName := false
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil {
		byName = g.nameAllowed(host)
	}
	return func(_, address string, _ syscall.RawConn) error { return g.checkAddr(address, byName) }
}

// checkURL decides on a URL before any dial, as far as it can without DNS:
// an address literal fully, a name against the allow list (its addresses
// are checked at connect time by control).
func (g *destGuard) checkURL(u *url.URL) error {
	if g == nil || u == nil {
		return nil
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https", "wss":
			port = "443"
		default:
			port = "80"
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return g.checkAddr(netip.AddrPortFrom(a.Unmap(), uint16(atoiPort(port))).String(), false)
	}
	if IsLoopbackHost(host) {
		return g.checkAddr(net.JoinHostPort("127.0.0.1", port), g.nameAllowed(host))
	}
	if !g.any && !g.nameAllowed(host) && len(g.nets) == 0 {
		return fmt.Errorf("%w: %s is outside --upstream-allow", ErrDestinationDenied, host)
	}
	return nil
}

func atoiPort(p string) int {
	n, _ := strconv.Atoi(p)
	return n
}

// vetCDP drops a route's DevTools endpoint when the guard refuses it: the
// clipboard is then off for the session, nothing else is.
func (srv *Server) vetCDP(rt *Route) {
	if rt == nil || rt.CDPURL == "" || srv.guard == nil {
		return
	}
	u, err := url.Parse(rt.CDPURL)
	if err == nil {
		err = srv.guard.checkURL(u)
	}
	if err != nil {
		srv.cfg.Logger.Warn("DevTools endpoint not allowed: clipboard off", "kind", rt.Kind, "id", rt.ID, "err", err.Error())
		rt.CDPURL, rt.CDPHeader = "", nil
	}
}

// DialControl returns a net.Dialer.Control that refuses connections outside
// allow (as Config.UpstreamAllow) or to the never-dialed addresses (deny:
// host:port, e.g. the listen and admin addresses), for dials to the URL
// rawURL: the clipboard's DevTools client gets the upstreams' rule at
// connect time. It returns nil for an empty allow list and no deny list.
func DialControl(rawURL string, allow []string, deny ...string) (func(network, address string, c syscall.RawConn) error, error) {
	g, err := newDestGuard(allow, deny...)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: bad URL", ErrDestinationDenied)
	}
	return g.control(u.Hostname()), nil
}
