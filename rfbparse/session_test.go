package rfbparse

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// noVNCEncodings is the encoding list noVNC 1.5 sends at 24-bit depth:
// CopyRect, Tight, TightPNG, ZRLE, JPEG, Hextile, RRE, Zlib, Raw, quality 6,
// compression 2, DesktopSize, LastRect, QEMU extended key, QEMU LED,
// ExtendedDesktopSize, xvp, Fence, ContinuousUpdates, DesktopName,
// ExtendedClipboard, ExtendedMouseButtons, VMware cursor, Cursor.
var noVNCEncodings = []int32{1, 7, -260, 16, 21, 5, 2, 6, 0, -26, -254,
	-223, -224, -258, -261, -308, -309, -312, int32(-313) /* 0xFFFFFEC7 */, -307,
	int32(-1063131698) /* 0xC0A1E5CE */, -316, 0x574d5664, -239}

// typeText is what noVNC sends for typing s (ASCII), Shift for upper case.
func typeText(s string) []byte {
	var b []byte
	for _, c := range []byte(s) {
		shift := c >= 'A' && c <= 'Z'
		if shift {
			b = append(b, keyDown(KeysymShiftL)...)
		}
		b = append(b, keyDown(uint32(c))...)
		b = append(b, keyUp(uint32(c))...)
		if shift {
			b = append(b, keyUp(KeysymShiftL)...)
		}
	}
	return b
}

// session is a recorded noVNC session: the client's handshake, then its
// messages in the order noVNC sends them. Frames are the WebSocket messages
// (one RFB message each, as noVNC sends them).
type session struct {
	client []byte
	frames [][]byte // message frames after the handshake
	want   [][]byte // each frame as the default policy passes it (nil: dropped)
	// server bytes to deliver once the client has sent clientAt[i] bytes
	server   [][]byte
	clientAt []int
}

func noVNCSession() session {
	var frames, want [][]byte
	add := func(b ...[]byte) {
		frames = append(frames, b...)
		want = append(want, b...)
	}
	// addAs adds a frame the default policy turns into out (nil: dropped).
	addAs := func(b, out []byte) {
		frames = append(frames, b)
		want = append(want, out)
	}
	add(setPF())
	// The default policy is layout-proof: −258 is replaced by the entry
	// before it, and QEMU key events go on as plain KeyEvents.
	var plainEncs []int32
	for _, e := range noVNCEncodings {
		if e == EncodingQEMUExtendedKeyEvent {
			e = plainEncs[len(plainEncs)-1]
		}
		plainEncs = append(plainEncs, e)
	}
	addAs(setEnc(noVNCEncodings...), setEnc(plainEncs...))
	add(fbur(false, 0, 0, 1280, 720))
	for i := range 40 { // the pointer wanders in
		add(ptrEv(0, uint16(100+i*7), uint16(200+i*3)))
	}
	add(fbur(true, 0, 0, 1280, 720))
	add(ptrEv(1, 380, 320), ptrEv(1, 390, 322), ptrEv(0, 390, 322)) // click-drag
	// Typing "Hello World" key by key (one frame per key event).
	t := typeText("Hello World")
	for i := 0; i < len(t); i += 8 {
		add(t[i : i+8])
	}
	// Ctrl+C, then the clipboard goes to the server.
	add(keyDown(KeysymControlL), keyDown('c'), keyUp('c'), keyUp(KeysymControlL))
	add(cutText("Hello World, copied from the viewer"))
	// Ctrl+O attempt (dropped) and a right click (stripped).
	add(keyDown(KeysymControlR))
	addAs(keyDown('o'), nil)
	addAs(keyUp('o'), nil)
	add(keyUp(KeysymControlR))
	addAs(ptrEv(4, 500, 500), ptrEv(0, 500, 500))
	add(ptrEv(0, 500, 500))
	// ExtendedMouseButtons: a 7-byte event (back button), wheel in 6 bytes.
	// The default policy passes 7-byte events on as 6-byte ones (bit 7
	// cleared, the extra buttons dropped).
	addAs(ptrExt(0, 1, 501, 501), ptrEv(0, 501, 501))
	addAs(ptrExt(0, 0, 501, 501), ptrEv(0, 501, 501))
	add(ptrEv(8, 501, 501), ptrEv(0, 501, 501))
	add(fence(0x80000003, []byte{0xde, 0xad}))
	add(ecu(true, 0, 0, 1280, 720))
	// QEMU extended keys once the server acknowledged -258.
	addQ := func(q ...[]byte) {
		for _, b := range q {
			addAs(b, plainKey(b))
		}
	}
	addQ(qemuKey(true, KeysymShiftL, 0x2a), qemuKey(true, 'A', 0x1e), qemuKey(false, 'A', 0x1e), qemuKey(false, KeysymShiftL, 0x2a))
	addQ(qemuKey(true, KeysymControlL, 0x1d), qemuKey(true, 'v', 0x2f), qemuKey(false, 'v', 0x2f), qemuKey(false, KeysymControlL, 0x1d))
	addQ(qemuKey(true, KeysymControlL, 0x1d))
	addAs(qemuKey(true, 'o', 0x18), nil)
	addAs(qemuKey(false, 'o', 0x18), nil)
	addQ(qemuKey(false, KeysymControlL, 0x1d))
	add(cutTextExt([]byte{0x10, 0, 0, 1, 0x78, 0x9c, 1, 2, 3, 4}))
	for i := range 20 {
		add(ptrEv(0, uint16(600-i), uint16(400+i)))
		if i%5 == 0 {
			add(fbur(true, 0, 0, 1280, 720))
		}
	}
	add(setDesktopSize(1024, 768, 1), setEnc(0, 7, -223)) // -316 off: bit 7 is 6 bytes again
	add(ptrEv(0x80, 10, 10), ptrEv(0, 10, 10))
	client := cat([]byte("RFB 003.008\n"), []byte{1}, []byte{1})
	for _, f := range frames {
		client = append(client, f...)
	}
	return session{
		client:   client,
		frames:   frames,
		want:     want,
		server:   [][]byte{srvVer(8), {1, 1}, u32(0)},
		clientAt: []int{0, 12, 13},
	}
}

type runResult struct {
	out    []byte
	stats  Stats
	events Event
	err    error
}

// run feeds the session's client bytes cut at cuts (sorted offsets), with the
// server's handshake bytes delivered when the client reached each milestone.
func (ss session) run(pol *Policy, cuts []int) runResult {
	s := NewStream(pol, User)
	var w sink
	var r runResult
	all := slices.Clone(cuts)
	all = append(all, ss.clientAt...)
	all = append(all, len(ss.client))
	slices.Sort(all)
	all = slices.Compact(all)
	srv := 0
	prev := 0
	for _, c := range all {
		if c < prev || c > len(ss.client) {
			continue
		}
		if c > prev {
			if err := s.Feed(bytes.Clone(ss.client[prev:c]), &w); err != nil {
				r.err = err
				break
			}
		}
		prev = c
		for srv < len(ss.server) && ss.clientAt[srv] == c {
			if err := s.Server(ss.server[srv]); err != nil {
				r.err = err
				break
			}
			srv++
		}
	}
	r.out, r.stats, r.events = w.buf, s.Stats, s.TakeEvents()
	return r
}

func sameRun(t *testing.T, what string, got, want runResult) {
	t.Helper()
	if !errors.Is(got.err, want.err) && (got.err == nil || want.err == nil || got.err.Error() != want.err.Error()) {
		t.Fatalf("%s: error %v, want %v", what, got.err, want.err)
	}
	if !bytes.Equal(got.out, want.out) {
		t.Fatalf("%s: output differs (%d bytes, want %d)", what, len(got.out), len(want.out))
	}
	if got.stats != want.stats {
		t.Fatalf("%s: stats %+v, want %+v", what, got.stats, want.stats)
	}
	if got.events != want.events {
		t.Fatalf("%s: events %b, want %b", what, got.events, want.events)
	}
}

func TestNoVNCSession(t *testing.T) {
	ss := noVNCSession()
	base := ss.run(DefaultPolicy(), nil)
	if base.err != nil {
		t.Fatal(base.err)
	}
	// What the policy does to this session: Ctrl+O twice (down and up each),
	// one right click stripped, two 7-byte PointerEvents cut to 6 bytes.
	if base.stats.Messages != uint64(len(ss.frames)) {
		t.Fatalf("Messages %d, want %d", base.stats.Messages, len(ss.frames))
	}
	// The key-ups of the dropped presses are releases of no held key;
	// rewritten: the right click, −258 and ten QEMU key events.
	wantDrops := [NumDropReasons]uint64{DropShortcut: 2, DropUnmatched: 2}
	if base.stats.Dropped != wantDrops || base.stats.Rewritten != 12 {
		t.Fatalf("stats %+v", base.stats)
	}
	if base.events != EventCopy|EventPaste|EventCutText|EventBlocked {
		t.Fatalf("events %b", base.events)
	}
	if len(ss.client)-len(base.out) != 2*8+2*12+2*1+10*4 {
		t.Fatalf("dropped %d bytes", len(ss.client)-len(base.out))
	}
	// The expected output, built frame by frame.
	var want []byte
	want = append(want, ss.client[:14]...)
	for _, f := range ss.want {
		want = append(want, f...)
	}
	if !bytes.Equal(base.out, want) {
		t.Fatal("session output differs from the frame-by-frame expectation")
	}

	// Frame by frame (as noVNC sends it).
	var frameCuts []int
	off := 14
	for _, f := range ss.frames {
		frameCuts = append(frameCuts, off)
		off += len(f)
	}
	sameRun(t, "per frame", ss.run(DefaultPolicy(), frameCuts), base)

	// Every single cut.
	for c := 1; c < len(ss.client); c++ {
		sameRun(t, "cut at "+itoa(c), ss.run(DefaultPolicy(), []int{c}), base)
	}
	// Byte by byte.
	every := make([]int, len(ss.client))
	for i := range every {
		every[i] = i
	}
	sameRun(t, "byte by byte", ss.run(DefaultPolicy(), every), base)
	// Random multi-cut.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		n := 1 + rng.IntN(40)
		cuts := make([]int, n)
		for j := range cuts {
			cuts[j] = rng.IntN(len(ss.client))
		}
		slices.Sort(cuts)
		sameRun(t, "random cuts #"+itoa(i), ss.run(DefaultPolicy(), cuts), base)
	}
}

func TestNoVNCSessionPolicies(t *testing.T) {
	ss := noVNCSession()
	extPol := policy(t, "", RightAllow)
	extPol.ExtendedMouseButtons = true
	extPol.QEMUKeys = QEMUKeysPass
	permissive := policy(t, "", RightAllow)
	permissive.QEMUKeys = QEMUKeysPass
	// trimmed is the session as a policy that changes nothing else passes it:
	// the 7-byte PointerEvents go on as 6-byte ones.
	trimmed := slices.Clone(ss.client[:14])
	for _, f := range ss.frames {
		if f[0] == MsgPointerEvent && len(f) == 7 {
			trimmed = append(trimmed, f[0], f[1]&^0x80, f[2], f[3], f[4], f[5])
		} else {
			trimmed = append(trimmed, f...)
		}
	}
	for _, tc := range []struct {
		name string
		pol  *Policy
		want []byte // the output; nil: not checked
	}{
		{"nil", nil, ss.client},                     // no inspection: nothing changes
		{"permissive with -316", extPol, ss.client}, // nothing to filter, 7-byte events pass
		{"permissive", permissive, trimmed},         // only the 7-byte events change
		{"strict", policy(t, "ctrl+c,ctrl+v,h", RightDrop), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := ss.run(tc.pol, nil)
			if base.err != nil {
				t.Fatal(base.err)
			}
			for c := 1; c < len(ss.client); c++ {
				sameRun(t, "cut at "+itoa(c), ss.run(tc.pol, []int{c}), base)
			}
			if tc.want != nil && !bytes.Equal(base.out, tc.want) {
				t.Fatalf("output differs from the expectation (%d bytes, want %d)", len(base.out), len(tc.want))
			}
		})
	}
}
