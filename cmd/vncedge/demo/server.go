// Package demo is vncedge's built-in demo: a small VNC (RFB 3.8) server that
// draws a moving test pattern and shows the viewer's input (a pointer trail,
// the last keys typed), and a viewer page (noVNC plus the message channel's
// Take control / Hand back button and clipboard) for vncedge's admin server.
//
// The server speaks security None and Raw encoding only, at Width×Height,
// true colour in any 8, 16 or 32 bits-per-pixel format the viewer asks for.
// It is meant for demos and tests, on 127.0.0.1.
package demo

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Client-to-server RFB message types the server reads.
const (
	MsgSetPixelFormat       = 0
	MsgSetEncodings         = 2
	MsgFramebufferUpdateReq = 3
	MsgKeyEvent             = 4
	MsgPointerEvent         = 5
	MsgClientCutText        = 6
	MsgEnableContinuous     = 150
	MsgClientFence          = 248
	MsgQEMU                 = 255
)

// Limits.
const (
	// maxCutText is the longest ClientCutText the server reads; longer
	// ones close the connection.
	maxCutText = 1 << 20
	// maxKeys is how many key labels the key line remembers.
	maxKeys = 64
	// handshakeTimeout bounds the RFB handshake; writeTimeout one update.
	handshakeTimeout = 10 * time.Second
	writeTimeout     = 30 * time.Second
)

// DefaultFPS is the band's frame rate while a viewer is connected.
const DefaultFPS = 15

// Options configure a Server.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0" (a free port).
	Addr string
	// FPS is how many band frames a second are drawn while at least one
	// viewer is connected: 0 means DefaultFPS, negative a still band
	// (frame 0), so updates are sent only when input changes the screen.
	FPS int
	// Record keeps every client message after the handshake, for Messages
	// and WaitMessage (tests). Off, nothing accumulates.
	Record bool
	// Name is the desktop name; default "vncedge demo".
	Name string
	// Logger receives a line per viewer connection and errors; default:
	// none.
	Logger *slog.Logger
}

// Msg is one client message the server received. It is recorded once the
// server has acted on it (the screen shows a key or trail by then).
type Msg struct {
	// Viewer numbers the connection it came on, from 1.
	Viewer int
	// Type is the message type byte.
	Type byte
	// Raw is the whole message.
	Raw []byte
}

// Server is the demo VNC server.
type Server struct {
	opts Options
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	fb      []uint32 // Width×Height, 0xRRGGBB
	frame   int
	viewers map[*viewer]struct{}
	nextID  int
	st      status
	drawn   [2]string // the status lines on screen
	updates int
	msgs    []Msg
	changed chan struct{} // closed and replaced when msgs grows
}

// Listen starts a demo server on opts.Addr. Close stops it.
func Listen(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.FPS == 0 {
		opts.FPS = DefaultFPS
	}
	if opts.Name == "" {
		opts.Name = "vncedge demo"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s := &Server{
		opts: opts, ln: ln, done: make(chan struct{}),
		fb: make([]uint32, Width*Height), viewers: map[*viewer]struct{}{},
		changed: make(chan struct{}),
	}
	copy(s.fb, staticImage)
	drawBand(s.fb, 0)
	clearCanvas(s.fb)
	fill(s.fb, Width, StatusRect, statusBackground)
	drawStatus(s.fb, &s.st, &s.drawn)
	s.wg.Add(1)
	go s.acceptLoop()
	if opts.FPS > 0 {
		s.wg.Add(1)
		go s.animate(time.Second / time.Duration(opts.FPS))
	}
	return s, nil
}

// Start is Listen, with the server closed when ctx is done.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := Listen(opts)
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and disconnects every viewer.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for v := range s.viewers {
		_ = v.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Framebuffer returns a copy of the screen, Width×Height pixels of 0xRRGGBB.
func (s *Server) Framebuffer() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.fb...)
}

// Frame is the band's current frame number.
func (s *Server) Frame() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frame
}

// Keys returns the key line's keys, oldest first (labels joined: "hi<Ret>").
func (s *Server) Keys() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.st.keys, "")
}

// Viewers is the number of connected viewers.
func (s *Server) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.viewers)
}

// UpdatesSent counts FramebufferUpdates sent to all viewers.
func (s *Server) UpdatesSent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates
}

// Messages returns the client messages received so far (Options.Record).
func (s *Server) Messages() []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Msg(nil), s.msgs...)
}

// WaitMessage waits until a message at index from or later matches and
// returns its index and the message (Options.Record). It wakes on each new
// message; it does not poll.
func (s *Server) WaitMessage(ctx context.Context, from int, match func(Msg) bool) (int, Msg, error) {
	for {
		s.mu.Lock()
		for ; from < len(s.msgs); from++ {
			if match(s.msgs[from]) {
				m := s.msgs[from]
				s.mu.Unlock()
				return from, m, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, Msg{}, fmt.Errorf("demo: waiting for a client message: %w", ctx.Err())
		case <-s.done:
			return 0, Msg{}, errors.New("demo: server closed")
		}
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
			default:
				s.opts.Logger.Error("demo: accept", "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
		}()
	}
}

// animate advances the band while anyone watches.
func (s *Server) animate(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(s.viewers) > 0 {
			s.frame++
			drawBand(s.fb, s.frame)
			s.markDirtyLocked(BandRect)
		}
		s.mu.Unlock()
	}
}

// markDirtyLocked records a changed region for every viewer and wakes their
// writers. s.mu is held.
func (s *Server) markDirtyLocked(r image.Rectangle) {
	if r.Empty() {
		return
	}
	for v := range s.viewers {
		v.dirty = addDirty(v.dirty, r)
		v.wakeUp()
	}
}

// maxDirty is how many separate changed rectangles a viewer keeps before
// they are merged into their bounding box.
const maxDirty = 8

// addDirty adds r to a set of disjoint rectangles, merging it with those it
// overlaps or touches.
func addDirty(set []image.Rectangle, r image.Rectangle) []image.Rectangle {
	for merged := true; merged; {
		merged = false
		for i, d := range set {
			if d.Inset(-1).Overlaps(r) {
				r = r.Union(d)
				set = append(set[:i], set[i+1:]...)
				merged = true
				break
			}
		}
	}
	set = append(set, r)
	if len(set) > maxDirty {
		var all image.Rectangle
		for _, d := range set {
			all = all.Union(d)
		}
		set = append(set[:0], all)
	}
	return set
}

func (s *Server) redrawStatusLocked() {
	for _, r := range drawStatus(s.fb, &s.st, &s.drawn) {
		s.markDirtyLocked(r)
	}
}

func (s *Server) record(v *viewer, typ byte, raw []byte) {
	if !s.opts.Record {
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, Msg{Viewer: v.id, Type: typ, Raw: append([]byte(nil), raw...)})
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// viewer is one client connection.
type viewer struct {
	s    *Server
	nc   net.Conn
	id   int
	wake chan struct{}
	done chan struct{}

	// Guarded by s.mu.
	pf           pixelFormat
	req          image.Rectangle   // union of pending update requests
	full         bool              // a pending request is non-incremental
	dirty        []image.Rectangle // changed since the last update sent, disjoint
	px, py       int               // last pointer position
	pmask        uint8             // last button mask
	pointerKnown bool
}

func (v *viewer) wakeUp() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	log := s.opts.Logger.With("remote", nc.RemoteAddr().String())
	br := bufio.NewReaderSize(nc, 16<<10)
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := s.handshake(nc, br); err != nil {
		log.Warn("demo: handshake", "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})

	v := &viewer{s: s, nc: nc, wake: make(chan struct{}, 1), done: make(chan struct{}), pf: nativeFormat}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.nextID++
	v.id = s.nextID
	s.viewers[v] = struct{}{}
	s.st.viewers = len(s.viewers)
	s.redrawStatusLocked()
	s.mu.Unlock()
	log.Info("demo: viewer connected", "viewer", v.id)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		v.writeLoop()
	}()
	err := v.readLoop(br)
	close(v.done)
	_ = nc.Close()
	<-writerDone

	s.mu.Lock()
	delete(s.viewers, v)
	s.st.viewers = len(s.viewers)
	s.redrawStatusLocked()
	s.mu.Unlock()
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) { // readLoop only ends on an error
		log.Warn("demo: viewer error", "viewer", v.id, "err", err)
	}
	log.Info("demo: viewer disconnected", "viewer", v.id)
}

// handshake runs the server side of RFB 3.3, 3.7 or 3.8 with security None,
// through ServerInit.
func (s *Server) handshake(nc net.Conn, br *bufio.Reader) error {
	if _, err := io.WriteString(nc, "RFB 003.008\n"); err != nil {
		return err
	}
	var ver [12]byte
	if _, err := io.ReadFull(br, ver[:]); err != nil {
		return fmt.Errorf("reading the client version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(ver[:]), "RFB %03d.%03d\n", &major, &minor); err != nil || major != 3 {
		return fmt.Errorf("bad client version %q", ver[:])
	}
	if minor < 7 {
		if _, err := nc.Write([]byte{0, 0, 0, 1}); err != nil { // 3.3: the server picks None
			return err
		}
	} else {
		if _, err := nc.Write([]byte{1, 1}); err != nil { // one type: None
			return err
		}
		t, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("reading the security type: %w", err)
		}
		if t != 1 {
			return fmt.Errorf("client chose security type %d, offered only None", t)
		}
		if minor >= 8 {
			if _, err := nc.Write([]byte{0, 0, 0, 0}); err != nil { // SecurityResult OK
				return err
			}
		}
	}
	if _, err := br.ReadByte(); err != nil { // ClientInit: every session is shared
		return fmt.Errorf("reading ClientInit: %w", err)
	}
	si := make([]byte, 24, 24+len(s.opts.Name))
	binary.BigEndian.PutUint16(si[0:], Width)
	binary.BigEndian.PutUint16(si[2:], Height)
	nativeFormat.marshal(si[4:20])
	binary.BigEndian.PutUint32(si[20:], uint32(len(s.opts.Name)))
	si = append(si, s.opts.Name...)
	_, err := nc.Write(si)
	return err
}

// readLoop reads client messages until the connection ends.
func (v *viewer) readLoop(br *bufio.Reader) error {
	s := v.s
	var buf [20]byte
	for {
		typ, err := br.ReadByte()
		if err != nil {
			return err
		}
		buf[0] = typ
		switch typ {
		case MsgSetPixelFormat:
			if _, err := io.ReadFull(br, buf[1:20]); err != nil {
				return err
			}
			pf := unmarshalPixelFormat(buf[4:20])
			if err := pf.check(); err != nil {
				return err
			}
			s.mu.Lock()
			v.pf = pf
			s.mu.Unlock()
			s.record(v, typ, buf[:20])
		case MsgSetEncodings:
			if _, err := io.ReadFull(br, buf[1:4]); err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint16(buf[2:]))
			raw := make([]byte, 4+4*n)
			copy(raw, buf[:4])
			if _, err := io.ReadFull(br, raw[4:]); err != nil {
				return err
			}
			s.record(v, typ, raw) // every encoding is answered with Raw
		case MsgFramebufferUpdateReq:
			if _, err := io.ReadFull(br, buf[1:10]); err != nil {
				return err
			}
			r := image.Rect(0, 0, int(binary.BigEndian.Uint16(buf[6:])), int(binary.BigEndian.Uint16(buf[8:])))
			r = r.Add(image.Pt(int(binary.BigEndian.Uint16(buf[2:])), int(binary.BigEndian.Uint16(buf[4:]))))
			r = r.Intersect(image.Rect(0, 0, Width, Height))
			s.mu.Lock()
			v.req = v.req.Union(r)
			if buf[1] == 0 && !r.Empty() {
				v.full = true
			}
			s.mu.Unlock()
			s.record(v, typ, buf[:10])
			v.wakeUp()
		case MsgKeyEvent:
			if _, err := io.ReadFull(br, buf[1:8]); err != nil {
				return err
			}
			v.key(buf[1] != 0, binary.BigEndian.Uint32(buf[4:]))
			s.record(v, typ, buf[:8])
		case MsgPointerEvent:
			if _, err := io.ReadFull(br, buf[1:6]); err != nil {
				return err
			}
			v.pointer(buf[1], int(binary.BigEndian.Uint16(buf[2:])), int(binary.BigEndian.Uint16(buf[4:])))
			s.record(v, typ, buf[:6])
		case MsgClientCutText:
			if _, err := io.ReadFull(br, buf[1:8]); err != nil {
				return err
			}
			n := int32(binary.BigEndian.Uint32(buf[4:]))
			if n < 0 || n > maxCutText {
				return fmt.Errorf("ClientCutText of length %d (extended clipboard is not offered; limit %d)", n, maxCutText)
			}
			raw := make([]byte, 8+int(n))
			copy(raw, buf[:8])
			if _, err := io.ReadFull(br, raw[8:]); err != nil {
				return err
			}
			v.cutText(raw[8:])
			s.record(v, typ, raw)
		case MsgEnableContinuous:
			if _, err := io.ReadFull(br, buf[1:10]); err != nil {
				return err
			}
			s.record(v, typ, buf[:10]) // not offered: ignored
		case MsgClientFence:
			if _, err := io.ReadFull(br, buf[1:9]); err != nil {
				return err
			}
			raw := make([]byte, 9+int(buf[8]))
			copy(raw, buf[:9])
			if _, err := io.ReadFull(br, raw[9:]); err != nil {
				return err
			}
			s.record(v, typ, raw) // not offered: ignored
		case MsgQEMU:
			if _, err := io.ReadFull(br, buf[1:2]); err != nil {
				return err
			}
			if buf[1] != 0 {
				return fmt.Errorf("QEMU message subtype %d not supported", buf[1])
			}
			if _, err := io.ReadFull(br, buf[2:12]); err != nil {
				return err
			}
			v.key(binary.BigEndian.Uint16(buf[2:]) != 0, binary.BigEndian.Uint32(buf[4:]))
			s.record(v, typ, buf[:12])
		default:
			return fmt.Errorf("unsupported client message type %d", typ)
		}
	}
}

func (v *viewer) key(down bool, keysym uint32) {
	if !down {
		return
	}
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if keysym == 0xff1b { // Escape clears the canvas
		clearCanvas(s.fb)
		s.markDirtyLocked(CanvasRect)
	}
	s.st.keys = append(s.st.keys, keyLabel(keysym))
	if len(s.st.keys) > maxKeys {
		s.st.keys = append(s.st.keys[:0], s.st.keys[len(s.st.keys)-maxKeys:]...)
	}
	s.redrawStatusLocked()
}

func (v *viewer) pointer(mask uint8, x, y int) {
	x, y = min(x, Width-1), min(y, Height-1)
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := PenColour(mask); ok {
		x0, y0 := x, y
		if v.pointerKnown && v.pmask&mask != 0 { // the button was held already: join the points
			x0, y0 = v.px, v.py
		}
		s.markDirtyLocked(drawLine(s.fb, x0, y0, x, y, c))
	}
	v.px, v.py, v.pmask, v.pointerKnown = x, y, mask, true
	s.st.x, s.st.y, s.st.buttons = x, y, mask
	s.redrawStatusLocked()
}

func (v *viewer) cutText(text []byte) {
	// Latin-1 per RFB; shown as printable ASCII only.
	var b strings.Builder
	for _, c := range text[:min(len(text), 200)] {
		if c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.clipboard, s.st.clipboardLength = b.String(), len(text)
	s.redrawStatusLocked()
}

// writeLoop sends an update whenever one is requested and there is
// something to send.
func (v *viewer) writeLoop() {
	var buf []byte
	for {
		select {
		case <-v.wake:
		case <-v.done:
			return
		}
		for {
			var ok bool
			buf, ok = v.nextUpdate(buf[:0])
			if !ok {
				break
			}
			_ = v.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := v.nc.Write(buf); err != nil {
				_ = v.nc.Close()
				return
			}
		}
	}
}

// nextUpdate appends the next FramebufferUpdate to buf, or returns false
// when none is due: no request is pending, or an incremental one whose
// region has not changed (it is held until it does).
func (v *viewer) nextUpdate(buf []byte) ([]byte, bool) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.req.Empty() {
		return buf, false
	}
	var rects []image.Rectangle
	if v.full {
		rects = append(rects, v.req)
	} else {
		for _, d := range v.dirty {
			if r := d.Intersect(v.req); !r.Empty() {
				rects = append(rects, r)
			}
		}
	}
	if len(rects) == 0 {
		return buf, false
	}
	// What was sent is no longer dirty; parts outside the request stay.
	kept := v.dirty[:0]
	for _, d := range v.dirty {
		if !d.In(v.req) {
			kept = append(kept, d)
		}
	}
	v.dirty = kept
	v.req, v.full = image.Rectangle{}, false
	s.updates++

	bpp := int(v.pf.bpp / 8)
	need := 4
	for _, r := range rects {
		need += 12 + r.Dx()*r.Dy()*bpp
	}
	if cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	buf = buf[:need]
	buf[0], buf[1] = 0, 0 // FramebufferUpdate, padding
	binary.BigEndian.PutUint16(buf[2:], uint16(len(rects)))
	out := buf[4:]
	for _, r := range rects {
		binary.BigEndian.PutUint16(out[0:], uint16(r.Min.X))
		binary.BigEndian.PutUint16(out[2:], uint16(r.Min.Y))
		binary.BigEndian.PutUint16(out[4:], uint16(r.Dx()))
		binary.BigEndian.PutUint16(out[6:], uint16(r.Dy()))
		binary.BigEndian.PutUint32(out[8:], 0) // Raw
		out = out[12:]
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for _, rgb := range s.fb[y*Width+r.Min.X : y*Width+r.Max.X] {
				v.pf.put(out, rgb)
				out = out[bpp:]
			}
		}
	}
	return buf, true
}

// pixelFormat is the RFB PIXEL_FORMAT.
type pixelFormat struct {
	bpp, depth             uint8
	bigEndian, trueColour  bool
	rmax, gmax, bmax       uint16
	rshift, gshift, bshift uint8
}

// nativeFormat is what ServerInit announces: 32 bits, depth 24,
// little-endian, red at 16, green at 8, blue at 0.
var nativeFormat = pixelFormat{bpp: 32, depth: 24, trueColour: true,
	rmax: 255, gmax: 255, bmax: 255, rshift: 16, gshift: 8, bshift: 0}

func unmarshalPixelFormat(b []byte) pixelFormat {
	return pixelFormat{
		bpp: b[0], depth: b[1], bigEndian: b[2] != 0, trueColour: b[3] != 0,
		rmax: binary.BigEndian.Uint16(b[4:]), gmax: binary.BigEndian.Uint16(b[6:]), bmax: binary.BigEndian.Uint16(b[8:]),
		rshift: b[10], gshift: b[11], bshift: b[12],
	}
}

func (pf pixelFormat) marshal(b []byte) {
	b[0], b[1] = pf.bpp, pf.depth
	b[2], b[3] = boolByte(pf.bigEndian), boolByte(pf.trueColour)
	binary.BigEndian.PutUint16(b[4:], pf.rmax)
	binary.BigEndian.PutUint16(b[6:], pf.gmax)
	binary.BigEndian.PutUint16(b[8:], pf.bmax)
	b[10], b[11], b[12] = pf.rshift, pf.gshift, pf.bshift
	b[13], b[14], b[15] = 0, 0, 0
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// check refuses what the server cannot send: colour maps and odd sizes.
func (pf pixelFormat) check() error {
	switch {
	case pf.bpp != 8 && pf.bpp != 16 && pf.bpp != 32:
		return fmt.Errorf("SetPixelFormat: %d bits per pixel not supported (8, 16 or 32)", pf.bpp)
	case !pf.trueColour:
		return errors.New("SetPixelFormat: colour maps not supported (true colour only)")
	case pf.rmax == 0 || pf.gmax == 0 || pf.bmax == 0:
		return errors.New("SetPixelFormat: a colour maximum of 0")
	case pf.rshift >= pf.bpp || pf.gshift >= pf.bpp || pf.bshift >= pf.bpp:
		return errors.New("SetPixelFormat: a shift past the pixel")
	}
	return nil
}

// put writes the pixel rgb (0xRRGGBB) into b in this format.
func (pf pixelFormat) put(b []byte, rgb uint32) {
	r, g, bl := rgb>>16&0xff, rgb>>8&0xff, rgb&0xff
	var p uint32
	if pf.rmax == 255 && pf.gmax == 255 && pf.bmax == 255 {
		p = r<<pf.rshift | g<<pf.gshift | bl<<pf.bshift
	} else {
		p = scale(r, pf.rmax)<<pf.rshift | scale(g, pf.gmax)<<pf.gshift | scale(bl, pf.bmax)<<pf.bshift
	}
	switch pf.bpp {
	case 32:
		if pf.bigEndian {
			binary.BigEndian.PutUint32(b, p)
		} else {
			binary.LittleEndian.PutUint32(b, p)
		}
	case 16:
		if pf.bigEndian {
			binary.BigEndian.PutUint16(b, uint16(p))
		} else {
			binary.LittleEndian.PutUint16(b, uint16(p))
		}
	default:
		b[0] = byte(p)
	}
}

// scale maps an 8-bit channel to 0..max, rounding.
func scale(c uint32, max uint16) uint32 { return (c*uint32(max) + 127) / 255 }
