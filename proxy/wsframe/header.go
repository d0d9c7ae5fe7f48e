package wsframe

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the largest encoded frame header: 2 fixed bytes, an
// 8-byte extended payload length and a 4-byte mask key.
const MaxHeaderSize = 14

// MaxControlPayload is the largest payload of a control frame (RFC 6455,
// section 5.5).
const MaxControlPayload = 125

const (
	finBit  = 0x80
	rsvBits = 0x70
	opBits  = 0x0f
	maskBit = 0x80
	lenBits = 0x7f

	len16Marker = 126
	len64Marker = 127
)

// HeaderSize returns the number of bytes PutHeader writes for h.
func HeaderSize(h ws.Header) int {
	n := 2
	switch {
	case h.Length < len16Marker:
	case h.Length <= 0xffff:
		n += 2
	default:
		n += 8
	}
	if h.Masked {
		n += 4
	}
	return n
}

// PutHeader encodes h into b and returns the number of bytes written. The
// payload length uses the shortest encoding, and the mask key follows when
// h.Masked is set; h.Rsv holds the three reserved bits as ws.Rsv makes them.
// PutHeader panics if len(b) is less than HeaderSize(h) (MaxHeaderSize is
// always enough) or if h.Length is negative.
func PutHeader(b []byte, h ws.Header) int {
	if h.Length < 0 {
		panic("wsframe: negative payload length")
	}
	_ = b[HeaderSize(h)-1] // one bounds check, panics when b is too short
	b0 := (h.Rsv<<4)&rsvBits | byte(h.OpCode)&opBits
	if h.Fin {
		b0 |= finBit
	}
	b[0] = b0
	var b1 byte
	if h.Masked {
		b1 = maskBit
	}
	n := 2
	switch {
	case h.Length < len16Marker:
		b[1] = b1 | byte(h.Length)
	case h.Length <= 0xffff:
		b[1] = b1 | len16Marker
		binary.BigEndian.PutUint16(b[2:4], uint16(h.Length))
		n = 4
	default:
		b[1] = b1 | len64Marker
		binary.BigEndian.PutUint64(b[2:10], uint64(h.Length))
		n = 10
	}
	if h.Masked {
		n += copy(b[n:n+4], h.Mask[:])
	}
	return n
}

// DecodeHeader decodes the frame header at the start of b and returns it
// with its encoded size n. When b holds only part of a header it returns
// n == 0 and a nil error: call again with more bytes. A 64-bit length with
// the most significant bit set, or a length not in its shortest encoding, is
// a *CloseError with code 1002 (protocol error). DecodeHeader does not check
// opcodes, reserved bits or masking; Decoder does.
func DecodeHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	n = 2
	switch b1 & lenBits {
	case len16Marker:
		n += 2
	case len64Marker:
		n += 8
	}
	if b1&maskBit != 0 {
		n += 4
	}
	if len(b) < n {
		return h, 0, nil
	}
	h.Fin = b0&finBit != 0
	h.Rsv = (b0 & rsvBits) >> 4
	h.OpCode = ws.OpCode(b0 & opBits)
	h.Masked = b1&maskBit != 0
	k := 2
	switch l := b1 & lenBits; l {
	case len16Marker:
		v := binary.BigEndian.Uint16(b[2:4])
		if v < len16Marker {
			return ws.Header{}, 0, errLengthNotMinimal
		}
		h.Length = int64(v)
		k = 4
	case len64Marker:
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return ws.Header{}, 0, errLengthMSB
		}
		if v <= 0xffff {
			return ws.Header{}, 0, errLengthNotMinimal
		}
		h.Length = int64(v)
		k = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[k:k+4])
	}
	return h, n, nil
}
