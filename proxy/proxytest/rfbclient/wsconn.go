package rfbclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gobwas/ws"
)

// StatusError is returned by Dial when the server answers the upgrade
// request with an HTTP status other than 101.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Header is the response header.
	Header http.Header
	// Body is up to 4 KiB of the response body (when its length is known).
	Body []byte
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("websocket upgrade refused: HTTP %d %s", e.Status, bytes.TrimSpace(e.Body))
}

// CloseError is returned by WSConn.Read once the server sent a close frame.
type CloseError struct {
	// Code is the close status code (ws.StatusNoStatusRcvd when absent).
	Code ws.StatusCode
	// Reason is the close reason text.
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed by peer: %d %q", e.Code, e.Reason)
}

// Dialer opens WebSocket client connections.
type Dialer struct {
	// Protocols are the subprotocols offered (Sec-WebSocket-Protocol).
	Protocols []string
	// Header holds extra request headers (Origin, x-api-key, …).
	Header http.Header
	// TLSConfig is used for wss:// URLs, e.g. with RootCAs set to a test CA.
	TLSConfig *tls.Config
	// NetDial, when set, opens the TCP connection (e.g. from a chosen source
	// address, or writing a PROXY protocol header first).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WSConn is an io.ReadWriter over a client WebSocket connection. Each Write
// sends one masked binary frame, as noVNC does; Read returns the payload
// bytes of data frames as one stream, whatever the frame boundaries. Pings
// are answered with pongs. Read and Write may run concurrently.
type WSConn struct {
	conn     net.Conn
	src      io.Reader // bytes the dialer buffered, then conn
	protocol string

	wmu       sync.Mutex
	closeSent bool

	// read state, owned by the reader
	remaining int64
	masked    bool
	mask      [4]byte
	maskPos   int
	frames    int
	closeErr  *CloseError
}

// DialWS dials url (ws:// or wss://) offering protocols and sending header.
func DialWS(ctx context.Context, url string, protocols []string, header http.Header) (*WSConn, error) {
	return Dialer{Protocols: protocols, Header: header}.Dial(ctx, url)
}

// Dial dials url (ws:// or wss://) and completes the WebSocket handshake.
// A refused upgrade yields a *StatusError.
func (d Dialer) Dial(ctx context.Context, url string) (*WSConn, error) {
	var statusErr *StatusError
	wd := ws.Dialer{
		Protocols: d.Protocols,
		TLSConfig: d.TLSConfig,
		NetDial:   d.NetDial,
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			statusErr = &StatusError{Status: status}
			r, err := http.ReadResponse(bufio.NewReader(resp), nil)
			if err != nil {
				return
			}
			statusErr.Header = r.Header
			if r.ContentLength >= 0 {
				statusErr.Body, _ = io.ReadAll(io.LimitReader(r.Body, min(r.ContentLength, 4096)))
			}
		},
	}
	if len(d.Header) > 0 {
		wd.Header = ws.HandshakeHeaderHTTP(d.Header)
	}
	conn, br, hs, err := wd.Dial(ctx, url)
	if err != nil {
		if statusErr != nil {
			return nil, fmt.Errorf("rfbclient: dial %s: %w", url, statusErr)
		}
		return nil, fmt.Errorf("rfbclient: dial %s: %w", url, err)
	}
	c := &WSConn{conn: conn, src: conn, protocol: hs.Protocol}
	if br != nil {
		// The server's first frames may have arrived with the 101 response.
		pending := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, pending)
		ws.PutReader(br)
		c.src = io.MultiReader(bytes.NewReader(pending), conn)
	}
	return c, nil
}

// Protocol returns the subprotocol the server selected, or "".
func (c *WSConn) Protocol() string { return c.protocol }

// NetConn returns the underlying connection (for deadlines, addresses).
func (c *WSConn) NetConn() net.Conn { return c.conn }

// FramesRead returns how many data frames Read has started so far. Call it
// from the goroutine that reads.
func (c *WSConn) FramesRead() int { return c.frames }

// Read reads payload bytes of binary (and text) frames. After the peer's
// close frame it answers with a close frame and returns a *CloseError.
func (c *WSConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.remaining == 0 {
		if c.closeErr != nil {
			return 0, c.closeErr
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n := int64(len(p))
	if n > c.remaining {
		n = c.remaining
	}
	got, err := c.src.Read(p[:n])
	if c.masked {
		ws.Cipher(p[:got], c.mask, c.maskPos)
		c.maskPos += got
	}
	c.remaining -= int64(got)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return got, fmt.Errorf("rfbclient: websocket read: %w", err)
	}
	return got, nil
}

// nextFrame reads frame headers, handling control frames, until a data frame
// with a payload starts.
func (c *WSConn) nextFrame() error {
	h, err := ws.ReadHeader(c.src)
	if err != nil {
		return fmt.Errorf("rfbclient: websocket frame header: %w", err)
	}
	if h.OpCode.IsControl() {
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.src, payload); err != nil {
			return fmt.Errorf("rfbclient: websocket control frame: %w", err)
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.WriteFrame(ws.OpPong, payload); err != nil {
				return err
			}
		case ws.OpClose:
			code, reason := ws.StatusNoStatusRcvd, ""
			if len(payload) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(payload))
				reason = string(payload[2:])
			}
			c.closeErr = &CloseError{Code: code, Reason: reason}
			var body []byte
			if len(payload) >= 2 {
				body = payload[:2]
			}
			_ = c.writeClose(body)
			return c.closeErr
		}
		return nil
	}
	if h.OpCode == ws.OpBinary || h.OpCode == ws.OpText {
		c.frames++
	}
	c.remaining = h.Length
	c.masked, c.mask, c.maskPos = h.Masked, h.Mask, 0
	return nil
}

// Write sends p as one masked binary frame.
func (c *WSConn) Write(p []byte) (int, error) {
	if err := c.WriteFrame(ws.OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteFrame sends one final, masked frame with opcode op and payload (which
// is not modified).
func (c *WSConn) WriteFrame(op ws.OpCode, payload []byte) error {
	return c.WriteFrameHeader(ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}, payload)
}

// WriteFrameHeader sends a frame with header h followed by payload, both
// exactly as given apart from masking: when h.Masked, a copy of payload is
// masked with h.Mask. h.Length is not checked against len(payload), so tests
// can send malformed frames.
func (c *WSConn) WriteFrameHeader(h ws.Header, payload []byte) error {
	var buf bytes.Buffer
	buf.Grow(ws.MaxHeaderSize + len(payload))
	if err := ws.WriteHeader(&buf, h); err != nil {
		return fmt.Errorf("rfbclient: encoding frame header: %w", err)
	}
	start := buf.Len()
	buf.Write(payload)
	if h.Masked {
		ws.Cipher(buf.Bytes()[start:], h.Mask, 0)
	}
	return c.WriteRawBytes(buf.Bytes())
}

// WriteRawBytes writes b to the connection as is, in one Write call.
func (c *WSConn) WriteRawBytes(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("rfbclient: websocket write: %w", err)
	}
	return nil
}

func (c *WSConn) writeClose(body []byte) error {
	c.wmu.Lock()
	sent := c.closeSent
	c.closeSent = true
	c.wmu.Unlock()
	if sent {
		return nil
	}
	return c.WriteFrame(ws.OpClose, body)
}

// CloseWith sends a close frame with code and reason (once) without closing
// the connection; read on to see the peer's answer.
func (c *WSConn) CloseWith(code ws.StatusCode, reason string) error {
	return c.writeClose(ws.NewCloseFrameBody(code, reason))
}

// Close sends a normal-closure close frame (best effort, if none was sent
// yet) and closes the connection.
func (c *WSConn) Close() error {
	_ = c.writeClose(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("rfbclient: close websocket: %w", err)
	}
	return nil
}
