package proxy_test

// Attacks on the operator work (issue 16): --web, the TLS listener's bridge
// and the real-address code. Each test here failed on the code it was
// written against; the comment above each says what the attack is and what
// goes wrong.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// smallRcvbufDialer dials TCP with a small receive buffer, as a viewer on a
// slow or distant link looks to the server: the kernel takes only a little
// of a big response at once.
func smallRcvbufDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// bigWebDir is a --web directory with one file of size bytes, big.bin.
func bigWebDir(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// getBody sends GET target on conn and returns the status and how many body
// bytes arrived before the connection ended, and the read error.
func getBody(conn net.Conn, target string) (int, int64, error) {
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second)) // failure bound only
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// TestOpattackWebBigFileSlowReader — attack: fetch a big file from --web
// over a connection whose receiver takes data slowly (a small receive
// window: any browser far away). serveWeb hands the whole response to
// AsyncWrite and closes the conn in its callback; gnet's close writes what
// the socket takes at once and drops the rest. The browser gets a truncated
// file ("unexpected EOF") for anything bigger than the socket buffers: a
// noVNC bundle over a WAN breaks.
func TestOpattackWebBigFileSlowReader(t *testing.T) {
	const size = 8 << 20
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(bigWebDir(t, size))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	conn, err := smallRcvbufDialer().Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status, n, err := getBody(conn, "/big.bin")
	if status != 200 || n != size || err != nil {
		t.Fatalf("GET /big.bin to a slow reader: status %d, %d of %d body bytes, err %v (response truncated at close)", status, n, size, err)
	}
}

// TestOpattackWebBigFileOverTLS — attack: the same fetch over the TLS
// listener with an ordinary fast client. The response goes through the
// socketpair bridge, whose buffer (about 200 KiB) is all gnet's close can
// fill before it closes: every --web file bigger than that arrives
// truncated over https, whatever the client's speed.
func TestOpattackWebBigFileOverTLS(t *testing.T) {
	const size = 4 << 20
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	pool := tlsListenerConfig(t, &cfg)
	h, err := proxy.WebDir(bigWebDir(t, size))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	status, n, err := getBody(conn, "/big.bin")
	if status != 200 || n != size || err != nil {
		t.Fatalf("GET /big.bin over TLS: status %d, %d of %d body bytes, err %v (response truncated at close)", status, n, size, err)
	}
}

// tlsListenerConfig gives cfg a TLS listener with a test certificate for
// localhost and returns the pool that trusts it.
func tlsListenerConfig(t *testing.T, cfg *proxy.Config) *x509.CertPool {
	t.Helper()
	dir := t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return pool
}

// resetPeakRSS makes VmHWM the current RSS (Linux: clear_refs 5).
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// TestOpattackWebMemoryPerRequest — attack: a few concurrent GETs of one
// big file. Each request's whole response is read into a bytes.Buffer
// (grown by doubling) and then copied again into the serialized response,
// so memory grows by two to three times the file per request in flight,
// and maxWebInFlight (64) counts only the handler, not the queued bytes.
// Measured on the non-race binary with slow readers of a 15 MB file:
// peak RSS 18 → 329 MB for 8 requests, → 757 MB for 64. Memory must not
// scale with file size times requests (stream from the file, bounded by
// the socket, as every other byte queued for a peer is).
func TestOpattackWebMemoryPerRequest(t *testing.T) {
	const size, parallel = 8 << 20, 4
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(bigWebDir(t, size))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	before := memSample()
	resetPeakRSS(t)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := smallRcvbufDialer().Dial("tcp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			_, _, _ = getBody(conn, "/big.bin")
		}()
	}
	wg.Wait()
	grew := statusKB("VmHWM")<<10 - before.rss
	t.Logf("peak RSS grew %.0f MiB for %d concurrent GETs of a %d MiB file", mib(grew), parallel, size>>20)
	if limit := int64(32 << 20); grew > limit {
		t.Errorf("peak RSS grew %.0f MiB (> %.0f MiB) for %d concurrent GETs of a %d MiB file: every response is buffered whole, twice",
			mib(grew), mib(limit), parallel, size>>20)
	}
}

// TestOpattackTLSHandshakesBoundedByMaxConns — attack: open many TCP
// connections to the TLS listener and send nothing (or a ClientHello
// byte by byte). On the plain listener MaxConns sheds the excess at once;
// on the TLS listener each connection gets a goroutine and a descriptor
// for the whole HandshakeTimeout before OnOpen ever counts it, so a flood
// of idle sockets exhausts descriptors (then accept backs off and live
// viewers cannot connect) while MaxConns and MaxPerIP never see it.
func TestOpattackTLSHandshakesBoundedByMaxConns(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			const maxConns, flood = 4, 16
			vnc := rfbtest.NewServer(t, rfbtest.Options{})
			cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
			cfg.MaxConns = maxConns
			cfg.HandshakeTimeout = time.Minute
			if useTLS {
				tlsListenerConfig(t, &cfg)
			}
			_, addr := startProxy(t, cfg)
			conns := make([]net.Conn, flood)
			for i := range conns {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
			}
			// Each excess connection must be closed by the server; the
			// deadline is the failure bound only.
			closed := make(chan struct{}, flood)
			for _, c := range conns {
				go func() {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Read(make([]byte, 1)); err != nil && !os.IsTimeout(err) {
						closed <- struct{}{}
					}
				}()
			}
			want := flood - maxConns
			timeout := time.After(5 * time.Second)
			for got := 0; got < want; got++ {
				select {
				case <-closed:
				case <-timeout:
					t.Fatalf("%s listener: %d of %d idle connections closed by the server in 5 s, want at least %d (MaxConns %d)", name, got, flood, want, maxConns)
				}
			}
		})
	}
}

// bridgeGoroutines counts goroutines running the TLS bridge.
func bridgeGoroutines() int {
	n := 0
	for _, g := range goroutines() {
		if strings.Contains(g, "proxy.(*Server).serveTLS") || strings.Contains(g, "proxy.bridge.func") {
			n++
		}
	}
	return n
}

// TestOpattackTLSBridgeOutlivesShutdown — attack: a TLS viewer that
// upgrades and then never reads, while the desktop pushes. The session
// ends (here: Shutdown, which waits for the sessions), but the bridge's
// loop→viewer goroutine stays blocked in tls.Conn.Write until
// tlsWriteTimeout (60 s): two goroutines, the TLS conn, the socketpair end
// and ~32 KiB buffers per such viewer outlive the session and the Server
// (Shutdown returns with them still running). A viewer can repeat this to
// hold resources MaxConns no longer counts.
func TestOpattackTLSBridgeOutlivesShutdown(t *testing.T) {
	push := startPushServer(t, 256<<20)
	cfg := targetConfig(t, "tcp://"+push.ln.Addr().String(), rfbparse.User)
	pool := tlsListenerConfig(t, &cfg)
	_, addr, stop := startOwnedProxy(t, cfg)
	d := rfbclient.Dialer{Protocols: []string{"binary"}, TLSConfig: &tls.Config{RootCAs: pool},
		NetDial: smallRcvbufDialer().DialContext}
	_, port, _ := net.SplitHostPort(addr)
	v, err := d.Dial(ctxT(t), "wss://localhost:"+port+"/websockify")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	viewerHandshake(t, v)
	// The viewer reads no more: wait until the desktop cannot write.
	select {
	case <-push.stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the push server never stalled")
	}
	stop() // ends the session and the server
	deadline := time.Now().Add(5 * time.Second)
	for bridgeGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d TLS bridge goroutines still run 5 s after Shutdown returned (they wait for tlsWriteTimeout)", bridgeGoroutines())
		}
		time.Sleep(20 * time.Millisecond) // polling an observable state, not synchronisation
	}
}

// forwardedViaIngress upgrades through a trusted ingress at 127.0.0.1
// with the given request header and returns the viewer address the
// session-start line names.
func forwardedViaIngress(t *testing.T, h http.Header) string {
	t.Helper()
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	log := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	_, addr := startProxy(t, cfg)
	d := rfbclient.Dialer{NetDial: proxyDialer("127.0.0.1", nil), Header: h}
	if _, err := fetchThrough(t, d, "ws://"+addr+"/websockify"); err != nil {
		t.Fatalf("upgrade via the ingress: %v", err)
	}
	for line := range strings.SplitSeq(log.String(), "\n") {
		if strings.Contains(line, "session start") {
			for f := range strings.FieldsSeq(line) {
				if v, ok := strings.CutPrefix(f, "viewer="); ok {
					return v
				}
			}
		}
	}
	t.Fatalf("no session-start line:\n%s", log.String())
	return ""
}

// TestOpattackForwardedOverridesXFF — attack: the ingress writes only
// X-Forwarded-For (ingress-nginx, most balancers) and passes other fields
// through; the client adds "Forwarded: for=203.0.113.66". forwardedFor
// reads Forwarded whenever it is present and never looks at the
// ingress's X-Forwarded-For, so the client chooses its address. Which
// field the trusted proxies write must be the operator's choice (or both
// must agree), not the client's.
func TestOpattackForwardedOverridesXFF(t *testing.T) {
	got := forwardedViaIngress(t, http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=203.0.113.66"}})
	if strings.HasPrefix(got, "203.0.113.66:") {
		t.Errorf("viewer %s: the client's own Forwarded field overrode the ingress's X-Forwarded-For", got)
	}
}

// TestOpattackForwardedForWithPort — attack (interoperability, careless
// operator): Azure Application Gateway and IIS/ARR write the client's
// port into X-Forwarded-For ("198.51.100.7:50123", "[2001:db8::7]:443").
// forwardedFor parses each hop with netip.ParseAddr, fails, and keeps the
// ingress's own address: every user behind that gateway shares one per-IP
// bucket (--max-per-ip 1 → 429 for the second user) — the problem
// --trusted-proxies was built to solve.
func TestOpattackForwardedForWithPort(t *testing.T) {
	for xff, want := range map[string]string{
		"198.51.100.7:50123":         "198.51.100.7:",
		"[2001:db8::7]:443":          "[2001:db8::7]:",
		"10.1.1.1, 203.0.113.9:8443": "203.0.113.9:",
	} {
		if got := forwardedViaIngress(t, http.Header{"X-Forwarded-For": {xff}}); !strings.HasPrefix(got, want) {
			t.Errorf("X-Forwarded-For %q: viewer %s, want %s…", xff, got, want)
		}
	}
}

// TestOpattackTLSHandshakeFailuresVisible — attack: send garbage (or an
// old TLS client, or a client that rejects the certificate) to the TLS
// listener. serveTLS logs the failure at Debug only and counts it nowhere:
// at the default level a handshake flood, or every browser refusing a
// wrongly renewed certificate, leaves no trace in the log or in
// Stats/metrics (a bad PROXY header, by contrast, is logged at Info and
// counted in UpgradeFailures).
func TestOpattackTLSHandshakeFailuresVisible(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	tlsListenerConfig(t, &cfg)
	log := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, addr := startProxy(t, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /websockify HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // failure bound only
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the server did not close the garbage connection: %v", err)
	}
	// The server closed it after the failed handshake (logged, if at all,
	// just before the close).
	if st := srv.Stats(); st.UpgradeFailures == 0 && !strings.Contains(log.String(), "TLS") {
		t.Errorf("a failed TLS handshake left no trace: stats %+v, info log %q", st, log.String())
	}
}

// TestOpattackTLSSlowlorisDoubleTimeout — attack: a slowloris over TLS.
// HandshakeTimeout ("the viewer's HTTP request head must arrive within")
// is applied twice: once to the TLS handshake in serveTLS, then afresh to
// the request head from OnOpen. A client that finishes the handshake just
// in time and then trickles its request holds its descriptor and
// goroutines for up to 2× HandshakeTimeout (3× with --proxy-protocol,
// whose header gets its own deadline too). Here: T = 2 s, the handshake
// ends at about 1.2 s, the upgrade request is sent at about 2.4 s — after
// T — and is still upgraded.
func TestOpattackTLSSlowlorisDoubleTimeout(t *testing.T) {
	const T = 2 * time.Second
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	pool := tlsListenerConfig(t, &cfg)
	cfg.HandshakeTimeout = T
	_, addr := startProxy(t, cfg)
	start := time.Now()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(T * 6 / 10) // the attack: take most of T before the ClientHello
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := c.Handshake(); err != nil {
		t.Skipf("handshake at %v failed (too slow a machine for this timing): %v", time.Since(start), err)
	}
	time.Sleep(time.Until(start.Add(T * 12 / 10))) // the attack: then trickle past T
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, "GET /websockify HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
	if err == nil {
		resp, rerr := http.ReadResponse(bufio.NewReader(c), nil)
		if rerr == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			t.Errorf("upgraded %v after connecting, HandshakeTimeout %v: the TLS handshake and the request head each got the full timeout", time.Since(start).Round(time.Millisecond), T)
		}
	}
}

// TestOpattackWebSymlinkToDotDir — attack: webFS refuses dot-files by the
// requested name only. A symlink inside --web with an ordinary name that
// points at a dot-directory in the same tree ("current -> .git", a deploy
// tool's ".releases/…") is followed by os.Root (it stays inside the
// root), and the dot-directory's files are served: GET /gitlink/config
// returns .git/config.
func TestOpattackWebSymlinkToDotDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "config"), []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".git", filepath.Join(dir, "gitlink")); err != nil {
		t.Fatal(err)
	}
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp := rawGet(t, conn, "GET", "/gitlink/config")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "s3cret") {
		t.Errorf("GET /gitlink/config: %d %q, want 404 (a dot-directory behind a symlink)", resp.StatusCode, body)
	}
}

// TestOpattackWeb304ContentLength — attack (protocol correctness): a
// conditional GET (If-Modified-Since, as every browser revalidating noVNC
// sends) gets "304 Not Modified" with "Content-Length: 0": webResponse
// adds a Content-Length of the empty body to every response. RFC 9110
// §8.6: a 304 may carry Content-Length only with the value a 200 would
// have; a cache may take 0 as the file's new length.
func TestOpattackWeb304ContentLength(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(webDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	get := func(extra string) *http.Response {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "GET /app/rfb.js HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	lm := get("").Header.Get("Last-Modified")
	resp := get("If-Modified-Since: " + lm + "\r\n")
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %d, want 304", resp.StatusCode)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != "17" {
		t.Errorf("304 carries Content-Length %s (the 200 has 17)", cl)
	}
}

// TestOpattackWebH2CUpgradeIgnored — attack (interoperability): a client
// that offers an HTTP/2 cleartext upgrade ("curl --http2 http://edge/",
// some proxies and libraries do) sends "Upgrade: h2c". isWebRequest
// treats any Upgrade field as a WebSocket attempt, so --web answers 400
// "Upgrade header does not name websocket" instead of the file. RFC 9110
// §7.8: a server that does not take an offered upgrade ignores the field
// and answers the request.
func TestOpattackWebH2CUpgradeIgnored(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(webDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	_, addr := startProxy(t, cfg)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /app/rfb.js HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(body) != "export default 1;" {
		t.Errorf("GET with Upgrade: h2c: %d %q, want 200 and the file", resp.StatusCode, body)
	}
}

// TestOpattackWebRequestsAreNotSessions — attack (operability): load a
// page from --web. Every static-file request is a session to the
// counters: Stats().Total (the stopped line's "sessions_total", /readyz's
// "total") and Active while it is served. One noVNC page load is ~40
// requests, so the totals an operator reads say 40 sessions where there
// was none.
func TestOpattackWebRequestsAreNotSessions(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	h, err := proxy.WebDir(webDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Web = h
	srv, addr := startProxy(t, cfg)
	for range 3 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		resp := rawGet(t, conn, "GET", "/app/rfb.js")
		_, _ = io.ReadAll(resp.Body)
		conn.Close()
	}
	if st := srv.Stats(); st.Total != 0 {
		t.Errorf("3 static-file requests and no session: stats %+v, want Total 0", st)
	}
}

// TestOpattackTLSHandshakeAcrossShutdown — attack: a TLS viewer whose
// handshake is in flight when Shutdown runs (a client that connects and
// sends its ClientHello a moment later, or any slow one). Shutdown stops
// the event loops and returns; the handshake then completes (the server
// still answers it) and serveTLS calls loops.EnrollContext on the stopped
// gnet client, which waits forever for a loop that will never run: the
// goroutine, the viewer's socket and both socketpair ends leak for the
// life of the process and the viewer hangs with an open TLS connection
// nobody serves. (The binary exits after Shutdown; an embedder of
// proxy.Server does not.)
func TestOpattackTLSHandshakeAcrossShutdown(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
	pool := tlsListenerConfig(t, &cfg)
	_, addr, stop := startOwnedProxy(t, cfg)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for bridgeGoroutines() == 0 { // the server has accepted it and waits for the ClientHello
		if time.Now().After(deadline) {
			t.Fatal("the TLS listener never took the connection")
		}
		time.Sleep(5 * time.Millisecond) // polling an observable state, not synchronisation
	}
	stop()
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	_ = raw.SetDeadline(time.Now().Add(3 * time.Second)) // failure bound only
	if err := c.Handshake(); err == nil {
		if _, err := c.Read(make([]byte, 1)); os.IsTimeout(err) {
			t.Errorf("after Shutdown, the TLS handshake completed and the connection was left open, unserved")
		}
	}
	deadline = time.Now().Add(3 * time.Second)
	for bridgeGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("serveTLS still runs after Shutdown (blocked in EnrollContext on stopped loops)")
		}
		time.Sleep(20 * time.Millisecond) // polling an observable state, not synchronisation
	}
}
