package rfbparse

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// msgs is a sequence of client messages with the verdict expected for each.
type step struct {
	msg  []byte
	pass bool
	want []byte // output when it passes rewritten; nil = msg unchanged
}

func p(msg []byte) step { return step{msg: msg, pass: true} }
func d(msg []byte) step { return step{msg: msg} }

// runSteps feeds the steps (whole, one chunk per message, then byte by byte
// and as one chunk) and checks the output.
func runSteps(t *testing.T, mk func() *Stream, steps []step) *Stream {
	t.Helper()
	var in, want []byte
	for _, st := range steps {
		in = append(in, st.msg...)
		if st.pass {
			if st.want != nil {
				want = append(want, st.want...)
			} else {
				want = append(want, st.msg...)
			}
		}
	}
	var last *Stream
	for _, mode := range []string{"per message", "one chunk", "byte by byte"} {
		s := mk()
		var w sink
		switch mode {
		case "per message":
			for i, st := range steps {
				n := len(w.buf)
				mustFeed(t, s, bytes.Clone(st.msg), &w)
				got := w.buf[n:]
				exp := []byte(nil)
				if st.pass {
					exp = st.msg
					if st.want != nil {
						exp = st.want
					}
				}
				if !bytes.Equal(got, exp) {
					t.Fatalf("%s: step %d (% x): output % x, want % x", mode, i, st.msg, got, exp)
				}
			}
		case "one chunk":
			mustFeed(t, s, bytes.Clone(in), &w)
		case "byte by byte":
			for i := range in {
				mustFeed(t, s, bytes.Clone(in[i:i+1]), &w)
			}
		}
		if !bytes.Equal(w.buf, want) {
			t.Fatalf("%s: output\n% x\nwant\n% x", mode, w.buf, want)
		}
		if last != nil && last.Stats != s.Stats {
			t.Fatalf("%s: stats %+v differ from %+v", mode, s.Stats, last.Stats)
		}
		last = s
	}
	return last
}

func policy(t testing.TB, forbidden string, right RightButton) *Policy {
	t.Helper()
	pol, err := NewPolicy(forbidden, right)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestBypasses lists ways to get a forbidden shortcut or the right button
// through; every one must be blocked.
func TestBypasses(t *testing.T) {
	var (
		cL, cR  = uint32(KeysymControlL), uint32(KeysymControlR)
		shL     = uint32(KeysymShiftL)
		padded  = func(b []byte) []byte { b[2], b[3] = 0xff, 0x7f; return b }
		strip   = func(mask uint8) []byte { return ptrEv(mask&^4, 100, 200) }
		defPol  = func() *Stream { return ready(t, DefaultPolicy(), User) }
		dropPol = func() *Stream { return ready(t, policy(t, "ctrl+o", RightDrop), User) }
		allowPl = func() *Stream { return ready(t, policy(t, "ctrl+o", RightAllow), User) }
		extPol  = func() *Stream {
			pol := DefaultPolicy()
			pol.ExtendedMouseButtons = true
			return ready(t, pol, User)
		}
	)
	passPol := func() *Stream { // QEMU key events passed with their keycodes
		pol := DefaultPolicy()
		pol.QEMUKeys = QEMUKeysPass
		return ready(t, pol, User)
	}
	sc := func(n uint64) [NumDropReasons]uint64 { return [NumDropReasons]uint64{DropShortcut: n} }
	scu := func(n, u uint64) [NumDropReasons]uint64 {
		return [NumDropReasons]uint64{DropShortcut: n, DropUnmatched: u}
	}
	um := func(u uint64) [NumDropReasons]uint64 { return [NumDropReasons]uint64{DropUnmatched: u} }
	plainOf := func(q []byte) []byte {
		return keyEv(q[3] != 0, uint32(q[4])<<24|uint32(q[5])<<16|uint32(q[6])<<8|uint32(q[7]))
	}
	conv := func(q []byte) step { return step{msg: q, pass: true, want: plainOf(q)} }
	tests := []struct {
		name  string
		mk    func() *Stream
		steps []step
		drops [NumDropReasons]uint64
	}{
		{"Control_R+O", defPol, []step{p(keyDown(cR)), d(keyDown('o')), d(keyUp('o')), p(keyUp(cR))}, scu(1, 1)},
		{"Control_L+o", defPol, []step{p(keyDown(cL)), d(keyDown('o')), d(keyUp('o')), p(keyUp(cL)), p(keyDown('o')), p(keyUp('o'))}, scu(1, 1)},
		{"Ctrl+Shift+O", defPol, []step{p(keyDown(cL)), p(keyDown(shL)), d(keyDown('O')), d(keyUp('O')), p(keyUp(shL)), p(keyUp(cL))}, scu(1, 1)},
		{"Ctrl+O keysym O without Shift (caps lock)", defPol, []step{p(keyDown(cL)), d(keyDown('O')), d(keyUp('O'))}, scu(1, 1)},
		{"Ctrl+O with non-zero padding", defPol, []step{p(keyDown(cL)), d(padded(keyDown('o'))), d(padded(keyUp('o')))}, scu(1, 1)},
		{"Ctrl+O down flag not 1", defPol, []step{p(keyDown(cL)), d(func() []byte { b := keyDown('o'); b[1] = 0x80; return b }())}, sc(1)},
		{"Control_L released while Control_R held", defPol,
			[]step{p(keyDown(cL)), p(keyDown(cR)), p(keyUp(cL)), d(keyDown('o')), d(keyUp('o')), p(keyUp(cR)), p(keyDown('o'))}, scu(1, 1)},
		{"key-up of dropped Ctrl+O after Ctrl released", defPol,
			[]step{p(keyDown(cL)), d(keyDown('o')), p(keyUp(cL)), d(keyUp('o')), p(keyDown('o')), p(keyUp('o'))}, scu(1, 1)},
		{"key-up of dropped Ctrl+Shift+O after Shift released", defPol,
			[]step{p(keyDown(cL)), p(keyDown(shL)), d(keyDown('O')), p(keyUp(shL)), d(keyUp('o')), p(keyUp(cL))}, scu(1, 1)},
		{"autorepeat of dropped Ctrl+O", defPol,
			[]step{p(keyDown(cL)), d(keyDown('o')), d(keyDown('o')), d(keyDown('o')), d(keyUp('o')), p(keyUp(cL))}, scu(3, 1)},
		{"o held, then Ctrl pressed: repeat dropped, key-up passes", defPol,
			[]step{p(keyDown('o')), p(keyDown(cL)), d(keyDown('o')), p(keyUp('o')), p(keyUp(cL))}, sc(1)},
		{"release of a key never pressed changes nothing", defPol,
			[]step{d(keyUp(cL)), d(keyUp('o')), p(keyDown(cL)), d(keyUp(cR)), d(keyDown('o'))}, scu(1, 3)},
		{"Unicode keysym of o", defPol,
			[]step{p(keyDown(cL)), d(keyDown(0x100006f)), d(keyUp(0x100006f)), d(keyDown(0x100004f)), d(keyUp('o'))}, scu(2, 2)},

		// Control characters of forbidden Ctrl shortcuts, with or without Ctrl.
		{"control character ^O without Ctrl", defPol,
			[]step{d(keyDown(0x0f)), d(keyUp(0x0f)), d(keyDown(0x100000f)), d(keyUp(0x100000f)), p(keyDown(0x0e)), p(keyUp(0x0e))}, scu(2, 2)},
		{"control character ^O under Ctrl, QEMU", passPol,
			[]step{p(keyDown(cL)), d(qemuKey(true, 0x0f, 0)), d(qemuKey(true, 0x100000f, 0x1e)), p(keyUp(cL))}, sc(2)},
		{"control characters of a custom list", func() *Stream { return ready(t, policy(t, "ctrl+shift+i,ctrl+[,alt+p", RightStrip), User) },
			[]step{d(keyDown(0x09)), d(keyDown(0x1b)), p(keyDown(0x10)), p(keyDown(0x0f))}, sc(2)},

		// Non-ASCII keysyms under Ctrl: the server's keymap decides their
		// key (Cyrillic_shcha is on the O key of a Russian keymap).
		{"Ctrl + non-Latin keysyms", defPol,
			[]step{p(keyDown(cL)), d(keyDown(0x6dd)), d(keyDown(0x1000449)), d(keyDown(0xf8)), d(keyDown(0x20ac)), p(keyDown(KeysymF10)), p(keyDown(0xfe03)),
				p(keyUp(cL)), p(keyDown(0x6dd)), p(keyDown(0x20ac))}, sc(4)},
		{"Alt + non-Latin keysym with an alt+letter list", func() *Stream { return ready(t, policy(t, "alt+f", RightStrip), User) },
			[]step{p(keyDown(KeysymAltL)), d(keyDown(0x6dd)), p(keyDown(cL)), p(keyUp(KeysymAltL)), p(keyDown(0x6c1))}, sc(1)},

		// Context-menu keys go with the right button.
		{"Menu key dropped", defPol, []step{d(keyDown(KeysymMenu)), d(keyUp(KeysymMenu)), p(keyDown(KeysymF10)), p(keyUp(KeysymF10))}, scu(1, 1)},
		{"Shift+F10 dropped", dropPol,
			[]step{p(keyDown(shL)), d(keyDown(KeysymF10)), d(keyUp(KeysymF10)), p(keyUp(shL)), p(keyDown(KeysymF10))}, scu(1, 1)},
		{"QEMU Menu keycode, Shift+F10 keycode", passPol,
			[]step{d(qemuKey(true, 'a', 0xdd)), d(qemuKey(true, 'a', 0xe05d)), p(qemuKey(true, KeysymShiftR, 0x36)), d(qemuKey(true, 'a', 0x44))}, sc(3)},
		{"Menu key allowed with the right button", allowPl, []step{p(keyDown(KeysymMenu)), p(keyDown(shL)), p(keyDown(KeysymF10))}, sc(0)},
		{"Menu key allowed by option", func() *Stream {
			pol := DefaultPolicy()
			pol.AllowContextMenuKeys = true
			return ready(t, pol, User)
		}, []step{p(keyDown(KeysymMenu)), p(keyDown(shL)), p(keyDown(KeysymF10))}, sc(0)},

		// Layout-proof default: QEMU key events go on as plain KeyEvents of
		// their keysym, so a keycode smuggles nothing.
		{"QEMU events become plain KeyEvents", defPol,
			[]step{conv(qemuKey(true, shL, 0x2a)), conv(qemuKey(true, 'A', 0x1e)), conv(qemuKey(false, 'A', 0x1e)), conv(qemuKey(false, shL, 0x2a))}, sc(0)},
		{"QEMU Ctrl+O converted: still blocked", defPol,
			[]step{conv(qemuKey(true, cL, 0x1d)), d(qemuKey(true, 'o', 0x18)), d(qemuKey(false, 'o', 0x18)), conv(qemuKey(false, cL, 0x1e))}, scu(1, 1)},
		{"issue sequence A, converted", defPol,
			// The mismatched keycode is gone: the release frees Ctrl by keysym,
			// as the server (now acting on keysyms) does.
			[]step{conv(qemuKey(true, cL, 0x1d)), conv(qemuKey(false, cL, 0x1e)), p(keyDown('o'))}, sc(0)},
		{"SetEncodings -258 replaced", defPol,
			[]step{{msg: setEnc(7, -258, -316), pass: true, want: setEnc(7, 7, -316)}, {msg: setEnc(-258, 0), pass: true, want: setEnc(0, 0)}}, sc(0)},
		{"SetEncodings -258 passed in pass mode", passPol, []step{p(setEnc(7, -258, -316))}, sc(0)},

		// QEMU events with keycodes (pass mode): TigerVNC tracks them by
		// keycode and ignores releases it does not hold.
		{"issue sequence A: QEMU release with another keycode", passPol,
			// The release frees Ctrl for keysym servers only: it passes, Ctrl stays held.
			[]step{p(qemuKey(true, cL, 0x1d)), p(qemuKey(false, cL, 0x1e)), d(keyDown('o')), d(qemuKey(true, 'o', 0x18)), p(qemuKey(false, cL, 0x1d)), p(keyDown('o'))}, sc(2)},
		{"issue sequence B: plain release of a QEMU-pressed Ctrl", passPol,
			// QEMU frees Ctrl by its key, TigerVNC keeps it: still held.
			[]step{p(qemuKey(true, cL, 0x1d)), p(keyUp(cL)), d(keyDown('o')), d(keyUp(cL)), p(qemuKey(false, cL, 0x1d)), p(keyDown('o'))}, scu(1, 1)},
		{"QEMU release of a plain-pressed Ctrl by keycode", passPol,
			[]step{p(keyDown(cL)), p(qemuKey(false, cL, 0x1d)), d(keyDown('o')), p(keyUp(cL)), p(keyDown('o'))}, sc(1)},
		{"QEMU keycode 0: tracked by keysym, like a plain event", passPol,
			[]step{p(qemuKey(true, cL, 0)), p(keyUp(cL)), p(keyDown('o'))}, sc(0)},
		{"TigerVNC repeats the first keysym of a keycode", passPol,
			// o pressed by keycode 0x1e before Ctrl; a repeat of 0x1e with
			// keysym a is o to TigerVNC.
			[]step{p(qemuKey(true, 'o', 0x1e)), p(keyDown(cL)), d(qemuKey(true, 'a', 0x1e)), p(qemuKey(false, 'a', 0x1e)), p(qemuKey(true, 'a', 0x1e))}, sc(1)},
		{"TigerVNC lookup collision: keycode 0x80000000|keysym", passPol,
			// TigerVNC frees the plain Ctrl; QEMU and keysym servers do not.
			[]step{p(keyDown(cL)), p(qemuKey(false, 'x', 0x8000ffe3)), d(keyDown('o')), p(keyUp(cL)), p(keyDown('o'))}, sc(1)},
		{"QEMU keycode of Ctrl carried on a repeat", passPol,
			// plain 0x1d (a control character) then a QEMU press whose
			// TigerVNC lookup repeats it but whose U16 keycode is Ctrl in QEMU.
			[]step{p(keyDown(0x1d)), p(qemuKey(true, 'x', 0x8000001d)), d(qemuKey(true, 'o', 0x18)), d(keyDown('o'))}, sc(2)},
		{"QEMU keysym a with XT keycode of o under Ctrl", passPol,
			[]step{p(keyDown(cL)), d(qemuKey(true, 'a', 0x18)), d(qemuKey(false, 'a', 0x18)), p(keyUp(cL))}, scu(1, 1)},
		{"QEMU keycode of o above 16 bits (QEMU reads a U16)", passPol,
			[]step{p(keyDown(cL)), d(qemuKey(true, 'a', 0x10018)), d(qemuKey(false, 'a', 0x10018))}, scu(1, 1)},
		{"QEMU Ctrl by keycode 0x1d + o", passPol,
			[]step{p(qemuKey(true, cL, 0x1d)), d(qemuKey(true, 'o', 0x18)), d(qemuKey(false, 'o', 0x18)), p(qemuKey(false, cL, 0x1d))}, scu(1, 1)},
		{"QEMU Ctrl by keycode only + o", passPol,
			[]step{p(qemuKey(true, 0, 0x1d)), d(keyDown('o')), d(keyUp('o'))}, scu(1, 1)},
		{"QEMU right Ctrl e0 form + o by keycode", passPol,
			[]step{p(qemuKey(true, cR, 0xe01d)), d(qemuKey(true, 0, 0x18))}, sc(1)},
		{"QEMU right Ctrl 0x9d + o", passPol,
			[]step{p(qemuKey(true, cR, 0x9d)), d(qemuKey(true, 'o', 0x18))}, sc(1)},
		// The dropped event's keycode names Ctrl: Ctrl's key-up must still reach
		// the server, else Ctrl stays down there and a later 'o' makes Ctrl+O.
		{"QEMU o with Ctrl keycode does not swallow Ctrl's key-up", passPol,
			[]step{p(keyDown(cL)), d(qemuKey(true, 'o', 0x1d)), p(keyUp(cL)), p(keyDown('o')), p(keyUp('o'))}, sc(1)},
		{"unpressed releases: QEMU and plain", passPol,
			[]step{d(qemuKey(false, cL, 0x1d)), d(qemuKey(false, 'o', 0)), d(keyUp(cR))}, um(3)},
		{"forbidden key packed after SetEncodings in one chunk", defPol,
			[]step{p(cat(setEnc(0, 7, -316), keyDown(cL))), d(keyDown('o')), p(setEnc(0))}, sc(1)},
		{"pointer mask 4 strip", defPol, []step{{msg: ptrEv(4, 100, 200), pass: true, want: strip(4)}}, [NumDropReasons]uint64{}},
		{"pointer mask 5 strip", defPol, []step{{msg: ptrEv(5, 100, 200), pass: true, want: strip(5)}}, [NumDropReasons]uint64{}},
		{"pointer mask 6 strip", defPol, []step{{msg: ptrEv(6, 100, 200), pass: true, want: strip(6)}}, [NumDropReasons]uint64{}},
		{"pointer mask 12 strip", defPol, []step{{msg: ptrEv(12, 100, 200), pass: true, want: strip(12)}}, [NumDropReasons]uint64{}},
		// A 7-byte event goes on as a 6-byte one by default (see
		// TestExtendedMouseButtonsSmuggling), right button stripped too.
		{"pointer ext 7-byte strip", defPol,
			[]step{p(setEnc(-316)), {msg: ptrExt(0x07, 1, 3, 4), pass: true, want: ptrEv(0x03, 3, 4)}}, [NumDropReasons]uint64{}},
		{"pointer ext 7-byte strip, ExtendedMouseButtons", extPol,
			[]step{p(setEnc(-316)), {msg: ptrExt(0x07, 1, 3, 4), pass: true, want: ptrExt(0x03, 1, 3, 4)}}, [NumDropReasons]uint64{}},
		{"pointer ext 7-byte drop", dropPol,
			[]step{p(setEnc(-316)), d(ptrExt(0x04, 1, 3, 4)), {msg: ptrExt(0x01, 4, 3, 4), pass: true, want: ptrEv(0x01, 3, 4)}, p(keyDown('a'))},
			[NumDropReasons]uint64{DropRightButton: 1}},
		{"pointer ext 7th byte 0x04 then Ctrl+O-looking bytes", defPol,
			[]step{p(keyDown(cL)), p(setEnc(-316)), {msg: ptrExt(0, 4, 10, 20), pass: true, want: ptrEv(0, 10, 20)},
				p(fence(0x00006f03, []byte{0, 0, 0, 0, 0, 10, 0, 10})), p(keyUp(cL))},
			[NumDropReasons]uint64{}},
		{"pointer mask 4 drop", dropPol, []step{d(ptrEv(4, 1, 1)), d(ptrEv(5, 1, 1)), d(ptrEv(6, 1, 1)), d(ptrEv(12, 1, 1)), p(ptrEv(3, 1, 1))},
			[NumDropReasons]uint64{DropRightButton: 4}},
		{"pointer mask allow", allowPl, []step{p(ptrEv(4, 1, 1)), p(ptrEv(5, 1, 1)), p(ptrEv(6, 1, 1)), p(ptrEv(12, 1, 1))},
			[NumDropReasons]uint64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := runSteps(t, tc.mk, tc.steps)
			if s.Stats.Dropped != tc.drops {
				t.Fatalf("Dropped %v, want %v", s.Stats.Dropped, tc.drops)
			}
		})
	}
}

// TestKeySplitAcrossChunks: the decision prefix is assembled across chunks and
// the dropped key never leaks a byte.
func TestKeySplitAcrossChunks(t *testing.T) {
	s := ready(t, DefaultPolicy(), User)
	feedAll(t, s, keyDown(KeysymControlL))
	k := keyDown('o')
	var w sink
	for _, c := range [][]byte{k[:1], k[1:5], k[5:7], cat(k[7:], keyDown('a')[:3])} {
		mustFeed(t, s, bytes.Clone(c), &w)
	}
	if len(w.buf) != 0 {
		t.Fatalf("leaked % x", w.buf)
	}
	mustFeed(t, s, keyDown('a')[3:], &w)
	if !bytes.Equal(w.buf, keyDown('a')) {
		t.Fatalf("output % x", w.buf)
	}
}

func TestRewriteFromHeldPrefix(t *testing.T) {
	// A right-button event split across chunks is stripped in the prefix buffer.
	s := ready(t, DefaultPolicy(), User)
	m := ptrEv(0x0c, 7, 9)
	var w sink
	mustFeed(t, s, bytes.Clone(m[:2]), &w)
	mustFeed(t, s, bytes.Clone(m[2:]), &w)
	if !bytes.Equal(w.buf, ptrEv(8, 7, 9)) || s.Stats.Rewritten != 1 {
		t.Fatalf("output % x rewritten %d", w.buf, s.Stats.Rewritten)
	}
}

func TestAgentMode(t *testing.T) {
	allowed := []step{p(setPF()), p(setEnc(0, 7, -316)), p(fbur(true, 0, 0, 9, 9)),
		p(ecu(true, 0, 0, 9, 9)), p(fence(3, []byte{1})), p(qemuAudioMsg(0))}
	blocked := []step{d(keyDown('a')), d(keyUp('a')), d(ptrEv(1, 2, 3)), d(ptrExt(0, 1, 2, 3)),
		d(cutText("secret")), d(qemuKey(true, 'a', 0x1e)), d(setDesktopSize(800, 600, 1)),
		d(giiMsg(1, false, []byte{1, 0})), d(xvpMsg(2))}
	var steps []step
	for i := range max(len(allowed), len(blocked)) {
		if i < len(allowed) {
			steps = append(steps, allowed[i])
		}
		if i < len(blocked) {
			steps = append(steps, blocked[i])
		}
	}
	pol := DefaultPolicy()
	pol.AllowXVP, pol.AllowGIIEvents = true, true // dropped for the agent even when allowed
	s := runSteps(t, func() *Stream { return ready(t, pol, Agent) }, steps)
	if s.Stats.Dropped[DropAgent] != uint64(len(blocked)) || s.Stats.DroppedTotal() != uint64(len(blocked)) {
		t.Fatalf("Dropped %v", s.Stats.Dropped)
	}
	if e := s.TakeEvents(); e != 0 {
		t.Fatalf("events %b in agent mode", e)
	}
}

func TestXVPAndGIIDefaults(t *testing.T) {
	s := runSteps(t, func() *Stream { return ready(t, DefaultPolicy(), User) }, []step{
		d(xvpMsg(2)), d(xvpMsg(3)), d(giiMsg(0, false, make([]byte, 20))), d(giiMsg(0x80, true, make([]byte, 20))),
		p(giiMsg(1, true, []byte{0, 1, 0, 1})), p(keyDown('x')),
	})
	if s.Stats.Dropped[DropXVP] != 2 || s.Stats.Dropped[DropGII] != 2 {
		t.Fatalf("Dropped %v", s.Stats.Dropped)
	}
	pol := DefaultPolicy()
	pol.AllowXVP, pol.AllowGIIEvents = true, true
	runSteps(t, func() *Stream { return ready(t, pol, User) }, []step{
		p(xvpMsg(2)), p(giiMsg(0, false, make([]byte, 20))),
	})
}

func TestSetInteractorAtBoundary(t *testing.T) {
	pol := DefaultPolicy()
	s := ready(t, pol, User)
	feedAll(t, s, cat(setEnc(0), keyDown(KeysymShiftL), keyDown('A'), keyDown('b'), keyUp('b'), ptrEv(0x05, 30, 40)))
	if !s.AtBoundary() {
		t.Fatal("not at boundary")
	}
	rel := s.SetInteractor(Agent)
	// Key-ups for Shift_L and 'A' (any order) and a button release at (30,40).
	want := [][]byte{keyUp(KeysymShiftL), keyUp('A'), ptrEv(0, 30, 40)}
	if len(rel) != 8+8+6 {
		t.Fatalf("release % x", rel)
	}
	got := [][]byte{rel[0:8], rel[8:16], rel[16:]}
	if !bytes.Equal(got[2], want[2]) {
		t.Fatalf("pointer release % x, want % x", got[2], want[2])
	}
	if !(bytes.Equal(got[0], want[0]) && bytes.Equal(got[1], want[1]) ||
		bytes.Equal(got[0], want[1]) && bytes.Equal(got[1], want[0])) {
		t.Fatalf("key releases % x", rel[:16])
	}
	if s.Interactor() != Agent || s.SetInteractor(Agent) != nil {
		t.Fatal("second SetInteractor(Agent) returned releases")
	}
	// Nothing is held any more; the agent's key-ups from the viewer are dropped.
	if out := feedAll(t, s, cat(keyUp('A'), keyUp(KeysymShiftL), ptrEv(0, 1, 1))); len(out) != 0 {
		t.Fatalf("agent mode passed % x", out)
	}
	if s.SetInteractor(User) != nil {
		t.Fatal("SetInteractor(User) returned bytes")
	}
	// Back to the user: nothing held, no release.
	feedAll(t, s, ptrEv(0, 5, 5))
	if r := s.SetInteractor(Agent); r != nil {
		t.Fatalf("releases with nothing held: % x", r)
	}
}

func TestSetInteractorExtendedButtonRelease(t *testing.T) {
	extPol := DefaultPolicy()
	extPol.ExtendedMouseButtons = true
	s := ready(t, extPol, User)
	feedAll(t, s, cat(setEnc(-316), ptrExt(0, 1, 300, 400)))
	rel := s.SetInteractor(Agent)
	if want := ptrExt(0, 0, 300, 400); !bytes.Equal(rel, want) {
		t.Fatalf("release % x, want % x", rel, want)
	}
	// By default the extra buttons never reach the server: nothing to release
	// for them, and a held basic button is released with a 6-byte event.
	s = ready(t, DefaultPolicy(), User)
	feedAll(t, s, cat(setEnc(-316), ptrExt(0, 1, 300, 400)))
	if rel := s.SetInteractor(Agent); rel != nil {
		t.Fatalf("release % x, want none", rel)
	}
	s = ready(t, DefaultPolicy(), User)
	feedAll(t, s, cat(setEnc(-316), ptrExt(1, 1, 300, 400)))
	if rel := s.SetInteractor(Agent); !bytes.Equal(rel, ptrEv(0, 300, 400)) {
		t.Fatalf("release % x, want % x", rel, ptrEv(0, 300, 400))
	}
	// Without -316, a held bit-7 button is released with a 6-byte event.
	s = ready(t, DefaultPolicy(), User)
	feedAll(t, s, ptrEv(0x80, 3, 4))
	if rel := s.SetInteractor(Agent); !bytes.Equal(rel, ptrEv(0, 3, 4)) {
		t.Fatalf("release % x", rel)
	}
}

// smuggleInput holds Ctrl, lists −316, then sends a 7-byte PointerEvent whose
// 7th byte is 0x04 (KeyEvent) followed by a ClientFence whose first 7 bytes
// complete, for a server that reads the PointerEvent as 6 bytes, a KeyEvent
// 'o' key-down (down flag 0xf8); the rest of the fence then reads as a
// FramebufferUpdateRequest, so that server is back in step and nothing else
// looks amiss. The proxy sees a harmless fence.
func smuggleInput() []byte {
	return cat(keyDown(KeysymControlL), setEnc(-316), ptrExt(0, 0x04, 10, 20),
		fence(0x00006f03, []byte{0, 0, 0, 0, 0, 10, 0, 10}), keyUp(KeysymControlL))
}

// TestExtendedMouseButtonsSmuggling: the PointerEvent of ExtendedMouseButtons
// is 7 bytes only for servers that implement −316; by default the proxy sends
// it on as 6 bytes so every server reads the messages the proxy inspected.
func TestExtendedMouseButtonsSmuggling(t *testing.T) {
	in := smuggleInput()
	pol := DefaultPolicy()
	// The input as is, read by a server without -316: Ctrl+O.
	raw, rest, bad := serverParse(in, false, pol.MaxCutText)
	if v := violation(pol, false, raw); bad != nil || rest != 0 || !strings.Contains(v, "forbidden") && !strings.Contains(v, "X pressed 0x6f") {
		t.Fatalf("the input does not smuggle Ctrl+O: %q", violation(pol, false, raw))
	}
	if smug := raw[3]; !bytes.Equal(smug, []byte{MsgKeyEvent, 0xf8, 0, 0, 0, 0, 0, 'o'}) {
		t.Fatalf("smuggled message % x", smug)
	}
	// Read by a server with -316, the same bytes are harmless.
	if msgs, _, _ := serverParse(in, true, pol.MaxCutText); violation(pol, false, msgs) != "" || len(msgs) != 5 {
		t.Fatalf("the input is not harmless with -316: %q", violation(pol, false, msgs))
	}

	cL := uint32(KeysymControlL)
	trimmed := cat(keyDown(cL), setEnc(-316), ptrEv(0, 10, 20),
		fence(0x00006f03, []byte{0, 0, 0, 0, 0, 10, 0, 10}), keyUp(cL))
	extPol := DefaultPolicy()
	extPol.ExtendedMouseButtons = true
	for _, tc := range []struct {
		name   string
		pol    *Policy
		want   []byte
		ctrlO6 bool // a server without -316 reads Ctrl+O in the output
	}{
		{"default", pol, trimmed, false},
		{"ExtendedMouseButtons", extPol, in, true}, // the opt-in passes it: only for -316 servers
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every cut into up to three chunks.
			for i := 0; i <= len(in); i++ {
				for j := i; j <= len(in); j++ {
					s := ready(t, tc.pol, User)
					var w sink
					for _, c := range [][]byte{in[:i], in[i:j], in[j:]} {
						mustFeed(t, s, bytes.Clone(c), &w)
					}
					if !bytes.Equal(w.buf, tc.want) {
						t.Fatalf("cuts %d,%d: output\n% x\nwant\n% x", i, j, w.buf, tc.want)
					}
					if s.Stats.Messages != 5 || s.Stats.DroppedTotal() != 0 || s.Stats.Rewritten != 0 {
						t.Fatalf("cuts %d,%d: stats %+v", i, j, s.Stats)
					}
				}
			}
			with, _, _ := serverParse(tc.want, true, tc.pol.MaxCutText)
			if v := violation(tc.pol, false, with); v != "" {
				t.Fatalf("server with -316: %s", v)
			}
			without, rest, bad := serverParse(tc.want, false, tc.pol.MaxCutText)
			if bad != nil || rest != 0 {
				t.Fatalf("server without -316: invalid % x, %d bytes left", bad, rest)
			}
			if v := violation(tc.pol, false, without); (v != "") != tc.ctrlO6 {
				t.Fatalf("server without -316: %q", v)
			}
			if !tc.ctrlO6 && !sameMessages(with, without) {
				t.Fatal("servers with and without -316 read the output differently")
			}
		})
	}
}

// TestExtendedPointerSplit: a 7-byte PointerEvent cut anywhere (prefix in the
// chunk, in the held buffer, or both, with passed bytes before and after it in
// the same chunk) goes on identically.
func TestExtendedPointerSplit(t *testing.T) {
	in := cat(setEnc(-316), keyDown('a'), ptrExt(0x05, 2, 10, 20), keyUp('a'), ptrExt(0x81, 0, 11, 21))
	for _, tc := range []struct {
		name string
		ext  bool
		want []byte
	}{
		{"default", false, cat(setEnc(-316), keyDown('a'), ptrEv(0x01, 10, 20), keyUp('a'), ptrEv(0x01, 11, 21))},
		{"ExtendedMouseButtons", true, cat(setEnc(-316), keyDown('a'), ptrExt(0x01, 2, 10, 20), keyUp('a'), ptrExt(0x81, 0, 11, 21))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := DefaultPolicy()
			pol.ExtendedMouseButtons = tc.ext
			for i := 0; i <= len(in); i++ {
				for j := i; j <= len(in); j++ {
					s := ready(t, pol, User)
					var w sink
					for _, c := range [][]byte{in[:i], in[i:j], in[j:]} {
						mustFeed(t, s, bytes.Clone(c), &w)
					}
					if !bytes.Equal(w.buf, tc.want) {
						t.Fatalf("cuts %d,%d: output\n% x\nwant\n% x", i, j, w.buf, tc.want)
					}
					if s.Stats.Messages != 5 || s.Stats.Rewritten != 1 || s.Stats.DroppedTotal() != 0 || !s.AtBoundary() {
						t.Fatalf("cuts %d,%d: stats %+v", i, j, s.Stats)
					}
				}
			}
			// Byte by byte.
			s := ready(t, pol, User)
			var w sink
			for k := range in {
				mustFeed(t, s, bytes.Clone(in[k:k+1]), &w)
			}
			if !bytes.Equal(w.buf, tc.want) {
				t.Fatalf("byte by byte: output\n% x\nwant\n% x", w.buf, tc.want)
			}
		})
	}
}

func TestSetInteractorMidMessage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cur    []byte // the message in progress when control changes
		cut    int
		passes bool // decided before the switch (or always allowed)
	}{
		{"mid cut text body", cutText("0123456789"), 11, true},
		{"mid cut text header", cutText("0123456789"), 3, false},
		{"mid key prefix", keyDown('z'), 5, false},
		{"mid fence", fence(1, []byte{1, 2, 3, 4}), 10, true},
		{"mid SetEncodings", setEnc(0, 1, 2, 3), 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ready(t, DefaultPolicy(), User)
			feedAll(t, s, keyDown('q'))
			var w sink
			mustFeed(t, s, bytes.Clone(tc.cur[:tc.cut]), &w)
			if s.AtBoundary() {
				t.Fatal("at boundary mid-message")
			}
			if r := s.SetInteractor(Agent); r != nil {
				t.Fatalf("release returned mid-message: % x", r)
			}
			// The rest of the message and a following one in one chunk: the
			// release comes right after the current message's last byte.
			mustFeed(t, s, cat(tc.cur[tc.cut:], fbur(true, 0, 0, 1, 1)), &w)
			var wantCur []byte
			if tc.passes {
				wantCur = tc.cur
			}
			want := cat(wantCur, keyUp('q'), fbur(true, 0, 0, 1, 1))
			if !bytes.Equal(w.buf, want) {
				t.Fatalf("output\n% x\nwant\n% x", w.buf, want)
			}
		})
	}
}

// TestSetInteractorReleaseAtChunkEnd: when the current message ends exactly at
// the end of the next Feed's chunk, the release is still written by that Feed.
func TestSetInteractorReleaseAtChunkEnd(t *testing.T) {
	s := ready(t, DefaultPolicy(), User)
	feedAll(t, s, keyDown('q'))
	msg := cutText("abc")
	var w sink
	mustFeed(t, s, bytes.Clone(msg[:9]), &w)
	if r := s.SetInteractor(Agent); r != nil {
		t.Fatal("release returned mid-message")
	}
	mustFeed(t, s, bytes.Clone(msg[9:]), &w)
	if want := cat(msg, keyUp('q')); !bytes.Equal(w.buf, want) {
		t.Fatalf("output % x, want % x", w.buf, want)
	}
	if !s.AtBoundary() || s.nInject != 0 {
		t.Fatal("release still queued")
	}
}

func TestCopyPasteEvents(t *testing.T) {
	cL, cR, altL := uint32(KeysymControlL), uint32(KeysymControlR), uint32(KeysymAltL)
	tests := []struct {
		name string
		mac  bool
		in   []byte
		want Event
	}{
		{"Ctrl_L+c", false, cat(keyDown(cL), keyDown('c')), EventCopy},
		{"Ctrl_R+C", false, cat(keyDown(cR), keyDown('C')), EventCopy},
		{"Ctrl_L+V", false, cat(keyDown(cL), keyDown('V')), EventPaste},
		{"Ctrl_R+v", false, cat(keyDown(cR), keyDown('v')), EventPaste},
		{"QEMU Ctrl+c", false, cat(qemuKey(true, cL, 0x1d), qemuKey(true, 'c', 0x2e)), EventCopy},
		{"c alone", false, cat(keyDown('c'), keyDown('v')), 0},
		{"c key-up under Ctrl", false, cat(keyDown(cL), keyUp('c')), 0},
		{"Ctrl released before c", false, cat(keyDown(cL), keyUp(cL), keyDown('c')), 0},
		{"mac Alt_L+C", true, cat(keyDown(altL), keyDown('C')), EventCopy},
		{"mac Alt_L+v", true, cat(keyDown(altL), keyDown('v')), EventPaste},
		{"mac Super+c", true, cat(keyDown(KeysymSuperL), keyDown('c')), EventCopy},
		{"mac Meta+v", true, cat(keyDown(KeysymMetaR), keyDown('v')), EventPaste},
		{"mac Ctrl+c", true, cat(keyDown(cL), keyDown('c')), EventCopy},
		{"mac Mode_switch+c", true, cat(keyDown(KeysymModeSwitch), keyDown('c')), 0},
		{"mac Alt_R+c", true, cat(keyDown(KeysymAltR), keyDown('c')), 0},
		{"not mac Alt_L+C", false, cat(keyDown(altL), keyDown('C')), 0},
		{"not mac Super+v", false, cat(keyDown(KeysymSuperL), keyDown('v')), 0},
		{"cut text", false, cutText("x"), EventCutText},
		{"Ctrl+O", false, cat(keyDown(cL), keyDown('o')), EventBlocked},
		{"copy and cut text", false, cat(keyDown(cL), keyDown('c'), cutText("")), EventCopy | EventCutText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ready(t, DefaultPolicy(), User)
			s.SetMac(tc.mac)
			feedAll(t, s, tc.in)
			if got := s.TakeEvents(); got != tc.want {
				t.Fatalf("events %b, want %b", got, tc.want)
			}
			if got := s.TakeEvents(); got != 0 {
				t.Fatalf("events not cleared: %b", got)
			}
		})
	}
}

func TestShortcutLists(t *testing.T) {
	pol := policy(t, "ctrl+o, ctrl+shift+i ,ctrl+p,f12", RightStrip)
	want := []Shortcut{{ModCtrl, 'o'}, {ModCtrl | ModShift, 'i'}, {ModCtrl, 'p'}, {0, 0xffc9}}
	if !slices.Equal(pol.Forbidden, want) {
		t.Fatalf("parsed %v, want %v", pol.Forbidden, want)
	}
	cL, sh := uint32(KeysymControlL), uint32(KeysymShiftL)
	runSteps(t, func() *Stream { return ready(t, pol, User) }, []step{
		p(keyDown(cL)), p(keyDown('i')), p(keyUp('i')), // Ctrl+I alone is fine
		p(keyDown(sh)), d(keyDown('I')), d(keyUp('I')), p(keyUp(sh)),
		d(keyDown('p')), d(keyUp('p')), p(keyUp(cL)),
		d(keyDown(0xffc9)), d(keyUp(0xffc9)), // F12 with no modifier
		p(keyDown('p')), p(keyUp('p')), p(keyDown(0xffc8)),
		p(keyDown(cL)), d(qemuKey(true, 0xffc9, 0x58)),
	})

	good := map[string][]Shortcut{
		"":                   nil,
		" , ,":               nil,
		"CTRL+O":             {{ModCtrl, 'o'}},
		"control+alt+delete": {{ModCtrl | ModAlt, 0xffff}},
		"super+tab,meta+esc": {{ModSuper, 0xff09}, {ModMeta, 0xff1b}},
		"option+enter":       {{ModAlt, 0xff0d}},
		"win+space":          {{ModSuper, ' '}},
		"modeswitch+f1":      {{ModModeSwitch, 0xffbe}},
		"ctrl+0x4F":          {{ModCtrl, 'o'}},
		"backspace":          {{0, 0xff08}},
		"ctrl+1":             {{ModCtrl, '1'}},
		"f10":                {{0, 0xffc7}},
	}
	for in, want := range good {
		got, err := ParseShortcuts(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseShortcuts(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"ctrl+", "+o", "hyper+o", "ctrl+foo", "f13", "f0", "f01", "f1x",
		"ctrl+0x", "ctrl+0xzz", "ctrl+0x4fz", "ctrl+0x0", "ctrl+o,bad+x", "ctrl+é"} {
		if sc, err := ParseShortcuts(in); err == nil {
			t.Errorf("ParseShortcuts(%q) = %v, want an error", in, sc)
		}
		if _, err := NewPolicy(in, RightStrip); err == nil {
			t.Errorf("NewPolicy(%q): no error", in)
		}
	}
}

func TestKeyLimit(t *testing.T) {
	s := ready(t, DefaultPolicy(), User)
	var in []byte
	for i := range maxHeld {
		in = append(in, keyDown('a'+uint32(i))...)
	}
	in = append(in, keyDown('a')...) // autorepeat of a held key still passes
	if out := feedAll(t, s, in); !bytes.Equal(out, in) {
		t.Fatal("held keys dropped")
	}
	if out := feedAll(t, s, keyDown('z')); len(out) != 0 || s.Stats.Dropped[DropKeyLimit] != 1 {
		t.Fatalf("17th key passed: % x", out)
	}
	feedAll(t, s, keyUp('a'))
	if out := feedAll(t, s, keyDown('z')); len(out) == 0 {
		t.Fatal("key after a release dropped")
	}
	if r := s.SetInteractor(Agent); len(r) != maxHeld*8 {
		t.Fatalf("release %d bytes, want %d", len(r), maxHeld*8)
	}
}
