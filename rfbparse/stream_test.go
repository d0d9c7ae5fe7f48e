package rfbparse

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestMessageTypes checks each message type's length, verdict under the
// default policy, and that it is counted, whole and byte by byte.
func TestMessageTypes(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 5000)
	tests := []struct {
		name   string
		pre    []byte // sent (and passed) first, e.g. SetEncodings with -316
		msg    []byte
		pass   bool
		out    []byte // what passes when msg is rewritten; nil: msg unchanged
		ext    bool   // Policy.ExtendedMouseButtons
		qemu   bool   // Policy.QEMUKeys = QEMUKeysPass
		reason DropReason
	}{
		{name: "SetPixelFormat", msg: setPF(), pass: true},
		{name: "SetEncodings empty", msg: setEnc(), pass: true},
		{name: "SetEncodings", msg: setEnc(0, 1, 7, -223, -224, -239, -316), pass: true},
		{name: "FramebufferUpdateRequest", msg: fbur(true, 1, 2, 1024, 768), pass: true},
		{name: "KeyEvent down", msg: keyDown('a'), pass: true},
		{name: "KeyEvent up", pre: keyDown('a'), msg: keyUp('a'), pass: true},
		{name: "KeyEvent up of no key held", msg: keyUp('a'), reason: DropUnmatched},
		{name: "PointerEvent", msg: ptrEv(1, 10, 20), pass: true},
		{name: "PointerEvent bit7 without -316 is 6 bytes", msg: ptrEv(0x81, 10, 20), pass: true},
		// By default a 7-byte event goes on as a 6-byte one: bit 7 cleared,
		// the extra buttons dropped, the 7 bytes consumed all the same.
		{name: "PointerEvent 7 bytes after -316", pre: setEnc(-316), msg: ptrExt(1, 1, 10, 20), pass: true,
			out: ptrEv(1, 10, 20)},
		{name: "PointerEvent 7 bytes after -316, extra 0", pre: setEnc(-316), msg: ptrExt(0, 0, 10, 20), pass: true,
			out: ptrEv(0, 10, 20)},
		{name: "PointerEvent 7 bytes after -316, right button", pre: setEnc(-316), msg: ptrExt(5, 3, 10, 20), pass: true,
			out: ptrEv(1, 10, 20)},
		{name: "PointerEvent 7 bytes after -316, ExtendedMouseButtons", pre: setEnc(-316), msg: ptrExt(1, 1, 10, 20), pass: true,
			ext: true},
		{name: "PointerEvent 6 bytes after -316, ExtendedMouseButtons", pre: setEnc(-316), msg: ptrEv(1, 10, 20), pass: true,
			ext: true},
		{name: "PointerEvent 6 bytes after -316", pre: setEnc(-316), msg: ptrEv(1, 10, 20), pass: true},
		{name: "ClientCutText", msg: cutText("hello"), pass: true},
		{name: "ClientCutText empty", msg: cutText(""), pass: true},
		{name: "ClientCutText long", msg: cutText(string(big)), pass: true},
		{name: "ClientCutText extended", msg: cutTextExt([]byte{0, 0, 0, 1, 'x', 'y'}), pass: true},
		{name: "EnableContinuousUpdates", msg: ecu(true, 0, 0, 800, 600), pass: true},
		{name: "ClientFence empty", msg: fence(0x80000003, nil), pass: true},
		{name: "ClientFence 64", msg: fence(3, bytes.Repeat([]byte{7}, 64)), pass: true},
		{name: "xvp", msg: xvpMsg(2), reason: DropXVP},
		{name: "SetDesktopSize 0 screens", msg: setDesktopSize(800, 600, 0), pass: true},
		{name: "SetDesktopSize 2 screens", msg: setDesktopSize(800, 600, 2), pass: true},
		{name: "gii version LE", msg: giiMsg(1, false, []byte{1, 0, 1, 0}), pass: true},
		{name: "gii device BE", msg: giiMsg(2, true, bytes.Repeat([]byte{9}, 300)), pass: true},
		{name: "gii inject LE", msg: giiMsg(0, false, bytes.Repeat([]byte{9}, 24)), reason: DropGII},
		{name: "gii inject BE", msg: giiMsg(0, true, bytes.Repeat([]byte{9}, 24)), reason: DropGII},
		{name: "QEMU ExtendedKeyEvent", msg: qemuKey(true, 'a', 0x1e), pass: true, out: keyDown('a')},
		{name: "QEMU ExtendedKeyEvent, pass mode", msg: qemuKey(true, 'a', 0x1e), pass: true, qemu: true},
		{name: "SetEncodings -258", msg: setEnc(1, -258, 7), pass: true, out: setEnc(1, 1, 7)},
		{name: "SetEncodings -258, pass mode", msg: setEnc(1, -258, 7), pass: true, qemu: true},
		{name: "QEMU audio enable", msg: qemuAudioMsg(0), pass: true},
		{name: "QEMU audio disable", msg: qemuAudioMsg(1), pass: true},
		{name: "QEMU audio format", msg: qemuAudioMsg(2), pass: true},
	}
	next := fbur(true, 0, 0, 10, 10) // a message after, to prove the length was right
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, bytewise := range []bool{false, true} {
				pol := DefaultPolicy()
				pol.ExtendedMouseButtons = tc.ext
				if tc.qemu {
					pol.QEMUKeys = QEMUKeysPass
				}
				s := ready(t, pol, User)
				in := cat(tc.pre, tc.msg, next)
				var w sink
				if bytewise {
					for i := range in {
						mustFeed(t, s, bytes.Clone(in[i:i+1]), &w)
					}
				} else {
					mustFeed(t, s, bytes.Clone(in), &w)
				}
				want := cat(tc.pre, next)
				if tc.pass && tc.out != nil {
					want = cat(tc.pre, tc.out, next)
				} else if tc.pass {
					want = cat(tc.pre, tc.msg, next)
				}
				if !bytes.Equal(w.buf, want) {
					t.Fatalf("bytewise=%v: output\n% x\nwant\n% x", bytewise, w.buf, want)
				}
				wantMsgs := uint64(2)
				if tc.pre != nil {
					wantMsgs = 3
				}
				if s.Stats.Messages != wantMsgs {
					t.Fatalf("Messages %d, want %d", s.Stats.Messages, wantMsgs)
				}
				var wantDrop [NumDropReasons]uint64
				if !tc.pass {
					wantDrop[tc.reason] = 1
				}
				if s.Stats.Dropped != wantDrop {
					t.Fatalf("Dropped %v, want %v", s.Stats.Dropped, wantDrop)
				}
				if !s.AtBoundary() {
					t.Fatal("not at a boundary after whole messages")
				}
			}
		})
	}
}

func TestMessageTypesNilPolicy(t *testing.T) {
	in := cat(xvpMsg(2), giiMsg(0, false, []byte{1, 2, 3}), keyDown(KeysymControlL), keyDown('o'),
		ptrEv(4, 1, 1), setDesktopSize(1, 1, 1), qemuKey(true, 'o', 0x18), cutText("x"))
	s := ready(t, nil, Agent)
	if out := feedAll(t, s, in); !bytes.Equal(out, in) {
		t.Fatalf("nil policy changed the stream:\n% x\n% x", out, in)
	}
	if s.Stats.DroppedTotal() != 0 || s.Stats.Rewritten != 0 || s.Stats.Messages != 8 {
		t.Fatalf("stats %+v", s.Stats)
	}
}

func TestExtendedMouseButtonsFollowsLastSetEncodings(t *testing.T) {
	s := ready(t, DefaultPolicy(), User)
	// -316 split across chunk boundaries inside the encoding list.
	enc := setEnc(0, 7, -316, -223)
	var w sink
	for i := range enc {
		mustFeed(t, s, bytes.Clone(enc[i:i+1]), &w)
	}
	if !s.ExtendedMouseButtons() {
		t.Fatal("-316 not seen")
	}
	feedAll(t, s, setEnc(0, 7))
	if s.ExtendedMouseButtons() {
		t.Fatal("-316 still on after a SetEncodings without it")
	}
	// Without -316 a mask with bit 7 is a 6-byte event: the next byte is a new message.
	in := cat(ptrEv(0x80, 1, 2), keyDown('a'))
	if out := feedAll(t, s, in); !bytes.Equal(out, in) {
		t.Fatalf("output % x", out)
	}
}

func TestCoalescedMessages(t *testing.T) {
	// Many messages in one chunk, as websockify merges frames.
	msgs := func(p1, p2 []byte) []byte {
		return cat(setPF(), setEnc(0, 7, -316), fbur(false, 0, 0, 1024, 768),
			ptrEv(0, 5, 5), p1, p2, ptrEv(0, 8, 8),
			keyDown('h'), keyUp('h'), cutText("clip"), fence(1, []byte{1, 2}),
			ecu(true, 0, 0, 1024, 768), qemuKey(true, 'x', 0x2d), qemuKey(false, 'x', 0x2d))
	}
	in := msgs(ptrExt(1, 0, 6, 6), ptrExt(0, 1, 7, 7))
	for _, tc := range []struct {
		name      string
		ext       bool
		want      []byte
		maxWrites int
	}{
		// Opted in to −316: the chunk passes whole, in one Write.
		{"ExtendedMouseButtons", true, in, 1},
		// By default the two 7-byte events go on as 6-byte ones; each cut
		// byte ends a Write (the rest are still sub-slices of the chunk).
		{"default", false, msgs(ptrEv(1, 6, 6), ptrEv(0, 7, 7)), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := DefaultPolicy()
			pol.ExtendedMouseButtons = tc.ext
			pol.QEMUKeys = QEMUKeysPass
			s := ready(t, pol, User)
			var w sink
			mustFeed(t, s, bytes.Clone(in), &w)
			if !bytes.Equal(w.buf, tc.want) {
				t.Fatalf("output\n% x\nwant\n% x", w.buf, tc.want)
			}
			if w.writes > tc.maxWrites {
				t.Fatalf("%d writes, want at most %d", w.writes, tc.maxWrites)
			}
			if s.Stats.Messages != 14 || s.Stats.Rewritten != 0 || s.Stats.DroppedTotal() != 0 {
				t.Fatalf("stats %+v", s.Stats)
			}
		})
	}
}

func TestBadMessages(t *testing.T) {
	good := cat(keyDown('a'), keyUp('a'), ptrEv(0, 1, 1))
	tests := []struct {
		name string
		pol  *Policy
		bad  []byte
		want string
	}{
		{"unknown type 1", DefaultPolicy(), []byte{1, 0, 0, 0}, "unknown client message type 1"},
		{"unknown type 7", DefaultPolicy(), []byte{7}, "unknown client message type 7"},
		{"unknown type 249", nil, []byte{249, 0}, "unknown client message type 249"},
		{"cut text over limit", &Policy{MaxCutText: 100}, cutText(strings.Repeat("x", 101)), "ClientCutText length over limit: 101"},
		{"extended cut text over limit", &Policy{MaxCutText: 100}, cutTextExt(make([]byte, 101)), "ClientCutText length over limit: 101"},
		{"cut text over default limit", DefaultPolicy(), []byte{6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}, "ClientCutText length over limit: 2147483647"},
		{"cut text min int32", DefaultPolicy(), []byte{6, 0, 0, 0, 0x80, 0, 0, 0}, "ClientCutText length over limit: 2147483648"},
		{"fence 65", DefaultPolicy(), fence(0, make([]byte, 65)), errFenceLength.Reason},
		{"fence 255", nil, []byte{248, 0, 0, 0, 0, 0, 0, 0, 255}, errFenceLength.Reason},
		{"qemu subtype 2", DefaultPolicy(), []byte{255, 2, 0, 0}, "unknown QEMU message subtype 2"},
		{"qemu audio op 3", DefaultPolicy(), []byte{255, 1, 0, 3}, "unknown QEMU audio operation 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := cat(good, tc.bad, keyDown('b'))
			for cut := 0; cut <= len(in); cut++ {
				s := ready(t, tc.pol, User)
				var w sink
				err := s.Feed(bytes.Clone(in[:cut]), &w)
				if err == nil {
					err = s.Feed(bytes.Clone(in[cut:]), &w)
				}
				if err == nil {
					t.Fatalf("cut %d: no error", cut)
				}
				if e := asError(t, err); e.Reason != tc.want {
					t.Fatalf("cut %d: reason %q, want %q", cut, e.Reason, tc.want)
				}
				if !bytes.Equal(w.buf, good) {
					t.Fatalf("cut %d: output % x, want the complete messages before the bad one % x", cut, w.buf, good)
				}
				if s.Stats.Messages != 3 {
					t.Fatalf("cut %d: Messages %d", cut, s.Stats.Messages)
				}
				// Sticky: nothing more is written, the same error comes back.
				n := len(w.buf)
				if err2 := s.Feed(keyDown('c'), &w); err2 != err || len(w.buf) != n {
					t.Fatalf("after error: %v, wrote %d", err2, len(w.buf)-n)
				}
				if s.Err() != err {
					t.Fatalf("Err() = %v", s.Err())
				}
			}
		})
	}
}

func TestMaxCutTextBoundary(t *testing.T) {
	s := ready(t, &Policy{MaxCutText: 10}, User)
	in := cat(cutText("0123456789"), cutTextExt(make([]byte, 10)))
	if out := feedAll(t, s, in); !bytes.Equal(out, in) {
		t.Fatal("cut text at the limit did not pass")
	}
}

// TestCutTextStreamsThrough checks that a long clipboard is written as
// sub-slices of the caller's chunks (no buffering of the body).
func TestCutTextStreamsThrough(t *testing.T) {
	s := ready(t, DefaultPolicy(), User)
	msg := cutText(strings.Repeat("y", 100000))
	var w sink
	for off := 0; off < len(msg); off += 10240 {
		end := min(off+10240, len(msg))
		n := len(w.buf)
		mustFeed(t, s, bytes.Clone(msg[off:end]), &w)
		if len(w.buf)-n != end-off {
			t.Fatalf("chunk at %d: wrote %d of %d bytes", off, len(w.buf)-n, end-off)
		}
	}
	if !bytes.Equal(w.buf, msg) || s.TakeEvents()&EventCutText == 0 {
		t.Fatal("cut text not passed")
	}
}

// ---- handshakes ----

type hsStep struct {
	server []byte // Server(server) before the client bytes, when non-nil
	client []byte
}

func runHandshake(t *testing.T, s *Stream, steps []hsStep) (out []byte, err error) {
	t.Helper()
	var w sink
	for _, st := range steps {
		if st.server != nil {
			if err := s.Server(st.server); err != nil {
				return w.buf, err
			}
		}
		if st.client != nil {
			if err := s.Feed(bytes.Clone(st.client), &w); err != nil {
				return w.buf, err
			}
		}
	}
	return w.buf, nil
}

// ClientInit's exclusive flag (0: disconnect every other client) is set to
// shared under a policy, so no viewer can push the others off the server;
// without a policy it passes as sent.
func TestClientInitShared(t *testing.T) {
	for _, pol := range []*Policy{DefaultPolicy(), nil} {
		s := NewStream(pol, User)
		out, err := runHandshake(t, s, []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.008\n")},
			{server: []byte{1, 1}, client: []byte{1}},
			{server: u32(0), client: []byte{0}},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := byte(1)
		if pol == nil {
			want = 0
		}
		if got := out[len(out)-1]; got != want {
			t.Errorf("policy %v: ClientInit shared-flag %d, want %d", pol != nil, got, want)
		}
	}
}

func TestHandshakes(t *testing.T) {
	// The VNC auth response starts with 0x04/0x05 to look like a KeyEvent or
	// PointerEvent: it must not be read as input (Ctrl+O inside it).
	resp4 := cat(keyDown('o'), []byte{5, 4, 0, 0, 0, 0, 0, 0})
	resp5 := cat([]byte{5, 4, 0, 0, 0, 0}, keyDown(KeysymControlL), []byte{4, 4})
	msgs := cat(keyDown(KeysymControlL), keyDown('a'), keyUp('a'), keyUp(KeysymControlL), ptrEv(1, 2, 3))
	tests := []struct {
		name  string
		steps []hsStep
	}{
		{"3.8 none", []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.008\n")},
			{server: []byte{2, 2, 1}, client: []byte{1}},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.8 vnc auth 0x04", []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.008\n")},
			{server: []byte{1, 2}, client: []byte{2}},
			{server: challenge, client: resp4},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.8 vnc auth 0x05", []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.008\n")},
			{server: []byte{1, 2}, client: []byte{2}},
			{server: challenge, client: resp5},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.7 none", []hsStep{
			{server: srvVer(7), client: []byte("RFB 003.007\n")},
			{server: []byte{1, 1}, client: []byte{1}},
			{client: []byte{1}},
		}},
		{"3.7 vnc auth", []hsStep{
			{server: srvVer(7), client: []byte("RFB 003.007\n")},
			{server: []byte{2, 1, 2}, client: []byte{2}},
			{server: challenge, client: resp5},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.3 none", []hsStep{
			{server: srvVer(3), client: []byte("RFB 003.003\n")},
			{server: u32(1), client: []byte{1}},
		}},
		{"3.3 vnc auth", []hsStep{
			{server: srvVer(3), client: []byte("RFB 003.003\n")},
			{server: cat(u32(2), challenge), client: resp4},
			{server: u32(0), client: []byte{1}},
		}},
		{"server 3.8 client 3.3", []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.003\n")},
			{server: cat(u32(2), challenge), client: resp4},
			{server: u32(0), client: []byte{1}},
		}},
		{"server 3.3 client 3.8", []hsStep{
			{server: srvVer(3), client: []byte("RFB 003.008\n")},
			{server: u32(1), client: []byte{1}},
		}},
		// The client pipelines its version before the server's: accepted, the
		// server's version settles the negotiation when it arrives.
		{"3.8 none, client version pipelined", []hsStep{
			{client: []byte("RFB 003.008\n")},
			{server: srvVer(8)},
			{server: []byte{1, 1}, client: []byte{1}},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.8 vnc auth, client version pipelined", []hsStep{
			{client: []byte("RFB 003.008\n")},
			{server: cat(srvVer(8), []byte{2, 1, 2}), client: []byte{2}},
			{server: challenge, client: resp5},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.7 none, client version pipelined", []hsStep{
			{client: []byte("RFB 003.007\n")},
			{server: cat(srvVer(8), []byte{1, 1}), client: []byte{1}},
			{client: []byte{1}},
		}},
		{"server 3.3 client 3.8 pipelined", []hsStep{
			{client: []byte("RFB 003.008\n")},
			{server: srvVer(3)},
			{server: u32(1), client: []byte{1}},
		}},
		{"server 3.3 client 3.8 pipelined, vnc auth", []hsStep{
			{client: []byte("RFB 003.008\n")},
			{server: cat(srvVer(3), u32(2), challenge), client: resp4},
			{server: u32(0), client: []byte{1}},
		}},
		{"3.889 (Apple)", []hsStep{
			{server: []byte("RFB 003.889\n"), client: []byte("RFB 003.008\n")},
			{server: []byte{1, 1}, client: []byte{1}},
			{server: u32(0), client: []byte{1}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Whole steps, then every client step byte by byte.
			for _, bytewise := range []bool{false, true} {
				s := NewStream(DefaultPolicy(), User)
				steps := tc.steps
				if bytewise {
					steps = nil
					for _, st := range tc.steps {
						for i := range st.client {
							b := hsStep{client: st.client[i : i+1]}
							if i == 0 {
								b.server = st.server
							}
							steps = append(steps, b)
						}
						if len(st.client) == 0 {
							steps = append(steps, st)
						}
					}
				}
				out, err := runHandshake(t, s, steps)
				if err != nil {
					t.Fatalf("bytewise=%v: %v", bytewise, err)
				}
				var want []byte
				for _, st := range tc.steps {
					want = append(want, st.client...)
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("handshake output % x, want % x", out, want)
				}
				if !s.Ready() || !s.HandshakeDone() || !s.AtBoundary() {
					t.Fatalf("not ready: phase %d srv %d", s.phase, s.srv)
				}
				if s.Stats.Messages != 0 || s.Stats.DroppedTotal() != 0 {
					t.Fatalf("handshake counted as messages: %+v", s.Stats)
				}
				// Server bytes after the handshake (ServerInit, updates) are ignored.
				mustServer(t, s, bytes.Repeat([]byte{0xff}, 100))
				if got := feedAll(t, s, msgs); !bytes.Equal(got, msgs) {
					t.Fatalf("messages after handshake: % x", got)
				}
				if s.Stats.Messages != 5 {
					t.Fatalf("Messages %d", s.Stats.Messages)
				}
			}
		})
	}
}

// TestPipelinedClientVersion: a client that sends its ProtocolVersion before
// the server's has been seen waits for it; the server's version (cut anywhere)
// then settles the negotiation exactly as in the usual order.
func TestPipelinedClientVersion(t *testing.T) {
	cL := uint32(KeysymControlL)
	msgs := cat(keyDown(cL), keyDown('o'), keyUp('o'), keyUp(cL), ptrEv(5, 2, 3))
	wantMsgs := cat(keyDown(cL), keyUp(cL), ptrEv(1, 2, 3)) // default policy
	for _, cli := range []int{3, 7, 8} {
		for _, srv := range []int{3, 7, 8} {
			t.Run("client 3."+itoa(cli)+" server 3."+itoa(srv), func(t *testing.T) {
				s := NewStream(DefaultPolicy(), User)
				var w sink
				cv := srvVer(cli)
				mustFeed(t, s, bytes.Clone(cv), &w)
				if !bytes.Equal(w.buf, cv) {
					t.Fatalf("version output % x", w.buf)
				}
				if s.phase != phWaitServer || s.Ready() || s.HandshakeDone() || s.AtBoundary() {
					t.Fatalf("after a pipelined version: phase %d srv %d", s.phase, s.srv)
				}
				for _, b := range srvVer(srv) { // the server's version byte by byte
					mustServer(t, s, []byte{b})
				}
				v := min(cli, srv)
				if s.version != v {
					t.Fatalf("negotiated 3.%d, want 3.%d", s.version, v)
				}
				if v == 3 {
					mustServer(t, s, u32(1))
					mustFeed(t, s, []byte{1}, &w)
				} else {
					mustServer(t, s, []byte{1, 1})
					mustFeed(t, s, []byte{1}, &w)
					if v == 8 {
						mustServer(t, s, u32(0))
					}
					mustFeed(t, s, []byte{1}, &w)
				}
				if !s.Ready() || !s.HandshakeDone() || !s.AtBoundary() {
					t.Fatalf("not ready: phase %d srv %d", s.phase, s.srv)
				}
				if got := feedAll(t, s, msgs); !bytes.Equal(got, wantMsgs) {
					t.Fatalf("messages\n% x\nwant\n% x", got, wantMsgs)
				}
				if s.Stats.Messages != 5 || s.Stats.Dropped[DropShortcut] != 1 || s.Stats.Dropped[DropUnmatched] != 1 {
					t.Fatalf("stats %+v", s.Stats)
				}
			})
		}
	}
	t.Run("version cut across Feeds", func(t *testing.T) {
		s := NewStream(DefaultPolicy(), User)
		var w sink
		v8 := []byte("RFB 003.008\n")
		mustFeed(t, s, bytes.Clone(v8[:5]), &w)
		mustServer(t, s, srvVer(8)[:7]) // the server's version arrives meanwhile
		mustFeed(t, s, bytes.Clone(v8[5:]), &w)
		if s.phase != phWaitServer {
			t.Fatalf("phase %d", s.phase)
		}
		mustServer(t, s, cat(srvVer(8)[7:], []byte{1, 1}))
		mustFeed(t, s, []byte{1}, &w)
		mustServer(t, s, u32(0))
		mustFeed(t, s, cat([]byte{1}, keyDown('a')), &w)
		if want := cat(v8, []byte{1, 1}, keyDown('a')); !bytes.Equal(w.buf, want) {
			t.Fatalf("output % x, want % x", w.buf, want)
		}
	})
	t.Run("nil policy, 3.3 server picks VeNCrypt", func(t *testing.T) {
		s := NewStream(nil, User)
		tlsBytes := []byte{0x16, 3, 1, 0, 5}
		out, err := runHandshake(t, s, []hsStep{
			{client: []byte("RFB 003.008\n")},
			{server: cat(srvVer(3), u32(19)), client: tlsBytes},
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := cat([]byte("RFB 003.008\n"), tlsBytes); !bytes.Equal(out, want) || s.phase != phOpaque {
			t.Fatalf("output % x phase %d", out, s.phase)
		}
	})
}

func TestHandshakeServerSplit(t *testing.T) {
	// The server's security list, challenge and result cut byte by byte.
	s := NewStream(DefaultPolicy(), User)
	var w sink
	feedSrv := func(p []byte) {
		for i := range p {
			mustServer(t, s, p[i:i+1])
		}
	}
	feedSrv(srvVer(8))
	mustFeed(t, s, []byte("RFB 003.008\n"), &w)
	feedSrv([]byte{3, 1, 2, 16})
	mustFeed(t, s, []byte{2}, &w)
	feedSrv(challenge)
	mustFeed(t, s, make([]byte, 16), &w)
	feedSrv(u32(0))
	mustFeed(t, s, []byte{1}, &w)
	if !s.Ready() || !s.HandshakeDone() {
		t.Fatal("not ready")
	}
}

func TestHandshakeFailures(t *testing.T) {
	v8 := []byte("RFB 003.008\n")
	tests := []struct {
		name  string
		pol   *Policy
		steps []hsStep
		want  string // Reason of the error; "" for none
		out   []byte // client bytes written
		done  bool   // HandshakeDone at the end
	}{
		// A pipelined version is accepted (TestHandshakes); anything after it
		// before the server's security list is still out of turn.
		{name: "client version and choice before server version", pol: DefaultPolicy(),
			steps: []hsStep{{client: cat(v8, []byte{1})}}, want: errClientOutOfTurn.Reason, out: v8},
		{name: "client version, then choice, before server version", pol: DefaultPolicy(),
			steps: []hsStep{{client: v8}, {client: []byte{1}}}, want: errClientOutOfTurn.Reason, out: v8},
		{name: "pipelined client version, choice before security list", pol: DefaultPolicy(),
			steps: []hsStep{{client: v8}, {server: srvVer(8), client: []byte{1}}},
			want:  errClientOutOfTurn.Reason, out: v8},
		{name: "client version twice", pol: DefaultPolicy(),
			steps: []hsStep{{client: cat(v8, v8)}}, want: errClientOutOfTurn.Reason, out: v8},
		{name: "pipelined client version, 3.3 ClientInit before security type", pol: DefaultPolicy(),
			steps: []hsStep{{client: v8}, {server: srvVer(3), client: []byte{1}}},
			want:  errClientOutOfTurn.Reason, out: v8},
		{name: "pipelined client version, bad server version", pol: DefaultPolicy(),
			steps: []hsStep{{client: v8}, {server: []byte("SSH-2.0-Open")}},
			want:  errBadServerVersion.Reason, out: v8},
		{name: "pipelined bad client version", pol: DefaultPolicy(),
			steps: []hsStep{{client: []byte("RFB 003.00x\n")}}, want: errBadVersion.Reason},
		{name: "client choice before security list", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: cat(v8, []byte{1})}},
			want:  errClientOutOfTurn.Reason, out: v8},
		{name: "client init before security result", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{1, 1}, client: []byte{1, 1}}},
			want:  errClientOutOfTurn.Reason, out: cat(v8, []byte{1})},
		{name: "3.3 client data before security type", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(3), client: cat([]byte("RFB 003.003\n"), []byte{1})}},
			want:  errClientOutOfTurn.Reason, out: []byte("RFB 003.003\n")},
		{name: "auth response too long", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{1, 2}, client: []byte{2}},
				{server: challenge, client: make([]byte, 17)}},
			want: errClientOutOfTurn.Reason, out: cat(v8, []byte{2}, make([]byte, 16))},
		{name: "server speaks before client version", pol: DefaultPolicy(),
			steps: []hsStep{{server: cat(srvVer(8), []byte{1, 1})}}, want: errServerOutOfTurn.Reason},
		{name: "server speaks before client choice", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{1, 1, 0}}},
			want:  errServerOutOfTurn.Reason, out: v8},
		{name: "security result before auth response", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{1, 2}, client: []byte{2}},
				{server: cat(challenge, u32(0))}},
			want: errServerOutOfTurn.Reason, out: cat(v8, []byte{2})},
		{name: "bad client version", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: []byte("RFB 003.00x\n")}}, want: errBadVersion.Reason},
		{name: "client version 2.0", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: []byte("RFB 002.000\n")}}, want: errBadVersion.Reason},
		{name: "bad server version", pol: DefaultPolicy(),
			steps: []hsStep{{server: []byte("SSH-2.0-Open")}}, want: errBadServerVersion.Reason},
		{name: "auth failed 3.8", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{1, 2}, client: []byte{2}},
				{server: challenge, client: make([]byte, 16)},
				{server: cat(u32(1), u32(6), []byte("failed")), client: []byte{1}}},
			want: errAuthFailed.Reason, out: cat(v8, []byte{2}, make([]byte, 16)), done: true},
		{name: "auth failed 3.3", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(3), client: []byte("RFB 003.003\n")},
				{server: cat(u32(2), challenge), client: make([]byte, 16)},
				{server: u32(1), client: keyDown('a')}},
			want: errAuthFailed.Reason, out: cat([]byte("RFB 003.003\n"), make([]byte, 16)), done: true},
		{name: "security list count 0 with reason", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: cat([]byte{0}, u32(9), []byte("too many!"))},
				{client: []byte{1}}},
			want: errAuthFailed.Reason, out: v8, done: true},
		{name: "3.3 security type 0 with reason", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(3), client: []byte("RFB 003.003\n")},
				{server: cat(u32(0), u32(3), []byte("bad"))}, {client: []byte{1}}},
			want: errAuthFailed.Reason, out: []byte("RFB 003.003\n"), done: true},
		{name: "TLS refused", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(8), client: v8}, {server: []byte{2, 18, 19}, client: []byte{18, 0x16, 3, 1}}},
			want:  "security type 18 (TLS) cannot be inspected", out: v8},
		{name: "VeNCrypt refused", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(7), client: []byte("RFB 003.007\n")}, {server: []byte{1, 19}, client: []byte{19}}},
			want:  "security type 19 (VeNCrypt) cannot be inspected", out: []byte("RFB 003.007\n")},
		{name: "3.3 server picks VeNCrypt", pol: DefaultPolicy(),
			steps: []hsStep{{server: srvVer(3), client: []byte("RFB 003.003\n")}, {server: u32(19)}},
			want:  "security type 19 (VeNCrypt) cannot be inspected", out: []byte("RFB 003.003\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStream(tc.pol, User)
			out, err := runHandshake(t, s, tc.steps)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					t.Fatalf("no error, want %q", tc.want)
				}
				if e := asError(t, err); e.Reason != tc.want {
					t.Fatalf("reason %q, want %q", e.Reason, tc.want)
				}
				if s.Err() != err || s.Feed([]byte{1}, &sink{}) != err {
					t.Fatal("error not sticky")
				}
			}
			if !bytes.Equal(out, tc.out) {
				t.Fatalf("output % x, want % x", out, tc.out)
			}
			if s.HandshakeDone() != tc.done {
				t.Fatalf("HandshakeDone %v, want %v", s.HandshakeDone(), tc.done)
			}
		})
	}
}

func TestOpaqueWithoutPolicy(t *testing.T) {
	tlsBytes := []byte{0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5}
	t.Run("3.8 TLS", func(t *testing.T) {
		s := NewStream(nil, User)
		out, err := runHandshake(t, s, []hsStep{
			{server: srvVer(8), client: []byte("RFB 003.008\n")},
			{server: []byte{1, 18}, client: cat([]byte{18}, tlsBytes)},
			{server: []byte{0x16, 3, 1}, client: []byte{7, 255, 1}}, // anything passes now
		})
		if err != nil {
			t.Fatal(err)
		}
		want := cat([]byte("RFB 003.008\n"), []byte{18}, tlsBytes, []byte{7, 255, 1})
		if !bytes.Equal(out, want) {
			t.Fatalf("output % x, want % x", out, want)
		}
		if !s.Ready() || !s.HandshakeDone() {
			t.Fatal("opaque stream not ready")
		}
	})
	t.Run("3.3 VeNCrypt", func(t *testing.T) {
		s := NewStream(nil, User)
		out, err := runHandshake(t, s, []hsStep{
			{server: srvVer(3), client: []byte("RFB 003.003\n")},
			{server: u32(19), client: tlsBytes},
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := cat([]byte("RFB 003.003\n"), tlsBytes); !bytes.Equal(out, want) {
			t.Fatalf("output % x", out)
		}
	})
}

func TestParseRightButton(t *testing.T) {
	for in, want := range map[string]RightButton{"strip": RightStrip, "": RightStrip, " DROP ": RightDrop, "allow": RightAllow} {
		if got, err := ParseRightButton(in); err != nil || got != want {
			t.Errorf("ParseRightButton(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseRightButton("block"); err == nil {
		t.Error("no error for an unknown mode")
	}
}

func TestDropReasonString(t *testing.T) {
	if DropShortcut.String() != "shortcut" || DropKeyLimit.String() != "key-limit" || NumDropReasons.String() != "unknown" {
		t.Fatal("DropReason names")
	}
	if User.String() != "user" || Agent.String() != "agent" {
		t.Fatal("Interactor names")
	}
}

type failWriter struct{ n int }

var errWrite = errors.New("peer gone")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errWrite
	}
	f.n--
	return len(p), nil
}

func TestWriteErrorIsFinal(t *testing.T) {
	for _, in := range [][]byte{keyDown('a'), ptrEv(1, 1, 1), cat(keyDown('a'), cutText("xyz"))} {
		s := ready(t, DefaultPolicy(), User)
		if err := s.Feed(bytes.Clone(in), &failWriter{}); err != errWrite {
			t.Fatalf("Feed: %v, want the writer's error", err)
		}
		var w sink
		if err := s.Feed(keyDown('b'), &w); err != errWrite || len(w.buf) != 0 {
			t.Fatalf("after a failed write: %v, wrote % x", err, w.buf)
		}
	}
}
