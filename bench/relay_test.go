package bench

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// fakeVNC is a minimal RFB 3.8 server for relay benchmarks: it completes the
// handshake, then either counts the bytes it receives or pushes updates. Its
// loops do not allocate, so allocs/op measures the proxy.
type fakeVNC struct {
	ln       net.Listener
	received atomic.Int64
	push     int // bytes per pushed update; 0 = do not push
	stop     atomic.Bool
	want     atomic.Int64  // when received reaches want, signal reached
	reached  chan struct{} //
}

func startFakeVNC(tb testing.TB, push int) *fakeVNC {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &fakeVNC{ln: ln, push: push, reached: make(chan struct{}, 1)}
	f.want.Store(-1)
	tb.Cleanup(func() { f.stop.Store(true); ln.Close() })
	go f.serve()
	return f
}

func (f *fakeVNC) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *fakeVNC) handle(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
		return
	}
	if _, err := io.ReadFull(c, buf[:12]); err != nil {
		return
	}
	c.Write([]byte{1, 1}) // one security type: None
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return
	}
	c.Write([]byte{0, 0, 0, 0})                        // SecurityResult OK
	if _, err := io.ReadFull(c, buf[:1]); err != nil { // ClientInit
		return
	}
	init := []byte{4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 5, 'b', 'e', 'n', 'c', 'h'}
	c.Write(init)
	if f.push > 0 {
		go func() {
			out := make([]byte, f.push)
			for !f.stop.Load() {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}()
	}
	for {
		n, err := c.Read(buf)
		if got := f.received.Add(int64(n)); got == f.want.Load() {
			f.reached <- struct{}{}
		}
		if err != nil {
			return
		}
	}
}

// wsViewer is a raw WebSocket RFB client over TCP with precomputed frames.
type wsViewer struct {
	c  net.Conn
	br *bufio.Reader
}

func dialViewer(tb testing.TB, addr string) *wsViewer {
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // the listener may still be starting
	}
	if err != nil {
		tb.Fatal(err)
	}
	return viewerOver(tb, c, addr)
}

// viewerOver upgrades c (a connection to vncedge at addr) and completes the
// RFB handshake.
func viewerOver(tb testing.TB, c net.Conn, addr string) *wsViewer {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n", addr, key)
	br := bufio.NewReaderSize(c, 256<<10)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		tb.Fatalf("upgrade: %q %v", status, err)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	accept := base64.StdEncoding.EncodeToString(h[:])
	sawAccept := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if strings.EqualFold(strings.TrimSpace(line), "Sec-WebSocket-Accept: "+accept) {
			sawAccept = true
		}
		if line == "\r\n" {
			break
		}
	}
	if !sawAccept {
		tb.Fatal("bad Sec-WebSocket-Accept")
	}
	v := &wsViewer{c: c, br: br}
	v.readExactly(tb, 12)
	v.send(tb, []byte("RFB 003.008\n"))
	v.readExactly(tb, 2)
	v.send(tb, []byte{1})
	v.readExactly(tb, 4)
	v.send(tb, []byte{1})
	v.readExactly(tb, 24+5)
	return v
}

// maskedFrame builds a masked binary frame carrying payload.
func maskedFrame(payload []byte) []byte {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{0x82, 0x80 | byte(len(payload))}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

func (v *wsViewer) send(tb testing.TB, payload []byte) {
	if _, err := v.c.Write(maskedFrame(payload)); err != nil {
		tb.Fatal(err)
	}
}

// readPayload reads frames until n payload bytes arrived; it does not allocate.
func (v *wsViewer) readPayload(n int64, sink []byte) error {
	var hdr [10]byte
	for n > 0 {
		if _, err := io.ReadFull(v.br, hdr[:2]); err != nil {
			return err
		}
		l := int64(hdr[1] & 0x7f)
		switch l {
		case 126:
			if _, err := io.ReadFull(v.br, hdr[2:4]); err != nil {
				return err
			}
			l = int64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(v.br, hdr[2:10]); err != nil {
				return err
			}
			l = int64(binary.BigEndian.Uint64(hdr[2:10]))
		}
		if hdr[0]&0x0f != 2 {
			return fmt.Errorf("unexpected opcode %d", hdr[0]&0x0f)
		}
		for l > 0 {
			k, err := v.br.Read(sink[:min(int64(len(sink)), l)])
			if err != nil {
				return err
			}
			l -= int64(k)
			n -= int64(k)
		}
	}
	return nil
}

func (v *wsViewer) readExactly(tb testing.TB, n int) {
	if err := v.readPayload(int64(n), make([]byte, n)); err != nil {
		tb.Fatal(err)
	}
}

func startProxy(tb testing.TB, upstream string) string {
	return startProxyWith(tb, upstream, nil)
}

// startProxyWith is startProxy with the listener's TLS configuration.
func startProxyWith(tb testing.TB, upstream string, tlsConf *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, _ := url.Parse(upstream)
	srv, err := proxy.New(proxy.Config{
		Addr: addr, Loops: 1, TLS: tlsConf,
		Resolver: &proxy.TargetResolver{Upstream: u, Control: rfbparse.User},
		Policy:   rfbparse.DefaultPolicy(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(tb.Context()); <-done })
	return addr
}

// BenchmarkRelayKeyEventUp sends one 8-byte KeyEvent per WebSocket frame, as
// noVNC does, through vncedge to a TCP VNC server: ns/frame and allocs/frame.
func BenchmarkRelayKeyEventUp(b *testing.B) {
	vnc := startFakeVNC(b, 0)
	addr := startProxy(b, "tcp://"+vnc.ln.Addr().String())
	v := dialViewer(b, addr)
	defer v.c.Close()
	frame := maskedFrame([]byte{4, 1, 0, 0, 0, 0, 0, 'a'})
	batch := make([]byte, 0, 64*len(frame))
	for range 64 {
		batch = append(batch, frame...)
	}
	base := vnc.received.Load()
	vnc.want.Store(base + int64(8*b.N))
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		k := min(64, b.N-sent)
		if _, err := v.c.Write(batch[:k*len(frame)]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	select {
	case <-vnc.reached:
	case <-time.After(60 * time.Second):
		b.Fatalf("server got %d of %d bytes", vnc.received.Load()-base, 8*b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkRelayUpdateDown pushes 64 KiB server writes through vncedge to the
// viewer: MB/s and allocs per 64 KiB.
func BenchmarkRelayUpdateDown(b *testing.B) {
	const size = 64 << 10
	vnc := startFakeVNC(b, size)
	addr := startProxy(b, "tcp://"+vnc.ln.Addr().String())
	v := dialViewer(b, addr)
	defer v.c.Close()
	sink := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	if err := v.readPayload(int64(b.N)*size, sink); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRelayUpdateDownTLS is BenchmarkRelayUpdateDown with the viewer on
// the TLS listener (--cert): the cost of the handshake-and-bridge design
// against the same run's plain figure.
func BenchmarkRelayUpdateDownTLS(b *testing.B) {
	const size = 64 << 10
	dir := b.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		b.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		b.Fatal(err)
	}
	vnc := startFakeVNC(b, size)
	addr := startProxyWith(b, "tcp://"+vnc.ln.Addr().String(), &tls.Config{Certificates: []tls.Certificate{pair}})
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	v := viewerOver(b, c, addr)
	defer v.c.Close()
	sink := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	if err := v.readPayload(int64(b.N)*size, sink); err != nil {
		b.Fatal(err)
	}
}
