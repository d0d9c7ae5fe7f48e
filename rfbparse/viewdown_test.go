package rfbparse

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// viewStream builds a server stream from ServerInit on, and the same stream
// with every ServerCutText removed.
func viewStream() (in, want []byte) {
	var a, b bytes.Buffer
	both := func(p ...byte) { a.Write(p); b.Write(p) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	rect := func(w, h uint16, enc int32) {
		both(0, 0, 0, 0)
		both(u16(w)...)
		both(u16(h)...)
		both(u32(uint32(enc))...)
	}
	// ServerInit: 1024x768, 32 bpp, name "xv".
	both(4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	both(u32(2)...)
	both('x', 'v')
	cut := func(n int32, text string) {
		a.Write([]byte{SrvServerCutText, 0, 0, 0})
		a.Write(u32(uint32(n)))
		a.WriteString(text)
	}
	cut(6, "secret")
	both(SrvFramebufferUpdate, 0)
	both(u16(0xffff)...)
	rect(2, 2, EncodingRaw)
	both(bytes.Repeat([]byte{0xaa}, 16)...)
	rect(3, 1, EncodingCopyRect)
	both(1, 2, 3, 4)
	rect(8, 8, EncodingZRLE)
	both(u32(5)...)
	both(9, 9, 9, 9, 9)
	rect(9, 2, EncodingCursor)
	both(bytes.Repeat([]byte{0xcc}, 9*2*4+2*2)...)
	rect(1024, 768, EncodingExtendedDesktopSize)
	both(1, 0, 0, 0)
	both(make([]byte, 16)...)
	rect(0, 0, EncodingDesktopName)
	both(u32(3)...)
	both('a', 'b', 'c')
	rect(20, 17, EncodingHextile) // 2x2 tiles: 16x16, 4x16, 16x1, 4x1
	both(hexRaw)
	both(bytes.Repeat([]byte{0x11}, 16*16*4)...)
	both(hexBackground|hexForeground|hexAnySubrects, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0x00, 0x11, 0x22, 0x33)
	both(hexAnySubrects|hexSubrectsColoured, 1)
	both(9, 9, 9, 9, 0x01, 0x10)
	both(0) // same background as before
	rect(0, 0, EncodingLastRect)
	cut(-7, "\x10\x00\x00\x01xyz") // extended clipboard form
	both(SrvBell)
	both(SrvSetColourMapEntries, 0, 0, 0, 0, 1)
	both(make([]byte, 6)...)
	both(SrvServerFence, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3)
	both(SrvXVP, 0, 1, 2)
	both(SrvEndOfContinuousUpdates)
	cut(0, "")
	both(SrvFramebufferUpdate, 0, 0, 1)
	rect(1, 1, EncodingRaw)
	both(1, 2, 3, 4)
	cut(3, "end")
	return a.Bytes(), b.Bytes()
}

func feedSplit(t testing.TB, in []byte, cuts ...int) ([]byte, error) {
	var f ViewFilter
	var out bytes.Buffer
	prev := 0
	for _, c := range append(cuts, len(in)) {
		if err := f.Feed(in[prev:c], &out); err != nil {
			return out.Bytes(), err
		}
		prev = c
	}
	return out.Bytes(), nil
}

func TestViewFilterDropsCutTextAtEverySplit(t *testing.T) {
	in, want := viewStream()
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j++ {
			got, err := feedSplit(t, in, i, j)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("split %d,%d: err %v, output differs (%d vs %d bytes)", i, j, err, len(got), len(want))
			}
		}
	}
	var f ViewFilter
	var out bytes.Buffer
	for k := range in {
		if err := f.Feed(in[k:k+1], &out); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out.Bytes(), want) || f.Dropped != 4 {
		t.Fatalf("byte by byte: %d dropped, output equal %v", f.Dropped, bytes.Equal(out.Bytes(), want))
	}
}

func TestViewFilterFailsClosed(t *testing.T) {
	init := append([]byte{4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}, 0, 0, 0, 0)
	for name, tail := range map[string][]byte{
		"unknown message":   {99, 1, 2, 3},
		"tight rectangle":   {0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 7, 3, 3, 3},
		"fence over 64":     {SrvServerFence, 0, 0, 0, 0, 0, 0, 0, 65},
		"QEMU server msg":   {255, 1, 0, 0},
		"ext clipboard enc": {0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0xc0, 0xa1, 0xe5, 0xce},
	} {
		got, err := feedSplit(t, append(init[:len(init):len(init)], tail...))
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, ok := err.(*Error); !ok {
			t.Errorf("%s: %v is not an *Error", name, err)
		}
		if len(got) > len(init)+16 || bytes.Contains(got, []byte{3, 3, 3}) {
			t.Errorf("%s: passed bytes after the unframeable item: %v", name, got)
		}
	}
	var f ViewFilter
	f.SetBPP(24)
	if _, err := feedSplit(t, append(init[:len(init):len(init)], 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0)); err != nil {
		t.Fatal(err) // 32 bpp from ServerInit: a Raw rectangle header frames
	}
	bad := append([]byte(nil), init...)
	bad[4] = 24
	if _, err := feedSplit(t, append(bad, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0)); err == nil {
		t.Error("24 bpp Raw accepted")
	}
}

func TestViewFilterNoAllocs(t *testing.T) {
	in, _ := viewStream()
	var f ViewFilter
	w := &discard{}
	n := testing.AllocsPerRun(100, func() {
		f = ViewFilter{}
		_ = f.Feed(in[:50], w)
		_ = f.Feed(in[50:], w)
	})
	if n != 0 {
		t.Fatalf("%v allocations per stream", n)
	}
}

// FuzzViewFilter: any bytes, any split: never a panic, and the output and
// verdict do not depend on where the stream was split.
func FuzzViewFilter(f *testing.F) {
	in, _ := viewStream()
	f.Add(in, uint16(7), uint16(100))
	f.Add(in[:40], uint16(0), uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, a, b uint16) {
		i, j := int(a)%(len(in)+1), int(b)%(len(in)+1)
		if i > j {
			i, j = j, i
		}
		whole, err1 := feedSplit(t, in)
		split, err2 := feedSplit(t, in, i, j)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("verdict depends on split %d,%d: %v vs %v", i, j, err1, err2)
		}
		if err1 == nil && !bytes.Equal(whole, split) {
			t.Fatalf("output depends on split %d,%d", i, j)
		}
		if err1 == nil && len(whole) > len(in) {
			t.Fatal("more out than in")
		}
	})
}

// TestViewOnlyEncodings: a view-only stream's SetEncodings keeps only
// framable encodings (others become the entry before, Raw when first), so
// Tight, the extended clipboard and ExtendedMouseButtons never reach the
// server, and the pointer framing stays the 6-byte one the server keeps.
func TestViewOnlyEncodings(t *testing.T) {
	s := ready(t, DefaultPolicy(), Agent)
	s.SetViewOnly()
	in := setEnc(7, EncodingCopyRect, 7, EncodingHextile, EncodingExtendedClipboard, EncodingExtendedMouseButtons, -314, EncodingZRLE, EncodingQEMUExtendedKeyEvent, -32+9)
	got := feedAll(t, s, in)
	want := setEnc(EncodingRaw, EncodingCopyRect, EncodingCopyRect, EncodingHextile, EncodingHextile, EncodingHextile, EncodingHextile, EncodingZRLE, EncodingZRLE, -32+9)
	if DefaultPolicy().QEMUKeys != QEMUKeysToKeysym {
		q := int32(EncodingQEMUExtendedKeyEvent)
		binary.BigEndian.PutUint32(want[4+8*4:], uint32(q))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SetEncodings out\n% x\nwant\n% x", got, want)
	}
	if s.ExtendedMouseButtons() {
		t.Fatal("ExtendedMouseButtons kept on a view-only stream")
	}
	for i := 0; i < 100; i++ {
		e := int32(i*7919 - 400000)
		if ViewFramable(e) && e != EncodingRaw && e != EncodingCopyRect && e != EncodingHextile && e != EncodingZRLE && (e > -23 || e < -316) {
			t.Fatalf("encoding %d framable", e)
		}
	}
	if ViewFramable(EncodingExtendedClipboard) || ViewFramable(7) || ViewFramable(EncodingExtendedMouseButtons) {
		t.Fatal("an unframable encoding is framable")
	}
}

// TestViewOnlyPixelFormat: SetPixelFormat passes (and sets ClientBPP) only
// before the first update request: after it the server's updates in flight
// could not be framed across the change, so it is dropped.
func TestViewOnlyPixelFormat(t *testing.T) {
	s := ready(t, DefaultPolicy(), Agent)
	s.SetViewOnly()
	pf := setPF()
	pf[4] = 16
	if got := feedAll(t, s, pf); len(got) != 20 || s.ClientBPP() != 16 {
		t.Fatalf("SetPixelFormat before any update: %d bytes out, bpp %d", len(got), s.ClientBPP())
	}
	if got := feedAll(t, s, fbur(false, 0, 0, 10, 10)); len(got) != 10 {
		t.Fatalf("FramebufferUpdateRequest: %d bytes out", len(got))
	}
	pf[4] = 8
	for k := 1; k < 20; k++ { // split anywhere
		var w sink
		mustFeed(t, s, bytes.Clone(pf[:k]), &w)
		mustFeed(t, s, bytes.Clone(pf[k:]), &w)
		if len(w.buf) != 0 || s.ClientBPP() != 16 {
			t.Fatalf("SetPixelFormat after an update request passed (%d bytes, bpp %d)", len(w.buf), s.ClientBPP())
		}
	}
	c := ready(t, DefaultPolicy(), User) // a controller's stream is not view-only
	feedAll(t, c, fbur(false, 0, 0, 1, 1))
	if got := feedAll(t, c, pf); len(got) != 20 {
		t.Fatal("a controller's SetPixelFormat was dropped")
	}
}
