package rfbparse

import "encoding/binary"

// Client-to-server message types (RFC 6143 §7.5 and community extensions).
const (
	MsgSetPixelFormat          = 0
	MsgSetEncodings            = 2
	MsgFramebufferUpdateReq    = 3
	MsgKeyEvent                = 4
	MsgPointerEvent            = 5
	MsgClientCutText           = 6
	MsgEnableContinuousUpdates = 150
	MsgClientFence             = 248
	MsgXVP                     = 250
	MsgSetDesktopSize          = 251
	MsgGII                     = 253
	MsgQEMU                    = 255
)

// QEMU client message subtypes.
const (
	qemuExtendedKeyEvent = 0
	qemuAudio            = 1
)

// EncodingExtendedMouseButtons is the pseudo-encoding (−316) that, once listed in
// the client's SetEncodings, makes a PointerEvent with mask bit 7 one byte longer.
const EncodingExtendedMouseButtons = -316

// EncodingQEMUExtendedKeyEvent is the pseudo-encoding (−258) by which a client
// asks to send QEMU ExtendedKeyEvents (keysym and XT keycode).
const EncodingQEMUExtendedKeyEvent = -258

// prefixMax is the longest decision prefix of any item (ProtocolVersion and
// QEMU ExtendedKeyEvent are both 12 bytes).
const prefixMax = 12

// msgNeed reports how many leading bytes of a client message decide it: its
// total length and the policy verdict. b holds the bytes available so far; when
// need > len(b) the caller must wait for more and ask again (need only grows as
// bytes arrive). total is valid once need <= len(b).
func (s *Stream) msgNeed(b []byte) (need int, total int64, err error) {
	if len(b) == 0 {
		return 1, 0, nil
	}
	switch b[0] {
	case MsgSetPixelFormat:
		return 5, 20, nil // bits per pixel at 4 (view-only channels)
	case MsgSetEncodings:
		if len(b) < 4 {
			return 4, 0, nil
		}
		return 4, 4, nil // the entries follow as items of their own
	case MsgFramebufferUpdateReq, MsgEnableContinuousUpdates:
		return 1, 10, nil
	case MsgKeyEvent:
		return 8, 8, nil
	case MsgPointerEvent:
		if len(b) >= 2 && s.extMouse && b[1]&0x80 != 0 {
			return 7, 7, nil
		}
		return 6, 6, nil
	case MsgClientCutText:
		if len(b) < 8 {
			return 8, 0, nil
		}
		n := int64(int32(binary.BigEndian.Uint32(b[4:8])))
		if n < 0 {
			n = -n // extended clipboard: |length| bytes of flags and data follow
		}
		if n > s.maxCutText {
			return 0, 0, errorf("ClientCutText length over limit:", n)
		}
		return 8, 8 + n, nil
	case MsgClientFence:
		if len(b) < 9 {
			return 9, 0, nil
		}
		if b[8] > 64 {
			return 0, 0, errFenceLength
		}
		return 9, 9 + int64(b[8]), nil
	case MsgXVP:
		return 4, 4, nil
	case MsgSetDesktopSize:
		if len(b) < 8 {
			return 8, 0, nil
		}
		return 8, 8 + 16*int64(b[6]), nil
	case MsgGII:
		if len(b) < 4 {
			return 4, 0, nil
		}
		var n uint16
		if b[1]&0x80 != 0 { // endian bit of the subtype byte: big endian
			n = binary.BigEndian.Uint16(b[2:4])
		} else {
			n = binary.LittleEndian.Uint16(b[2:4])
		}
		return 4, 4 + int64(n), nil
	case MsgQEMU:
		if len(b) < 2 {
			return 2, 0, nil
		}
		switch b[1] {
		case qemuExtendedKeyEvent:
			return 12, 12, nil
		case qemuAudio:
			if len(b) < 4 {
				return 4, 0, nil
			}
			switch binary.BigEndian.Uint16(b[2:4]) {
			case 0, 1: // enable, disable
				return 4, 4, nil
			case 2: // set format: U8 format, U8 channels, U32 frequency
				return 4, 10, nil
			}
			return 0, 0, errorf("unknown QEMU audio operation", int64(binary.BigEndian.Uint16(b[2:4])))
		}
		return 0, 0, errorf("unknown QEMU message subtype", int64(b[1]))
	}
	return 0, 0, errorf("unknown client message type", int64(b[0]))
}
