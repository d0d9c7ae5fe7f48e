package fuzz

import (
	"bytes"
	"encoding/binary"
	"testing"

	"vncedge/rfbparse"
)

// hsStep is one piece of the conversation: server bytes for Stream.Server or
// client bytes for Stream.Feed.
type hsStep struct {
	server bool
	b      []byte
	at     int // offset of b in the client bytes (client steps)
}

// refVersion reads "RFB 003.00x\n": 3 (3.3 to 3.6), 7 or 8 (3.8 and later 3.x);
// 0 when malformed.
func refVersion(b []byte) int {
	if len(b) != 12 || string(b[:4]) != "RFB " || b[7] != '.' || b[11] != '\n' {
		return 0
	}
	num := func(d []byte) int {
		n := 0
		for _, c := range d {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	major, minor := num(b[4:7]), num(b[8:11])
	switch {
	case major != 3 || minor < 3:
		return 0
	case minor >= 8:
		return 8
	case minor == 7:
		return 7
	}
	return 3
}

// refHandshake plays the handshake (RFC 6143 §7.1-7.3, security None or VNC
// authentication; anything else cannot be inspected and is refused) from
// the client's and the server's bytes. It returns the order in which to feed
// the bytes, the client bytes that pass, whether an error is due, and where
// the client messages start in cli (-1: never).
func refHandshake(cli, srv []byte) (steps []hsStep, out []byte, bad bool, msgAt int) {
	ci, si := 0, 0
	msgAt = -1
	takeS := func(n int) ([]byte, bool) {
		if len(srv)-si < n {
			if si < len(srv) {
				steps = append(steps, hsStep{server: true, b: srv[si:]})
			}
			si = len(srv)
			return nil, false
		}
		b := srv[si : si+n]
		si += n
		steps = append(steps, hsStep{server: true, b: b})
		return b, true
	}
	takeC := func(n int) []byte {
		n = min(n, len(cli)-ci)
		if n == 0 {
			return nil
		}
		b := cli[ci : ci+n]
		steps = append(steps, hsStep{b: b, at: ci})
		ci += n
		return b
	}
	// rest: the server went quiet (or failed) where only it may speak: any
	// client byte is out of turn.
	rest := func() ([]hsStep, []byte, bool, int) {
		if ci < len(cli) {
			takeC(len(cli) - ci)
			return steps, out, true, -1
		}
		return steps, out, false, -1
	}

	sb, ok := takeS(12)
	if !ok {
		// A client may send its version before the server's (pipelined).
		cb := takeC(12)
		if len(cb) < 12 {
			return steps, out, false, -1
		}
		if refVersion(cb) == 0 {
			return steps, out, true, -1
		}
		out = append(out, cb...)
		return rest()
	}
	sv := refVersion(sb)
	if sv == 0 {
		return steps, out, true, -1
	}
	cb := takeC(12)
	if len(cb) < 12 {
		return steps, out, false, -1
	}
	cv := refVersion(cb)
	if cv == 0 {
		return steps, out, true, -1
	}
	out = append(out, cb...)
	ver := min(sv, cv)

	sec := 0
	if ver == 3 {
		b, ok := takeS(4)
		if !ok {
			return rest()
		}
		switch t := binary.BigEndian.Uint32(b); t {
		case 0: // refused, with a reason
			takeS(len(srv) - si)
			return rest()
		case 1, 2:
			sec = int(t)
		default:
			return steps, out, true, -1
		}
	} else {
		b, ok := takeS(1)
		if !ok {
			return rest()
		}
		if b[0] == 0 {
			takeS(len(srv) - si)
			return rest()
		}
		if _, ok := takeS(int(b[0])); !ok {
			return rest()
		}
		c := takeC(1)
		if c == nil {
			return steps, out, false, -1
		}
		if c[0] != 1 && c[0] != 2 {
			return steps, out, true, -1
		}
		out = append(out, c...)
		sec = int(c[0])
	}
	result := sec == 2 || ver == 8
	if sec == 2 {
		if _, ok := takeS(16); !ok {
			// The response may come before the challenge.
			a := takeC(16)
			out = append(out, a...)
			return rest()
		}
		a := takeC(16)
		out = append(out, a...)
		if len(a) < 16 {
			return steps, out, false, -1
		}
	}
	if result {
		b, ok := takeS(4)
		if !ok {
			return rest()
		}
		if binary.BigEndian.Uint32(b) != 0 {
			takeS(len(srv) - si)
			return rest()
		}
	}
	c := takeC(1)
	if c == nil {
		return steps, out, false, -1
	}
	if c[0] == 0 { // ClientInit: the policy makes every viewer shared
		c = []byte{1}
	}
	out = append(out, c...)
	return steps, out, false, ci
}

// serverScript returns a server's handshake bytes: 0 3.8 None, 1 3.7 None,
// 2 3.3 None, 3 3.8 VNC authentication.
func serverScript(kind uint8) []byte {
	serverInit := cat([]byte{0, 64, 0, 48, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}, []byte{0, 0, 0, 4}, []byte("test"))
	switch kind & 3 {
	case 1:
		return cat([]byte("RFB 003.007\n"), []byte{1, 1}, serverInit)
	case 2:
		return cat([]byte("RFB 003.003\n"), []byte{0, 0, 0, 1}, serverInit)
	case 3:
		return cat([]byte("RFB 003.008\n"), []byte{1, 2}, bytes.Repeat([]byte{0x5a}, 16), []byte{0, 0, 0, 0}, serverInit)
	}
	return cat([]byte("RFB 003.008\n"), []byte{1, 1}, []byte{0, 0, 0, 0}, serverInit)
}

// collect is an io.Writer that keeps copies of what is written.
type collect struct{ b []byte }

func (c *collect) Write(p []byte) (int, error) {
	c.b = append(c.b, p...)
	return len(p), nil
}

// readyStream returns a Stream past a 3.8 None handshake.
func readyStream(t *testing.T, pol *rfbparse.Policy, who rfbparse.Interactor) *rfbparse.Stream {
	t.Helper()
	s := rfbparse.NewStream(pol, who)
	var w collect
	steps := []hsStep{{server: true, b: []byte("RFB 003.008\n")}, {b: []byte("RFB 003.008\n")},
		{server: true, b: []byte{1, 1}}, {b: []byte{1}}, {server: true, b: []byte{0, 0, 0, 0}}, {b: []byte{1}}}
	for _, st := range steps {
		var err error
		if st.server {
			err = s.Server(st.b)
		} else {
			err = s.Feed(bytes.Clone(st.b), &w)
		}
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	if !s.Ready() || !s.HandshakeDone() {
		t.Fatal("stream not ready after a 3.8 None handshake")
	}
	return s
}

// streamRun is what a Stream did with one feeding of the input.
type streamRun struct {
	out       []byte
	err       error
	ready     bool
	msgs      uint64
	drops     uint64
	rewritten uint64
	events    rfbparse.Event
}

// runStream feeds steps to s, cutting client steps at cut (an offset in the
// client bytes) or feeding byte by byte.
func runStream(s *rfbparse.Stream, steps []hsStep, cut int, byteByByte bool) streamRun {
	var w collect
	var r streamRun
	feed := func(server bool, b []byte) bool {
		var err error
		if server {
			if s.HandshakeDone() {
				return true
			}
			err = s.Server(b)
		} else {
			err = s.Feed(bytes.Clone(b), &w)
		}
		if err != nil {
			r.err = err
			return false
		}
		return true
	}
	for _, st := range steps {
		var pieces [][]byte
		switch {
		case byteByByte:
			for i := range st.b {
				pieces = append(pieces, st.b[i:i+1])
			}
		case !st.server && cut > st.at && cut < st.at+len(st.b):
			pieces = [][]byte{st.b[:cut-st.at], st.b[cut-st.at:]}
		default:
			pieces = [][]byte{st.b}
		}
		for _, p := range pieces {
			if !feed(st.server, p) {
				goto done
			}
		}
	}
done:
	r.out, r.ready = w.b, s.Ready()
	r.msgs, r.drops, r.rewritten = s.Stats.Messages, s.Stats.DroppedTotal(), s.Stats.Rewritten
	r.events = s.TakeEvents()
	return r
}

// FuzzRFBDifferential compares rfbparse.Stream under the default policy with
// the reference parser: message boundaries and types (the bytes passed and
// the message count), drop decisions and errors, for every split of the
// input. mode: bit 0 agent has control; bit 1 data starts with the client's
// handshake, played against server (or, when empty, the script bits 4-5
// select); bit 2 feed byte by byte.
func FuzzRFBDifferential(f *testing.F) {
	f.Add(cat(setPF(), setEnc(0, 7, -316), fbur(false, 0, 0, 64, 48), keyEv(true, ksControlL), keyEv(true, 'o'), keyEv(false, 'o')), []byte(nil), uint16(9), uint8(0))
	f.Add(cat([]byte("RFB 003.008\n\x01\x01"), ptrEv(4, 1, 1), cutText("hi")), []byte(nil), uint16(13), uint8(2))
	// Keysyms differing only in bit 31 are one key to TigerVNC (found by a
	// CI run): the release frees 't', and the press repeats 'o' under Ctrl.
	f.Add(cat(keyEv(true, 't'), keyEv(false, 0x80000074)), []byte(nil), uint16(3), uint8(0))
	f.Add(cat(keyEv(true, 'o'), keyEv(true, ksControlL), keyEv(true, 0x8000006f)), []byte(nil), uint16(5), uint8(0))
	f.Fuzz(func(t *testing.T, data, server []byte, cut uint16, mode uint8) {
		agent := mode&1 != 0
		pol := defaultRef
		pol.agent = agent
		who := rfbparse.User
		if agent {
			who = rfbparse.Agent
		}
		var steps []hsStep
		var want refResult
		var hsOut []byte
		var hsBad bool
		var s *rfbparse.Stream
		wantReady := true
		newStream := func() *rfbparse.Stream {
			if mode&2 == 0 {
				return readyStream(t, rfbparse.DefaultPolicy(), who)
			}
			return rfbparse.NewStream(rfbparse.DefaultPolicy(), who)
		}
		if mode&2 == 0 {
			steps = []hsStep{{b: data}}
			want = refMessages(data, newRefState(pol))
		} else {
			srv := server
			if len(srv) == 0 {
				srv = serverScript(mode >> 4)
			}
			var msgAt int
			steps, hsOut, hsBad, msgAt = refHandshake(data, srv)
			if msgAt >= 0 && msgAt < len(data) {
				steps = append(steps, hsStep{b: data[msgAt:], at: msgAt})
			}
			if msgAt >= 0 {
				want = refMessages(data[msgAt:], newRefState(pol))
			}
			want.out = append(hsOut, want.out...)
			want.bad = want.bad || hsBad
			wantReady = msgAt >= 0
		}
		c := int(cut) % (len(data) + 1)
		s = newStream()
		got := runStream(s, steps, c, mode&4 != 0)
		whole := runStream(newStream(), steps, -1, false)
		if (got.err == nil) != (whole.err == nil) || !bytes.Equal(got.out, whole.out) || got.msgs != whole.msgs ||
			got.drops != whole.drops || got.rewritten != whole.rewritten || got.events != whole.events || got.ready != whole.ready {
			t.Fatalf("cut %d changes the result:\n split %+v\n whole %+v", c, got, whole)
		}
		wantOut := append(want.out[:len(want.out):len(want.out)], want.tail...)
		if (got.err != nil) != want.bad {
			t.Fatalf("error %v, reference expects error: %v (out % x)", got.err, want.bad, got.out)
		}
		if !bytes.Equal(got.out, wantOut) {
			t.Fatalf("passed bytes differ from the reference:\n got  % x\n want % x", got.out, wantOut)
		}
		if got.msgs != uint64(want.msgs) || got.drops != uint64(want.drops) || got.rewritten != uint64(want.rewritten) {
			t.Fatalf("counts: messages %d drops %d rewritten %d, reference %d %d %d", got.msgs, got.drops, got.rewritten, want.msgs, want.drops, want.rewritten)
		}
		if got.ready != wantReady {
			t.Fatalf("Ready() %v, reference %v", got.ready, wantReady)
		}
		if uint8(got.events) != want.events {
			t.Fatalf("events %04b, reference %04b", got.events, want.events)
		}
	})
}

// policyFor builds the rfbparse policy and its reference twin for a mode:
// bits 0-1 right button (0 strip, 1 drop, 2 allow, 3 strip), bit 4 a longer
// forbidden list.
func policyFor(t *testing.T, mode uint8) (*rfbparse.Policy, refPolicy) {
	list := "ctrl+o"
	ref := refPolicy{forbidden: []shortcut{{gCtrl, 'o'}}}
	if mode&16 != 0 {
		list = "ctrl+o,ctrl+shift+i,alt+f4,ctrl+p,super+l"
		ref.forbidden = append(ref.forbidden, shortcut{gCtrl | gShift, 'i'}, shortcut{gAlt, 0xffc1},
			shortcut{gCtrl, 'p'}, shortcut{gSuper, 'l'})
	}
	rb := int(mode & 3)
	if rb == 3 {
		rb = 0
	}
	ref.right = rb
	pol, err := rfbparse.NewPolicy(list, rfbparse.RightButton(rb))
	if err != nil {
		t.Fatal(err)
	}
	return pol, ref
}

// heldAfter returns the keys and buttons a server holds after reading out.
func heldAfter(out []byte) (keys []uint32, buttons uint8, complete bool) {
	held := map[uint32]bool{}
	ext := false
	for off := 0; off < len(out); {
		b := out[off:]
		_, total, bad := refLen(b, ext, defaultMaxCutText)
		if bad || total < 0 || int64(len(b)) < total {
			return nil, 0, false
		}
		m := b[:total]
		switch m[0] {
		case tSetEncodings:
			ext = false
			for i := 4; i+4 <= len(m); i += 4 {
				if int32(binary.BigEndian.Uint32(m[i:])) == -316 {
					ext = true
				}
			}
		case tKey:
			held[binary.BigEndian.Uint32(m[4:])] = m[1] != 0
		case tQEMU:
			if m[1] == 0 {
				held[binary.BigEndian.Uint32(m[4:])] = binary.BigEndian.Uint16(m[2:]) != 0
			}
		case tPointer:
			buttons = m[1] &^ 0x80
			if len(m) == 7 && m[6] != 0 {
				buttons |= 0x80
			}
		}
		off += int(total)
	}
	for k, h := range held {
		if h {
			keys = append(keys, k)
		}
	}
	return keys, buttons, true
}

// FuzzPolicyProperty re-parses what the policy lets through and checks the
// policy's promises on it: no forbidden shortcut key-down while its
// modifiers are held, no right button (strip and drop modes), nothing but
// the always-allowed messages while the agent has control, and, when control
// passes to the agent mid-stream, every key and button released. mode: bits
// 0-1 and 4 as policyFor; bit 2 agent from the start; bit 3 control passes
// to the agent at the cut; bit 5 the viewer is a Mac.
func FuzzPolicyProperty(f *testing.F) {
	f.Add(cat(keyEv(true, ksControlL), keyEv(true, 'O'), ptrEv(4, 1, 1)), uint16(8), uint8(0))
	f.Add(cat(keyEv(true, ksControlL), qemuKey(true, 'a', 0x18), ptrEv(1, 2, 2), keyEv(true, 'x')), uint16(20), uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, mode uint8) {
		pol, ref := policyFor(t, mode)
		who := rfbparse.User
		if mode&4 != 0 {
			who = rfbparse.Agent
			ref.agent = true
		}
		s := readyStream(t, pol, who)
		s.SetMac(mode&32 != 0)
		c := int(cut) % (len(data) + 1)
		var w collect
		err := s.Feed(bytes.Clone(data[:c]), &w)
		switchAt := -1
		if mode&8 != 0 && err == nil {
			switchAt = len(w.b)
			w.b = append(w.b, s.SetInteractor(rfbparse.Agent)...)
		}
		if err == nil {
			err = s.Feed(bytes.Clone(data[c:]), &w)
		}
		if v := violation(ref, w.b, switchAt); v != "" {
			t.Fatalf("%s (err %v)", v, err)
		}
		if switchAt >= 0 && err == nil && s.AtBoundary() {
			keys, buttons, complete := heldAfter(w.b)
			if complete && (len(keys) > 0 || buttons != 0) {
				t.Fatalf("control passed to the agent with keys %x and buttons %02x still held on the server", keys, buttons)
			}
		}
	})
}
