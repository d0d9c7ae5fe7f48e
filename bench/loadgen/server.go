package loadgen

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Server is the benchmark RFB 3.8 server (security None). It answers
//   - FramebufferUpdateRequest(w, h) with one raw update of 16+4·w·h bytes,
//   - every KeyEvent with one Bell byte (the acknowledgement the client counts),
//   - EnableContinuousUpdates(on, w, h) by pushing such updates until the
//     connection closes.
//
// ServeTCP speaks raw RFB; ServeWS speaks RFB inside WebSocket binary frames
// (the no-proxy reference, "direct").
type Server struct {
	Conns atomic.Int64 // live connections

	mu sync.Mutex
	ls []net.Listener
}

// ServeTCP accepts raw RFB connections on ln until it is closed.
func (s *Server) ServeTCP(ln net.Listener) error { return s.serve(ln, false) }

// ServeWS accepts WebSocket RFB connections on ln until it is closed.
func (s *Server) ServeWS(ln net.Listener) error { return s.serve(ln, true) }

// Close closes the listeners (live connections end with their peers).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.ls {
		ln.Close()
	}
}

func (s *Server) serve(ln net.Listener, ws bool) error {
	s.mu.Lock()
	s.ls = append(s.ls, ln)
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			s.Conns.Add(1)
			defer s.Conns.Add(-1)
			defer c.Close()
			sc := &srvConn{c: c, ws: ws}
			_ = sc.run()
		}()
	}
}

// update returns a cached FramebufferUpdate of one raw w×h rectangle.
var updates sync.Map // uint32(w<<16|h) → []byte

func update(w, h uint16) []byte {
	k := uint32(w)<<16 | uint32(h)
	if v, ok := updates.Load(k); ok {
		return v.([]byte)
	}
	b := make([]byte, 16+4*int(w)*int(h))
	b[3] = 1 // one rectangle
	binary.BigEndian.PutUint16(b[8:], w)
	binary.BigEndian.PutUint16(b[10:], h)
	for i := 16; i < len(b); i++ {
		b[i] = byte(i)
	}
	v, _ := updates.LoadOrStore(k, b)
	return v.([]byte)
}

// UpdateDims returns w, h such that a raw update of w×h is exactly size bytes
// (size-16 must be a positive multiple of 4 that factors into 16-bit sides).
func UpdateDims(size int) (w, h uint16, err error) {
	px := (size - 16) / 4
	if px <= 0 || 16+4*px != size {
		return 0, 0, errors.New("update size must be 16 + 4·k")
	}
	for hh := (px + 65534) / 65535; hh <= 65535; hh++ {
		if px%hh == 0 && px/hh <= 65535 {
			return uint16(px / hh), uint16(hh), nil
		}
	}
	return 0, 0, errors.New("update size does not factor into w×h")
}

var bells = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 2
	}
	return b
}()

type srvConn struct {
	c    net.Conn
	ws   bool
	br   *bufio.Reader
	hdr  [10]byte
	bufs net.Buffers
	// WebSocket read state.
	left   int64
	mask   [4]byte
	moff   int
	ctl    bool
	masked bool
}

func (s *srvConn) run() error {
	s.br = bufio.NewReaderSize(s.c, 4<<10)
	if s.ws {
		if err := s.upgrade(); err != nil {
			return err
		}
	}
	if err := s.write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	var b [24]byte
	if err := s.readFull(b[:12]); err != nil {
		return err
	}
	if err := s.write([]byte{1, 1}); err != nil {
		return err
	}
	if err := s.readFull(b[:1]); err != nil {
		return err
	}
	if err := s.write([]byte{0, 0, 0, 0}); err != nil {
		return err
	}
	if err := s.readFull(b[:1]); err != nil {
		return err
	}
	init := []byte{4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 5, 'b', 'e', 'n', 'c', 'h'}
	if err := s.write(init); err != nil {
		return err
	}
	return s.messages()
}

// messages parses client messages from the payload stream.
func (s *srvConn) messages() error {
	buf := make([]byte, 4<<10)
	var pend [64]byte
	np := 0
	var skip int64
	for {
		n, err := s.read(buf)
		if err != nil {
			return err
		}
		p := buf[:n]
		keys := 0
		for len(p) > 0 {
			if skip > 0 {
				k := min(skip, int64(len(p)))
				p = p[k:]
				skip -= k
				continue
			}
			// Gather a message into pend when it is split; else work on p.
			msg := p
			if np > 0 {
				k := copy(pend[np:], p)
				msg = pend[:np+k]
			}
			need := msgLen(msg)
			if need < 0 {
				return errors.New("unknown client message")
			}
			if need == 0 || len(msg) < need {
				if np == 0 {
					np = copy(pend[:], p)
				} else {
					np = len(msg)
				}
				if np == len(pend) {
					return errors.New("message prefix too long")
				}
				break
			}
			consumed := need - np
			np = 0
			switch msg[0] {
			case 3: // FramebufferUpdateRequest
				w, h := binary.BigEndian.Uint16(msg[6:]), binary.BigEndian.Uint16(msg[8:])
				if err := s.write(update(w, h)); err != nil {
					return err
				}
			case 4:
				keys++
			case 6:
				skip = int64(binary.BigEndian.Uint32(msg[4:8]))
			case 150: // EnableContinuousUpdates
				if msg[1] != 0 {
					w, h := binary.BigEndian.Uint16(msg[6:]), binary.BigEndian.Uint16(msg[8:])
					go s.push(update(w, h))
				}
			}
			p = p[consumed:]
		}
		for keys > 0 {
			k := min(keys, len(bells))
			if err := s.write(bells[:k]); err != nil {
				return err
			}
			keys -= k
		}
	}
}

// msgLen returns the length of the client message at the start of b, 0 when b
// is too short to tell, -1 for an unknown type.
func msgLen(b []byte) int {
	switch b[0] {
	case 0:
		return 20
	case 2:
		if len(b) < 4 {
			return 0
		}
		return 4 + 4*int(binary.BigEndian.Uint16(b[2:]))
	case 3, 150:
		return 10
	case 4:
		return 8
	case 5:
		return 6
	case 6:
		return 8 // the text is skipped separately
	}
	return -1
}

// push writes update u back to back until the connection fails. Small updates
// are written several per syscall (up to 64 KiB), as a busy server's socket
// would carry them.
func (s *srvConn) push(u []byte) {
	batch := u
	if k := (64 << 10) / len(u); k > 1 {
		batch = make([]byte, 0, k*len(u))
		for range k {
			batch = append(batch, u...)
		}
	}
	for {
		if err := s.write(batch); err != nil {
			return
		}
	}
}

// write sends p as raw bytes or as one unmasked binary frame.
func (s *srvConn) write(p []byte) error {
	if !s.ws {
		_, err := s.c.Write(p)
		return err
	}
	h := s.hdr[:2]
	h[0] = 0x82
	switch n := len(p); {
	case n < 126:
		h[1] = byte(n)
	case n < 1<<16:
		h = s.hdr[:4]
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = s.hdr[:10]
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	s.bufs = append(s.bufs[:0], h, p)
	bufs := s.bufs
	_, err := bufs.WriteTo(s.c)
	return err
}

func (s *srvConn) readFull(p []byte) error {
	for len(p) > 0 {
		n, err := s.read(p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// read returns raw bytes, or the unmasked payload of client data frames: as
// many frames as are already buffered, so that a burst of small frames is
// handled (and answered) at once, as with raw TCP.
func (s *srvConn) read(p []byte) (int, error) {
	if !s.ws {
		return s.br.Read(p)
	}
	n := 0
	for n < len(p) {
		if s.left == 0 {
			if n > 0 && s.br.Buffered() < 2 {
				return n, nil
			}
			if err := s.frameHeader(); err != nil {
				if n > 0 {
					return n, nil
				}
				return 0, err
			}
			continue
		}
		if n > 0 && s.br.Buffered() == 0 {
			return n, nil
		}
		k, err := s.br.Read(p[n : n+int(min(int64(len(p)-n), s.left))])
		if s.masked {
			q := p[n : n+k]
			for i := range q {
				q[i] ^= s.mask[(s.moff+i)&3]
			}
			s.moff = (s.moff + k) & 3
		}
		s.left -= int64(k)
		if !s.ctl {
			n += k
		}
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
	}
	return n, nil
}

func (s *srvConn) frameHeader() error {
	var h [14]byte
	if _, err := io.ReadFull(s.br, h[:2]); err != nil {
		return err
	}
	s.masked = h[1]&0x80 != 0
	l := int64(h[1] & 0x7f)
	switch l {
	case 126:
		if _, err := io.ReadFull(s.br, h[2:4]); err != nil {
			return err
		}
		l = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(s.br, h[2:10]); err != nil {
			return err
		}
		l = int64(binary.BigEndian.Uint64(h[2:10]))
	}
	if s.masked {
		if _, err := io.ReadFull(s.br, s.mask[:]); err != nil {
			return err
		}
	}
	s.moff = 0
	s.left = l
	switch h[0] & 0x0f {
	case 0, 1, 2:
		s.ctl = false
	case 8:
		return io.EOF
	default:
		s.ctl = true
	}
	return nil
}

// upgrade answers the client's WebSocket upgrade request.
func (s *srvConn) upgrade() error {
	req, err := http.ReadRequest(s.br)
	if err != nil {
		return err
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return errors.New("not a websocket upgrade")
	}
	h := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n"
	if strings.Contains(req.Header.Get("Sec-WebSocket-Protocol"), "binary") {
		resp += "Sec-WebSocket-Protocol: binary\r\n"
	}
	_, err = io.WriteString(s.c, resp+"\r\n")
	return err
}
