package rfbtest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
)

func dial(t *testing.T, srv *rfbtest.Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeVersionsAndSecurity(t *testing.T) {
	for _, sv := range []string{"3.3", "3.7", "3.8"} {
		for _, cv := range []string{"3.3", "3.7", "3.8"} {
			for _, sec := range []byte{rfbtest.SecurityNone, rfbtest.SecurityVNCAuth} {
				t.Run(fmt.Sprintf("server%s/client%s/sec%d", sv, cv, sec), func(t *testing.T) {
					srv := rfbtest.NewServer(t, rfbtest.Options{Version: sv, Security: sec, Password: "pw"})
					c, err := rfbclient.Handshake(dial(t, srv), rfbclient.Options{Version: cv, Password: "pw"})
					if err != nil {
						t.Fatal(err)
					}
					init := c.Init()
					want := min(sv, cv) // "3.3" < "3.7" < "3.8"
					if init.Version != want || init.Security != sec || init.Width != 64 || init.Height != 48 ||
						init.Name != rfbtest.Name || init.Format != rfbclient.TrueColor32() {
						t.Fatalf("ServerInit %+v", init)
					}
					conn, err := srv.WaitConn(ctxT(t))
					if err != nil {
						t.Fatal(err)
					}
					if err := conn.WaitReady(ctxT(t)); err != nil {
						t.Fatal(err)
					}
					if got := conn.ClientVersion(); got != "RFB 003.00"+want[2:]+"\n" {
						t.Fatalf("server saw client version %q", got)
					}
					if !conn.Shared() {
						t.Fatal("shared flag not set")
					}
					if sec == rfbtest.SecurityVNCAuth && len(conn.AuthResponse()) != 16 {
						t.Fatalf("auth response %x", conn.AuthResponse())
					}
				})
			}
		}
	}
}

func TestVNCAuthWrongPassword(t *testing.T) {
	for _, v := range []string{"3.3", "3.8"} {
		t.Run(v, func(t *testing.T) {
			srv := rfbtest.NewServer(t, rfbtest.Options{Version: v, Security: rfbtest.SecurityVNCAuth, Password: "right"})
			_, err := rfbclient.Handshake(dial(t, srv), rfbclient.Options{Password: "wrong"})
			if err == nil || !strings.Contains(err.Error(), "security failed") {
				t.Fatalf("handshake error %v, want a security failure", err)
			}
			conn, err := srv.WaitConn(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.WaitDone(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if conn.Err() == nil || len(srv.Errors()) != 1 {
				t.Fatalf("conn error %v, server errors %v", conn.Err(), srv.Errors())
			}
		})
	}
}

func TestBigUpdateIntact(t *testing.T) {
	const size = 4 << 20
	srv := rfbtest.NewServer(t, rfbtest.Options{UpdateSize: size, Seed: 3})
	if srv.Width()*srv.Height()*4 < size {
		t.Fatalf("framebuffer %dx%d smaller than %d bytes", srv.Width(), srv.Height(), size)
	}
	want := srv.Framebuffer()
	if bytes.Equal(want[:size/2], want[size/2:]) {
		t.Fatal("pattern repeats")
	}
	c, err := rfbclient.Handshake(dial(t, srv), rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if err := c.SetEncodings(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		fb, err := c.ReadFull()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fb, want) {
			t.Fatalf("update %d differs from the server's framebuffer", i)
		}
	}
	if n := srv.UpdatesSent(); n != 2 {
		t.Fatalf("server sent %d updates, want 2", n)
	}
}

func TestHoldIncremental(t *testing.T) {
	srv := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	c, err := rfbclient.Handshake(dial(t, srv), rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Request(true, 0, 0, 64, 48); err != nil {
		t.Fatal(err)
	}
	if err := c.RequestFull(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for i := 0; i < 2; i++ {
		if _, err := srv.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ReadUpdate(); err != nil {
		t.Fatal(err)
	}
	if n := srv.UpdatesSent(); n != 1 {
		t.Fatalf("server sent %d updates, want 1", n)
	}
}

// allMessages returns one client message of every type the server knows,
// several with variable lengths.
func allMessages() [][]byte {
	u16 := func(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
	u32 := func(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	pf := make([]byte, 16)
	pf[0] = 32
	return [][]byte{
		cat([]byte{0, 0, 0, 0}, pf),
		cat([]byte{2, 0}, u16(2), u32(0), u32(-316)),
		{3, 0, 0, 0, 0, 0, 0, 64, 0, 48},
		{4, 1, 0, 0, 0, 0, 0xff, 0xe3},
		{5, 0x01, 0, 10, 0, 20},
		{5, 0x80, 0, 10, 0, 20, 0x01}, // extended buttons after -316
		cat([]byte{6, 0, 0, 0}, u32(5), []byte("hello")),
		cat([]byte{6, 0, 0, 0}, u32(-6), []byte{0, 0, 0, 1, 'a', 'b'}),
		{150, 1, 0, 0, 0, 0, 0, 64, 0, 48},
		cat([]byte{248, 0, 0, 0}, u32(1), []byte{3, 'a', 'b', 'c'}),
		{250, 0, 1, 2},
		cat([]byte{251, 0}, u16(64), u16(48), []byte{2, 0}, make([]byte, 32)),
		cat([]byte{253, 0x80 | 1}, u16(3), []byte{1, 2, 3}),      // big-endian length
		cat([]byte{253, 1}, []byte{2, 0}, []byte{1, 2}),          // little-endian length
		cat([]byte{255, 0}, u16(1), u32(0x61), u32(0x1e)),        // ExtendedKeyEvent
		cat([]byte{255, 1}, u16(0)),                              // audio enable
		cat([]byte{255, 1}, u16(2), []byte{0, 2}, u32(44100)),    // audio set format
		cat([]byte{2, 0}, u16(1), u32(0)), {5, 0x80, 0, 1, 0, 2}, // -316 gone: 6 bytes again
	}
}

func TestMessagesRecordedInOrder(t *testing.T) {
	srv := rfbtest.NewServer(t, rfbtest.Options{})
	conn := dial(t, srv)
	c, err := rfbclient.Handshake(conn, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := allMessages()
	var stream []byte
	for _, m := range msgs {
		stream = append(stream, m...)
	}
	// Byte by byte, so the parser sees every split.
	go func() {
		for i := range stream {
			if _, err := conn.Write(stream[i : i+1]); err != nil {
				return
			}
		}
	}()
	ctx := ctxT(t)
	for i, want := range msgs {
		got, err := srv.Next(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Type != want[0] || !bytes.Equal(got.Raw, want) {
			t.Fatalf("message %d = type %d % x, want % x", i, got.Type, got.Raw, want)
		}
	}
	if all := srv.Messages(); len(all) != len(msgs) {
		t.Fatalf("Messages() has %d, want %d", len(all), len(msgs))
	}
	// The FramebufferUpdateRequest in the stream was answered.
	if _, err := c.ReadUpdate(); err != nil {
		t.Fatal(err)
	}
	if errs := srv.Errors(); len(errs) != 0 {
		t.Fatalf("server errors: %v", errs)
	}
}

func TestUnknownTypeClosesWithError(t *testing.T) {
	srv := rfbtest.NewServer(t, rfbtest.Options{})
	conn := dial(t, srv)
	c, err := rfbclient.Handshake(conn, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRaw([]byte{7, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	sc, err := srv.WaitConn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.WaitDone(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if sc.Err() == nil || !strings.Contains(sc.Err().Error(), "unknown client message type 7") {
		t.Fatalf("conn error %v", sc.Err())
	}
	if _, err := c.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Fatalf("client read after close: %v, want EOF", err)
	}
	if len(srv.Errors()) != 1 {
		t.Fatalf("server errors %v", srv.Errors())
	}
}

func TestPushAndSequentialConnections(t *testing.T) {
	srv := rfbtest.NewServer(t, rfbtest.Options{})
	if err := srv.Push([]byte{2}); err == nil {
		t.Fatal("push without a connection succeeded")
	}
	for i := 0; i < 3; i++ {
		conn := dial(t, srv)
		c, err := rfbclient.Handshake(conn, rfbclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := srv.WaitConn(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if sc.Index() != i {
			t.Fatalf("connection index %d, want %d", sc.Index(), i)
		}
		if err := sc.WaitReady(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		cut := append([]byte{3, 0, 0, 0, 0, 0, 0, 2}, 'h', byte('0'+i))
		if err := srv.Push(append([]byte{2}, cut...)); err != nil { // Bell, ServerCutText
			t.Fatal(err)
		}
		if m, err := c.ReadMessage(); err != nil || m.Type != rfbclient.MsgBell {
			t.Fatalf("first pushed message %+v, %v", m, err)
		}
		if m, err := c.ReadMessage(); err != nil || !bytes.Equal(m.Raw, cut) {
			t.Fatalf("second pushed message %+v, %v", m, err)
		}
		_ = conn.Close()
		if err := sc.WaitDone(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if sc.Err() != nil {
			t.Fatalf("clean close recorded as %v", sc.Err())
		}
	}
}

func TestPattern(t *testing.T) {
	a, b := rfbtest.Pattern(1, 1024), rfbtest.Pattern(2, 1024)
	if bytes.Equal(a, b) || !bytes.Equal(a, rfbtest.Pattern(1, 1024)) {
		t.Fatal("pattern is not a deterministic function of the seed")
	}
	if !bytes.Equal(rfbtest.Pattern(1, 1024)[:512], rfbtest.Pattern(1, 512)) {
		t.Fatal("pattern prefix depends on length")
	}
}
