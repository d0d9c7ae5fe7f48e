package rfbparse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// fuzzStream builds the Stream a fuzz input's mode byte selects, past a 3.8
// None handshake: bits 0-1 right-button mode (3: nil policy), bit 2 agent,
// bit 3 mac, bit 4 Policy.ExtendedMouseButtons, bit 5 QEMU key events passed
// with their keycodes.
func fuzzStream(t *testing.T, mode uint8) *Stream {
	var pol *Policy
	if rb := mode & 3; rb != 3 {
		var err error
		if pol, err = NewPolicy("ctrl+o,ctrl+shift+i,ctrl+p,f12,alt+f4", RightButton(rb)); err != nil {
			t.Fatal(err)
		}
		pol.MaxCutText = 1 << 16
		pol.ExtendedMouseButtons = mode&16 != 0
		if mode&32 != 0 {
			pol.QEMUKeys = QEMUKeysPass
		}
	}
	who := User
	if mode&4 != 0 {
		who = Agent
	}
	s := ready(t, pol, who)
	s.SetMac(mode&8 != 0)
	return s
}

func fuzzSeeds(f *testing.F) {
	ss := noVNCSession()
	f.Add(ss.client[14:], uint16(100), uint8(0))
	f.Add(cat(setEnc(-316), ptrExt(4, 1, 1, 1), keyDown(KeysymControlL), keyDown('o'), keyUp('o')), uint16(9), uint8(0))
	f.Add(cat(qemuKey(true, KeysymControlL, 0x1d), qemuKey(true, 'a', 0x18), cutText("abc")), uint16(13), uint8(1))
	f.Add(cat(xvpMsg(2), giiMsg(0, true, []byte{1, 2}), fence(0, []byte{1}), []byte{7}), uint16(3), uint8(4))
	f.Add(cat(keyDown(KeysymControlL), qemuKey(true, 'o', 0x1d), keyUp(KeysymControlL), keyDown('o')), uint16(20), uint8(2))
	f.Add([]byte{6, 0, 0, 0, 0, 1, 0, 1}, uint16(5), uint8(0))
	// The sequences A and B, keycodes passed.
	f.Add(cat(qemuKey(true, KeysymControlL, 0x1d), qemuKey(false, KeysymControlL, 0x1e), keyDown('o')), uint16(12), uint8(32))
	f.Add(cat(qemuKey(true, KeysymControlL, 0x1d), keyUp(KeysymControlL), keyDown('o')), uint16(12), uint8(32))
	f.Add([]byte{255, 1, 0, 2, 1, 2, 3}, uint16(2), uint8(3))
	// A 7-byte PointerEvent whose 7th byte starts a Ctrl+O KeyEvent for a
	// server without −316 (see TestExtendedMouseButtonsSmuggling).
	f.Add(smuggleInput(), uint16(30), uint8(0))
	f.Add(smuggleInput(), uint16(30), uint8(16))
	f.Add(cat(setEnc(-316), ptrExt(1, 2, 3, 4), setEnc(0), ptrEv(0x81, 3, 4), []byte{4}), uint16(25), uint8(16))
}

type fuzzRun struct {
	out    []byte
	err    error
	stats  Stats
	events Event
}

func fuzzFeed(t *testing.T, mode uint8, data []byte, cuts ...int) fuzzRun {
	s := fuzzStream(t, mode)
	var w sink
	var r fuzzRun
	prev := 0
	for _, c := range append(cuts, len(data)) {
		err := s.Feed(bytes.Clone(data[prev:c]), &w)
		if r.err == nil {
			r.err = err
		} else if err != r.err {
			t.Fatalf("error not sticky: %v then %v", r.err, err)
		}
		prev = c
	}
	if r.err != nil {
		asError(t, r.err)
	}
	r.out, r.stats, r.events = w.buf, s.Stats, s.TakeEvents()
	return r
}

// FuzzStreamSplit: cutting the stream anywhere changes nothing.
func FuzzStreamSplit(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, split uint16, mode uint8) {
		whole := fuzzFeed(t, mode, data)
		cut := int(split) % (len(data) + 1)
		got := fuzzFeed(t, mode, data, cut)
		if (got.err == nil) != (whole.err == nil) || got.err != nil && got.err.Error() != whole.err.Error() {
			t.Fatalf("cut %d: error %v, unsplit %v", cut, got.err, whole.err)
		}
		if !bytes.Equal(got.out, whole.out) {
			t.Fatalf("cut %d: output\n% x\nunsplit\n% x", cut, got.out, whole.out)
		}
		if got.stats != whole.stats || got.events != whole.events {
			t.Fatalf("cut %d: stats %+v events %b, unsplit %+v %b", cut, got.stats, got.events, whole.stats, whole.events)
		}
		if bb := fuzzFeed(t, mode, data, everyByte(len(data))...); !bytes.Equal(bb.out, whole.out) || bb.stats != whole.stats {
			t.Fatal("byte by byte differs from unsplit")
		}
	})
}

func everyByte(n int) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = i
	}
	return c
}

// FuzzPolicy: whatever the viewer sends, what passes obeys the policy, and
// unless the policy opts in to ExtendedMouseButtons (mode bit 4) servers with
// and without −316 support read it as the same messages (checkPassed).
func FuzzPolicy(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, split uint16, mode uint8) {
		cut := int(split) % (len(data) + 1)
		r := fuzzFeed(t, mode, data, cut)
		if mode&3 == 3 { // nil policy: everything valid passes unchanged
			if !bytes.HasPrefix(data, r.out) {
				t.Fatal("nil policy changed the stream")
			}
			return
		}
		pol := fuzzStream(t, mode).pol
		agent := mode&4 != 0
		checkPassed(t, pol, agent, r.out)
	})
}

// serverParse splits passed bytes into messages as a server reads them. A
// server that honours −316 reads a PointerEvent with mask bit 7 as 7 bytes once
// the last SetEncodings listed −316; one that does not always reads 6. rest is
// the length of the message in progress at the end; bad is the invalid message
// the server would choke on, if any.
func serverParse(out []byte, honours316 bool, maxCut int64) (msgs [][]byte, rest int, bad []byte) {
	ext := false
	for len(out) > 0 {
		n := refLen(out, ext, maxCut)
		if n == -2 {
			return msgs, 0, out[:min(16, len(out))]
		}
		if n == -1 {
			return msgs, len(out), nil // the message in progress when the input ended
		}
		m := out[:n]
		out = out[n:]
		msgs = append(msgs, m)
		if m[0] == MsgSetEncodings && honours316 {
			ext = false
			for i := 4; i < len(m); i += 4 {
				if int32(binary.BigEndian.Uint32(m[i:])) == EncodingExtendedMouseButtons {
					ext = true
				}
			}
		}
	}
	return msgs, 0, nil
}

// sameMessages reports whether two parses of the same bytes have the same
// message boundaries.
func sameMessages(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

// checkPassed re-parses passed bytes as a server would and checks the
// policy's promises against the server's view of held modifiers. Unless the
// policy opts in to ExtendedMouseButtons, servers with and without −316 support
// must read the same messages: no 7-byte PointerEvent may pass, for a server
// without −316 would take its 7th byte as the start of an uninspected message.
func checkPassed(t *testing.T, pol *Policy, agent bool, out []byte) {
	t.Helper()
	msgs, rest, bad := serverParse(out, true, pol.MaxCutText)
	if bad != nil {
		t.Fatalf("invalid message passed: % x", bad)
	}
	if !pol.ExtendedMouseButtons {
		msgs6, rest6, bad6 := serverParse(out, false, pol.MaxCutText)
		if bad6 != nil || rest6 != rest || !sameMessages(msgs, msgs6) {
			t.Fatalf("servers with and without -316 read the output differently (%d messages + %d bytes and %d + %d, invalid % x)",
				len(msgs), rest, len(msgs6), rest6, bad6)
		}
		for _, m := range msgs {
			if m[0] == MsgPointerEvent && len(m) != 6 {
				t.Fatalf("7-byte PointerEvent passed: % x", m)
			}
		}
	}
	if v := violation(pol, agent, msgs); v != "" {
		t.Fatal(v)
	}
}

// violation returns the first policy breach in msgs (as the server reads
// them), or "".
func violation(pol *Policy, agent bool, msgs [][]byte) string {
	held := map[uint32]bool{} // modifier keys the server holds
	mods := func() Modifier {
		var m Modifier
		for k, h := range held {
			if h {
				m |= refModKeys[k]
			}
		}
		return m
	}
	tiger, raw := newTigerModel(false), newTigerModel(true) // TigerVNC's view, default and -RawKeyboard
	for _, m := range msgs {
		if agent {
			switch m[0] {
			case MsgSetPixelFormat, MsgSetEncodings, MsgFramebufferUpdateReq, MsgEnableContinuousUpdates, MsgClientFence:
			case MsgQEMU:
				if m[1] != qemuAudio {
					return fmt.Sprintf("agent mode passed % x", m)
				}
			default:
				return fmt.Sprintf("agent mode passed % x", m)
			}
		}
		var down bool
		var keys []uint32
		switch m[0] {
		case MsgPointerEvent:
			if m[1]&4 != 0 && pol.RightButton != RightAllow {
				return fmt.Sprintf("right button passed: % x", m)
			}
		case MsgXVP:
			if !pol.AllowXVP {
				return fmt.Sprintf("xvp passed: % x", m)
			}
		case MsgGII:
			if m[1]&0x7f == 0 && !pol.AllowGIIEvents {
				return fmt.Sprintf("gii event passed: % x", m)
			}
		case MsgKeyEvent:
			down, keys = m[1] != 0, []uint32{binary.BigEndian.Uint32(m[4:])}
		case MsgQEMU:
			if m[1] == qemuExtendedKeyEvent {
				down = binary.BigEndian.Uint16(m[2:]) != 0
				keys = []uint32{binary.BigEndian.Uint32(m[4:])}
				if kc := binary.BigEndian.Uint32(m[8:]) & 0xffff; kc <= 0xff {
					keys = append(keys, xtKeysym[kc])
				} else if kc>>8 == 0xe0 {
					keys = append(keys, xtKeysym[0x80|kc&0x7f])
				}
			}
		}
		if len(keys) > 0 {
			ks, kc := keys[0], uint32(0)
			if m[0] == MsgQEMU {
				kc = binary.BigEndian.Uint32(m[8:])
			}
			for _, tm := range []*tigerModel{tiger, raw} {
				if v := tm.check(pol, down, ks, kc); v != "" {
					return fmt.Sprintf("TigerVNC (raw %v): %s: % x", tm.raw, v, m)
				}
			}
		}
		// A press is judged under the modifiers held before it: one event
		// is one key to a server (its keysym or its keycode, not both).
		if down {
			for _, k := range keys {
				for _, sc := range pol.Forbidden {
					if k != 0 && refLower(k) == sc.Key && mods()&sc.Mods == sc.Mods {
						return fmt.Sprintf("forbidden %+v passed: % x (held %v)", sc, m, held)
					}
				}
			}
		}
		for _, k := range keys {
			if _, ok := refModKeys[k]; ok {
				held[k] = down
			}
		}
	}
	return ""
}
