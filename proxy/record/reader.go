package record

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// Reader reads records from a recording. A file cut short (a crash) reads
// up to its last complete record: Next then returns io.ErrUnexpectedEOF.
type Reader struct {
	r   *bufio.Reader
	hdr Header
	buf []byte
}

// NewReader checks the magic and reads the header record.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: bufio.NewReaderSize(r, 256<<10)}
	var m [8]byte
	if _, err := io.ReadFull(rd.r, m[:]); err != nil {
		return nil, fmt.Errorf("record: reading magic: %w", err)
	}
	if string(m[:6]) != string(Magic[:6]) {
		return nil, errors.New("record: not a vncedge recording")
	}
	if m[6] != Magic[6] {
		return nil, fmt.Errorf("record: format version %d.%d not supported", m[6], m[7])
	}
	rec, err := rd.Next()
	if err != nil {
		return nil, fmt.Errorf("record: reading header: %w", err)
	}
	if rec.Type != TypeHeader {
		return nil, errors.New("record: first record is not a header")
	}
	if err := json.Unmarshal(rec.Payload, &rd.hdr); err != nil {
		return nil, fmt.Errorf("record: header: %w", err)
	}
	return rd, nil
}

// Header is the recording's header.
func (rd *Reader) Header() Header { return rd.hdr }

// Next returns the next record; its Payload is valid until the next call.
// At the clean end of the file it returns io.EOF; in a record cut short,
// io.ErrUnexpectedEOF; on a bad checksum, ErrCorrupt.
func (rd *Reader) Next() (Record, error) {
	var h [recHeaderSize]byte
	if _, err := io.ReadFull(rd.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		return Record{}, io.ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(h[9:13])
	if n > MaxPayload {
		return Record{}, ErrCorrupt
	}
	if cap(rd.buf) < int(n)+recTrailer {
		rd.buf = make([]byte, int(n)+recTrailer)
	}
	b := rd.buf[:int(n)+recTrailer]
	if _, err := io.ReadFull(rd.r, b); err != nil {
		return Record{}, io.ErrUnexpectedEOF
	}
	sum := crc32.Update(crc32.ChecksumIEEE(h[:]), crc32.IEEETable, b[:n])
	if sum != binary.BigEndian.Uint32(b[n:]) {
		return Record{}, ErrCorrupt
	}
	return Record{Type: h[0], Time: time.Duration(binary.BigEndian.Uint64(h[1:9])), Payload: b[:n]}, nil
}

// Event is one timed piece of a loaded recording.
type Event struct {
	Time       time.Duration
	Type       byte   // TypeServer, TypeInput or TypeAnnotation
	Data       []byte // server bytes or input message
	Annotation *Annotation
}

// Session is a whole recording in memory, with its handshake parsed.
type Session struct {
	Header    Header
	Events    []Event
	Duration  time.Duration
	Truncated bool  // the file ended inside a record (a crash)
	Corrupt   bool  // a record failed its checksum: the rest was ignored
	Gaps      int   // gap annotations: bytes are missing from the stream
	Server    int64 // server bytes recorded
	Input     int64 // input messages recorded

	// Filled by Parse.
	ServerVersion string // "RFB 003.008\n"
	ClientVersion string
	SecurityType  uint32
	ServerInit    []byte // the ServerInit message as sent
	PixelFormat   []byte // the 16-byte format the stream is encoded in
	Stream        []Chunk
	handshakeErr  error
}

// Chunk is server bytes after ServerInit with their time.
type Chunk struct {
	Time time.Duration
	Data []byte
}

// Load reads a recording file into memory and parses its handshake.
func Load(path string) (*Session, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadSession(f)
}

// ReadSession reads a recording into memory and parses its handshake.
func ReadSession(r io.Reader) (*Session, error) {
	rd, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	s := &Session{Header: rd.Header()}
	var handshake []byte
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			s.Truncated = true
			break
		}
		if err != nil {
			s.Corrupt = true
			break
		}
		s.Duration = max(s.Duration, rec.Time)
		ev := Event{Time: rec.Time, Type: rec.Type}
		switch rec.Type {
		case TypeServer:
			ev.Data = append([]byte(nil), rec.Payload...)
			s.Server += int64(len(ev.Data))
		case TypeInput:
			ev.Data = append([]byte(nil), rec.Payload...)
			s.Input++
		case TypeHandshake:
			handshake = append([]byte(nil), rec.Payload...)
			continue
		case TypeAnnotation:
			var a Annotation
			if json.Unmarshal(rec.Payload, &a) != nil {
				continue
			}
			if a.Kind == "gap" {
				s.Gaps++
			}
			ev.Annotation = &a
		default:
			continue // a later minor version's record: skip
		}
		s.Events = append(s.Events, ev)
	}
	s.handshakeErr = s.parse(handshake)
	return s, nil
}

// Replayable reports why the recording cannot be replayed, or nil.
func (s *Session) Replayable() error { return s.handshakeErr }

// parse follows the recorded server stream through the handshake (with the
// client's version and choice from the handshake record) up to the end of
// ServerInit; the rest becomes Stream, up to the first gap.
func (s *Session) parse(cli []byte) error {
	var srv []byte
	for _, ev := range s.Events {
		if ev.Type == TypeServer {
			srv = append(srv, ev.Data...)
		}
	}
	if len(cli) < 12 {
		return errors.New("the recording has no client handshake (session ended before ServerInit?)")
	}
	if len(srv) < 12 {
		return errors.New("the recording has no server handshake")
	}
	s.ServerVersion, s.ClientVersion = string(srv[:12]), string(cli[:12])
	minor := min(versionMinor(cli[:12]), versionMinor(srv[:12]))
	off := 12
	need := func(n int) bool { return off+n <= len(srv) }
	if minor == 3 {
		if !need(4) {
			return errors.New("handshake cut short")
		}
		s.SecurityType = binary.BigEndian.Uint32(srv[off:])
		off += 4
	} else {
		if !need(1) {
			return errors.New("handshake cut short")
		}
		n := int(srv[off])
		off += 1 + n
		if n == 0 || len(cli) < 13 {
			return errors.New("the server refused the connection")
		}
		s.SecurityType = uint32(cli[12])
	}
	switch s.SecurityType {
	case 1:
		if minor == 8 {
			off += 4
		}
	case 2:
		off += 16 + 4
	default:
		return fmt.Errorf("security type %d cannot be replayed", s.SecurityType)
	}
	if !need(24) {
		return errors.New("the recording ends before ServerInit")
	}
	nameLen := int(binary.BigEndian.Uint32(srv[off+20:]))
	if nameLen > 1<<16 || !need(24+nameLen) {
		return errors.New("the recording ends inside ServerInit")
	}
	s.ServerInit = srv[off : off+24+nameLen]
	s.PixelFormat = s.ServerInit[4:20]
	off += 24 + nameLen
	// The pixel format the viewer asked for (the first SetPixelFormat).
	for _, ev := range s.Events {
		if ev.Type == TypeInput && len(ev.Data) == 20 && ev.Data[0] == 0 {
			s.PixelFormat = ev.Data[4:20]
			break
		}
	}
	// Split the rest back into the recorded chunks, stopping at a gap.
	pos := 0
	for _, ev := range s.Events {
		if ev.Type == TypeAnnotation && ev.Annotation.Kind == "gap" {
			break
		}
		if ev.Type != TypeServer {
			continue
		}
		lo, hi := pos, pos+len(ev.Data)
		pos = hi
		if hi <= off {
			continue
		}
		s.Stream = append(s.Stream, Chunk{Time: ev.Time, Data: srv[max(lo, off):hi]})
	}
	return nil
}

// NoVNCFormat reports whether pf (16 bytes) is a format noVNC can show: it
// always asks for 32 bits per pixel, little-endian true colour, 8 bits per
// channel at shifts 0, 8, 16.
func NoVNCFormat(pf []byte) error {
	if len(pf) != 16 {
		return errors.New("no pixel format")
	}
	bpp, be, tc := pf[0], pf[2], pf[3]
	rmax, gmax, bmax := binary.BigEndian.Uint16(pf[4:]), binary.BigEndian.Uint16(pf[6:]), binary.BigEndian.Uint16(pf[8:])
	rs, gs, bs := pf[10], pf[11], pf[12]
	if bpp == 32 && be == 0 && tc == 1 && rmax == 255 && gmax == 255 && bmax == 255 && rs == 0 && gs == 8 && bs == 16 {
		return nil
	}
	return fmt.Errorf("pixel format %d bpp, big-endian %d, true colour %d, max %d/%d/%d, shift %d/%d/%d: noVNC shows only 32 bpp little-endian true colour with shifts 0/8/16",
		bpp, be, tc, rmax, gmax, bmax, rs, gs, bs)
}
