// Package loadgen is the load generator shared by the peer benchmarks and
// bench/cmd/vncbench: RFB clients over WebSocket, the matching RFB server
// (raw TCP and WebSocket), the contenders that are not vncedge (a raw TCP relay
// and a gorilla/websocket proxy), and /proc accounting.
package loadgen

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ErrClosed is returned when the peer sent a WebSocket close frame.
var ErrClosed = errors.New("loadgen: websocket closed by peer")

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Client is one RFB viewer over WebSocket. Its reader parses server frames in
// place and hands out payload runs without copying.
type Client struct {
	conn net.Conn
	buf  []byte
	r, w int
	left int64 // payload bytes left in the current frame
	ctl  bool  // current frame is a control frame (payload skipped)
}

// Dial opens a WebSocket to addr (host:port) and completes the RFB 3.8
// handshake (security None) through whatever sits in between.
func Dial(addr string, timeout time.Duration) (*Client, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &Client{conn: conn, buf: make([]byte, 4<<10)}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := c.handshake(addr); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection without a close handshake, with a reset so
// that thousands of benchmark sessions leave no TIME_WAIT behind.
func (c *Client) Close() error {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.conn.Close()
}

func (c *Client) handshake(addr string) error {
	key := base64.StdEncoding.EncodeToString([]byte("vncbench-key-016"))
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
	if _, err := io.WriteString(c.conn, req); err != nil {
		return err
	}
	// Read the response head; bytes after it stay in buf as frame data.
	for {
		if i := bytes.Index(c.buf[:c.w], []byte("\r\n\r\n")); i >= 0 {
			head := string(c.buf[:i])
			c.r = i + 4
			if !strings.HasPrefix(head, "HTTP/1.1 101") {
				return fmt.Errorf("upgrade refused: %q", strings.SplitN(head, "\r\n", 2)[0])
			}
			h := sha1.Sum([]byte(key + wsGUID))
			if !strings.Contains(strings.ToLower(head), strings.ToLower(base64.StdEncoding.EncodeToString(h[:]))) {
				return errors.New("bad Sec-WebSocket-Accept")
			}
			break
		}
		if c.w == len(c.buf) {
			return errors.New("upgrade response too long")
		}
		n, err := c.conn.Read(c.buf[c.w:])
		c.w += n
		if err != nil {
			return err
		}
	}
	var b [64]byte
	if err := c.ReadFull(b[:12]); err != nil {
		return fmt.Errorf("ProtocolVersion: %w", err)
	}
	if string(b[:4]) != "RFB " {
		return fmt.Errorf("not RFB: %q", b[:12])
	}
	if err := c.Send(maskFrame([]byte("RFB 003.008\n"))); err != nil {
		return err
	}
	if err := c.ReadFull(b[:1]); err != nil {
		return err
	}
	n := int(b[0])
	if n == 0 || c.ReadFull(b[:n]) != nil || bytes.IndexByte(b[:n], 1) < 0 {
		return errors.New("server does not offer security None")
	}
	if err := c.Send(maskFrame([]byte{1})); err != nil {
		return err
	}
	if err := c.ReadFull(b[:4]); err != nil || binary.BigEndian.Uint32(b[:4]) != 0 {
		return fmt.Errorf("SecurityResult: %v %x", err, b[:4])
	}
	if err := c.Send(maskFrame([]byte{1})); err != nil { // ClientInit, shared
		return err
	}
	if err := c.ReadFull(b[:24]); err != nil {
		return fmt.Errorf("ServerInit: %w", err)
	}
	nameLen := int(binary.BigEndian.Uint32(b[20:24]))
	if nameLen > len(b) {
		return errors.New("ServerInit name too long")
	}
	return c.ReadFull(b[:nameLen])
}

// Send writes bytes (already framed) to the connection.
func (c *Client) Send(frames []byte) error {
	_, err := c.conn.Write(frames)
	return err
}

// ReadFull reads exactly len(p) payload bytes.
func (c *Client) ReadFull(p []byte) error {
	for len(p) > 0 {
		run, err := c.Next()
		if err != nil {
			return err
		}
		// Next never returns more than is buffered; give back what p cannot take.
		k := copy(p, run)
		if k < len(run) {
			c.r -= len(run) - k
			c.left += int64(len(run) - k)
		}
		p = p[k:]
	}
	return nil
}

// Grow replaces the 4 KiB handshake buffer with one of size n for bulk reads.
func (c *Client) Grow(n int) {
	if n <= len(c.buf) {
		return
	}
	nb := make([]byte, n)
	c.w = copy(nb, c.buf[c.r:c.w])
	c.r = 0
	c.buf = nb
}

// Next returns the next run of data-frame payload bytes, reading from the
// connection when nothing is buffered. The slice is valid until the next call.
func (c *Client) Next() ([]byte, error) {
	for {
		if c.left > 0 {
			if c.r == c.w {
				if err := c.fill(); err != nil {
					return nil, err
				}
			}
			n := min(c.left, int64(c.w-c.r))
			p := c.buf[c.r : c.r+int(n)]
			c.r += int(n)
			c.left -= n
			if c.ctl {
				continue
			}
			return p, nil
		}
		// Frame header.
		avail := c.buf[c.r:c.w]
		if len(avail) < 2 {
			if err := c.fill(); err != nil {
				return nil, err
			}
			continue
		}
		hl := 2
		l := int64(avail[1] & 0x7f)
		switch l {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if avail[1]&0x80 != 0 {
			return nil, errors.New("masked server frame")
		}
		if len(avail) < hl {
			if err := c.fill(); err != nil {
				return nil, err
			}
			continue
		}
		switch hl {
		case 4:
			l = int64(binary.BigEndian.Uint16(avail[2:4]))
		case 10:
			l = int64(binary.BigEndian.Uint64(avail[2:10]))
		}
		op := avail[0] & 0x0f
		c.r += hl
		c.left = l
		switch op {
		case 0, 1, 2:
			c.ctl = false
		case 8:
			return nil, ErrClosed
		default: // ping, pong: skipped
			c.ctl = true
		}
	}
}

// fill reads more bytes, compacting the buffer first.
func (c *Client) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) || c.r > len(c.buf)/2 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	n, err := c.conn.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// clientMask is the fixed masking key of every client frame.
var clientMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// maskFrame returns a masked binary frame carrying payload (< 64 KiB).
func maskFrame(payload []byte) []byte {
	var f []byte
	if len(payload) < 126 {
		f = []byte{0x82, 0x80 | byte(len(payload))}
	} else {
		f = []byte{0x82, 0x80 | 126, byte(len(payload) >> 8), byte(len(payload))}
	}
	f = append(f, clientMask[:]...)
	for i, b := range payload {
		f = append(f, b^clientMask[i%4])
	}
	return f
}
