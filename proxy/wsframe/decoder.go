package wsframe

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Role is the side of the connection a Decoder reads for. It decides which
// masking the received frames must have.
type Role uint8

const (
	// Server decodes frames sent by a client: they must be masked, and are
	// unmasked in place. It is the zero Role.
	Server Role = iota
	// Client decodes frames sent by a server: they must not be masked.
	Client
)

// Handler receives what a Decoder decodes.
type Handler interface {
	// OnData receives a piece of a data message's payload, already unmasked,
	// in order. op is the message's opcode (OpBinary or OpText) also for
	// continuation frames; fin is true on the last piece of the message.
	// Pieces are sub-slices of the chunk passed to Feed (zero copy), valid
	// only during the call. Only the last piece of a message may be empty.
	OnData(op ws.OpCode, p []byte, fin bool) error
	// OnControl receives a complete control frame (ping, pong, close)
	// payload, unmasked, valid only during the call. A close payload has
	// been checked: it is empty, or a valid code and a UTF-8 reason.
	OnControl(op ws.OpCode, payload []byte) error
}

// Decoder is a streaming WebSocket frame decoder. Feed it the received bytes
// in chunks of any size; it calls a Handler with the payloads.
//
// The zero Decoder decodes client frames (Role Server) with no payload
// limit and rejects text frames. A Decoder must not be copied after first
// use; Reset makes it ready for a new connection.
//
// Text payloads are passed on without UTF-8 validation. Frames after a close
// frame are decoded like any others: stopping at the close is up to the
// Handler.
type Decoder struct {
	// Role is the side the decoder reads for: Server (frames must be
	// masked) or Client (frames must not be masked).
	Role Role
	// MaxPayload is the largest data frame payload accepted, in bytes; a
	// larger one is a 1009 (message too big). 0 means no limit. Control
	// frames are limited to 125 bytes regardless.
	MaxPayload int64
	// AllowText accepts text messages; without it a text frame is a 1003
	// (unsupported data).
	AllowText bool

	err error

	// Frame in progress.
	h        ws.Header
	inFrame  bool      // header decoded, payload not yet complete
	pos      int64     // payload bytes of the frame consumed so far
	op       ws.OpCode // opcode passed to OnData for this frame
	msgOp    ws.OpCode // opcode of the fragmented message in progress, 0 if none
	hn       uint8     // bytes in hdr
	hdr      [MaxHeaderSize]byte
	ctlBuf   [MaxControlPayload]byte
	finalMsg bool // this frame ends its message
}

// Reset clears the decoder's state and any error, keeping Role, MaxPayload
// and AllowText.
func (d *Decoder) Reset() {
	*d = Decoder{Role: d.Role, MaxPayload: d.MaxPayload, AllowText: d.AllowText}
}

// Err returns the error that stopped the decoder, or nil.
func (d *Decoder) Err() error { return d.err }

// InMessage reports whether a fragmented data message is in progress, or a
// frame is partly decoded.
func (d *Decoder) InMessage() bool { return d.msgOp != 0 || d.inFrame || d.hn != 0 }

// Feed decodes the bytes in p, calling h for each payload piece and each
// complete control frame. p may be modified in place (unmasking) and is not
// retained after Feed returns. An error returned by h is returned unchanged;
// a protocol violation is returned as a *CloseError. After an error Feed
// does nothing and returns that error again.
func (d *Decoder) Feed(p []byte, h Handler) error {
	if d.err != nil {
		return d.err
	}
	for len(p) > 0 {
		if !d.inFrame {
			n, err := d.readHeader(p)
			p = p[n:]
			if err != nil {
				return d.fail(err)
			}
			if !d.inFrame {
				return nil // header incomplete; p is used up
			}
			if d.h.Length == 0 {
				if err := d.empty(h); err != nil {
					return d.fail(err)
				}
			}
			continue
		}
		n, err := d.payload(p, h)
		p = p[n:]
		if err != nil {
			return d.fail(err)
		}
	}
	return nil
}

func (d *Decoder) fail(err error) error {
	d.err = err
	return err
}

// readHeader consumes header bytes from p and returns how many it used. It
// sets d.inFrame once a full, valid header has been read.
func (d *Decoder) readHeader(p []byte) (int, error) {
	if d.hn == 0 {
		// Fast path: the header is usually whole in p.
		h, n, err := DecodeHeader(p)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			d.hn = uint8(copy(d.hdr[:], p)) // a partial header is < MaxHeaderSize
			return len(p), nil
		}
		return n, d.begin(h)
	}
	old := int(d.hn)
	k := copy(d.hdr[old:], p)
	h, n, err := DecodeHeader(d.hdr[:old+k])
	if err != nil {
		return 0, err
	}
	if n == 0 {
		d.hn += uint8(k)
		return k, nil
	}
	d.hn = 0
	return n - old, d.begin(h)
}

// begin checks the header of a new frame against the decoder's state and
// starts the frame.
func (d *Decoder) begin(h ws.Header) error {
	if h.Rsv != 0 {
		return errRsv
	}
	if h.OpCode.IsReserved() {
		return errOpCode
	}
	if d.Role == Client {
		if h.Masked {
			return errMaskUnexpected
		}
	} else if !h.Masked {
		return errMaskRequired
	}
	op := h.OpCode
	if op.IsControl() {
		if h.Length > MaxControlPayload {
			return errControlTooLong
		}
		if !h.Fin {
			return errControlNotFinal
		}
	} else {
		switch {
		case op == ws.OpContinuation:
			if d.msgOp == 0 {
				return errContinuation
			}
			op = d.msgOp
		case d.msgOp != 0:
			return errNotContinuation
		case op == ws.OpText && !d.AllowText:
			return errText
		}
		if d.MaxPayload > 0 && h.Length > d.MaxPayload {
			return errTooBig
		}
		if h.Fin {
			d.msgOp = 0
		} else {
			d.msgOp = op
		}
	}
	d.h, d.op, d.pos, d.inFrame, d.finalMsg = h, op, 0, true, h.Fin
	return nil
}

// empty finishes a frame with no payload.
func (d *Decoder) empty(h Handler) error {
	d.inFrame = false
	if d.h.OpCode.IsControl() {
		return d.control(h, d.ctlBuf[:0])
	}
	if d.finalMsg {
		return h.OnData(d.op, nil, true)
	}
	return nil
}

// payload consumes payload bytes of the current frame from p and returns
// how many it used.
func (d *Decoder) payload(p []byte, h Handler) (int, error) {
	rem := d.h.Length - d.pos
	n := len(p)
	if int64(n) > rem {
		n = int(rem)
	}
	if d.h.OpCode.IsControl() {
		// Assemble in ctlBuf: control payloads are small and may be split.
		piece := d.ctlBuf[d.pos : d.pos+int64(n)]
		copy(piece, p[:n])
		if d.h.Masked {
			ws.Cipher(piece, d.h.Mask, int(d.pos&3))
		}
		d.pos += int64(n)
		if d.pos < d.h.Length {
			return n, nil
		}
		d.inFrame = false
		return n, d.control(h, d.ctlBuf[:d.h.Length])
	}
	piece := p[:n:n]
	if d.h.Masked {
		ws.Cipher(piece, d.h.Mask, int(d.pos&3))
	}
	d.pos += int64(n)
	done := d.pos == d.h.Length
	if done {
		d.inFrame = false
	}
	return n, h.OnData(d.op, piece, done && d.finalMsg)
}

// control checks and delivers a complete control frame.
func (d *Decoder) control(h Handler, payload []byte) error {
	if d.h.OpCode == ws.OpClose {
		if err := checkClose(payload); err != nil {
			return err
		}
	}
	return h.OnControl(d.h.OpCode, payload)
}

// validCloseCode reports whether a close frame may carry code: what
// ws.CheckCloseFrameData accepts, plus 1012-1014 (registered with IANA after
// RFC 6455), minus codes above 4999 (no range is defined there).
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1012 && code <= 1014:
		return true
	case code > 4999:
		return false
	}
	return ws.CheckCloseFrameData(code, "") == nil
}

// checkClose checks a close frame payload: empty, or a code valid on the
// wire followed by a UTF-8 reason.
func checkClose(p []byte) error {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return errCloseLength
	}
	if !validCloseCode(ws.StatusCode(binary.BigEndian.Uint16(p))) {
		return errCloseCode
	}
	// The reason is checked here, without the string conversion that
	// passing it to ws.CheckCloseFrameData would cost.
	if !utf8.Valid(p[2:]) {
		return errCloseUTF8
	}
	return nil
}
