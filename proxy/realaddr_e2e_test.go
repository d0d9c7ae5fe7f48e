package proxy_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// proxyDialer dials from source (a loopback address) and, when header is
// set, writes it first, as a load balancer does.
func proxyDialer(source string, header func(src, dst net.Addr) []byte) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || header == nil {
			return c, err
		}
		if _, err := c.Write(header(c.LocalAddr(), c.RemoteAddr())); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

func proxyV(version byte, client string) func(src, dst net.Addr) []byte {
	return func(_, dst net.Addr) []byte {
		src, _ := net.ResolveTCPAddr("tcp", client)
		b, _ := proxyproto.HeaderProxyFromAddrs(version, src, dst).Format()
		return b
	}
}

func fetchThrough(t *testing.T, d rfbclient.Dialer, url string) (*rfbclient.WSConn, error) {
	t.Helper()
	d.Protocols = []string{"binary"}
	ws, err := d.Dial(ctxT(t), url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ws.Close() })
	if _, _, err := rfbclient.Fetch(ws, rfbclient.Options{}); err != nil {
		t.Fatalf("RFB through %s: %v", url, err)
	}
	return ws, nil
}

// TestProxyProtocolPerIP: behind a balancer speaking the PROXY protocol (v1
// and v2), two users from one balancer address are two addresses to
// --max-per-ip 1, the same user twice is refused with 429, a connection
// without a header is refused, and logs name the real address.
func TestProxyProtocolPerIP(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	log := &syncBuffer{}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.ProxyProtocol, cfg.MaxPerIP = true, 1
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	_, addr := startProxy(t, cfg)
	url := "ws://" + addr + "/websockify"

	if _, err := fetchThrough(t, rfbclient.Dialer{NetDial: proxyDialer("127.0.0.1", proxyV(1, "203.0.113.7:40000"))}, url); err != nil {
		t.Fatalf("first user (v1): %v", err)
	}
	if _, err := fetchThrough(t, rfbclient.Dialer{NetDial: proxyDialer("127.0.0.1", proxyV(2, "198.51.100.9:40001"))}, url); err != nil {
		t.Fatalf("second user behind the same balancer (v2): %v", err)
	}
	var se *rfbclient.StatusError
	_, err := fetchThrough(t, rfbclient.Dialer{NetDial: proxyDialer("127.0.0.1", proxyV(2, "203.0.113.7:40002"))}, url)
	if !asStatus(err, &se) || se.Status != http.StatusTooManyRequests {
		t.Errorf("first user again: %v, want 429", err)
	}
	_, err = fetchThrough(t, rfbclient.Dialer{NetDial: proxyDialer("127.0.0.1", nil)}, url)
	if !asStatus(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("no PROXY header: %v, want 400", err)
	}
	out := log.String()
	for _, want := range []string{"viewer=203.0.113.7:40000", "viewer=198.51.100.9:40001", "bad PROXY protocol header"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestProxyProtocolTLS: the PROXY header comes before the TLS handshake.
func TestProxyProtocolTLS(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	dir := t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.ProxyProtocol = true
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	_, addr := startProxy(t, cfg)
	_, port, _ := net.SplitHostPort(addr)
	d := rfbclient.Dialer{TLSConfig: &tls.Config{RootCAs: pool}, NetDial: proxyDialer("127.0.0.1", proxyV(2, "203.0.113.8:40000"))}
	if _, err := fetchThrough(t, d, "wss://localhost:"+port+"/websockify"); err != nil {
		t.Fatal(err)
	}
	if out := log.String(); !strings.Contains(out, "viewer=203.0.113.8:40000") {
		t.Errorf("log lacks the real address:\n%s", out)
	}
}

// TestTrustedForwardedFor: X-Forwarded-For counts only from a trusted peer.
// The ingress at 127.0.0.1 is trusted; 127.0.0.2 is a client connecting
// directly, whose X-Forwarded-For is ignored.
func TestTrustedForwardedFor(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.MaxPerIP = 1
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	log := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	_, addr := startProxy(t, cfg)
	url := "ws://" + addr + "/websockify"
	via := func(source, xff string) rfbclient.Dialer {
		return rfbclient.Dialer{NetDial: proxyDialer(source, nil), Header: http.Header{"X-Forwarded-For": {xff}}}
	}
	if _, err := fetchThrough(t, via("127.0.0.1", "203.0.113.7"), url); err != nil {
		t.Fatalf("user A via the ingress: %v", err)
	}
	if _, err := fetchThrough(t, via("127.0.0.1", "203.0.113.8"), url); err != nil {
		t.Fatalf("user B via the same ingress: %v", err)
	}
	var se *rfbclient.StatusError
	if _, err := fetchThrough(t, via("127.0.0.1", "198.51.100.1, 203.0.113.7"), url); !asStatus(err, &se) || se.Status != 429 {
		t.Errorf("user A again (with a forged hop in front): %v, want 429", err)
	}
	if _, err := fetchThrough(t, via("127.0.0.2", "203.0.113.99"), url); err != nil {
		t.Fatalf("a direct client: %v", err)
	}
	if _, err := fetchThrough(t, via("127.0.0.2", "203.0.113.100"), url); !asStatus(err, &se) || se.Status != 429 {
		t.Errorf("the direct client again with another forged X-Forwarded-For: %v, want 429 (its own address counts)", err)
	}
	if out := log.String(); strings.Contains(out, "203.0.113.99") || !strings.Contains(out, "viewer=203.0.113.7:0") {
		t.Errorf("log: the untrusted forwarded address must not appear, the trusted one must:\n%s", out)
	}
}
