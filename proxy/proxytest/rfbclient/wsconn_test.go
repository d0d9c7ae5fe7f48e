package rfbclient_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
)

// serveOnce accepts one connection on a fresh listener and runs handle with
// the raw connection, the parsed upgrade request and the reader holding any
// bytes after it. It returns the ws:// URL.
func serveOnce(t *testing.T, handle func(c net.Conn, req *http.Request, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Errorf("server: reading request: %v", err)
			return
		}
		handle(c, req, br)
	}()
	return "ws://" + ln.Addr().String() + "/path"
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// frame encodes one unmasked server frame.
func frame(fin bool, op ws.OpCode, payload []byte) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))})
	b.Write(payload)
	return b.Bytes()
}

// readClientFrame reads one frame from the client and unmasks it.
func readClientFrame(r io.Reader) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return h, nil, fmt.Errorf("reading client frame header: %w", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, fmt.Errorf("reading client frame payload: %w", err)
	}
	if !h.Masked {
		return h, p, errors.New("client frame not masked")
	}
	ws.Cipher(p, h.Mask, 0)
	return h, p, nil
}

func TestWSConnFramesPingCloseAndBufferedBytes(t *testing.T) {
	type result struct {
		pong, data, close []byte
		err               error
	}
	res := make(chan result, 1)
	url := serveOnce(t, func(c net.Conn, req *http.Request, br *bufio.Reader) {
		var r result
		defer func() { res <- r }()
		if req.Header.Get("X-Api-Key") != "k" || req.Header.Get("Sec-WebSocket-Protocol") != "binary" {
			r.err = fmt.Errorf("request header %v", req.Header)
			return
		}
		// The 101 response and the first frames in one write: they reach
		// the client's handshake reader together.
		var out bytes.Buffer
		fmt.Fprintf(&out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: binary\r\n\r\n", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
		out.Write(frame(true, ws.OpBinary, []byte("RFB 003.008\n")))
		out.Write(frame(false, ws.OpBinary, []byte("frag-")))
		out.Write(frame(true, ws.OpPing, []byte("p1")))
		out.Write(frame(true, ws.OpContinuation, []byte("end")))
		out.Write(frame(true, ws.OpBinary, nil))
		if _, r.err = c.Write(out.Bytes()); r.err != nil {
			return
		}
		var h ws.Header
		if h, r.pong, r.err = readClientFrame(br); r.err != nil || h.OpCode != ws.OpPong {
			r.err = fmt.Errorf("want pong, got %v: %w", h.OpCode, r.err)
			return
		}
		if _, r.data, r.err = readClientFrame(br); r.err != nil {
			return
		}
		if _, r.err = c.Write(frame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))); r.err != nil {
			return
		}
		_, r.close, r.err = readClientFrame(br)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, url, []string{"binary"}, http.Header{"X-Api-Key": {"k"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if c.Protocol() != "binary" {
		t.Fatalf("protocol %q", c.Protocol())
	}
	got := make([]byte, len("RFB 003.008\nfrag-end"))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "RFB 003.008\nfrag-end" {
		t.Fatalf("read %q", got)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var ce *rfbclient.CloseError
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway || ce.Reason != "bye" {
		t.Fatalf("read after close frame: %v", err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if string(r.pong) != "p1" || string(r.data) != "hello" {
		t.Fatalf("server got pong %q data %q", r.pong, r.data)
	}
	if code, _ := ws.ParseCloseFrameData(r.close); code != ws.StatusGoingAway {
		t.Fatalf("client answered close with %d", code)
	}
}

func TestDialWSStatusError(t *testing.T) {
	url := serveOnce(t, func(c net.Conn, _ *http.Request, _ *bufio.Reader) {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Why: test\r\n\r\nnope!\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := rfbclient.DialWS(ctx, url, nil, nil)
	var se *rfbclient.StatusError
	if !errors.As(err, &se) || se.Status != 403 || string(se.Body) != "nope!\n" || se.Header.Get("X-Why") != "test" {
		t.Fatalf("dial error %v (%+v)", err, se)
	}
}

// TestFetchOverWebSocket runs an RFB session through an in-process
// WebSocket-to-TCP bridge that re-frames the server's bytes arbitrarily.
func TestFetchOverWebSocket(t *testing.T) {
	srv := rfbtest.NewServer(t, rfbtest.Options{UpdateSize: 1 << 20, Seed: 9})
	url := serveOnce(t, func(c net.Conn, req *http.Request, br *bufio.Reader) {
		_ = c.SetDeadline(time.Time{})
		up, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Errorf("bridge: %v", err)
			return
		}
		defer func() { _ = up.Close() }()
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\n\r\n", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
		go func() { // client → server
			for {
				_, p, err := readClientFrame(br)
				if err != nil {
					_ = up.Close()
					return
				}
				if _, err := up.Write(p); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 7777) // odd frame sizes
		for {
			n, err := up.Read(buf)
			if n > 0 {
				if _, werr := c.Write(frame(true, ws.OpBinary, buf[:n])); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	init, fb, err := rfbclient.Fetch(c, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if init.Width != srv.Width() || !bytes.Equal(fb, srv.Framebuffer()) {
		t.Fatal("framebuffer through the WebSocket differs")
	}
	if c.FramesRead() < 100 {
		t.Fatalf("only %d frames read; the bridge should have split the update", c.FramesRead())
	}
	got := srv.Messages()
	if len(got) != 3 || got[0].Type != 0 || got[1].Type != 2 || got[2].Type != 3 {
		t.Fatalf("server recorded %+v", got)
	}
}

func TestVNCAuthResponseMatchesServer(t *testing.T) {
	// The server checks with its own DES key derivation; the two must agree
	// for short, exact and over-long passwords.
	for _, pw := range []string{"a", "12345678", "longer-than-eight"} {
		srv := rfbtest.NewServer(t, rfbtest.Options{Security: rfbtest.SecurityVNCAuth, Password: pw})
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, err = rfbclient.Handshake(conn, rfbclient.Options{Password: pw})
		_ = conn.Close()
		if err != nil {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
	if _, err := rfbclient.VNCAuthResponse("x", make([]byte, 8)); err == nil {
		t.Fatal("short challenge accepted")
	}
}
