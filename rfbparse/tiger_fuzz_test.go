package rfbparse

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// tigerModel is TigerVNC 1.12's key handling as the property below needs it:
// VNCSConnection::keyEvent (press tracked by XT keycode when non-zero, else
// 0x80000000|keysym; a repeat acts with the first press's keysym; a release
// it does not hold is ignored), then XserverDesktop/vncKeyboardEvent, which
// acts on the keysym (default) or, with -RawKeyboard, on the XT keycode under
// a US keymap. The X server holds X keys; ControlMask is on while one of them
// is a Control key.
type tigerModel struct {
	raw     bool
	pressed map[uint32]uint32 // VNCSConnection: lookup → keysym
	xKeys   map[uint64]uint32 // X keys held (US XT code, or 1<<32|keysym for keys added to the keymap) → keysym it typed
}

func newTigerModel(raw bool) *tigerModel {
	return &tigerModel{raw: raw, pressed: map[uint32]uint32{}, xKeys: map[uint64]uint32{}}
}

// xKeyOf is the X key a keysym-path press uses: the US key typing it, or a
// keycode of its own (Xvnc adds unknown keysyms to the keymap).
func xKeyOf(ks uint32) uint64 {
	if c := keysymXT(fold(ks)); c != 0 {
		return uint64(c)
	}
	return 1<<32 | uint64(fold(ks))
}

// xGroups is the modifier groups X has down.
func (m *tigerModel) xGroups() Modifier {
	var keys uint16
	for _, ks := range m.xKeys { // what each held X key typed
		keys |= modKey(ks)
	}
	return groups(keys)
}

// event applies one key event; it returns the keysym an X KeyPress typed
// (0 when X saw no press) and the groups held at that moment.
func (m *tigerModel) event(down bool, ks, kc uint32) (uint32, Modifier) {
	lookup := kc
	if kc == 0 {
		lookup = 0x80000000 | ks
	}
	if k, ok := m.pressed[lookup]; ok {
		ks = k
	}
	if down {
		m.pressed[lookup] = ks
	} else {
		if _, ok := m.pressed[lookup]; !ok {
			return 0, 0
		}
		delete(m.pressed, lookup)
	}
	if m.raw && kc != 0 && kc < 0x100 && xtKeysym[kc] != 0 {
		if down {
			g := m.xGroups()
			m.xKeys[uint64(kc)] = xtKeysym[kc]
			return xtKeysym[kc], g
		}
		delete(m.xKeys, uint64(kc))
		return 0, 0
	}
	if ks == 0 {
		return 0, 0
	}
	x := xKeyOf(ks)
	if down {
		g := m.xGroups()
		m.xKeys[x] = ks
		return ks, g
	}
	for k, v := range m.xKeys { // Xvnc releases the key it pressed for this keysym
		if v == ks {
			delete(m.xKeys, k)
		}
	}
	return 0, 0
}

// fuzzKeysyms and fuzzKeycodes are what the key fuzz target picks from.
var fuzzKeysyms = []uint32{'o', 'O', 'a', 'i', 'I', 'p', 0x100006f, 0x0f, 0x100000f, 0x09, 0,
	KeysymControlL, KeysymControlR, KeysymShiftL, KeysymShiftR, KeysymAltL, KeysymMenu, KeysymF10, 0xffc9, 0x6dd, 0x20ac}
var fuzzKeycodes = []uint32{0, 0x18, 0x1e, 0x17, 0x19, 0x1d, 0x9d, 0xe01d, 0x2a, 0x36, 0x38, 0x44, 0xdd, 0x10018,
	0x8000ffe3, 0x8000006f, 0x8000001d}

// keyFuzzInput turns fuzz bytes into key messages: three bytes each, op
// (bit 0 down, bit 1 QEMU event, bits 5-7 == 7: a hand-over to the agent
// and back instead), keysym index, keycode index.
func keyFuzzInput(data []byte, emit func(msg []byte), handover func()) {
	for len(data) >= 3 {
		op, a, b := data[0], data[1], data[2]
		data = data[3:]
		if op>>5 == 7 {
			handover()
			continue
		}
		ks := fuzzKeysyms[int(a)%len(fuzzKeysyms)]
		if op&2 != 0 {
			emit(qemuKey(op&1 != 0, ks, fuzzKeycodes[int(b)%len(fuzzKeycodes)]))
		} else {
			emit(keyEv(op&1 != 0, ks))
		}
	}
}

// FuzzKeyTracking: random plain and QEMU key sequences (with hand-overs)
// through the default policy in both QEMU modes, checked against a model of
// TigerVNC's key tracking, raw and not: X never gets a press of a forbidden
// letter while it holds Control, nor a forbidden control character, nor a
// context-menu key.
func FuzzKeyTracking(f *testing.F) {
	cL, o := byte(11), byte(0)                                                  // indexes into fuzzKeysyms
	f.Add([]byte{3, cL, 5, 2, cL, 2, 1, o, 0}, uint8(1))                        // issue sequence A, then o
	f.Add([]byte{3, cL, 5, 0, cL, 0, 1, o, 0}, uint8(1))                        // issue sequence B
	f.Add([]byte{3, cL, 5, 0xe0, 0, 0, 1, o, 0, 0xe0, 0, 0, 1, o, 0}, uint8(0)) // hand-over mid-press
	f.Add([]byte{3, o, 2, 1, cL, 0, 3, 2, 2}, uint8(1))                         // o by keycode, Ctrl, repeat as a
	f.Add([]byte{1, 7, 0, 1, 8, 0, 1, 15, 0, 1, 14, 0, 1, 16, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		pol := DefaultPolicy()
		pol.QEMUKeys = QEMUKeys(mode & 1)
		s := ready(t, pol, User)
		var w sink
		keyFuzzInput(data, func(m []byte) {
			if err := s.Feed(m, &w); err != nil {
				t.Fatal(err)
			}
		}, func() {
			w.buf = append(w.buf, s.SetInteractor(Agent)...)
			s.SetInteractor(User)
		})
		w.buf = s.ReleaseAll(w.buf)
		for _, raw := range []bool{false, true} {
			if v := tigerViolation(pol, raw, w.buf); v != "" {
				t.Fatalf("raw=%v: %s", raw, v)
			}
		}
		// After ReleaseAll, TigerVNC holds nothing the viewer pressed.
		m := newTigerModel(false)
		forEachKey(w.buf, func(down bool, ks, kc uint32) { m.event(down, ks, kc) })
		if len(m.pressed) != 0 {
			t.Fatalf("keys still held after ReleaseAll: %x", m.pressed)
		}
	})
}

// forEachKey calls fn for each key message in out (whole messages of the
// kinds keyFuzzInput makes).
func forEachKey(out []byte, fn func(down bool, ks, kc uint32)) {
	for len(out) > 0 {
		switch out[0] {
		case MsgKeyEvent:
			fn(out[1] != 0, binary.BigEndian.Uint32(out[4:8]), 0)
			out = out[8:]
		case MsgQEMU:
			fn(binary.BigEndian.Uint16(out[2:4]) != 0, binary.BigEndian.Uint32(out[4:8]), binary.BigEndian.Uint32(out[8:12]))
			out = out[12:]
		case MsgPointerEvent:
			out = out[6:]
		default:
			panic(fmt.Sprintf("unexpected message % x", out))
		}
	}
}

func tigerViolation(pol *Policy, raw bool, out []byte) (v string) {
	m := newTigerModel(raw)
	forEachKey(out, func(down bool, ks, kc uint32) {
		if v == "" {
			v = m.check(pol, down, ks, kc)
		}
	})
	return v
}

// check applies one key event and returns why the X press it causes breaks
// pol, or "".
func (m *tigerModel) check(pol *Policy, down bool, ks, kc uint32) string {
	typed, g := m.event(down, ks, kc)
	if typed == 0 {
		return ""
	}
	k := fold(typed)
	for _, sc := range pol.Forbidden {
		if k == sc.Key && g&sc.Mods == sc.Mods {
			return fmt.Sprintf("X pressed %#x with %b held (keysym %#x keycode %#x)", typed, g, ks, kc)
		}
		if c := k &^ 0x1000000; sc.Mods&ModCtrl != 0 && c >= 1 && c <= 26 && sc.Key == c+'a'-1 {
			return fmt.Sprintf("X pressed control character %#x", typed)
		}
		if sc.Mods != 0 && sc.Key >= 'a' && sc.Key <= 'z' && g&sc.Mods == sc.Mods && k >= 0x80 && (k < 0xfd00 || k > 0xffff) {
			return fmt.Sprintf("X pressed non-ASCII %#x with %b held (its key depends on the keymap)", typed, g)
		}
	}
	if pol.RightButton != RightAllow && !pol.AllowContextMenuKeys && (k == KeysymMenu || k == KeysymF10 && g&ModShift != 0) {
		return fmt.Sprintf("X pressed context-menu key %#x with %b", typed, g)
	}
	return ""
}

// TestKeyTrackingModel: the model itself sees the bypasses when
// nothing filters them (else the property could not fail).
func TestKeyTrackingModel(t *testing.T) {
	pol := DefaultPolicy()
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"A", cat(qemuKey(true, KeysymControlL, 0x1d), qemuKey(false, KeysymControlL, 0x1e), keyDown('o'))},
		{"B", cat(qemuKey(true, KeysymControlL, 0x1d), keyUp(KeysymControlL), keyDown('o'))},
		{"repeat keeps the first keysym", cat(qemuKey(true, 'o', 0x1e), keyDown(KeysymControlL), qemuKey(true, 'a', 0x1e))},
		{"control character", keyDown(0x0f)},
		{"menu", keyDown(KeysymMenu)},
	} {
		if tigerViolation(pol, false, tc.in) == "" {
			t.Errorf("%s: the model saw no violation", tc.name)
		}
	}
	if tigerViolation(pol, true, cat(keyDown(KeysymControlL), qemuKey(true, 'a', 0x18))) == "" {
		t.Error("raw: keycode of o under Ctrl not seen")
	}
	if tigerViolation(pol, false, cat(keyDown(KeysymControlL), qemuKey(true, 'a', 0x18))) != "" {
		t.Error("not raw: keycode taken for the key")
	}
}
