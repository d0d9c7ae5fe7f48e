package rfbparse

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ---- reference parser: whole buffer, no streaming, plain code ----

// refLen returns the length of the client message at the start of b: -1 when b
// is too short to tell or to hold it, -2 when it is invalid.
func refLen(b []byte, extMouse bool, maxCut int64) int {
	if len(b) == 0 {
		return -1
	}
	n := -1
	switch b[0] {
	case 0:
		n = 20
	case 2:
		if len(b) >= 4 {
			n = 4 + 4*int(binary.BigEndian.Uint16(b[2:]))
		}
	case 3, 150:
		n = 10
	case 4:
		n = 8
	case 5:
		n = 6
		if len(b) < 2 {
			return -1
		}
		if extMouse && b[1] >= 0x80 {
			n = 7
		}
	case 6:
		if len(b) >= 8 {
			l := int64(int32(binary.BigEndian.Uint32(b[4:])))
			if l < 0 {
				l = -l
			}
			if l > maxCut {
				return -2
			}
			n = 8 + int(l)
		}
	case 248:
		if len(b) >= 9 {
			if b[8] > 64 {
				return -2
			}
			n = 9 + int(b[8])
		}
	case 250:
		n = 4
	case 251:
		if len(b) >= 8 {
			n = 8 + 16*int(b[6])
		}
	case 253:
		if len(b) >= 4 {
			if b[1]&0x80 != 0 {
				n = 4 + int(binary.BigEndian.Uint16(b[2:]))
			} else {
				n = 4 + int(binary.LittleEndian.Uint16(b[2:]))
			}
		}
	case 255:
		if len(b) < 2 {
			return -1
		}
		switch b[1] {
		case 0:
			n = 12
		case 1:
			if len(b) >= 4 {
				switch binary.BigEndian.Uint16(b[2:]) {
				case 0, 1:
					n = 4
				case 2:
					n = 10
				default:
					return -2
				}
			}
		default:
			return -2
		}
	default:
		return -2
	}
	if n < 0 || len(b) < n {
		return -1
	}
	return n
}

// refXT is the reference's small XT keycode table (the keycodes the
// generator uses).
var refXT = map[uint32]uint32{
	0x10: 'q', 0x17: 'i', 0x18: 'o', 0x19: 'p', 0x1e: 'a', 0x2e: 'c', 0x2f: 'v', 0x58: 0xffc9,
	0x1d: KeysymControlL, 0x9d: KeysymControlR, 0x2a: KeysymShiftL, 0x36: KeysymShiftR,
	0x38: KeysymAltL, 0xb8: KeysymAltR, 0xdb: KeysymSuperL,
}

func refLower(k uint32) uint32 {
	if k > 0x1000000 && k-0x1000000 >= ' ' && k-0x1000000 <= '~' {
		k -= 0x1000000 // Unicode keysym of an ASCII character
	}
	if k >= 'A' && k <= 'Z' {
		return k - 'A' + 'a'
	}
	return k
}

var refModKeys = map[uint32]Modifier{
	KeysymControlL: ModCtrl, KeysymControlR: ModCtrl, KeysymShiftL: ModShift, KeysymShiftR: ModShift,
	KeysymAltL: ModAlt, KeysymAltR: ModAlt, KeysymMetaL: ModMeta, KeysymMetaR: ModMeta,
	KeysymSuperL: ModSuper, KeysymSuperR: ModSuper, KeysymModeSwitch: ModModeSwitch,
}

// refPress is a key press as the reference's server models keep it.
type refPress struct {
	ks, xt uint32
	id     int // which press (one press can be held by several models)
}

type refParser struct {
	pol      *Policy
	agent    bool
	mac      bool
	extMouse bool
	// Three server models, each a map from its identity of a key to the
	// press that holds it: TigerVNC (XT keycode of a QEMU event when non-zero,
	// else 0x80000000|keysym), QEMU (XT keycode; plain keysyms by their US
	// key), keysym servers (lower-cased keysym).
	tiger, kcode, ksym map[uint32]refPress
	presses            int
	stats              Stats
	events             Event
	trimmed            int // 7-byte PointerEvents passed on as 6-byte ones
}

func newRef(pol *Policy, agent, mac bool) *refParser {
	return &refParser{pol: pol, agent: agent, mac: mac,
		tiger: map[uint32]refPress{}, kcode: map[uint32]refPress{}, ksym: map[uint32]refPress{}}
}

// refUSKey is the XT keycode of the key typing keysym k on a US layout.
func refUSKey(k uint32) uint32 {
	k = refLower(k)
	for c := uint32(1); c < 256; c++ {
		if refXTFull(c) == k && k != 0 {
			return c
		}
	}
	return 0
}

// refXTFull is xtKeysym through the reference's eyes: the generator's
// keycodes from refXT, the rest from the package table.
func refXTFull(c uint32) uint32 {
	if k, ok := refXT[c]; ok {
		return k
	}
	return xtKeysym[c]
}

func (r *refParser) heldMods() (Modifier, bool) {
	var m Modifier
	altL := false
	for _, mp := range []map[uint32]refPress{r.tiger, r.kcode, r.ksym} {
		for _, p := range mp {
			for _, k := range []uint32{p.ks, refXTFull(p.xt)} {
				m |= refModKeys[k]
				altL = altL || k == KeysymAltL
			}
		}
	}
	return m, altL
}

func (r *refParser) isBlocked(k uint32) bool {
	raw := k
	if raw > 0x1000000 && raw <= 0x100007e {
		raw -= 0x1000000
	}
	k = refLower(k)
	if k == 0 {
		return false
	}
	mods, _ := r.heldMods()
	// Xvnc fakes Shift for keysyms that need it (US layout, fail closed).
	also := uint32(0)
	switch {
	case raw >= 'A' && raw <= 'Z':
		mods |= ModShift
	case raw == 0xfe20: // ISO_Left_Tab is Shift+Tab
		mods |= ModShift
		also = 0xff09
	case raw < 0x80 && strings.ContainsRune(`~!@#$%^&*()_+{}|:"<>?`, rune(raw)):
		mods |= ModShift
		also = uint32("`1234567890-=[]\\;',./"[strings.IndexRune(`~!@#$%^&*()_+{}|:"<>?`, rune(raw))])
	}
	for _, sc := range r.pol.Forbidden {
		if (sc.Key == k || also != 0 && sc.Key == also) && mods&sc.Mods == sc.Mods {
			return true
		}
		c := k
		if c > 0x1000000 && c < 0x1000020 {
			c -= 0x1000000
		}
		if sc.Mods&ModCtrl != 0 && c >= 1 && c < 0x20 && (sc.Key == c+'a'-1 && c <= 26 || sc.Key == c+'@' && c > 26) {
			return true
		}
	}
	if k >= 0x80 && !(k >= 0xfd00 && k <= 0xffff) { // not ASCII, not a function key
		for _, sc := range r.pol.Forbidden {
			if sc.Mods != 0 && sc.Key >= 'a' && sc.Key <= 'z' && mods&sc.Mods == sc.Mods {
				return true
			}
		}
	}
	if r.pol.RightButton != RightAllow && !r.pol.AllowContextMenuKeys {
		if k == 0xff67 || k == 0xffc7 && mods&ModShift != 0 {
			return true
		}
	}
	return false
}

func (r *refParser) drop(why DropReason) bool {
	r.stats.Dropped[why]++
	return false
}

func (r *refParser) key(down bool, ks, kc uint32, qemu bool) bool {
	if r.pol == nil {
		return true
	}
	if r.agent {
		return r.drop(DropAgent)
	}
	look := 0x80000000 | ks
	xt := refUSKey(ks)
	if qemu {
		xt = 0
		if kc != 0 {
			look = kc
			switch c := kc & 0xffff; { // QEMU reads a U16
			case c <= 0xff:
				xt = c
			case c>>8 == 0xe0:
				xt = 0x80 | c&0x7f
			}
		}
	}
	lk := refLower(ks)
	if !down {
		_, a := r.tiger[look]
		_, b := r.kcode[xt]
		_, c := r.ksym[lk]
		b = b && xt != 0
		c = c && ks != 0
		if !a && !b && !c {
			return r.drop(DropUnmatched)
		}
		// Xvnc may release a plain keysym on another press's keycode: with
		// a QEMU press of the same keysym held, the TigerVNC model frees
		// neither.
		ambiguous := false
		if !qemu && ks != 0 && a {
			for l, p := range r.tiger {
				if l < 0x80000000 && l != 0 && refLower(p.ks) == lk {
					ambiguous = true
				}
			}
		}
		if !ambiguous {
			delete(r.tiger, look)
		}
		if b {
			delete(r.kcode, xt)
		}
		if c {
			delete(r.ksym, lk)
		}
		return true
	}
	forced := uint32(0)
	if p, ok := r.tiger[look]; ok {
		forced = p.ks
	}
	if r.isBlocked(ks) || xt != 0 && r.isBlocked(refXTFull(xt)) || r.isBlocked(forced) {
		r.events |= EventBlocked
		return r.drop(DropShortcut)
	}
	press := refPress{ks: ks, xt: xt, id: r.presses}
	_, a := r.tiger[look]
	_, b := r.kcode[xt]
	_, c := r.ksym[lk]
	b = b || xt == 0
	c = c || ks == 0
	if !(a && b && c) {
		ids := map[int]bool{}
		for _, mp := range []map[uint32]refPress{r.tiger, r.kcode, r.ksym} {
			for _, p := range mp {
				ids[p.id] = true
			}
		}
		if len(ids) == maxHeld {
			return r.drop(DropKeyLimit)
		}
	}
	if !a {
		r.tiger[look] = press
	}
	if !b {
		r.kcode[xt] = press
	}
	if !c {
		r.ksym[lk] = press
	}
	r.presses++
	mods, altL := r.heldMods()
	copyMod := mods&ModCtrl != 0
	if r.mac {
		copyMod = copyMod || mods&(ModMeta|ModSuper) != 0 || altL
	}
	if copyMod {
		switch refLower(ks) {
		case 'c':
			r.events |= EventCopy
		case 'v':
			r.events |= EventPaste
		}
	}
	return true
}

func (r *refParser) agentGate() bool {
	if r.pol != nil && r.agent {
		return r.drop(DropAgent)
	}
	return true
}

// decide returns the message as it passes, or nil when dropped.
func (r *refParser) decide(m []byte) []byte {
	ok := true
	switch m[0] {
	case 2:
		r.extMouse = false
		prev := uint32(0)
		for i := 4; i < len(m); i += 4 {
			e := binary.BigEndian.Uint32(m[i:])
			switch int32(e) {
			case -316:
				r.extMouse = true
			case -258:
				if r.pol != nil && r.pol.QEMUKeys == QEMUKeysToKeysym {
					m = slices.Clone(m)
					e = prev
					binary.BigEndian.PutUint32(m[i:], e)
					r.stats.Rewritten++
				}
			}
			prev = e
		}
	case 4:
		ok = r.key(m[1] != 0, binary.BigEndian.Uint32(m[4:]), 0, false)
	case 5:
		if r.pol != nil {
			switch {
			case r.agent:
				ok = r.drop(DropAgent)
			case m[1]&4 != 0 && r.pol.RightButton == RightStrip:
				m = slices.Clone(m)
				m[1] &^= 4
				r.stats.Rewritten++
			case m[1]&4 != 0 && r.pol.RightButton == RightDrop:
				ok = r.drop(DropRightButton)
			}
			// A 7-byte event goes on as a 6-byte one (bit 7 cleared, the
			// extra buttons dropped) unless the policy opts in to −316.
			if ok && len(m) == 7 && !r.pol.ExtendedMouseButtons {
				m = slices.Clone(m[:6])
				m[1] &^= 0x80
				r.trimmed++
			}
		}
	case 6:
		if r.pol != nil && r.agent {
			ok = r.drop(DropAgent)
		} else {
			r.events |= EventCutText
		}
	case 250:
		if r.pol != nil && !r.pol.AllowXVP {
			ok = r.drop(DropXVP)
		} else {
			ok = r.agentGate()
		}
	case 251:
		ok = r.agentGate()
	case 253:
		if r.pol != nil && m[1]&0x7f == 0 && !r.pol.AllowGIIEvents {
			ok = r.drop(DropGII)
		} else {
			ok = r.agentGate()
		}
	case 255:
		if m[1] == 0 {
			down := binary.BigEndian.Uint16(m[2:]) != 0
			if r.pol != nil && r.pol.QEMUKeys == QEMUKeysToKeysym {
				if ok = r.key(down, binary.BigEndian.Uint32(m[4:]), 0, false); ok {
					m = keyEv(down, binary.BigEndian.Uint32(m[4:]))
					r.stats.Rewritten++
				}
			} else {
				ok = r.key(down, binary.BigEndian.Uint32(m[4:]), binary.BigEndian.Uint32(m[8:]), true)
			}
		}
	}
	r.stats.Messages++
	if !ok {
		return nil
	}
	return m
}

// run applies the reference to a whole buffer of complete messages.
func (r *refParser) run(b []byte) (out []byte, ok bool) {
	maxCut := int64(DefaultMaxCutText)
	if r.pol != nil && r.pol.MaxCutText > 0 {
		maxCut = r.pol.MaxCutText
	}
	for len(b) > 0 {
		n := refLen(b, r.extMouse, maxCut)
		if n < 0 {
			return out, false
		}
		out = append(out, r.decide(b[:n])...)
		b = b[n:]
	}
	return out, true
}

// ---- random valid message sequences ----

var genKeysyms = []uint32{'a', 'o', 'O', 0x100006f, 0x100004f, 0x1000063, 'c', 'C', 'v', 'V', 'i', 'I', 'p', 'q', 'x', 0xffc9, 0xff0d, 0x20ac, 0,
	0x0f, 0x100000f, 0x09, 0x10, 0x1b, KeysymMenu, KeysymF10, 0x6dd, 0x10000e9, 0xf8, 0xfe03,
	KeysymControlL, KeysymControlR, KeysymShiftL, KeysymShiftR, KeysymAltL, KeysymAltR,
	KeysymMetaL, KeysymSuperL, KeysymModeSwitch}

var genKeycodes = []uint32{0, 0, 0x10018, 0xe018, 0x1e018, 0x10, 0x17, 0x18, 0x19, 0x1e, 0x2e, 0x2f, 0x58, 0x1d, 0x9d, 0xe01d, 0x2a, 0x38, 0xb8, 0xe038,
	0x44, 0xdd, 0xe05d, 0x36, 0x8000ffe3, 0x8000001d, 0x8000006f}

var genEncodings = []int32{0, 1, 2, 5, 6, 7, 16, 21, -26, -254, -223, -224, -239, -258, -260, -307, -308, -309, -312, -313, -316}

type gen struct {
	rng      *rand.Rand
	extMouse bool
}

func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	return b
}

func (g *gen) msg() []byte {
	r := g.rng
	switch k := r.IntN(100); {
	case k < 40:
		ks := genKeysyms[r.IntN(len(genKeysyms))]
		b := keyEv(r.IntN(2) == 0, ks)
		if r.IntN(10) == 0 {
			b[1] = byte(r.UintN(256))
			b[2], b[3] = byte(r.UintN(256)), byte(r.UintN(256))
		}
		return b
	case k < 60:
		mask := byte(r.UintN(256))
		if r.IntN(2) == 0 {
			mask &= 0x07
		}
		b := ptrEv(mask, uint16(r.UintN(2000)), uint16(r.UintN(2000)))
		if g.extMouse && mask&0x80 != 0 {
			b = append(b, byte(r.UintN(4)))
		}
		return b
	case k < 68:
		ks := genKeysyms[r.IntN(len(genKeysyms))]
		return qemuKey(r.IntN(2) == 0, ks, genKeycodes[r.IntN(len(genKeycodes))])
	case k < 72:
		var encs []int32
		for range r.IntN(8) {
			encs = append(encs, genEncodings[r.IntN(len(genEncodings))])
		}
		g.extMouse = slices.Contains(encs, -316)
		return setEnc(encs...)
	case k < 76:
		n := r.IntN(300)
		if r.IntN(10) == 0 {
			n = r.IntN(20000)
		}
		if r.IntN(3) == 0 {
			return cutTextExt(g.bytes(n))
		}
		return cutText(string(g.bytes(n)))
	case k < 79:
		return fence(uint32(r.Uint32()), g.bytes(r.IntN(65)))
	case k < 82:
		return fbur(r.IntN(2) == 0, 0, 0, 800, 600)
	case k < 84:
		return ecu(r.IntN(2) == 0, 0, 0, 800, 600)
	case k < 86:
		b := setPF()
		b[1] = byte(r.UintN(256))
		return b
	case k < 89:
		return xvpMsg(byte(r.IntN(4)))
	case k < 92:
		return setDesktopSize(uint16(r.UintN(4000)), uint16(r.UintN(4000)), r.IntN(4))
	case k < 96:
		return giiMsg(byte(r.IntN(4)), r.IntN(2) == 0, g.bytes(r.IntN(60)))
	default:
		return qemuAudioMsg(uint16(r.IntN(3)))
	}
}

var refPolicies = []string{"ctrl+o", "ctrl+o,ctrl+shift+i,ctrl+p,f12", "alt+v,super+c,q,shift+0x20ac", "ctrl+[,ctrl+i", ""}

func randPolicy(t testing.TB, r *rand.Rand) *Policy {
	if r.IntN(8) == 0 {
		return nil
	}
	pol, err := NewPolicy(refPolicies[r.IntN(len(refPolicies))], RightButton(r.IntN(3)))
	if err != nil {
		t.Fatal(err)
	}
	pol.AllowXVP = r.IntN(3) == 0
	pol.AllowGIIEvents = r.IntN(3) == 0
	pol.ExtendedMouseButtons = r.IntN(3) == 0
	pol.QEMUKeys = QEMUKeys(r.IntN(2))
	pol.AllowContextMenuKeys = r.IntN(4) == 0
	return pol
}

// TestDifferential compares the Stream with the reference parser on random
// valid message sequences cut into random chunks.
func TestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 316))
	n := 5000
	if testing.Short() {
		n = 500
	}
	trimmed := 0 // the sequences must exercise the −316 trim
	for seq := range n {
		pol := randPolicy(t, rng)
		agent, mac := rng.IntN(5) == 0, rng.IntN(2) == 0
		g := &gen{rng: rng}
		var in []byte
		for range 1 + rng.IntN(80) {
			in = append(in, g.msg()...)
		}

		ref := newRef(pol, agent, mac)
		want, ok := ref.run(in)
		if !ok {
			t.Fatalf("seq %d: reference rejected a generated sequence", seq)
		}
		trimmed += ref.trimmed

		who := User
		if agent {
			who = Agent
		}
		s := ready(t, pol, who)
		s.SetMac(mac)
		var w sink
		buf := bytes.Clone(in)
		for off := 0; off < len(buf); {
			var k int
			switch rng.IntN(4) {
			case 0:
				k = 1 + rng.IntN(3)
			case 1:
				k = 1 + rng.IntN(16)
			case 2:
				k = 1 + rng.IntN(200)
			default:
				k = len(buf)
			}
			end := min(off+k, len(buf))
			if err := s.Feed(buf[off:end], &w); err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
			off = end
		}
		got := w.buf
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("seq %d (policy %+v agent %v): output differs from reference at byte %d (len %d, want %d)\n got % x\nwant % x",
				seq, pol, agent, i, len(got), len(want), got[i:min(i+32, len(got))], want[i:min(i+32, len(want))])
		}
		if s.Stats != ref.stats {
			t.Fatalf("seq %d: stats %+v, reference %+v", seq, s.Stats, ref.stats)
		}
		if e := s.TakeEvents(); e != ref.events {
			t.Fatalf("seq %d: events %b, reference %b", seq, e, ref.events)
		}
	}
	if trimmed == 0 {
		t.Fatal("no 7-byte PointerEvent was trimmed: the generator misses the case")
	}
}
