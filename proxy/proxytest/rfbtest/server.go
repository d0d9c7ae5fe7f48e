// Package rfbtest provides a recording RFB (VNC) server for tests.
//
// The server speaks the server side of RFB 3.3, 3.7 and 3.8 with security
// type None or VNC authentication, parses every client message with its own
// small parser (independent of the code under test) and records it. Each
// FramebufferUpdateRequest is answered with one full-frame Raw update whose
// pixels follow a deterministic pattern, so tests can check that large updates
// arrive intact and in order.
package rfbtest

import (
	"bufio"
	"context"
	"crypto/des"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
)

// Security types offered by the server.
const (
	SecurityNone    = 1
	SecurityVNCAuth = 2
)

// Name is the desktop name sent in ServerInit.
const Name = "rfbtest"

// Options configure a Server. The zero value is RFB 3.8, security None, a
// 64x48 framebuffer.
type Options struct {
	// Version is the protocol version the server announces: "3.3", "3.7" or
	// "3.8" (default).
	Version string
	// Security is the single security type offered: SecurityNone (default)
	// or SecurityVNCAuth.
	Security byte
	// Password, with SecurityVNCAuth, makes the server check the client's
	// DES response against it. When empty any 16-byte response is accepted.
	// A SecurityResult is sent either way.
	Password string
	// Width and Height of the framebuffer; default 64x48.
	Width, Height int
	// UpdateSize, when positive, overrides Height (and Width when Width is
	// zero) so that the pixel data of one full update is at least
	// UpdateSize bytes (4 bytes per pixel).
	UpdateSize int
	// Seed selects the deterministic pixel pattern.
	Seed uint32
	// HoldIncremental makes the server leave incremental update requests
	// unanswered, as a real server does while nothing changes. By default
	// every request gets a full update.
	HoldIncremental bool
}

// Msg is one recorded client-to-server message.
type Msg struct {
	// Type is the message type byte.
	Type byte
	// Raw is the complete message, type byte included.
	Raw []byte
}

// Server is a recording RFB server listening on 127.0.0.1.
type Server struct {
	opts    Options
	version string
	width   int
	height  int
	fb      []byte
	update  []byte // a complete FramebufferUpdate message for the full frame
	ln      net.Listener
	wg      sync.WaitGroup

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever state below changes
	msgs     []Msg
	msgNext  int
	errs     []error
	conns    []*Conn
	connNext int
	updates  int
	closed   bool
}

// Conn is one accepted client connection.
type Conn struct {
	srv   *Server
	nc    net.Conn
	index int
	wmu   sync.Mutex
	ready chan struct{} // closed once ServerInit has been sent
	done  chan struct{} // closed when the connection has ended

	// set before ready is closed
	clientVersion string
	shared        bool
	authResponse  []byte
	// set before done is closed
	err error
}

// NewServer starts a server on 127.0.0.1:0. It is closed, and all its
// connections with it, when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := newServer(opts)
	if err != nil {
		t.Fatalf("rfbtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newServer(opts Options) (*Server, error) {
	s := &Server{opts: opts, changed: make(chan struct{})}
	switch opts.Version {
	case "", "3.8":
		s.version = "RFB 003.008\n"
	case "3.7":
		s.version = "RFB 003.007\n"
	case "3.3":
		s.version = "RFB 003.003\n"
	default:
		return nil, fmt.Errorf("unsupported version %q", opts.Version)
	}
	switch opts.Security {
	case 0:
		s.opts.Security = SecurityNone
	case SecurityNone, SecurityVNCAuth:
	default:
		return nil, fmt.Errorf("unsupported security type %d", opts.Security)
	}
	s.width, s.height = opts.Width, opts.Height
	if opts.UpdateSize > 0 {
		pixels := (opts.UpdateSize + 3) / 4
		if s.width <= 0 {
			s.width = min(pixels, 1024)
		}
		s.height = (pixels + s.width - 1) / s.width
	}
	if s.width <= 0 {
		s.width = 64
	}
	if s.height <= 0 {
		s.height = 48
	}
	if s.width > 0xffff || s.height > 0xffff {
		return nil, fmt.Errorf("framebuffer %dx%d too large", s.width, s.height)
	}
	s.fb = Pattern(opts.Seed, s.width*s.height*4)
	s.update = make([]byte, 16, 16+len(s.fb))
	s.update[0] = 0 // FramebufferUpdate
	binary.BigEndian.PutUint16(s.update[2:], 1)
	binary.BigEndian.PutUint16(s.update[8:], uint16(s.width))
	binary.BigEndian.PutUint16(s.update[10:], uint16(s.height))
	// encoding 0 (Raw) at 12..16
	s.update = append(s.update, s.fb...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Pattern returns n bytes of the deterministic pixel pattern for seed. Byte i
// depends on seed and i only; nearby offsets differ, so reordered or lost
// chunks are detected.
func Pattern(seed uint32, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4 {
		x := uint32(i/4)*0x9e3779b1 + seed*0x85ebca6b + 0x165667b1
		x ^= x >> 15
		x *= 0x2c1b3c6d
		x ^= x >> 12
		x *= 0x297a2d39
		x ^= x >> 15
		var w [4]byte
		binary.LittleEndian.PutUint32(w[:], x)
		copy(b[i:], w[:])
	}
	return b
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Width returns the framebuffer width in pixels.
func (s *Server) Width() int { return s.width }

// Height returns the framebuffer height in pixels.
func (s *Server) Height() int { return s.height }

// Framebuffer returns a copy of the framebuffer every update carries: Width*
// Height pixels of 4 bytes, 32bpp depth 24 little-endian true colour
// (red shift 16, green 8, blue 0), rows top to bottom.
func (s *Server) Framebuffer() []byte {
	return append([]byte(nil), s.fb...)
}

// Close stops the listener, closes every connection and waits for the
// server's goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	conns := append([]*Conn(nil), s.conns...)
	s.mu.Unlock()
	if !already {
		_ = s.ln.Close()
	}
	for _, c := range conns {
		_ = c.nc.Close()
	}
	s.wg.Wait()
}

// Messages returns a snapshot of all messages recorded so far, over all
// connections, in arrival order.
func (s *Server) Messages() []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Msg(nil), s.msgs...)
}

// Next returns the next recorded message not yet returned by Next, waiting
// for one to arrive until ctx is done.
func (s *Server) Next(ctx context.Context) (Msg, error) {
	for {
		s.mu.Lock()
		if s.msgNext < len(s.msgs) {
			m := s.msgs[s.msgNext]
			s.msgNext++
			s.mu.Unlock()
			return m, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Msg{}, fmt.Errorf("rfbtest: waiting for a client message: %w", ctx.Err())
		}
	}
}

// Errors returns the protocol errors recorded so far (unknown message types,
// bad handshakes, failed authentication). A peer closing the connection is not
// an error.
func (s *Server) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// UpdatesSent returns how many FramebufferUpdate messages have been written.
func (s *Server) UpdatesSent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates
}

// WaitConn returns the next accepted connection not yet returned by WaitConn
// (connections are handed out in accept order), waiting until ctx is done.
func (s *Server) WaitConn(ctx context.Context) (*Conn, error) {
	for {
		s.mu.Lock()
		if s.connNext < len(s.conns) {
			c := s.conns[s.connNext]
			s.connNext++
			s.mu.Unlock()
			return c, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("rfbtest: waiting for a connection: %w", ctx.Err())
		}
	}
}

// Conns returns every connection accepted so far, in accept order.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Conn(nil), s.conns...)
}

// Push writes b to the most recently accepted connection that has completed
// its handshake (ServerInit sent) and is still open.
func (s *Server) Push(b []byte) error {
	s.mu.Lock()
	var target *Conn
	for i := len(s.conns) - 1; i >= 0 && target == nil; i-- {
		c := s.conns[i]
		select {
		case <-c.done:
			continue
		default:
		}
		select {
		case <-c.ready:
			target = c
		default:
		}
	}
	s.mu.Unlock()
	if target == nil {
		return errors.New("rfbtest: push: no open connection past ServerInit")
	}
	return target.Push(b)
}

// broadcastLocked wakes every waiter; s.mu must be held.
func (s *Server) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) record(m Msg) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *Server) recordErr(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		c := &Conn{
			srv:   s,
			nc:    nc,
			index: len(s.conns),
			ready: make(chan struct{}),
			done:  make(chan struct{}),
		}
		s.conns = append(s.conns, c)
		s.broadcastLocked()
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Index is the connection's position in accept order, from 0.
func (c *Conn) Index() int { return c.index }

// Ready is closed once the handshake is complete and ServerInit was sent.
func (c *Conn) Ready() <-chan struct{} { return c.ready }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// WaitReady waits until ServerInit has been sent, the connection ended first
// (an error), or ctx is done.
func (c *Conn) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.done:
		select {
		case <-c.ready:
			return nil
		default:
		}
		return fmt.Errorf("rfbtest: connection %d ended before ServerInit: %v", c.index, c.Err())
	case <-ctx.Done():
		return fmt.Errorf("rfbtest: waiting for ServerInit on connection %d: %w", c.index, ctx.Err())
	}
}

// WaitDone waits until the connection has ended or ctx is done.
func (c *Conn) WaitDone(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rfbtest: waiting for connection %d to end: %w", c.index, ctx.Err())
	}
}

// Err returns why the connection ended: nil while open or after a clean close
// by the peer, otherwise the protocol or I/O error.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// ClientVersion returns the 12-byte ProtocolVersion the client sent; valid
// after Ready.
func (c *Conn) ClientVersion() string { return c.clientVersion }

// Shared returns the ClientInit shared flag; valid after Ready.
func (c *Conn) Shared() bool { return c.shared }

// AuthResponse returns the client's 16-byte VNC authentication response, or
// nil for security None; valid after Ready.
func (c *Conn) AuthResponse() []byte { return c.authResponse }

// Push writes b to this connection. Call it after Ready.
func (c *Conn) Push(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("rfbtest: push %d bytes to connection %d: %w", len(b), c.index, err)
	}
	return nil
}

// Close closes the connection from the server side.
func (c *Conn) Close() error {
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("rfbtest: close connection %d: %w", c.index, err)
	}
	return nil
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

func (c *Conn) serve() {
	s := c.srv
	defer s.wg.Done()
	err := c.run()
	_ = c.nc.Close()
	if isClosed(err) {
		err = nil
	} else {
		err = fmt.Errorf("rfbtest: connection %d: %w", c.index, err)
		s.recordErr(err)
	}
	s.mu.Lock()
	c.err = err
	close(c.done)
	s.broadcastLocked()
	s.mu.Unlock()
}

// isClosed reports whether err only says that the connection was closed or
// reset between messages. A close in the middle of a message
// (io.ErrUnexpectedEOF) is recorded as an error.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET)
}

// run serves the connection until it fails; it always returns a non-nil
// error (io.EOF for a clean close by the peer).
func (c *Conn) run() error {
	s := c.srv
	r := bufio.NewReaderSize(c.nc, 64<<10)
	if err := c.handshake(r); err != nil {
		return err
	}
	s.mu.Lock()
	close(c.ready)
	s.broadcastLocked()
	s.mu.Unlock()

	p := &parser{r: r}
	for {
		m, err := p.next()
		if err != nil {
			return err
		}
		s.record(m)
		if m.Type == TypeFramebufferUpdateReq && (m.Raw[1] == 0 || !s.opts.HoldIncremental) {
			if err := c.write(s.update); err != nil {
				return fmt.Errorf("writing FramebufferUpdate: %w", err)
			}
			s.mu.Lock()
			s.updates++
			s.mu.Unlock()
		}
	}
}

func (c *Conn) handshake(r *bufio.Reader) error {
	s := c.srv
	if err := c.write([]byte(s.version)); err != nil {
		return fmt.Errorf("writing ProtocolVersion: %w", err)
	}
	var ver [12]byte
	if _, err := io.ReadFull(r, ver[:]); err != nil {
		return fmt.Errorf("reading client ProtocolVersion: %w", err)
	}
	c.clientVersion = string(ver[:])
	var minor int
	if _, err := fmt.Sscanf(c.clientVersion, "RFB 003.%03d\n", &minor); err != nil {
		return fmt.Errorf("bad client ProtocolVersion %q: %w", ver[:], err)
	}
	sec := s.opts.Security
	v38 := s.version == "RFB 003.008\n" && minor >= 8
	v37 := v38 || s.version != "RFB 003.003\n" && minor >= 7
	if v37 {
		if err := c.write([]byte{1, sec}); err != nil {
			return fmt.Errorf("writing security types: %w", err)
		}
		chosen, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("reading chosen security type: %w", err)
		}
		if chosen != sec {
			return fmt.Errorf("client chose security type %d, offered %d", chosen, sec)
		}
	} else {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(sec))
		if err := c.write(b[:]); err != nil {
			return fmt.Errorf("writing security type: %w", err)
		}
	}
	if sec == SecurityVNCAuth {
		challenge := Pattern(s.opts.Seed^0xa5a5a5a5, 16)
		if err := c.write(challenge); err != nil {
			return fmt.Errorf("writing VNC auth challenge: %w", err)
		}
		resp := make([]byte, 16)
		if _, err := io.ReadFull(r, resp); err != nil {
			return fmt.Errorf("reading VNC auth response: %w", err)
		}
		c.authResponse = resp
		if s.opts.Password != "" && !checkVNCAuth(s.opts.Password, challenge, resp) {
			if v38 {
				reason := "authentication failed"
				b := make([]byte, 8, 8+len(reason))
				binary.BigEndian.PutUint32(b, 1)
				binary.BigEndian.PutUint32(b[4:], uint32(len(reason)))
				_ = c.write(append(b, reason...))
			} else {
				_ = c.write([]byte{0, 0, 0, 1})
			}
			return errors.New("VNC authentication failed: wrong password")
		}
	}
	if sec == SecurityVNCAuth || v38 {
		if err := c.write([]byte{0, 0, 0, 0}); err != nil {
			return fmt.Errorf("writing SecurityResult: %w", err)
		}
	}
	shared, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("reading ClientInit: %w", err)
	}
	c.shared = shared != 0
	init := make([]byte, 24, 24+len(Name))
	binary.BigEndian.PutUint16(init[0:], uint16(s.width))
	binary.BigEndian.PutUint16(init[2:], uint16(s.height))
	copy(init[4:20], []byte{
		32, 24, 0, 1, // bpp, depth, big-endian, true colour
		0, 255, 0, 255, 0, 255, // max red, green, blue
		16, 8, 0, // shifts
		0, 0, 0, // padding
	})
	binary.BigEndian.PutUint32(init[20:], uint32(len(Name)))
	init = append(init, Name...)
	if err := c.write(init); err != nil {
		return fmt.Errorf("writing ServerInit: %w", err)
	}
	return nil
}

// checkVNCAuth reports whether resp is challenge DES-encrypted with the VNC
// key derived from password (first 8 bytes, each byte's bits reversed).
func checkVNCAuth(password string, challenge, resp []byte) bool {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		var r byte
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				r |= 0x80 >> j
			}
		}
		key[i] = r
	}
	block, err := des.NewCipher(key[:])
	if err != nil {
		return false
	}
	want := make([]byte, 16)
	block.Encrypt(want[:8], challenge[:8])
	block.Encrypt(want[8:], challenge[8:])
	return subtle.ConstantTimeCompare(want, resp) == 1
}
