package fuzz

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/wsframe"
	"vncedge/rfbparse"
)

// testKey is the sample Sec-WebSocket-Key of RFC 6455 §1.3.
const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeHead returns a valid upgrade request head for path.
func upgradeHead(path string, extra ...string) string {
	h := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n"
}

// viewer is a raw WebSocket client over TCP that can send anything and
// checks everything the proxy sends: frames must decode as server frames,
// and nothing may follow a close frame.
type viewer struct {
	c   net.Conn
	br  *bufio.Reader
	dec wsframe.Decoder

	wmu       sync.Mutex
	closeSent bool

	data       []byte   // payload of all data frames
	msgs       [][]byte // complete data messages
	cur        []byte
	closeCode  int // -1 until a close frame arrives; 1005 for one without a code
	closeWhy   string
	afterClose bool // data or control frames after the close frame
	frameErr   error
	eof        bool
}

// openViewer sends an upgrade request for path and reads the answer. A 101
// gives a viewer; any other status is returned with a nil viewer.
func openViewer(t testing.TB, addr, head string) (*viewer, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		c.Close()
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Fatalf("reading the answer to the upgrade: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.ReadAll(resp.Body)
		rest, err := io.ReadAll(br) // the proxy must close after the answer
		c.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) || len(rest) > 0 {
			t.Fatalf("after HTTP %d: %q %v", resp.StatusCode, rest, err)
		}
		return nil, resp
	}
	v := &viewer{c: c, br: br, closeCode: -1}
	v.dec.Role, v.dec.AllowText = wsframe.Client, true
	return v, resp
}

func (v *viewer) OnData(_ ws.OpCode, p []byte, fin bool) error {
	if v.closeCode >= 0 {
		v.afterClose = true
	}
	v.data = append(v.data, p...)
	v.cur = append(v.cur, p...)
	if fin {
		v.msgs = append(v.msgs, v.cur)
		v.cur = nil
	}
	return nil
}

func (v *viewer) OnControl(op ws.OpCode, p []byte) error {
	if v.closeCode >= 0 {
		v.afterClose = true
		return nil
	}
	switch op {
	case ws.OpPing:
		_ = v.write(frame(ws.OpPong, p, true))
	case ws.OpClose:
		v.closeCode = int(ws.StatusNoStatusRcvd)
		if len(p) >= 2 {
			v.closeCode, v.closeWhy = int(binary.BigEndian.Uint16(p)), string(p[2:])
		}
		v.sendClose(p[:min(len(p), 2)])
	}
	return nil
}

// frame builds a masked client frame.
func frame(op ws.OpCode, payload []byte, fin bool) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}, Length: int64(len(payload))}
	b := make([]byte, wsframe.HeaderSize(h), wsframe.HeaderSize(h)+len(payload))
	wsframe.PutHeader(b, h)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], h.Mask, 0)
	return b
}

// closeFrame builds a masked close frame with code and reason.
func closeFrame(code uint16, reason string) []byte {
	return frame(ws.OpClose, append(binary.BigEndian.AppendUint16(nil, code), reason...), true)
}

func (v *viewer) write(b []byte) error {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if v.closeSent {
		return net.ErrClosed
	}
	_, err := v.c.Write(b)
	return err
}

// sendClose sends a close frame once; nothing is written after it.
func (v *viewer) sendClose(payload []byte) {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if !v.closeSent {
		v.closeSent = true
		_, _ = v.c.Write(frame(ws.OpClose, payload, true))
	}
}

// readMore reads once from the conn and decodes what came.
func (v *viewer) readMore() error {
	var buf [32 << 10]byte
	n, err := v.br.Read(buf[:])
	if n > 0 && v.frameErr == nil {
		if ferr := v.dec.Feed(buf[:n], v); ferr != nil {
			v.frameErr = ferr
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		v.eof = true
	}
	return err
}

// readRFB returns the next n RFB bytes the proxy relays.
func (v *viewer) readRFB(n int) ([]byte, error) {
	for len(v.data) < n {
		if v.closeCode >= 0 || v.frameErr != nil {
			return nil, fmt.Errorf("closed (%d %q, %v) while waiting for %d RFB bytes", v.closeCode, v.closeWhy, v.frameErr, n)
		}
		if err := v.readMore(); err != nil {
			return nil, err
		}
	}
	b := v.data[:n]
	v.data = v.data[n:]
	return b, nil
}

// nextMessage returns the next complete data message (message channel).
func (v *viewer) nextMessage() ([]byte, error) {
	for len(v.msgs) == 0 {
		if v.closeCode >= 0 || v.frameErr != nil {
			return nil, fmt.Errorf("closed (%d %q, %v) while waiting for a message", v.closeCode, v.closeWhy, v.frameErr)
		}
		if err := v.readMore(); err != nil {
			return nil, err
		}
	}
	m := v.msgs[0]
	v.msgs = v.msgs[1:]
	return m, nil
}

// drain reads until the proxy closes the conn. It returns an error when the
// conn does not end (deadline) or ends other than by EOF or reset.
func (v *viewer) drain() error {
	for !v.eof {
		if err := v.readMore(); err != nil && !v.eof {
			return err
		}
	}
	return nil
}

// handshake runs a 3.8 None RFB handshake over binary frames.
func (v *viewer) handshake() error {
	if b, err := v.readRFB(12); err != nil || string(b) != "RFB 003.008\n" {
		return fmt.Errorf("server version %q: %v", b, err)
	}
	if err := v.write(frame(ws.OpBinary, []byte("RFB 003.008\n"), true)); err != nil {
		return err
	}
	if b, err := v.readRFB(2); err != nil || b[0] != 1 || b[1] != 1 {
		return fmt.Errorf("security types % x: %v", b, err)
	}
	if err := v.write(frame(ws.OpBinary, []byte{1}, true)); err != nil {
		return err
	}
	if b, err := v.readRFB(4); err != nil || binary.BigEndian.Uint32(b) != 0 {
		return fmt.Errorf("security result % x: %v", b, err)
	}
	if err := v.write(frame(ws.OpBinary, []byte{1}, true)); err != nil {
		return err
	}
	si, err := v.readRFB(24)
	if err != nil {
		return err
	}
	_, err = v.readRFB(int(binary.BigEndian.Uint32(si[20:])))
	return err
}

// processTB stands in for a testing.TB for fixtures that live as long as the
// test process (the fuzz targets share one proxy across inputs).
type processTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func (p *processTB) Helper() {}

func (p *processTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

func (p *processTB) run() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}

// startProxy runs a proxy until stop is called.
func startProxy(cfg proxy.Config) (srv *proxy.Server, addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	cfg.Addr = ln.Addr().String()
	ln.Close()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Loops == 0 {
		cfg.Loops = 1
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = -1
	}
	srv, err = proxy.New(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return nil, "", nil, fmt.Errorf("proxy did not start: %w", err)
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	return srv, cfg.Addr, stop, nil
}

// targetConfig relays every path to upstream with the default policy.
func targetConfig(upstream string, control rfbparse.Interactor) proxy.Config {
	u, err := url.Parse(upstream)
	if err != nil {
		panic(err)
	}
	return proxy.Config{
		Resolver: &proxy.TargetResolver{Upstream: u, Control: control},
		Policy:   rfbparse.DefaultPolicy(),
	}
}

// awaitIdle polls (bounded) until the proxy has no session left.
func awaitIdle(srv *proxy.Server) error {
	for i := 0; i < 5000; i++ {
		if srv.Stats().Active == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%d sessions still active after 5s", srv.Stats().Active)
}

// proxyCloseCodes are the codes the proxy may send on its own.
var proxyCloseCodes = map[int]bool{1000: true, 1001: true, 1002: true, 1003: true, 1007: true, 1008: true, 1009: true, 1011: true}
