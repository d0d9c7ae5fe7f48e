package rfbparse

import "encoding/binary"

// agentGate drops input-like messages while the agent has control.
func (s *Stream) agentGate() bool {
	if s.pol != nil && s.interactor == Agent {
		s.Stats.Dropped[DropAgent]++
		return false
	}
	return true
}

// key decides a KeyEvent, or a QEMU ExtendedKeyEvent (qemu) with keycode kc.
//
// The keysym is read from its own four bytes: the padding is ignored, as
// servers ignore it, so a non-zero pad cannot disguise a key.
func (s *Stream) key(down bool, ks, kc uint32, qemu bool) bool {
	if s.pol == nil {
		return true
	}
	if s.interactor == Agent {
		s.Stats.Dropped[DropAgent]++
		return false
	}
	ev := keyOf(ks, kc, qemu)
	if down {
		return s.keyDown(ev)
	}
	return s.keyUp(ev)
}

// pointer decides a PointerEvent, stripping the right button in place.
func (s *Stream) pointer(m []byte) bool {
	if s.pol == nil {
		return true
	}
	if s.interactor == Agent {
		s.Stats.Dropped[DropAgent]++
		return false
	}
	if m[1]&0x04 != 0 {
		switch s.pol.RightButton {
		case RightStrip:
			m[1] &^= 0x04
			s.Stats.Rewritten++
		case RightDrop:
			s.Stats.Dropped[DropRightButton]++
			return false
		}
	}
	if len(m) == 7 && !s.pol.ExtendedMouseButtons {
		// Send it on as a plain 6-byte event: a server that ignores −316
		// would read the 7th byte as the start of a message never inspected.
		m[1] &^= 0x80
		s.trim = 1
		s.ptrMask, s.ptrExtra = m[1], 0
		s.ptrX = binary.BigEndian.Uint16(m[2:4])
		s.ptrY = binary.BigEndian.Uint16(m[4:6])
		return true
	}
	s.ptrMask = m[1]
	if len(m) == 7 {
		s.ptrMask &^= 0x80 // the ExtendedMouseButtons marker, not a button
	}
	s.ptrX = binary.BigEndian.Uint16(m[2:4])
	s.ptrY = binary.BigEndian.Uint16(m[4:6])
	if len(m) == 7 {
		s.ptrExtra = m[6]
	} else {
		s.ptrExtra = 0
	}
	return true
}
