package rfbparse

import (
	"encoding/binary"
	"strings"
)

// Key state as the servers keep it. See the package doc for the model.

// Server models that may hold a key: a held key stays held until a release
// frees it in every model (fail closed where servers differ).
const (
	// inTiger: TigerVNC (VNCSConnection::keyEvent) tracks a press by its XT
	// keycode when a QEMU event carries one, else by 0x80000000|keysym; a
	// release it does not hold is ignored, and a repeat press acts with the
	// keysym of the first press.
	inTiger uint8 = 1 << iota
	// inKeycode: QEMU without -k tracks keys by XT keycode only; plain keysyms
	// become the keycode of their key on the server's layout (US assumed).
	inKeycode
	// inKeysym: x11vnc, libvncserver-based servers and QEMU with -k act on
	// keysyms: a release of a keysym (either case) frees its key.
	inKeysym

	inAll = inTiger | inKeycode | inKeysym
)

// Keysyms of the keyboard context-menu keys.
const (
	KeysymMenu = 0xff67
	KeysymF10  = 0xffc7
)

// heldKey is a key press that passed and that some server model still holds.
type heldKey struct {
	ks   uint32 // keysym of the press
	kc   uint32 // keycode as sent in a QEMU event (TigerVNC reads a U32); 0 for plain events
	qemu bool   // pressed with a QEMU ExtendedKeyEvent: released with one
	xt   uint8  // the key in the keycode model (XT, 0x80|code for e0 keys); 0 when none
	in   uint8  // models holding it
	fk   uint32 // fold(ks): the key in the keysym model (0 when ks is 0)
	mk   uint16 // modifier keys it is, by keysym or by keycode
}

// lookup is TigerVNC's identity of a key event.
func (h *heldKey) lookup() uint32 {
	if h.qemu && h.kc != 0 {
		return h.kc
	}
	return 0x80000000 | h.ks
}

// keyOf builds the event's identities.
func keyOf(ks, kc uint32, qemu bool) heldKey {
	h := heldKey{ks: ks, kc: kc, qemu: qemu}
	if qemu {
		// QEMU reads the keycode as a U16: 0x10018 is 0x18 ('o') there.
		// A keycode of 0 presses nothing in QEMU.
		if c := kc & 0xffff; c != 0 && c <= 0xff {
			h.xt = uint8(c)
		} else if c>>8 == 0xe0 { // e0-prefixed form: 0xe0NN means 0x80|NN
			h.xt = uint8(0x80 | c&0x7f)
		}
	}
	h.fk = fold(ks)
	if !qemu {
		h.xt = keysymXT(h.fk)
	}
	h.mk = modKey(ks) | modKey(xtKeysym[h.xt])
	return h
}

// keyDown decides a key press.
func (s *Stream) keyDown(ev heldKey) bool {
	// What the press may mean: its keysym, its keycode on a US layout, and
	// for TigerVNC the keysym of a press it already holds under the same
	// identity (it repeats that one, whatever keysym this event carries).
	// need: the models that do not hold the key yet.
	k1, k2, k3 := ev.fk, fold(xtKeysym[ev.xt]), uint32(0)
	need := inAll
	if ev.xt == 0 {
		need &^= inKeycode
	}
	if ev.ks == 0 {
		need &^= inKeysym
	}
	look := ev.lookup()
	for i := range s.nHeld {
		h := &s.keys[i]
		if h.in&inTiger != 0 && h.lookup() == look {
			k3 = fold(h.ks)
			need &^= inTiger
		}
		if h.in&inKeycode != 0 && ev.xt != 0 && h.xt == ev.xt {
			need &^= inKeycode
		}
		if h.in&inKeysym != 0 && ev.fk != 0 && h.fk == ev.fk {
			need &^= inKeysym
		}
	}
	if k2 == k1 {
		k2 = 0
	}
	if k3 == k1 || k3 == k2 {
		k3 = 0
	}
	if s.blocked(k1, ev.ks) || k2 != 0 && s.blocked(k2, 0) || k3 != 0 && s.blocked(k3, s.heldKeysym(look)) {
		s.events |= EventBlocked
		s.Stats.Dropped[DropShortcut]++
		return false
	}
	if need != 0 && s.nHeld == maxHeld {
		s.Stats.Dropped[DropKeyLimit]++ // fail closed: a press the state cannot track
		return false
	}
	// A model that holds the key already sees a repeat; the others hold
	// it from now on, under this press.
	if need != 0 {
		ev.in = need
		s.keys[s.nHeld] = ev
		s.nHeld++
	}
	s.deriveMods()
	if k1 == 'c' || k1 == 'v' {
		copyMods := ModCtrl
		if s.mac {
			copyMods |= ModMeta | ModSuper
			if s.mods&keyAltL != 0 { // noVNC sends Cmd as Alt_L; Option is Mode_switch
				copyMods |= ModAlt
			}
		}
		if s.grp&copyMods != 0 {
			if k1 == 'c' {
				s.events |= EventCopy
			} else {
				s.events |= EventPaste
			}
		}
	}
	return true
}

// keyUp decides a key release: it passes when it frees a held key in some
// model, and changes nothing otherwise (servers ignore such releases).
func (s *Stream) keyUp(ev heldKey) bool {
	look := ev.lookup()
	// Xvnc releases a plain event's keysym on the lowest X keycode holding
	// it, which need not be the press TigerVNC's tracking names when
	// another press (a QEMU one, on another keycode) carries the same
	// keysym: then this release frees neither in the TigerVNC model.
	ambiguous := false
	if !ev.qemu && ev.fk != 0 {
		plain, byCode := false, false
		for i := range s.nHeld {
			h := &s.keys[i]
			if h.in&inTiger == 0 {
				continue
			}
			plain = plain || h.lookup() == look
			byCode = byCode || h.qemu && h.kc != 0 && h.kc < 0x80000000 && h.fk == ev.fk
		}
		ambiguous = plain && byCode
	}
	freed := false
	n := 0
	for i := range s.nHeld {
		h := &s.keys[i]
		in := h.in
		if h.lookup() == look {
			if ambiguous {
				freed = true // the server acts on it, somewhere: pass it, hold on
			} else {
				in &^= inTiger
			}
		}
		if ev.xt != 0 && h.xt == ev.xt {
			in &^= inKeycode
		}
		if ev.fk != 0 && h.fk == ev.fk {
			in &^= inKeysym
		}
		if in == h.in {
			if n != i {
				s.keys[n] = *h
			}
			n++
			continue
		}
		freed = true
		if in != 0 {
			h.in = in
			if n != i {
				s.keys[n] = *h
			}
			n++
		}
	}
	if !freed {
		s.Stats.Dropped[DropUnmatched]++
		return false
	}
	s.nHeld = n
	s.deriveMods()
	return true
}

// deriveMods recomputes the modifier keys any model may hold: a held key is
// a modifier if its keysym or its keycode names one.
func (s *Stream) deriveMods() {
	var m uint16
	for i := range s.nHeld {
		m |= s.keys[i].mk
	}
	s.mods, s.grp = m, groups(m)
	s.publish()
}

// blocked reports whether a press meaning folded keysym k (raw as sent, 0
// when unknown) is dropped: it completes a forbidden shortcut, is the
// control character of a forbidden Ctrl shortcut (typed with or without
// Ctrl), or opens the context menu.
//
// A keysym that needs Shift on its key (an upper-case letter, a shifted
// symbol, ISO_Left_Tab) counts as Shift held: Xvnc presses a fake Shift to
// type it, so Ctrl + 'I' arrives as Ctrl+Shift+I, and Ctrl + ISO_Left_Tab as
// Ctrl+Shift+Tab. Shifted symbols are also judged as their unshifted key on
// a US layout ('!' as Shift+1).
func (s *Stream) blocked(k, raw uint32) bool {
	if k == 0 {
		return false
	}
	grp := s.judgeGroups() // the desktop's other connections' modifiers too (shared.go)
	base, shifted := shiftedKeysym(raw)
	if shifted {
		grp |= ModShift
	}
	if s.forbiddenWith(k, grp) || base != 0 && s.forbiddenWith(base, grp) {
		return true
	}
	if c := k &^ 0x1000000; c >= 0x01 && c <= 0x1f && (k == c || k>>24 == 1) {
		letter := c | 0x40 // ^[ … ^_
		if c <= 0x1a {
			letter = c | 0x60 // ^A … ^Z
		}
		for _, sc := range s.pol.Forbidden {
			if sc.Mods&ModCtrl != 0 && sc.Key == letter {
				return true
			}
		}
	}
	if nonASCII(k) {
		// Xvnc types a keysym on whatever key carries it in the server's
		// keymap (Cyrillic_shcha is on the O key of a Russian one), and
		// programs such as Chromium read Ctrl + a non-Latin key by the
		// key's position: under the modifiers of a forbidden letter
		// shortcut, no such keysym passes.
		for _, sc := range s.pol.Forbidden {
			if sc.Mods != 0 && sc.Key >= 'a' && sc.Key <= 'z' && grp&sc.Mods == sc.Mods {
				return true
			}
		}
	}
	if s.pol.RightButton != RightAllow && !s.pol.AllowContextMenuKeys {
		if k == KeysymMenu || k == KeysymF10 && grp&ModShift != 0 {
			return true
		}
	}
	return false
}

// usShifted maps the US layout's shifted symbols to their unshifted keys.
const usShifted, usBase = "~!@#$%^&*()_+{}|:\"<>?", "`1234567890-=[]\\;',./"

// keysymISOLeftTab is Shift+Tab's keysym; keysymTab is Tab's.
const keysymISOLeftTab, keysymTab = 0xfe20, 0xff09

// shiftedKeysym reports whether raw needs Shift on its key (fail closed: as
// on a US layout) and, where its key's own keysym differs beyond case, that
// keysym (base; 0 when none).
func shiftedKeysym(raw uint32) (base uint32, shifted bool) {
	if raw >= 0x1000020 && raw <= 0x100007e {
		raw -= 0x1000000
	}
	switch {
	case raw >= 'A' && raw <= 'Z':
		return 0, true
	case raw == keysymISOLeftTab:
		return keysymTab, true
	case raw < 0x80:
		if i := strings.IndexByte(usShifted, byte(raw)); i >= 0 {
			return uint32(usBase[i]), true
		}
	}
	return 0, false
}

// heldKeysym is the keysym of the held key under lookup identity look.
func (s *Stream) heldKeysym(look uint32) uint32 {
	for i := range s.nHeld {
		if h := &s.keys[i]; h.in&inTiger != 0 && h.lookup() == look {
			return h.ks
		}
	}
	return 0
}

// nonASCII reports whether folded keysym k is anything but ASCII or a
// function, keypad or modifier keysym (0xfd00–0xffff): Latin-1, the legacy
// and Unicode keysyms of other scripts, vendor keysyms and undefined values,
// which Xvnc adds to its keymap on a spare key.
func nonASCII(k uint32) bool {
	return k >= 0x80 && (k < 0xfd00 || k > 0xffff)
}

// forbiddenWith reports whether key-down k (a folded keysym) with modifier
// groups grp completes a forbidden shortcut.
func (s *Stream) forbiddenWith(k uint32, grp Modifier) bool {
	for _, sc := range s.pol.Forbidden {
		if sc.Key == k && grp&sc.Mods == sc.Mods {
			return true
		}
	}
	return false
}

// appendReleases appends a release for every held key, each with the kind of
// event and the identity it was pressed with, and forgets them.
func (s *Stream) appendReleases(b []byte) []byte {
	for i := s.nHeld - 1; i >= 0; i-- {
		h := &s.keys[i]
		if h.qemu {
			b = append(b, MsgQEMU, qemuExtendedKeyEvent, 0, 0)
			b = binary.BigEndian.AppendUint32(b, h.ks)
			b = binary.BigEndian.AppendUint32(b, h.kc)
		} else {
			b = binary.BigEndian.AppendUint32(append(b, MsgKeyEvent, 0, 0, 0), h.ks)
		}
	}
	s.nHeld = 0
	s.deriveMods()
	return b
}

// appendButtonRelease appends a PointerEvent with no button at the last
// position when a button is held.
func (s *Stream) appendButtonRelease(b []byte) []byte {
	if s.ptrMask == 0 && s.ptrExtra == 0 {
		return b
	}
	ext := s.ptrExtra != 0 && s.extMouse
	b = append(b, MsgPointerEvent, 0)
	if ext {
		b[len(b)-1] = 0x80
	}
	b = binary.BigEndian.AppendUint16(b, s.ptrX)
	b = binary.BigEndian.AppendUint16(b, s.ptrY)
	if ext {
		b = append(b, 0)
	}
	s.ptrMask, s.ptrExtra = 0, 0
	return b
}

// queueRelease queues key-ups for every key held on the server and a button
// release at the last pointer position.
func (s *Stream) queueRelease() {
	b := s.appendReleases(s.inject[:s.nInject])
	b = s.appendButtonRelease(b)
	s.nInject = len(b)
}

// MaxReleaseLen is the most bytes [Stream.ReleaseAll] appends.
const MaxReleaseLen = maxHeld*12 + 7

// ReleaseAll is for the end of a session (closed, or replaced by another
// viewer): it appends to buf (give it MaxReleaseLen bytes of room to avoid an
// allocation) the messages that release every key and button the server
// holds for this viewer, including releases still queued by
// [Stream.SetInteractor], and forgets them. It appends nothing when the server
// is in the middle of a message the viewer sent (a long clipboard transfer):
// inserted bytes would corrupt it; servers then release what the client held
// when it disconnects (TigerVNC does).
func (s *Stream) ReleaseAll(buf []byte) []byte {
	if s.pol == nil || s.phase != phMessages || s.encLeft > 0 || s.remain > 0 && s.bodyPass {
		return buf
	}
	buf = append(buf, s.inject[:s.nInject]...)
	s.nInject = 0
	buf = s.appendReleases(buf)
	return s.appendButtonRelease(buf)
}
