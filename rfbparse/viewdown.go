package rfbparse

import (
	"encoding/binary"
	"io"
)

// Server → client message types (RFC 6143 §7.6 and community extensions).
const (
	SrvFramebufferUpdate      = 0
	SrvSetColourMapEntries    = 1
	SrvBell                   = 2
	SrvServerCutText          = 3
	SrvEndOfContinuousUpdates = 150
	SrvServerFence            = 248
	SrvXVP                    = 250
)

// Encodings whose rectangles (or, for the pseudo-encodings, whose effects on
// the server's stream) a [ViewFilter] can frame. See [ViewFramable].
const (
	EncodingRaw                 = 0
	EncodingCopyRect            = 1
	EncodingHextile             = 5
	EncodingZRLE                = 16
	EncodingDesktopSize         = -223
	EncodingLastRect            = -224
	EncodingPointerPos          = -232
	EncodingCursor              = -239
	EncodingXCursor             = -240
	EncodingQEMULEDState        = -261
	EncodingDesktopName         = -307
	EncodingExtendedDesktopSize = -308
	EncodingXVP                 = -309
	EncodingFence               = -312
	EncodingContinuousUpdates   = -313
	// EncodingExtendedClipboard (0xc0a1e5ce) carries clipboard data in
	// ServerCutText with a negative length; never framable for a viewer.
	EncodingExtendedClipboard = -1063132722
)

// ViewFramable reports whether a client may keep encoding e in the
// SetEncodings of a view-only channel: rectangles of e have a computable
// length (Hextile: tile by tile), or e only adds server messages of a known length, or it is a
// client-side hint (quality and compression levels) the server never sends.
func ViewFramable(e int32) bool {
	switch e {
	case EncodingRaw, EncodingCopyRect, EncodingHextile, EncodingZRLE, EncodingDesktopSize, EncodingLastRect,
		EncodingPointerPos, EncodingCursor, EncodingXCursor, EncodingQEMUExtendedKeyEvent,
		EncodingQEMULEDState, EncodingDesktopName, EncodingExtendedDesktopSize, EncodingXVP,
		EncodingFence, EncodingContinuousUpdates:
		return true
	}
	return (e >= -32 && e <= -23) || (e >= -256 && e <= -247) // JPEG quality, compression level
}

type vfState uint8

const (
	vfInit     vfState = iota // ServerInit: 24 bytes, then the name
	vfMsg                     // a message's type byte
	vfHeader                  // the rest of a message header (vfNeed bytes in all)
	vfRect                    // a rectangle header: 12 bytes
	vfRectHead                // the length prefix of a rectangle body (vfNeed bytes)
	vfBody                    // vfLeft bytes of body
	vfTile                    // a Hextile tile's subencoding byte
	vfTileHead                // a Hextile tile's colours and subrectangle count (vfNeed bytes)
)

var (
	errViewMessage  = &Error{Reason: "view-only: server message cannot be framed"}
	errViewEncoding = &Error{Reason: "view-only: rectangle encoding cannot be framed"}
	errViewBPP      = &Error{Reason: "view-only: unsupported bits per pixel"}
	errViewFence    = &Error{Reason: "view-only: ServerFence payload longer than 64 bytes"}
)

// ViewFilter frames the server → client RFB stream of a view-only channel,
// from ServerInit on, and drops ServerCutText (plain and extended clipboard),
// so that a viewer who may not use the clipboard cannot read the remote one.
// A message or rectangle it cannot frame is an error (fail closed): the
// client's SetEncodings must be restricted to [ViewFramable] encodings (see
// [Stream.SetViewOnly]). It allocates nothing, holds at most a 24-byte
// header, and accepts any split of the stream into chunks. It is not safe for
// concurrent use.
type ViewFilter struct {
	st      vfState
	hold    [24]byte
	held    int
	need    int    // header bytes wanted in hold
	left    uint64 // body bytes still to pass or drop
	drop    bool   // the current message is dropped
	msg     byte   // type of the current message
	rects   uint16 // rectangles still to come in the current update
	enc     int32  // encoding of the current rectangle
	w, h    uint64 // size of the current rectangle
	tiles   uint64 // Hextile tiles still to come in the current rectangle
	tile    uint64 // index of the current Hextile tile
	tflags  byte   // subencoding of the current Hextile tile
	bpp     uint8  // bits per pixel in use
	cbpp    uint8  // bits per pixel the client set (SetBPP); wins over ServerInit's
	err     error
	Dropped uint64 // ServerCutText messages dropped
}

// SetBPP sets the bits per pixel the server uses from now on, as set by the
// client's SetPixelFormat; 0 changes nothing.
func (f *ViewFilter) SetBPP(bpp uint8) {
	if bpp != 0 {
		f.bpp, f.cbpp = bpp, bpp
	}
}

// Err returns the error that stopped the filter, if any.
func (f *ViewFilter) Err() error { return f.err }

// Feed parses server bytes p (from ServerInit on) and writes the bytes that
// pass to w, in order, as sub-slices of p. After an error Feed writes nothing
// more and returns the same error.
func (f *ViewFilter) Feed(p []byte, w io.Writer) error {
	if f.err != nil {
		return f.err
	}
	if f.st == vfInit && f.need == 0 {
		f.need = 24
	}
	run := 0 // start of the passed bytes not yet written
	i := 0
	for i < len(p) {
		switch f.st {
		case vfInit, vfHeader, vfRect, vfRectHead, vfTile, vfTileHead:
			k := copy(f.hold[f.held:f.need], p[i:])
			f.held += k
			i += k
			if f.held < f.need {
				continue
			}
			f.held = 0
			if f.drop {
				run = i
			}
			if err := f.header(); err != nil {
				return f.fail(w, p, run, i-k, err)
			}
		case vfMsg:
			t := p[i]
			if err := f.message(t); err != nil {
				return f.fail(w, p, run, i, err)
			}
			if f.drop && run < i {
				if _, err := w.Write(p[run:i]); err != nil {
					f.err = err
					return err
				}
			}
			i++
			if f.drop {
				run = i
			}
		case vfBody:
			k := uint64(len(p) - i)
			if k > f.left {
				k = f.left
			}
			i += int(k)
			f.left -= k
			if f.drop {
				run = i
			}
			if f.left == 0 {
				f.next()
			}
		}
	}
	if !f.drop && run < len(p) {
		if _, err := w.Write(p[run:]); err != nil {
			f.err = err
			return err
		}
	}
	return nil
}

// fail writes the passed bytes before position i, then records err.
func (f *ViewFilter) fail(w io.Writer, p []byte, run, i int, err error) error {
	if !f.drop && run < i {
		if _, werr := w.Write(p[run:i]); werr != nil {
			err = werr
		}
	}
	f.err = err
	return err
}

// message starts a server message of type t.
func (f *ViewFilter) message(t byte) error {
	f.msg, f.drop, f.held = t, false, 1
	f.hold[0] = t
	switch t {
	case SrvFramebufferUpdate:
		f.need, f.st = 4, vfHeader
	case SrvSetColourMapEntries:
		f.need, f.st = 6, vfHeader
	case SrvBell, SrvEndOfContinuousUpdates:
		f.held, f.st = 0, vfMsg
	case SrvServerCutText:
		f.need, f.st, f.drop = 8, vfHeader, true
		f.Dropped++
	case SrvServerFence:
		f.need, f.st = 9, vfHeader
	case SrvXVP:
		f.need, f.st = 4, vfHeader
	default:
		return errViewMessage
	}
	return nil
}

// next goes on after the current item's last byte.
func (f *ViewFilter) next() {
	if f.tiles > 0 {
		f.st, f.need, f.drop = vfTile, 1, false
		return
	}
	if f.msg == SrvFramebufferUpdate && f.rects > 0 {
		f.st, f.need, f.drop = vfRect, 12, false
		return
	}
	f.st, f.drop = vfMsg, false
}

// body passes or drops n more bytes of the current item.
func (f *ViewFilter) body(n uint64) {
	if n == 0 {
		f.next()
		return
	}
	f.left, f.st = n, vfBody
}

// header acts on a complete header in hold[:need].
func (f *ViewFilter) header() error {
	b := f.hold[:f.need]
	switch f.st {
	case vfInit:
		// The server's default format, unless the client already set its
		// own (a SetPixelFormat pipelined before ServerInit arrived applies
		// to every update after it, whatever chunk ServerInit came in).
		f.bpp = b[4]
		if f.cbpp != 0 {
			f.bpp = f.cbpp
		}
		f.msg = 0xff // not an update: the name then messages
		f.body(uint64(binary.BigEndian.Uint32(b[20:24])))
		return nil
	case vfRect:
		f.rects--
		f.w, f.h = uint64(binary.BigEndian.Uint16(b[4:6])), uint64(binary.BigEndian.Uint16(b[6:8]))
		f.enc = int32(binary.BigEndian.Uint32(b[8:12]))
		return f.rect()
	case vfTile:
		return f.hextileTile(b[0])
	case vfTileHead:
		n, _ := f.pixelBytes()
		if f.tflags&hexAnySubrects == 0 {
			f.body(0)
		} else if f.tflags&hexSubrectsColoured != 0 {
			f.body(uint64(b[len(b)-1]) * (n + 2))
		} else {
			f.body(uint64(b[len(b)-1]) * 2)
		}
		return nil
	case vfRectHead:
		switch f.enc {
		case EncodingZRLE, EncodingDesktopName:
			f.body(uint64(binary.BigEndian.Uint32(b[0:4])))
		case EncodingExtendedDesktopSize:
			f.body(3 + 16*uint64(b[0]))
		}
		return nil
	}
	switch f.msg { // vfHeader
	case SrvFramebufferUpdate:
		f.rects = binary.BigEndian.Uint16(b[2:4])
		f.next()
	case SrvSetColourMapEntries:
		f.body(6 * uint64(binary.BigEndian.Uint16(b[4:6])))
	case SrvServerCutText:
		n := int64(int32(binary.BigEndian.Uint32(b[4:8])))
		if n < 0 {
			n = -n // extended clipboard
		}
		f.body(uint64(n))
	case SrvServerFence:
		if b[8] > 64 {
			return errViewFence
		}
		f.body(uint64(b[8]))
	case SrvXVP:
		f.body(0)
	}
	return nil
}

// rect frames the body of the rectangle just read.
func (f *ViewFilter) rect() error {
	px := f.pixelBytes
	switch f.enc {
	case EncodingRaw:
		n, err := px()
		if err != nil {
			return err
		}
		f.body(f.w * f.h * n)
	case EncodingCopyRect:
		f.body(4)
	case EncodingHextile:
		if _, err := px(); err != nil {
			return err
		}
		f.tile, f.tiles = 0, (f.w+15)/16*((f.h+15)/16)
		f.body(0)
	case EncodingZRLE, EncodingDesktopName:
		f.need, f.st = 4, vfRectHead
	case EncodingExtendedDesktopSize:
		f.need, f.st = 1, vfRectHead
	case EncodingQEMULEDState:
		f.body(1)
	case EncodingCursor:
		n, err := px()
		if err != nil {
			return err
		}
		f.body(f.w*f.h*n + (f.w+7)/8*f.h)
	case EncodingXCursor:
		if f.w*f.h == 0 {
			f.body(0)
		} else {
			f.body(6 + (f.w+7)/8*f.h*2)
		}
	case EncodingLastRect:
		f.rects = 0
		f.body(0)
	case EncodingDesktopSize, EncodingPointerPos, EncodingQEMUExtendedKeyEvent:
		f.body(0)
	default:
		return errViewEncoding
	}
	return nil
}

// pixelBytes is the size of one pixel in the format in use.
func (f *ViewFilter) pixelBytes() (uint64, error) {
	switch f.bpp {
	case 8, 16, 32:
		return uint64(f.bpp / 8), nil
	}
	return 0, errViewBPP
}

// SetViewOnly makes s the client side of a view-only channel: every
// SetEncodings entry a [ViewFilter] could not frame is replaced in place by
// the entry before it (Raw when first), SetPixelFormat is noted for
// [Stream.ClientBPP] and dropped once the client asked for an update (the
// server's stream could no longer be framed across the change).
func (s *Stream) SetViewOnly() { s.viewOnly = true }

// ClientBPP returns the bits per pixel of the client's last SetPixelFormat
// that passed, or 0.
func (s *Stream) ClientBPP() uint8 { return s.cliBPP }

// ServerRest returns how many bytes at the end of the last [Stream.Server]
// chunk came after the handshake (ServerInit on).
func (s *Stream) ServerRest() int { return s.srvRest }

// ServerAccepted reports whether the server accepted the client: what
// follows the handshake is ServerInit.
func (s *Stream) ServerAccepted() bool { return s.srv == srvDone && s.phase != phOpaque }

// viewEncoding restricts one SetEncodings entry of a view-only stream, in place.
func (s *Stream) viewEncoding(pre []byte) {
	if e := int32(binary.BigEndian.Uint32(pre[:4])); !ViewFramable(e) {
		binary.BigEndian.PutUint32(pre[:4], s.encPrev)
		s.Stats.Rewritten++
	}
}

// viewMessage applies the view-only rules to a client message prefix and
// reports whether it passes.
func (s *Stream) viewMessage(pre []byte) bool {
	switch pre[0] {
	case MsgSetPixelFormat:
		if s.pfLocked {
			s.Stats.Dropped[DropAgent]++
			return false
		}
		s.cliBPP = pre[4]
	case MsgFramebufferUpdateReq, MsgEnableContinuousUpdates:
		s.pfLocked = true
	}
	return true
}

// Hextile subencoding bits (RFC 6143 §7.7.4).
const (
	hexRaw              = 1
	hexBackground       = 2
	hexForeground       = 4
	hexAnySubrects      = 8
	hexSubrectsColoured = 16
)

// hextileTile frames the tile whose subencoding byte is t.
func (f *ViewFilter) hextileTile(t byte) error {
	n, err := f.pixelBytes()
	if err != nil {
		return err
	}
	cols := (f.w + 15) / 16
	col, row := f.tile%cols, f.tile/cols
	tw, th := min(16, f.w-col*16), min(16, f.h-row*16)
	f.tile++
	f.tiles--
	f.tflags = t
	if t&hexRaw != 0 {
		f.body(tw * th * n)
		return nil
	}
	var head uint64
	if t&hexBackground != 0 {
		head += n
	}
	if t&hexForeground != 0 {
		head += n
	}
	if t&hexAnySubrects != 0 {
		head++
	}
	if head == 0 {
		f.body(0)
		return nil
	}
	f.need, f.st = int(head), vfTileHead
	return nil
}
