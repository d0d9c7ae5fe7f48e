package rfbtest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Client-to-server message types understood by the recording server.
const (
	TypeSetPixelFormat          = 0
	TypeSetEncodings            = 2
	TypeFramebufferUpdateReq    = 3
	TypeKeyEvent                = 4
	TypePointerEvent            = 5
	TypeClientCutText           = 6
	TypeEnableContinuousUpdates = 150
	TypeFence                   = 248
	TypeXvp                     = 250
	TypeSetDesktopSize          = 251
	TypeGii                     = 253
	TypeQEMU                    = 255
)

// EncodingExtendedMouseButtons is the pseudo-encoding that, once listed in a
// SetEncodings message, makes a PointerEvent with mask bit 7 one byte longer.
const EncodingExtendedMouseButtons = -316

// maxCutText bounds a ClientCutText body so a corrupt length cannot make the
// test server allocate gigabytes.
const maxCutText = 64 << 20

// parser reads client messages from a byte stream. It keeps the only state the
// stream needs: whether ExtendedMouseButtons was negotiated.
type parser struct {
	r           *bufio.Reader
	extMouseBtn bool
}

// next reads one complete client message and returns its raw bytes.
func (p *parser) next() (Msg, error) {
	t, err := p.r.ReadByte()
	if err != nil {
		return Msg{}, err
	}
	raw := []byte{t}
	// need reads n more bytes onto raw.
	need := func(n int) error {
		if n <= 0 {
			return nil
		}
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(p.r, raw[start:]); err != nil {
			return fmt.Errorf("rfbtest: reading message type %d: %w", t, noEOF(err))
		}
		return nil
	}
	switch t {
	case TypeSetPixelFormat:
		err = need(19)
	case TypeSetEncodings:
		if err = need(3); err == nil {
			n := int(binary.BigEndian.Uint16(raw[2:4]))
			if err = need(4 * n); err == nil {
				p.extMouseBtn = false
				for i := 0; i < n; i++ {
					if int32(binary.BigEndian.Uint32(raw[4+4*i:])) == EncodingExtendedMouseButtons {
						p.extMouseBtn = true
					}
				}
			}
		}
	case TypeFramebufferUpdateReq:
		err = need(9)
	case TypeKeyEvent:
		err = need(7)
	case TypePointerEvent:
		if err = need(5); err == nil && p.extMouseBtn && raw[1]&0x80 != 0 {
			err = need(1)
		}
	case TypeClientCutText:
		if err = need(7); err == nil {
			l := int64(int32(binary.BigEndian.Uint32(raw[4:8])))
			if l < 0 {
				l = -l
			}
			if l > maxCutText {
				return Msg{}, fmt.Errorf("rfbtest: ClientCutText length %d over limit %d", l, maxCutText)
			}
			err = need(int(l))
		}
	case TypeEnableContinuousUpdates:
		err = need(9)
	case TypeFence:
		if err = need(8); err == nil {
			l := int(raw[8])
			if l > 64 {
				return Msg{}, fmt.Errorf("rfbtest: Fence payload length %d over 64", l)
			}
			err = need(l)
		}
	case TypeXvp:
		err = need(3)
	case TypeSetDesktopSize:
		if err = need(7); err == nil {
			err = need(16 * int(raw[6]))
		}
	case TypeGii:
		if err = need(3); err == nil {
			var l uint16
			if raw[1]&0x80 != 0 {
				l = binary.BigEndian.Uint16(raw[2:4])
			} else {
				l = binary.LittleEndian.Uint16(raw[2:4])
			}
			err = need(int(l))
		}
	case TypeQEMU:
		if err = need(1); err != nil {
			break
		}
		switch raw[1] {
		case 0:
			err = need(10)
		case 1:
			if err = need(2); err == nil && binary.BigEndian.Uint16(raw[2:4]) == 2 {
				err = need(6)
			}
		default:
			return Msg{}, fmt.Errorf("rfbtest: unknown QEMU client message subtype %d", raw[1])
		}
	default:
		return Msg{}, fmt.Errorf("rfbtest: unknown client message type %d", t)
	}
	if err != nil {
		return Msg{}, err
	}
	return Msg{Type: t, Raw: raw}, nil
}

// noEOF turns a bare io.EOF in the middle of a message into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
