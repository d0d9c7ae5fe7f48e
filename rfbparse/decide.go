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

// key decides a KeyEvent (or QEMU ExtendedKeyEvent, whose XT keycode is also
// checked because servers may act on it instead of the keysym).
//
// The keysym is read from its own four bytes: the padding is ignored, as
// servers ignore it, so a non-zero pad cannot disguise a key.
func (s *Stream) key(down bool, ks, xt uint32) bool {
	if s.pol == nil {
		return true
	}
	ks2 := uint32(0)
	// QEMU reads the keycode as a U16: 0x10018 is 0x18 ('o') there.
	if kc := xt & 0xffff; kc != 0 && kc <= 0xff {
		ks2 = xtKeysym[kc]
	} else if kc>>8 == 0xe0 { // e0-prefixed form: 0xe0NN means 0x80|NN
		ks2 = xtKeysym[0x80|kc&0x7f]
	}
	if m := modKey(ks) | modKey(ks2); m != 0 {
		if down {
			s.mods |= m
		} else {
			s.mods &^= m
		}
		s.grp = groups(s.mods)
	}
	if !down {
		// A key-up for a key the server holds passes even when suppressed: a
		// dropped key-down (autorepeat, or a QEMU event whose keycode names a
		// held modifier) must not leave a key, e.g. Ctrl, stuck on the server.
		if s.nSupp > 0 && s.unsuppress(ks, ks2) && !s.isDown(ks) && (ks2 == 0 || !s.isDown(ks2)) {
			s.Stats.Dropped[DropShortcut]++
			return false
		}
		if s.interactor == Agent {
			s.Stats.Dropped[DropAgent]++
			return false
		}
		s.release(ks)
		return true
	}
	if s.interactor == Agent {
		s.Stats.Dropped[DropAgent]++
		return false
	}
	k := fold(ks)
	if s.forbidden(k) || ks2 != 0 && s.forbidden(fold(ks2)) {
		if !s.isDown(ks) { // an autorepeat of a key already down: its key-up must pass
			s.suppress(ks, ks2)
		}
		s.events |= EventBlocked
		s.Stats.Dropped[DropShortcut]++
		return false
	}
	if !s.hold1(ks) {
		s.Stats.Dropped[DropKeyLimit]++
		return false
	}
	if k == 'c' || k == 'v' {
		copyMods := ModCtrl
		if s.mac {
			copyMods |= ModMeta | ModSuper
			if s.mods&keyAltL != 0 { // noVNC sends Cmd as Alt_L; Option is Mode_switch
				copyMods |= ModAlt
			}
		}
		if s.grp&copyMods != 0 {
			if k == 'c' {
				s.events |= EventCopy
			} else {
				s.events |= EventPaste
			}
		}
	}
	return true
}

// forbidden reports whether key-down k (a folded keysym) completes a
// forbidden shortcut.
func (s *Stream) forbidden(k uint32) bool {
	if k == 0 {
		return false
	}
	for _, sc := range s.pol.Forbidden {
		if sc.Key == k && s.grp&sc.Mods == sc.Mods {
			return true
		}
	}
	return false
}

func (s *Stream) suppress(ks, ks2 uint32) {
	for _, k := range [2]uint32{fold(ks), fold(ks2)} {
		if k == 0 || s.suppressedAt(k) >= 0 || s.nSupp == len(s.suppressed) {
			continue
		}
		s.suppressed[s.nSupp] = k
		s.nSupp++
	}
}

func (s *Stream) suppressedAt(k uint32) int {
	for i := range s.nSupp {
		if s.suppressed[i] == k {
			return i
		}
	}
	return -1
}

// unsuppress forgets ks and ks2 as suppressed and reports whether either was:
// the key-up of a dropped key-down is dropped too.
func (s *Stream) unsuppress(ks, ks2 uint32) bool {
	found := false
	for _, k := range [2]uint32{fold(ks), fold(ks2)} {
		if k == 0 {
			continue
		}
		if i := s.suppressedAt(k); i >= 0 {
			s.nSupp--
			s.suppressed[i] = s.suppressed[s.nSupp]
			found = true
		}
	}
	return found
}

// hold1 records ks as held on the server; false when the table is full.
func (s *Stream) hold1(ks uint32) bool {
	// A key passing down is no longer suppressed (autorepeat after the
	// modifier was released): its key-up must reach the server.
	if s.nSupp > 0 {
		if i := s.suppressedAt(fold(ks)); i >= 0 {
			s.nSupp--
			s.suppressed[i] = s.suppressed[s.nSupp]
		}
	}
	for i := range s.nDown {
		if s.down[i] == ks {
			return true // autorepeat
		}
	}
	if s.nDown == maxHeld {
		return false
	}
	s.down[s.nDown] = ks
	s.nDown++
	return true
}

// isDown reports whether key-down ks passed and its key-up did not yet.
func (s *Stream) isDown(ks uint32) bool {
	for i := range s.nDown {
		if s.down[i] == ks {
			return true
		}
	}
	return false
}

func (s *Stream) release(ks uint32) {
	for i := range s.nDown {
		if s.down[i] == ks {
			s.nDown--
			s.down[i] = s.down[s.nDown]
			return
		}
	}
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

// queueRelease appends key-ups for every key held on the server and a
// button release at the last pointer position.
func (s *Stream) queueRelease() {
	b := s.inject[:s.nInject]
	for i := s.nDown - 1; i >= 0; i-- {
		if len(b)+8 > len(s.inject) {
			break
		}
		b = binary.BigEndian.AppendUint32(append(b, MsgKeyEvent, 0, 0, 0), s.down[i])
	}
	s.nDown = 0
	if (s.ptrMask != 0 || s.ptrExtra != 0) && len(b)+7 <= len(s.inject) {
		b = append(b, MsgPointerEvent, 0)
		if s.ptrExtra != 0 && s.extMouse {
			b[len(b)-1] = 0x80
		}
		b = binary.BigEndian.AppendUint16(b, s.ptrX)
		b = binary.BigEndian.AppendUint16(b, s.ptrY)
		if s.ptrExtra != 0 && s.extMouse {
			b = append(b, 0)
		}
		s.ptrMask, s.ptrExtra = 0, 0
	}
	s.nInject = len(b)
}
