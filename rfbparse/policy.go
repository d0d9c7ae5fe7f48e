package rfbparse

import (
	"fmt"
	"strconv"
	"strings"
)

// Keysyms the policy watches (X11 keysymdef.h).
const (
	KeysymShiftL     = 0xffe1
	KeysymShiftR     = 0xffe2
	KeysymControlL   = 0xffe3
	KeysymControlR   = 0xffe4
	KeysymMetaL      = 0xffe7
	KeysymMetaR      = 0xffe8
	KeysymAltL       = 0xffe9
	KeysymAltR       = 0xffea
	KeysymSuperL     = 0xffeb
	KeysymSuperR     = 0xffec
	KeysymModeSwitch = 0xff7e
)

// Modifier is a set of modifier groups; a group is held when either its left or
// its right key is down.
type Modifier uint8

// Modifier groups.
const (
	ModCtrl Modifier = 1 << iota
	ModShift
	ModAlt
	ModMeta
	ModSuper
	ModModeSwitch
)

// Modifier keys, one bit per physical key, so releasing Control_L while
// Control_R is held keeps Ctrl held.
const (
	keyCtrlL uint16 = 1 << iota
	keyCtrlR
	keyShiftL
	keyShiftR
	keyAltL
	keyAltR
	keyMetaL
	keyMetaR
	keySuperL
	keySuperR
	keyModeSwitch
)

// modKey maps a keysym to its modifier-key bit (0 for other keys). A switch on
// constants compiles to a jump table: no map, no string.
func modKey(ks uint32) uint16 {
	if ks < KeysymModeSwitch || ks > KeysymSuperR {
		return 0
	}
	switch ks {
	case KeysymControlL:
		return keyCtrlL
	case KeysymControlR:
		return keyCtrlR
	case KeysymShiftL:
		return keyShiftL
	case KeysymShiftR:
		return keyShiftR
	case KeysymAltL:
		return keyAltL
	case KeysymAltR:
		return keyAltR
	case KeysymMetaL:
		return keyMetaL
	case KeysymMetaR:
		return keyMetaR
	case KeysymSuperL:
		return keySuperL
	case KeysymSuperR:
		return keySuperR
	case KeysymModeSwitch:
		return keyModeSwitch
	}
	return 0
}

// groups folds held modifier keys into modifier groups.
func groups(keys uint16) Modifier {
	var m Modifier
	if keys&(keyCtrlL|keyCtrlR) != 0 {
		m |= ModCtrl
	}
	if keys&(keyShiftL|keyShiftR) != 0 {
		m |= ModShift
	}
	if keys&(keyAltL|keyAltR) != 0 {
		m |= ModAlt
	}
	if keys&(keyMetaL|keyMetaR) != 0 {
		m |= ModMeta
	}
	if keys&(keySuperL|keySuperR) != 0 {
		m |= ModSuper
	}
	if keys&keyModeSwitch != 0 {
		m |= ModModeSwitch
	}
	return m
}

// fold lower-cases Latin letter keysyms so Ctrl+O and Ctrl+Shift+O (keysym 'O')
// are the same key, and maps the Unicode keysyms of printable ASCII
// (0x1000020–0x100007e, which servers bind like the Latin-1 ones) to them.
func fold(ks uint32) uint32 {
	if ks >= 0x1000020 && ks <= 0x100007e {
		ks -= 0x1000000
	}
	if ks >= 'A' && ks <= 'Z' {
		return ks + ('a' - 'A')
	}
	return ks
}

// Shortcut is a key combination: every listed modifier group held, plus Key
// (a folded keysym). Unlisted modifiers do not matter: "ctrl+o" also matches
// Ctrl+Shift+O.
type Shortcut struct {
	Mods Modifier
	Key  uint32
}

// RightButton says what happens to a PointerEvent with the right button (mask bit 2).
type RightButton uint8

const (
	// RightStrip clears the right-button bit and passes the event: the pointer
	// still moves and other buttons still work.
	RightStrip RightButton = iota
	// RightDrop drops the whole event.
	RightDrop
	// RightAllow passes it untouched.
	RightAllow
)

// ParseRightButton parses "strip", "drop" or "allow".
func ParseRightButton(s string) (RightButton, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "strip", "":
		return RightStrip, nil
	case "drop":
		return RightDrop, nil
	case "allow":
		return RightAllow, nil
	}
	return 0, fmt.Errorf("right-button mode %q: want strip, drop or allow", s)
}

// Policy is the immutable input policy shared by all sessions. Build it with
// [NewPolicy] (or [DefaultPolicy]); per-session state lives in the [Stream].
type Policy struct {
	// Forbidden key combinations; a forbidden key-down and its key-up are dropped.
	Forbidden []Shortcut
	// RightButton is the right mouse button mode.
	RightButton RightButton
	// AllowXVP passes xvp (power control: shutdown, reboot, reset) messages.
	AllowXVP bool
	// AllowGIIEvents passes gii event-injection messages, which can carry key and
	// button events that the shortcut and button filters do not inspect.
	AllowGIIEvents bool
	// ExtendedMouseButtons passes 7-byte PointerEvents (ExtendedMouseButtons,
	// −316) as they are. Set it only when every VNC server behind the proxy
	// supports −316: a server that does not reads 6 bytes and takes the 7th
	// as the start of a message the proxy never inspected. Off, such events
	// go on as 6-byte events and the extra buttons (back, forward) are lost.
	ExtendedMouseButtons bool
	// MaxCutText is the longest ClientCutText payload accepted; longer is an error.
	MaxCutText int64
	// QEMUKeys says what becomes of QEMU ExtendedKeyEvents, whose XT keycode
	// servers may act on through a keyboard layout the proxy cannot see. The
	// zero value, QEMUKeysToKeysym, is the fail-closed default.
	QEMUKeys QEMUKeys
	// AllowContextMenuKeys passes the Menu key and Shift+F10, which open the
	// same context menu as the right button. They are dropped by default
	// unless RightButton is RightAllow.
	AllowContextMenuKeys bool
}

// QEMUKeys is the treatment of QEMU ExtendedKeyEvents (pseudo-encoding −258).
type QEMUKeys uint8

const (
	// QEMUKeysToKeysym (the default) is the layout-proof mode: −258 is taken out
	// of the viewer's SetEncodings, so the server never offers QEMU key events,
	// and any QEMU key event is sent on as the plain KeyEvent of its keysym, so
	// the server acts on exactly the keysym the policy judged.
	QEMUKeysToKeysym QEMUKeys = iota
	// QEMUKeysPass passes QEMU key events with their keycodes. The policy then
	// reads a keycode as the key it is on a US layout: exact only for servers
	// that ignore keycodes (default Xvnc) or whose keymap is US.
	QEMUKeysPass
)

// ParseQEMUKeys parses "keysym" or "pass".
func ParseQEMUKeys(s string) (QEMUKeys, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "keysym", "":
		return QEMUKeysToKeysym, nil
	case "pass":
		return QEMUKeysPass, nil
	}
	return 0, fmt.Errorf("qemu-keys mode %q: want keysym or pass", s)
}

func (q QEMUKeys) String() string {
	if q == QEMUKeysPass {
		return "pass"
	}
	return "keysym"
}

// DefaultForbidden is the default forbidden shortcut list.
const DefaultForbidden = "ctrl+o"

// DefaultMaxCutText bounds one clipboard transfer from the viewer.
const DefaultMaxCutText = 16 << 20

// DefaultPolicy returns the default policy: Ctrl+O forbidden, right button
// stripped, xvp and gii event injection dropped.
func DefaultPolicy() *Policy {
	p, err := NewPolicy(DefaultForbidden, RightStrip)
	if err != nil {
		panic(err) // the default list is a constant
	}
	return p
}

// NewPolicy builds a policy from a comma-separated shortcut list such as
// "ctrl+o,ctrl+shift+i,ctrl+p" (see [ParseShortcuts]).
func NewPolicy(forbidden string, right RightButton) (*Policy, error) {
	sc, err := ParseShortcuts(forbidden)
	if err != nil {
		return nil, err
	}
	return &Policy{Forbidden: sc, RightButton: right, MaxCutText: DefaultMaxCutText}, nil
}

// ParseShortcuts parses a comma-separated list of shortcuts. Each is
// modifiers and one key joined by '+': modifiers ctrl, shift, alt, meta, super,
// modeswitch; the key is one printable ASCII character (letters in either case),
// f1–f12, tab, escape, enter, backspace, delete, space, or a hex keysym "0xNNNN".
func ParseShortcuts(list string) ([]Shortcut, error) {
	var out []Shortcut
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(strings.ToLower(item), "+")
		var sc Shortcut
		for i, p := range parts {
			p = strings.TrimSpace(p)
			if i < len(parts)-1 {
				switch p {
				case "ctrl", "control":
					sc.Mods |= ModCtrl
				case "shift":
					sc.Mods |= ModShift
				case "alt", "option":
					sc.Mods |= ModAlt
				case "meta":
					sc.Mods |= ModMeta
				case "super", "win":
					sc.Mods |= ModSuper
				case "modeswitch":
					sc.Mods |= ModModeSwitch
				default:
					return nil, fmt.Errorf("shortcut %q: unknown modifier %q", item, p)
				}
				continue
			}
			ks, ok := keyByName(p)
			if !ok {
				return nil, fmt.Errorf("shortcut %q: unknown key %q", item, p)
			}
			sc.Key = fold(ks)
		}
		out = append(out, sc)
	}
	return out, nil
}

func keyByName(p string) (uint32, bool) {
	switch p {
	case "tab":
		return 0xff09, true
	case "escape", "esc":
		return 0xff1b, true
	case "enter", "return":
		return 0xff0d, true
	case "backspace":
		return 0xff08, true
	case "delete":
		return 0xffff, true
	case "space":
		return ' ', true
	}
	if len(p) == 1 && p[0] > ' ' && p[0] < 0x7f {
		return uint32(p[0]), true
	}
	if len(p) >= 2 && p[0] == 'f' {
		var n int
		if _, err := fmt.Sscanf(p[1:], "%d", &n); err == nil && n >= 1 && n <= 12 && fmt.Sprint(n) == p[1:] {
			return 0xffbe + uint32(n-1), true
		}
	}
	if hex, ok := strings.CutPrefix(p, "0x"); ok {
		if ks, err := strconv.ParseUint(hex, 16, 32); err == nil && ks != 0 {
			return uint32(ks), true
		}
	}
	return 0, false
}

// xtKeysym maps the XT scancodes a QEMU ExtendedKeyEvent carries (extended keys
// as 0x80|code) to the keysym the server will act on. Servers such as Xvnc
// prefer the keycode over the keysym, so the policy checks both: a client must
// not smuggle Ctrl+O as keysym 'a' with the keycode of 'o'.
var xtKeysym = func() (t [256]uint32) {
	letters := map[byte]string{0x10: "qwertyuiop", 0x1e: "asdfghjkl", 0x2c: "zxcvbnm"}
	for base, row := range letters {
		for i := range len(row) {
			t[int(base)+i] = uint32(row[i])
		}
	}
	for i, c := range "1234567890" {
		t[0x02+i] = uint32(c)
	}
	for i := range 10 {
		t[0x3b+i] = 0xffbe + uint32(i) // F1–F10
	}
	t[0x57], t[0x58] = 0xffc8, 0xffc9 // F11, F12
	t[0x01], t[0x0e], t[0x0f], t[0x1c], t[0x39], t[0xd3] = 0xff1b, 0xff08, 0xff09, 0xff0d, ' ', 0xffff
	t[0x1d], t[0x9d] = KeysymControlL, KeysymControlR
	t[0x2a], t[0x36] = KeysymShiftL, KeysymShiftR
	t[0x38], t[0xb8] = KeysymAltL, KeysymAltR
	t[0xdb], t[0xdc] = KeysymSuperL, KeysymSuperR
	t[0xdd] = KeysymMenu
	return t
}()

// keysymXT returns the XT keycode of the key that types folded keysym k on a
// US layout (0 for keys the table does not know).
func keysymXT(k uint32) uint8 {
	if k < 0x100 {
		return xtByLatin1[k]
	}
	if k >= 0xff00 && k <= 0xffff {
		return xtByFunction[k-0xff00]
	}
	return 0
}

var xtByLatin1, xtByFunction = func() (lat [256]uint8, fn [256]uint8) {
	for c := 255; c > 0; c-- { // lowest code wins
		k := xtKeysym[c]
		switch {
		case k != 0 && k < 0x100:
			lat[k] = uint8(c)
		case k >= 0xff00 && k <= 0xffff:
			fn[k-0xff00] = uint8(c)
		}
	}
	return lat, fn
}()
