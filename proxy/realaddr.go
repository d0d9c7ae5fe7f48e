package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/panjf2000/gnet/v2"
	proxyproto "github.com/pires/go-proxyproto"

	"vncedge/proxy/upgrade"
)

// Real client addresses behind a load balancer: the PROXY protocol (v1 or
// v2, Config.ProxyProtocol) in front of every viewer connection, and the
// X-Forwarded-For or Forwarded fields of the upgrade request, trusted only
// from Config.TrustedProxies. Per-IP caps, logs and spans use the result.
//
// The PROXY header is found in the bytes gnet already read, on the loop:
// proxyHeaderLen says how long it is (or that more bytes are needed), and
// go-proxyproto parses exactly those bytes (one small allocation per
// connection). Behind the TLS listener it is read before the handshake
// (tlsbridge.go).

// maxProxyHeader bounds a PROXY header: v1 is at most 107 bytes; v2 is 16
// plus addresses and TLVs, which balancers keep small.
const maxProxyHeader = 1024

var (
	errNoProxyHeader  = errors.New("connection does not start with a PROXY protocol header")
	errProxyHeaderBig = errors.New("PROXY protocol header too large")
)

// proxyHeaderLen returns the length of the PROXY header at the start of b,
// 0 if b is too short to tell, or an error if b does not start with one.
func proxyHeaderLen(b []byte) (int, error) {
	v1, v2 := []byte("PROXY "), proxyproto.SIGV2
	if len(b) == 0 {
		return 0, nil
	}
	switch b[0] {
	case v1[0]:
		if k := min(len(b), len(v1)); !bytes.Equal(b[:k], v1[:k]) {
			return 0, errNoProxyHeader
		} else if k < len(v1) {
			return 0, nil
		}
		const most = 107 // "PROXY TCP6 " + two addresses and ports + CRLF
		if i := bytes.Index(b[:min(len(b), most)], []byte("\r\n")); i >= 0 {
			return i + 2, nil
		}
		if len(b) >= most {
			return 0, errProxyHeaderBig
		}
		return 0, nil
	case v2[0]:
		if k := min(len(b), len(v2)); !bytes.Equal(b[:k], v2[:k]) {
			return 0, errNoProxyHeader
		}
		if len(b) < 16 {
			return 0, nil
		}
		n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if n > maxProxyHeader {
			return 0, errProxyHeaderBig
		}
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	}
	return 0, errNoProxyHeader
}

// parseProxyHeader parses a complete header (as proxyHeaderLen measured it)
// and returns the client's address, or nil for a LOCAL header (the
// balancer's own health check: the socket's address stands).
func parseProxyHeader(b []byte) (net.Addr, error) {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16)))
	if err != nil {
		return nil, err
	}
	if h.Command.IsLocal() || h.SourceAddr == nil {
		return nil, nil
	}
	return h.SourceAddr, nil
}

// readProxyHeader reads a PROXY header from br (the TLS path, before the
// handshake; the caller bounds the time with a deadline).
func readProxyHeader(br *bufio.Reader) (net.Addr, error) {
	for n := 1; ; {
		b, err := br.Peek(n)
		hl, lerr := proxyHeaderLen(b)
		if lerr != nil {
			return nil, lerr
		}
		if hl > 0 {
			b, _ = br.Peek(hl)
			addr, err := parseProxyHeader(b)
			_, _ = br.Discard(hl)
			return addr, err
		}
		if err != nil {
			return nil, err
		}
		n = max(n+1, min(br.Buffered(), maxProxyHeader)) // what arrived, at least one more
		if n > maxProxyHeader {
			return nil, errProxyHeaderBig
		}
	}
}

// forwardedFor returns the client address the trusted proxies in front of
// peer report in one field — X-Forwarded-For (xff) or, when the operator
// chose it, Forwarded (fwd; xff is then ignored, and the other way round:
// a client must not pick the field its proxy does not write) — or "" when
// peer is not trusted or the field names no address. The chain is read
// from the right, skipping trusted proxies: the first untrusted address is
// the client (a client may prepend anything to the field it sends).
func forwardedFor(peer string, xff, fwd string, trusted []netip.Prefix) string {
	if len(trusted) == 0 || !inPrefixes(peer, trusted) {
		return ""
	}
	var chain []string
	if fwd != "" {
		for _, elem := range strings.Split(fwd, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					chain = append(chain, forwardedNode(v))
				}
			}
		}
	} else {
		for _, a := range strings.Split(xff, ",") {
			chain = append(chain, forwardedNode(strings.TrimSpace(a))) // "ip", "ip:port", "[v6]:port"
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(chain[i])
		if err != nil {
			return "" // an obfuscated or malformed hop: keep the peer's address
		}
		if !inPrefixes(a.String(), trusted) || i == 0 {
			return a.Unmap().String()
		}
	}
	return ""
}

// forwardedNode reads a Forwarded "for" value: "192.0.2.1", "\"[2001:db8::1]:80\"".
func forwardedNode(v string) string {
	v = strings.Trim(v, "\"")
	if strings.HasPrefix(v, "[") {
		if i := strings.IndexByte(v, ']'); i > 0 {
			return v[1:i]
		}
	}
	if h, _, err := net.SplitHostPort(v); err == nil {
		return h
	}
	return v
}

func inPrefixes(ip string, ps []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads a comma-separated list of CIDRs or single addresses
// (--trusted-proxies).
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// readProxy consumes the PROXY header the viewer's connection starts with
// (Config.ProxyProtocol), on the loop. ok is false while the header is
// incomplete or after the connection was refused (act is then the action).
func (s *session) readProxy(c gnet.Conn) (act gnet.Action, ok bool) {
	buf, _ := c.Peek(-1)
	n, err := proxyHeaderLen(buf)
	if err == nil && n == 0 {
		return gnet.None, false // more bytes to come, within HandshakeTimeout
	}
	var addr net.Addr
	if err == nil {
		addr, err = parseProxyHeader(buf[:n])
	}
	if err != nil {
		s.srv.upgradeFailures.Add(1)
		s.logged = true
		s.srv.cfg.Logger.Info("connection refused: bad PROXY protocol header", "peer", addrString(s.viewer.RemoteAddr()), "err", err.Error())
		_, _ = c.Write(upgrade.AppendError(nil, &upgrade.Error{Status: 400, Message: "expected a PROXY protocol header"}))
		s.drop(reasonProxyProtocol)
		return gnet.None, false
	}
	_, _ = c.Discard(n)
	s.proxied = true
	if addr != nil {
		s.remote = addr
	}
	return gnet.None, true
}

// forwardedAddr replaces the viewer's address with the one trusted proxies
// report in the upgrade request, if any.
func (s *session) forwardedAddr(req *upgrade.Request) {
	trusted := s.srv.cfg.TrustedProxies
	if len(trusted) == 0 {
		return
	}
	var a string
	if s.srv.cfg.ForwardedHeader == "forwarded" {
		a = forwardedFor(ipOf(s.remote), "", req.Get("forwarded"), trusted)
	} else {
		a = forwardedFor(ipOf(s.remote), req.Get("x-forwarded-for"), "", trusted)
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		s.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	}
}
