// Package rfbclient is a minimal RFB (VNC) client for tests. It runs over any
// io.ReadWriter: a TCP connection straight to a VNC server, or a WSConn
// through a WebSocket proxy. It negotiates RFB 3.3, 3.7 or 3.8 with security
// None or VNC authentication, requests Raw updates and assembles the
// framebuffer.
package rfbclient

import (
	"bufio"
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Security types.
const (
	SecurityNone    = 1
	SecurityVNCAuth = 2
)

// Encodings and pseudo-encodings the client understands in updates.
const (
	EncodingRaw                 = 0
	EncodingCopyRect            = 1
	EncodingCursor              = -239
	EncodingXCursor             = -240
	EncodingDesktopSize         = -223
	EncodingLastRect            = -224
	EncodingPointerPos          = -232
	EncodingDesktopName         = -307
	EncodingExtendedDesktopSize = -308
)

// Server-to-client message types.
const (
	MsgFramebufferUpdate      = 0
	MsgSetColourMapEntries    = 1
	MsgBell                   = 2
	MsgServerCutText          = 3
	MsgEndOfContinuousUpdates = 150
	MsgServerFence            = 248
)

// maxCutText bounds a ServerCutText body.
const maxCutText = 64 << 20

// Options configure Handshake. The zero value speaks the highest version the
// server offers (up to 3.8), prefers security None and asks for a shared
// session.
type Options struct {
	// Version caps the protocol version: "3.3", "3.7" or "3.8" (default).
	Version string
	// Password enables VNC authentication (preferred over None when the
	// server offers both).
	Password string
	// Exclusive sends ClientInit shared-flag 0 (other clients are
	// disconnected); by default the flag is 1.
	Exclusive bool
}

// PixelFormat is the RFB PIXEL_FORMAT structure.
type PixelFormat struct {
	BPP, Depth                      uint8
	BigEndian, TrueColor            bool
	RedMax, GreenMax, BlueMax       uint16
	RedShift, GreenShift, BlueShift uint8
}

// TrueColor32 returns 32 bits per pixel, depth 24, little-endian true colour
// with red at shift 16, green at 8, blue at 0 (bytes B, G, R, pad).
func TrueColor32() PixelFormat {
	return PixelFormat{
		BPP: 32, Depth: 24, TrueColor: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255,
		RedShift: 16, GreenShift: 8, BlueShift: 0,
	}
}

func (pf PixelFormat) marshal(b []byte) {
	b[0], b[1] = pf.BPP, pf.Depth
	b[2], b[3] = boolByte(pf.BigEndian), boolByte(pf.TrueColor)
	binary.BigEndian.PutUint16(b[4:], pf.RedMax)
	binary.BigEndian.PutUint16(b[6:], pf.GreenMax)
	binary.BigEndian.PutUint16(b[8:], pf.BlueMax)
	b[10], b[11], b[12] = pf.RedShift, pf.GreenShift, pf.BlueShift
	b[13], b[14], b[15] = 0, 0, 0
}

func unmarshalPixelFormat(b []byte) PixelFormat {
	return PixelFormat{
		BPP: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColor: b[3] != 0,
		RedMax:     binary.BigEndian.Uint16(b[4:]),
		GreenMax:   binary.BigEndian.Uint16(b[6:]),
		BlueMax:    binary.BigEndian.Uint16(b[8:]),
		RedShift:   b[10],
		GreenShift: b[11],
		BlueShift:  b[12],
	}
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// ServerInit is what the handshake learned about the server.
type ServerInit struct {
	// Version is the negotiated version, "3.3", "3.7" or "3.8".
	Version string
	// Security is the security type used.
	Security byte
	// Width and Height of the framebuffer.
	Width, Height int
	// Format is the server's native pixel format.
	Format PixelFormat
	// Name is the desktop name.
	Name string
}

// Rect is one rectangle of a FramebufferUpdate.
type Rect struct {
	X, Y, W, H int
	Encoding   int32
}

// ServerMsg is one server-to-client message read by ReadMessage.
type ServerMsg struct {
	// Type is the message type byte.
	Type byte
	// Raw is the complete message for every type except FramebufferUpdate,
	// whose pixel data is applied to the framebuffer instead (Raw is nil).
	Raw []byte
	// Rects lists a FramebufferUpdate's rectangles.
	Rects []Rect
}

// Client is an RFB client past the handshake. Its methods are not safe for
// concurrent use, except that writes may run concurrently with reads.
type Client struct {
	rw     io.ReadWriter
	r      *bufio.Reader
	init   ServerInit
	pf     PixelFormat
	width  int
	height int
	fb     []byte
}

// Handshake runs the client side of the RFB handshake on rw up to and
// including ServerInit. After it, read from rw only through the Client: it
// buffers.
func Handshake(rw io.ReadWriter, opts Options) (*Client, error) {
	c := &Client{rw: rw, r: bufio.NewReaderSize(rw, 64<<10)}
	if err := c.handshake(opts); err != nil {
		return nil, fmt.Errorf("rfbclient: handshake: %w", err)
	}
	return c, nil
}

func minorOf(v string) (int, error) {
	switch v {
	case "", "3.8":
		return 8, nil
	case "3.7":
		return 7, nil
	case "3.3":
		return 3, nil
	}
	return 0, fmt.Errorf("unsupported version option %q", v)
}

func (c *Client) handshake(opts Options) error {
	maxMinor, err := minorOf(opts.Version)
	if err != nil {
		return err
	}
	var ver [12]byte
	if _, err := io.ReadFull(c.r, ver[:]); err != nil {
		return fmt.Errorf("reading ProtocolVersion: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(ver[:]), "RFB %03d.%03d\n", &major, &minor); err != nil || major != 3 {
		return fmt.Errorf("bad server ProtocolVersion %q", ver[:])
	}
	switch {
	case minor >= 8:
		minor = 8
	case minor == 7:
	default:
		minor = 3
	}
	minor = min(minor, maxMinor)
	c.init.Version = fmt.Sprintf("3.%d", minor)
	if _, err := fmt.Fprintf(c.rw, "RFB 003.%03d\n", minor); err != nil {
		return fmt.Errorf("writing ProtocolVersion: %w", err)
	}

	var sec byte
	if minor >= 7 {
		n, err := c.r.ReadByte()
		if err != nil {
			return fmt.Errorf("reading security types: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("server refused the connection: %w", c.readReason())
		}
		types := make([]byte, n)
		if _, err := io.ReadFull(c.r, types); err != nil {
			return fmt.Errorf("reading security types: %w", err)
		}
		has := func(t byte) bool { return strings.IndexByte(string(types), t) >= 0 }
		switch {
		case opts.Password != "" && has(SecurityVNCAuth):
			sec = SecurityVNCAuth
		case has(SecurityNone):
			sec = SecurityNone
		case has(SecurityVNCAuth):
			sec = SecurityVNCAuth
		default:
			return fmt.Errorf("no supported security type among %v", types)
		}
		if _, err := c.rw.Write([]byte{sec}); err != nil {
			return fmt.Errorf("writing security type: %w", err)
		}
	} else {
		var b [4]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return fmt.Errorf("reading security type: %w", err)
		}
		switch t := binary.BigEndian.Uint32(b[:]); t {
		case 0:
			return fmt.Errorf("server refused the connection: %w", c.readReason())
		case SecurityNone, SecurityVNCAuth:
			sec = byte(t)
		default:
			return fmt.Errorf("unsupported security type %d", t)
		}
	}
	c.init.Security = sec

	if sec == SecurityVNCAuth {
		var challenge [16]byte
		if _, err := io.ReadFull(c.r, challenge[:]); err != nil {
			return fmt.Errorf("reading VNC auth challenge: %w", err)
		}
		resp, err := VNCAuthResponse(opts.Password, challenge[:])
		if err != nil {
			return err
		}
		if _, err := c.rw.Write(resp); err != nil {
			return fmt.Errorf("writing VNC auth response: %w", err)
		}
	}
	if sec == SecurityVNCAuth || minor >= 8 {
		var b [4]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return fmt.Errorf("reading SecurityResult: %w", err)
		}
		if res := binary.BigEndian.Uint32(b[:]); res != 0 {
			if minor >= 8 {
				return fmt.Errorf("security failed (result %d): %w", res, c.readReason())
			}
			return fmt.Errorf("security failed (result %d)", res)
		}
	}

	if _, err := c.rw.Write([]byte{boolByte(!opts.Exclusive)}); err != nil {
		return fmt.Errorf("writing ClientInit: %w", err)
	}
	var si [24]byte
	if _, err := io.ReadFull(c.r, si[:]); err != nil {
		return fmt.Errorf("reading ServerInit: %w", err)
	}
	c.init.Width = int(binary.BigEndian.Uint16(si[0:]))
	c.init.Height = int(binary.BigEndian.Uint16(si[2:]))
	c.init.Format = unmarshalPixelFormat(si[4:20])
	nameLen := binary.BigEndian.Uint32(si[20:])
	if nameLen > 1<<16 {
		return fmt.Errorf("desktop name length %d too large", nameLen)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(c.r, name); err != nil {
		return fmt.Errorf("reading desktop name: %w", err)
	}
	c.init.Name = string(name)
	c.pf = c.init.Format
	c.resize(c.init.Width, c.init.Height)
	return nil
}

// readReason reads a U32-length-prefixed failure reason.
func (c *Client) readReason() error {
	var b [4]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return fmt.Errorf("reading reason: %w", err)
	}
	n := binary.BigEndian.Uint32(b[:])
	if n > 1<<16 {
		return fmt.Errorf("reason length %d too large", n)
	}
	reason := make([]byte, n)
	if _, err := io.ReadFull(c.r, reason); err != nil {
		return fmt.Errorf("reading reason: %w", err)
	}
	return errors.New(string(reason))
}

// VNCAuthResponse computes the VNC authentication response: the 16-byte
// challenge DES-encrypted (ECB) with a key made of the password's first 8
// bytes (zero padded), each byte's bit order reversed.
func VNCAuthResponse(password string, challenge []byte) ([]byte, error) {
	if len(challenge) != 16 {
		return nil, fmt.Errorf("rfbclient: VNC auth challenge is %d bytes, want 16", len(challenge))
	}
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		var r byte
		for j := 0; j < 8; j++ {
			r = r<<1 | b>>j&1
		}
		key[i] = r
	}
	block, err := des.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("rfbclient: DES key: %w", err)
	}
	resp := make([]byte, 16)
	block.Encrypt(resp[:8], challenge[:8])
	block.Encrypt(resp[8:], challenge[8:])
	return resp, nil
}

// Init returns what the handshake learned about the server.
func (c *Client) Init() ServerInit { return c.init }

// Width returns the current framebuffer width (DesktopSize updates change it).
func (c *Client) Width() int { return c.width }

// Height returns the current framebuffer height.
func (c *Client) Height() int { return c.height }

// PixelFormat returns the pixel format updates are decoded with.
func (c *Client) PixelFormat() PixelFormat { return c.pf }

// Framebuffer returns a copy of the assembled framebuffer: Width*Height
// pixels of BPP/8 bytes in the current pixel format, rows top to bottom.
func (c *Client) Framebuffer() []byte { return append([]byte(nil), c.fb...) }

func (c *Client) resize(w, h int) {
	c.width, c.height = w, h
	c.fb = make([]byte, w*h*int(c.pf.BPP/8))
}

// WriteRaw writes b to the connection in one Write call (one WebSocket frame
// over a WSConn).
func (c *Client) WriteRaw(b []byte) error {
	if _, err := c.rw.Write(b); err != nil {
		return fmt.Errorf("rfbclient: writing %d bytes: %w", len(b), err)
	}
	return nil
}

// SetPixelFormat sends SetPixelFormat and decodes later updates with pf. The
// framebuffer is reallocated (cleared) when the pixel size changes.
func (c *Client) SetPixelFormat(pf PixelFormat) error {
	if pf.BPP != 8 && pf.BPP != 16 && pf.BPP != 32 {
		return fmt.Errorf("rfbclient: unsupported bits per pixel %d", pf.BPP)
	}
	var b [20]byte
	b[0] = 0
	pf.marshal(b[4:])
	if err := c.WriteRaw(b[:]); err != nil {
		return fmt.Errorf("rfbclient: SetPixelFormat: %w", err)
	}
	old := c.pf.BPP
	c.pf = pf
	if old != pf.BPP {
		c.resize(c.width, c.height)
	}
	return nil
}

// SetEncodings sends SetEncodings with encs, or with Raw alone when encs is
// empty.
func (c *Client) SetEncodings(encs ...int32) error {
	if len(encs) == 0 {
		encs = []int32{EncodingRaw}
	}
	b := make([]byte, 4+4*len(encs))
	b[0] = 2
	binary.BigEndian.PutUint16(b[2:], uint16(len(encs)))
	for i, e := range encs {
		binary.BigEndian.PutUint32(b[4+4*i:], uint32(e))
	}
	if err := c.WriteRaw(b); err != nil {
		return fmt.Errorf("rfbclient: SetEncodings: %w", err)
	}
	return nil
}

// Request sends a FramebufferUpdateRequest.
func (c *Client) Request(incremental bool, x, y, w, h int) error {
	var b [10]byte
	b[0] = 3
	b[1] = boolByte(incremental)
	binary.BigEndian.PutUint16(b[2:], uint16(x))
	binary.BigEndian.PutUint16(b[4:], uint16(y))
	binary.BigEndian.PutUint16(b[6:], uint16(w))
	binary.BigEndian.PutUint16(b[8:], uint16(h))
	if err := c.WriteRaw(b[:]); err != nil {
		return fmt.Errorf("rfbclient: FramebufferUpdateRequest: %w", err)
	}
	return nil
}

// RequestFull sends a non-incremental FramebufferUpdateRequest for the whole
// framebuffer.
func (c *Client) RequestFull() error { return c.Request(false, 0, 0, c.width, c.height) }

// KeyEvent sends a KeyEvent.
func (c *Client) KeyEvent(down bool, keysym uint32) error {
	var b [8]byte
	b[0] = 4
	b[1] = boolByte(down)
	binary.BigEndian.PutUint32(b[4:], keysym)
	if err := c.WriteRaw(b[:]); err != nil {
		return fmt.Errorf("rfbclient: KeyEvent: %w", err)
	}
	return nil
}

// PointerEvent sends a PointerEvent.
func (c *Client) PointerEvent(mask uint8, x, y int) error {
	var b [6]byte
	b[0] = 5
	b[1] = mask
	binary.BigEndian.PutUint16(b[2:], uint16(x))
	binary.BigEndian.PutUint16(b[4:], uint16(y))
	if err := c.WriteRaw(b[:]); err != nil {
		return fmt.Errorf("rfbclient: PointerEvent: %w", err)
	}
	return nil
}

// ClientCutText sends a ClientCutText with text (Latin-1 by the protocol).
func (c *Client) ClientCutText(text []byte) error {
	b := make([]byte, 8, 8+len(text))
	b[0] = 6
	binary.BigEndian.PutUint32(b[4:], uint32(len(text)))
	if err := c.WriteRaw(append(b, text...)); err != nil {
		return fmt.Errorf("rfbclient: ClientCutText: %w", err)
	}
	return nil
}

// ReadUpdate reads server messages until a FramebufferUpdate has been read
// and applied, and returns its rectangles. Other messages (Bell, cut text,
// colour map, fences) are skipped.
func (c *Client) ReadUpdate() ([]Rect, error) {
	for {
		m, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		if m.Type == MsgFramebufferUpdate {
			return m.Rects, nil
		}
	}
}

// ReadFull requests a full non-incremental update and reads updates until
// every pixel has been received, then returns a copy of the framebuffer. A
// server that answers in several updates is asked incrementally for the rest.
// It gives up after 100 updates.
func (c *Client) ReadFull() ([]byte, error) {
	if err := c.RequestFull(); err != nil {
		return nil, err
	}
	covered := make([]bool, c.width*c.height)
	left := len(covered)
	for i := 0; i < 100; i++ {
		rects, err := c.ReadUpdate()
		if err != nil {
			return nil, err
		}
		for _, r := range rects {
			switch r.Encoding {
			case EncodingDesktopSize, EncodingExtendedDesktopSize:
				covered = make([]bool, c.width*c.height)
				left = len(covered)
			case EncodingRaw, EncodingCopyRect:
				for y := r.Y; y < r.Y+r.H; y++ {
					for x := r.X; x < r.X+r.W; x++ {
						if !covered[y*c.width+x] {
							covered[y*c.width+x] = true
							left--
						}
					}
				}
			}
		}
		if left == 0 {
			return c.Framebuffer(), nil
		}
		if err := c.Request(true, 0, 0, c.width, c.height); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("rfbclient: %d pixels still missing after 100 updates", left)
}

// Fetch runs the handshake on rw, sets TrueColor32 and Raw encoding, reads a
// full framebuffer and returns it with the ServerInit.
func Fetch(rw io.ReadWriter, opts Options) (ServerInit, []byte, error) {
	c, err := Handshake(rw, opts)
	if err != nil {
		return ServerInit{}, nil, err
	}
	if err := c.SetPixelFormat(TrueColor32()); err != nil {
		return c.Init(), nil, err
	}
	if err := c.SetEncodings(); err != nil {
		return c.Init(), nil, err
	}
	fb, err := c.ReadFull()
	return c.Init(), fb, err
}

// ReadMessage reads one server-to-client message. A FramebufferUpdate is
// applied to the framebuffer.
func (c *Client) ReadMessage() (ServerMsg, error) {
	t, err := c.r.ReadByte()
	if err != nil {
		return ServerMsg{}, fmt.Errorf("rfbclient: reading message type: %w", err)
	}
	raw := []byte{t}
	need := func(n int) error {
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, raw[start:]); err != nil {
			return fmt.Errorf("rfbclient: reading message type %d: %w", t, err)
		}
		return nil
	}
	switch t {
	case MsgFramebufferUpdate:
		rects, err := c.readUpdateBody()
		if err != nil {
			return ServerMsg{}, fmt.Errorf("rfbclient: FramebufferUpdate: %w", err)
		}
		return ServerMsg{Type: t, Rects: rects}, nil
	case MsgSetColourMapEntries:
		if err := need(5); err != nil {
			return ServerMsg{}, err
		}
		if err := need(6 * int(binary.BigEndian.Uint16(raw[4:]))); err != nil {
			return ServerMsg{}, err
		}
	case MsgBell:
	case MsgServerCutText:
		if err := need(7); err != nil {
			return ServerMsg{}, err
		}
		l := int64(int32(binary.BigEndian.Uint32(raw[4:])))
		if l < 0 {
			l = -l
		}
		if l > maxCutText {
			return ServerMsg{}, fmt.Errorf("rfbclient: ServerCutText length %d too large", l)
		}
		if err := need(int(l)); err != nil {
			return ServerMsg{}, err
		}
	case MsgEndOfContinuousUpdates:
	case MsgServerFence:
		if err := need(8); err != nil {
			return ServerMsg{}, err
		}
		if err := need(int(raw[8])); err != nil {
			return ServerMsg{}, err
		}
	default:
		return ServerMsg{}, fmt.Errorf("rfbclient: unknown server message type %d", t)
	}
	return ServerMsg{Type: t, Raw: raw}, nil
}

func (c *Client) readUpdateBody() ([]Rect, error) {
	var h [3]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	var rects []Rect
	for i := 0; n == 0xffff || i < n; i++ {
		var rh [12]byte
		if _, err := io.ReadFull(c.r, rh[:]); err != nil {
			return rects, fmt.Errorf("reading rect %d header: %w", i, err)
		}
		r := Rect{
			X:        int(binary.BigEndian.Uint16(rh[0:])),
			Y:        int(binary.BigEndian.Uint16(rh[2:])),
			W:        int(binary.BigEndian.Uint16(rh[4:])),
			H:        int(binary.BigEndian.Uint16(rh[6:])),
			Encoding: int32(binary.BigEndian.Uint32(rh[8:])),
		}
		rects = append(rects, r)
		if r.Encoding == EncodingLastRect {
			break
		}
		if err := c.readRect(r); err != nil {
			return rects, fmt.Errorf("rect %d %+v: %w", i, r, err)
		}
	}
	return rects, nil
}

func (c *Client) inBounds(r Rect) error {
	if r.X+r.W > c.width || r.Y+r.H > c.height {
		return fmt.Errorf("outside %dx%d framebuffer", c.width, c.height)
	}
	return nil
}

func (c *Client) readRect(r Rect) error {
	bpp := int(c.pf.BPP / 8)
	switch r.Encoding {
	case EncodingRaw:
		if err := c.inBounds(r); err != nil {
			return err
		}
		stride := c.width * bpp
		for y := r.Y; y < r.Y+r.H; y++ {
			off := y*stride + r.X*bpp
			if _, err := io.ReadFull(c.r, c.fb[off:off+r.W*bpp]); err != nil {
				return fmt.Errorf("reading Raw row %d: %w", y, err)
			}
		}
	case EncodingCopyRect:
		var b [4]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return fmt.Errorf("reading CopyRect source: %w", err)
		}
		sx, sy := int(binary.BigEndian.Uint16(b[0:])), int(binary.BigEndian.Uint16(b[2:]))
		if err := c.inBounds(r); err != nil {
			return err
		}
		if err := c.inBounds(Rect{X: sx, Y: sy, W: r.W, H: r.H}); err != nil {
			return fmt.Errorf("CopyRect source: %w", err)
		}
		src := make([]byte, r.W*r.H*bpp)
		stride := c.width * bpp
		for y := 0; y < r.H; y++ {
			off := (sy+y)*stride + sx*bpp
			copy(src[y*r.W*bpp:], c.fb[off:off+r.W*bpp])
		}
		for y := 0; y < r.H; y++ {
			off := (r.Y+y)*stride + r.X*bpp
			copy(c.fb[off:off+r.W*bpp], src[y*r.W*bpp:])
		}
	case EncodingDesktopSize:
		c.resize(r.W, r.H)
	case EncodingExtendedDesktopSize:
		var b [4]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return fmt.Errorf("reading ExtendedDesktopSize: %w", err)
		}
		if _, err := c.r.Discard(16 * int(b[0])); err != nil {
			return fmt.Errorf("reading ExtendedDesktopSize screens: %w", err)
		}
		if r.Y == 0 { // Y is the status; only a successful change resizes
			c.resize(r.W, r.H)
		}
	case EncodingCursor:
		n := r.W*r.H*bpp + (r.W+7)/8*r.H
		if _, err := c.r.Discard(n); err != nil {
			return fmt.Errorf("skipping Cursor: %w", err)
		}
	case EncodingXCursor:
		if r.W*r.H > 0 {
			if _, err := c.r.Discard(6 + 2*((r.W+7)/8)*r.H); err != nil {
				return fmt.Errorf("skipping XCursor: %w", err)
			}
		}
	case EncodingPointerPos:
	case EncodingDesktopName:
		var b [4]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return fmt.Errorf("reading DesktopName: %w", err)
		}
		n := binary.BigEndian.Uint32(b[:])
		if n > 1<<16 {
			return fmt.Errorf("desktop name length %d too large", n)
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(c.r, name); err != nil {
			return fmt.Errorf("reading DesktopName: %w", err)
		}
		c.init.Name = string(name)
	default:
		return fmt.Errorf("unsupported encoding %d", r.Encoding)
	}
	return nil
}
