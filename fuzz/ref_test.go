package fuzz

import (
	"encoding/binary"
	"fmt"
)

// This file holds the reference RFB client-stream parser the fuzz targets
// compare rfbparse against. It is written for the tests from RFC 6143 and the
// README's policy rules, works on whole buffers and favours plain code over
// speed. It knows nothing of rfbparse's internals.

// Client message types.
const (
	tSetPixelFormat = 0
	tSetEncodings   = 2
	tFBUR           = 3
	tKey            = 4
	tPointer        = 5
	tCutText        = 6
	tECU            = 150
	tFence          = 248
	tXVP            = 250
	tSetDesktopSize = 251
	tGII            = 253
	tQEMU           = 255
)

// Keysyms.
const (
	ksShiftL   = 0xffe1
	ksShiftR   = 0xffe2
	ksControlL = 0xffe3
	ksControlR = 0xffe4
	ksMetaL    = 0xffe7
	ksMetaR    = 0xffe8
	ksAltL     = 0xffe9
	ksAltR     = 0xffea
	ksSuperL   = 0xffeb
	ksSuperR   = 0xffec
	ksModeSw   = 0xff7e
)

// defaultMaxCutText is the README's bound on one ClientCutText (16 MiB).
const defaultMaxCutText = 16 << 20

// refLen measures the client message at the start of b. It returns
// prefix, the bytes needed before the proxy may decide on the message (the
// first ≤ 12 bytes the README promises), total, its whole length, and bad
// when b already shows the message is invalid. total is -1 while b is too
// short to tell.
func refLen(b []byte, ext bool, maxCut int64) (prefix int, total int64, bad bool) {
	if len(b) == 0 {
		return 1, -1, false
	}
	have := func(n int) bool { return len(b) >= n }
	switch b[0] {
	case tSetPixelFormat:
		return 5, 20, false // bits per pixel at 4: view-only channels check it
	case tSetEncodings:
		if !have(4) {
			return 4, -1, false
		}
		return 4, 4 + 4*int64(binary.BigEndian.Uint16(b[2:])), false
	case tFBUR, tECU:
		return 1, 10, false
	case tKey:
		return 8, 8, false
	case tPointer:
		if !have(2) {
			return 6, -1, false
		}
		if ext && b[1]&0x80 != 0 {
			return 7, 7, false
		}
		return 6, 6, false
	case tCutText:
		if !have(8) {
			return 8, -1, false
		}
		n := int64(int32(binary.BigEndian.Uint32(b[4:])))
		if n < 0 {
			n = -n
		}
		if n > maxCut {
			return 8, -1, true
		}
		return 8, 8 + n, false
	case tFence:
		if !have(9) {
			return 9, -1, false
		}
		if b[8] > 64 {
			return 9, -1, true
		}
		return 9, 9 + int64(b[8]), false
	case tXVP:
		return 4, 4, false
	case tSetDesktopSize:
		if !have(8) {
			return 8, -1, false
		}
		return 8, 8 + 16*int64(b[6]), false
	case tGII:
		if !have(4) {
			return 4, -1, false
		}
		if b[1]&0x80 != 0 {
			return 4, 4 + int64(binary.BigEndian.Uint16(b[2:])), false
		}
		return 4, 4 + int64(binary.LittleEndian.Uint16(b[2:])), false
	case tQEMU:
		if !have(2) {
			return 2, -1, false
		}
		switch b[1] {
		case 0:
			return 12, 12, false
		case 1:
			if !have(4) {
				return 4, -1, false
			}
			switch binary.BigEndian.Uint16(b[2:]) {
			case 0, 1:
				return 4, 4, false
			case 2:
				return 4, 10, false
			}
		}
		return 2, -1, true
	}
	return 1, -1, true
}

// xtToKeysym maps the XT scan codes (set 1; extended keys as 0x80|code) of a
// QEMU extended key event to the keysym of the key on a US layout.
func xtToKeysym(code uint32) uint32 {
	kc := code & 0xffff // QEMU reads the keycode as a U16
	switch {
	case kc == 0:
		return 0
	case kc>>8 == 0xe0:
		kc = 0x80 | kc&0x7f
	case kc > 0xff:
		return 0
	}
	rows := []struct {
		at   uint32
		keys string
	}{{0x02, "1234567890"}, {0x10, "qwertyuiop"}, {0x1e, "asdfghjkl"}, {0x2c, "zxcvbnm"}}
	for _, r := range rows {
		if kc >= r.at && kc < r.at+uint32(len(r.keys)) {
			return uint32(r.keys[kc-r.at])
		}
	}
	if kc >= 0x3b && kc <= 0x44 { // F1-F10
		return 0xffbe + kc - 0x3b
	}
	switch kc {
	case 0x57:
		return 0xffc8 // F11
	case 0x58:
		return 0xffc9 // F12
	case 0x01:
		return 0xff1b // Escape
	case 0x0e:
		return 0xff08 // BackSpace
	case 0x0f:
		return 0xff09 // Tab
	case 0x1c:
		return 0xff0d // Return
	case 0x39:
		return ' '
	case 0xd3:
		return 0xffff // Delete
	case 0x1d:
		return ksControlL
	case 0x9d:
		return ksControlR
	case 0x2a:
		return ksShiftL
	case 0x36:
		return ksShiftR
	case 0x38:
		return ksAltL
	case 0xb8:
		return ksAltR
	case 0xdb:
		return ksSuperL
	case 0xdc:
		return ksSuperR
	case 0xdd:
		return 0xff67 // Menu
	}
	return 0
}

// Modifier groups as bits.
const (
	gCtrl = 1 << iota
	gShift
	gAlt
	gMeta
	gSuper
	gModeSw
)

// modGroup returns the modifier group of a modifier keysym, 0 for others.
func modGroup(ks uint32) int {
	switch ks {
	case ksControlL, ksControlR:
		return gCtrl
	case ksShiftL, ksShiftR:
		return gShift
	case ksAltL, ksAltR:
		return gAlt
	case ksMetaL, ksMetaR:
		return gMeta
	case ksSuperL, ksSuperR:
		return gSuper
	case ksModeSw:
		return gModeSw
	}
	return 0
}

// lowerKey folds Latin capitals and the Unicode keysyms of printable ASCII.
func lowerKey(ks uint32) uint32 {
	if ks >= 0x1000020 && ks <= 0x100007e {
		ks -= 0x1000000
	}
	if ks >= 'A' && ks <= 'Z' {
		ks += 'a' - 'A'
	}
	return ks
}

// shortcut is a forbidden combination: all groups in mods held, plus key.
type shortcut struct {
	mods int
	key  uint32
}

// refPolicy is the policy the reference applies.
type refPolicy struct {
	forbidden []shortcut
	right     int // 0 strip, 1 drop, 2 allow
	agent     bool
}

// The default policy: Ctrl+O, right button stripped.
var defaultRef = refPolicy{forbidden: []shortcut{{gCtrl, 'o'}}}

// refState is the reference's per-stream policy state. Under the default
// (layout-proof) policy every key reaches the server as a plain KeyEvent, so
// the README's three server models key a press by: its exact keysym
// (TigerVNC), the US key that types it (QEMU), its keysym in either case
// (keysym servers). A press is held while any model holds it.
type refState struct {
	pol       refPolicy
	ext       bool
	tiger     map[uint32]int // TigerVNC's identity 0x80000000|keysym → press id
	kcode     map[uint32]int // US XT keycode → press id
	ksym      map[uint32]int // lower-cased keysym → press id
	press     map[int]uint32 // press id → keysym
	nextID    int
	msgs      int
	drops     int
	rewritten int
	events    uint8 // 1 copy, 2 paste, 4 cut text, 8 blocked (rfbparse.Event bits)
}

func newRefState(pol refPolicy) *refState {
	return &refState{pol: pol, tiger: map[uint32]int{}, kcode: map[uint32]int{}, ksym: map[uint32]int{}, press: map[int]uint32{}}
}

// usKeycode is the XT keycode of the US key typing keysym ks, 0 if none.
func usKeycode(ks uint32) uint32 {
	k := lowerKey(ks)
	for c := uint32(1); c < 0x100; c++ {
		if k != 0 && xtToKeysym(c) == k {
			return c
		}
	}
	return 0
}

// groups is the modifier groups of the presses any model holds.
func (r *refState) groups() int {
	g := 0
	for _, mp := range []map[uint32]int{r.tiger, r.kcode, r.ksym} {
		for _, id := range mp {
			g |= modGroup(r.press[id])
		}
	}
	return g
}

// isForbidden: k (folded) completes a forbidden shortcut, is the control
// character (^A–^Z, ^[–^_, plain or Unicode) of a forbidden Ctrl shortcut, or
// is a context-menu key (Menu, Shift+F10) while the right button is not allowed.
func (r *refState) isForbidden(k uint32) bool {
	if k == 0 {
		return false
	}
	g := r.groups()
	for _, sc := range r.pol.forbidden {
		if sc.key == k && g&sc.mods == sc.mods {
			return true
		}
		c := k
		if c >= 0x1000001 && c <= 0x100001f {
			c -= 0x1000000
		}
		if sc.mods&gCtrl != 0 && c >= 1 && c <= 0x1f && (c <= 26 && sc.key == 'a'+c-1 || c > 26 && sc.key == '@'+c) {
			return true
		}
	}
	if k >= 0x80 && !(k >= 0xfd00 && k <= 0xffff) { // not ASCII, not a function key
		for _, sc := range r.pol.forbidden {
			if sc.mods != 0 && sc.key >= 'a' && sc.key <= 'z' && g&sc.mods == sc.mods {
				return true
			}
		}
	}
	return r.pol.right != 2 && (k == 0xff67 || k == 0xffc7 && g&gShift != 0)
}

// key decides a plain key event with keysym ks.
func (r *refState) key(down bool, ks uint32) bool {
	if r.pol.agent {
		return false
	}
	kc, lk := usKeycode(ks), lowerKey(ks)
	// TigerVNC keys a plain event by 0x80000000|keysym, so keysyms that
	// differ only in bit 31 are one key there, and it acts with the keysym
	// of the press it holds.
	look := 0x80000000 | ks
	held, a := r.tiger[look]
	_, b := r.kcode[kc]
	_, c := r.ksym[lk]
	b = b && kc != 0
	c = c && ks != 0
	if !down {
		if !a && !b && !c {
			return false // a release of no held key
		}
		delete(r.tiger, look)
		if b {
			delete(r.kcode, kc)
		}
		if c {
			delete(r.ksym, lk)
		}
		r.gc()
		return true
	}
	if r.isForbidden(lk) || a && r.isForbidden(lowerKey(r.press[held])) {
		r.events |= 8
		return false
	}
	b = b || kc == 0
	c = c || ks == 0
	if a && b && c {
		return r.copyPaste(lk)
	}
	if len(r.press) == 16 {
		return false // fail closed: more keys than tracked
	}
	id := r.nextID
	r.nextID++
	r.press[id] = ks
	if !a {
		r.tiger[look] = id
	}
	if !b {
		r.kcode[kc] = id
	}
	if !c {
		r.ksym[lk] = id
	}
	return r.copyPaste(lk)
}

// gc forgets presses no model holds.
func (r *refState) gc() {
	live := map[int]bool{}
	for _, mp := range []map[uint32]int{r.tiger, r.kcode, r.ksym} {
		for _, id := range mp {
			live[id] = true
		}
	}
	for id := range r.press {
		if !live[id] {
			delete(r.press, id)
		}
	}
}

func (r *refState) copyPaste(k uint32) bool {
	if (k == 'c' || k == 'v') && r.groups()&gCtrl != 0 {
		if k == 'c' {
			r.events |= 1
		} else {
			r.events |= 2
		}
	}
	return true
}

// decide applies the policy to a message whose decision prefix m holds; it
// may rewrite m (right button). keep is how many of the prefix bytes pass
// when the message is shortened (a 7-byte pointer event sent on as 6).
func (r *refState) decide(m []byte) (pass bool, keep int) {
	keep = len(m)
	switch m[0] {
	case tKey:
		return r.key(m[1] != 0, binary.BigEndian.Uint32(m[4:])), keep
	case tPointer:
		if r.pol.agent {
			return false, keep
		}
		if m[1]&4 != 0 {
			switch r.pol.right {
			case 1:
				return false, keep
			case 0:
				m[1] &^= 4
				r.rewritten++
			}
		}
		if len(m) == 7 {
			m[1] &^= 0x80
			keep = 6
		}
		return true, keep
	case tCutText:
		if r.pol.agent {
			return false, keep
		}
		r.events |= 4
		return true, keep
	case tSetDesktopSize:
		return !r.pol.agent, keep
	case tXVP:
		return false, keep
	case tGII:
		if m[1]&0x7f == 0 {
			return false, keep
		}
		return !r.pol.agent, keep
	case tQEMU:
		if m[1] == 0 { // layout-proof: sent on as a plain KeyEvent of its keysym
			down := binary.BigEndian.Uint16(m[2:]) != 0
			if !r.key(down, binary.BigEndian.Uint32(m[4:])) {
				return false, keep
			}
			m[0], m[1], m[2], m[3] = tKey, 0, 0, 0
			if down {
				m[1] = 1
			}
			r.rewritten++
			return true, 8
		}
	}
	return true, keep
}

// refResult is what the reference expects from a client stream.
type refResult struct {
	out       []byte // bytes passed, complete messages only
	tail      []byte // the passed bytes of the incomplete last message, if it passes
	bad       bool   // the stream holds an invalid message
	msgs      int
	drops     int
	rewritten int
	events    uint8
}

// refMessages parses client messages (after ClientInit) from b.
func refMessages(b []byte, st *refState) refResult {
	var res refResult
	for len(b) > 0 {
		prefix, total, bad := refLen(b, st.ext, defaultMaxCutText)
		if bad {
			res.bad = true
			break
		}
		if len(b) < prefix || total < 0 {
			break // undecided: held back
		}
		m := append([]byte(nil), b[:min(int64(len(b)), total)]...)
		pass, keep := st.decide(m[:prefix])
		if !pass {
			st.drops++
		}
		complete := int64(len(b)) >= total
		if complete {
			st.msgs++
			if m[0] == tSetEncodings {
				st.ext = false
				for i := 4; i+4 <= len(m); i += 4 {
					if int32(binary.BigEndian.Uint32(m[i:])) == -316 {
						st.ext = true
					}
				}
			}
		}
		if m[0] == tSetEncodings { // −258 becomes a copy of the entry before it (Raw first)
			prev := uint32(0)
			for i := 4; i+4 <= len(m); i += 4 {
				e := binary.BigEndian.Uint32(m[i:])
				if int32(e) == -258 {
					e = prev
					binary.BigEndian.PutUint32(m[i:], e)
					st.rewritten++
				}
				prev = e
			}
			if !complete { // entries pass whole
				m = m[:4+(len(m)-4)/4*4]
			}
		}
		if pass {
			passed := append(m[:keep:keep], m[prefix:]...)
			if complete {
				res.out = append(res.out, passed...)
			} else {
				res.tail = passed
			}
		}
		if !complete {
			break
		}
		b = b[total:]
	}
	res.msgs, res.drops, res.rewritten, res.events = st.msgs, st.drops, st.rewritten, st.events
	return res
}

// violation re-reads passed bytes as a server does and returns the first
// policy breach, or "". After switchAt (a byte offset into out, -1 for none)
// the agent has control: only always-allowed messages and releases (key-ups,
// button-less pointer events) may start there.
func violation(pol refPolicy, out []byte, switchAt int) string {
	held := map[uint32]bool{}
	groups := func() int {
		g := 0
		for k, h := range held {
			if h {
				g |= modGroup(k)
			}
		}
		return g
	}
	ext := false
	for off := 0; off < len(out); {
		b := out[off:]
		_, total, bad := refLen(b, ext, defaultMaxCutText)
		if bad {
			return fmt.Sprintf("invalid message passed at %d: % x", off, b[:min(len(b), 16)])
		}
		if total < 0 || int64(len(b)) < total {
			return "" // the message in progress at the end
		}
		m := b[:total]
		agent := pol.agent || switchAt >= 0 && off >= switchAt
		release := switchAt >= 0 && off >= switchAt && !pol.agent &&
			(m[0] == tKey && m[1] == 0 || m[0] == tPointer && m[1] == 0)
		if agent && !release {
			switch m[0] {
			case tSetPixelFormat, tSetEncodings, tFBUR, tECU, tFence:
			case tQEMU:
				if m[1] != 1 {
					return fmt.Sprintf("agent has control, passed % x", m)
				}
			default:
				return fmt.Sprintf("agent has control, passed % x", m)
			}
		}
		var keys []uint32
		down := false
		switch m[0] {
		case tSetEncodings:
			ext = false
			for i := 4; i+4 <= len(m); i += 4 {
				if int32(binary.BigEndian.Uint32(m[i:])) == -316 {
					ext = true
				}
			}
		case tPointer:
			if m[1]&4 != 0 && pol.right != 2 {
				return fmt.Sprintf("right button passed: % x", m)
			}
		case tXVP:
			return fmt.Sprintf("xvp passed: % x", m)
		case tGII:
			if m[1]&0x7f == 0 {
				return fmt.Sprintf("gii event passed: % x", m)
			}
		case tKey:
			down, keys = m[1] != 0, []uint32{binary.BigEndian.Uint32(m[4:])}
		case tQEMU:
			if m[1] == 0 {
				down = binary.BigEndian.Uint16(m[2:]) != 0
				keys = []uint32{binary.BigEndian.Uint32(m[4:]), xtToKeysym(binary.BigEndian.Uint32(m[8:]))}
			}
		}
		for _, k := range keys {
			if modGroup(k) != 0 {
				held[k] = down
			}
		}
		if down {
			for _, k := range keys {
				for _, sc := range pol.forbidden {
					if k != 0 && lowerKey(k) == sc.key && groups()&sc.mods == sc.mods {
						return fmt.Sprintf("forbidden shortcut %+v passed: % x", sc, m)
					}
				}
			}
		}
		off += int(total)
	}
	return ""
}

// ---- message builders ----

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func keyEv(down bool, ks uint32) []byte {
	b := []byte{tKey, 0, 0, 0}
	if down {
		b[1] = 1
	}
	return binary.BigEndian.AppendUint32(b, ks)
}

func ptrEv(mask uint8, x, y uint16) []byte {
	b := []byte{tPointer, mask}
	b = binary.BigEndian.AppendUint16(b, x)
	return binary.BigEndian.AppendUint16(b, y)
}

func ptrExt(mask, extra uint8, x, y uint16) []byte {
	return append(ptrEv(mask|0x80, x, y), extra)
}

func fbur(incremental bool, x, y, w, h uint16) []byte {
	b := []byte{tFBUR, 0}
	if incremental {
		b[1] = 1
	}
	for _, v := range []uint16{x, y, w, h} {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func setEnc(encs ...int32) []byte {
	b := []byte{tSetEncodings, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(encs)))
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return b
}

func setPF() []byte {
	return []byte{tSetPixelFormat, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
}

func cutText(s string) []byte {
	b := []byte{tCutText, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func fenceMsg(flags uint32, payload []byte) []byte {
	b := []byte{tFence, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, flags)
	b = append(b, byte(len(payload)))
	return append(b, payload...)
}

func qemuKey(down bool, ks, kc uint32) []byte {
	b := []byte{tQEMU, 0, 0, 0}
	if down {
		b[3] = 1
	}
	b = binary.BigEndian.AppendUint32(b, ks)
	return binary.BigEndian.AppendUint32(b, kc)
}

func ecu(enable bool, x, y, w, h uint16) []byte {
	b := fbur(false, x, y, w, h)
	b[0] = tECU
	if enable {
		b[1] = 1
	}
	return b
}
