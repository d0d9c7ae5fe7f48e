package rfbparse

import (
	"bytes"
	"testing"
)

// BenchmarkKeyEvent classifies one 8-byte KeyEvent per Feed call, as noVNC
// sends one per WebSocket frame. Ctrl is held so the forbidden-shortcut and
// copy checks run.
func BenchmarkKeyEvent(b *testing.B) {
	s := ready(b, DefaultPolicy(), User)
	var w discard
	if err := s.Feed(keyDown(KeysymControlL), &w); err != nil {
		b.Fatal(err)
	}
	down, up := keyDown('a'), keyUp('a')
	b.SetBytes(8)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := down
		if i&1 != 0 {
			k = up
		}
		if err := s.Feed(k, &w); err != nil {
			b.Fatal(err)
		}
	}
	if s.Stats.DroppedTotal() != 0 {
		b.Fatal("dropped")
	}
}

// BenchmarkKeyEventBlocked is a forbidden Ctrl+O, down and up.
func BenchmarkKeyEventBlocked(b *testing.B) {
	s := ready(b, DefaultPolicy(), User)
	var w discard
	if err := s.Feed(keyDown(KeysymControlL), &w); err != nil {
		b.Fatal(err)
	}
	down, up := keyDown('o'), keyUp('o')
	b.SetBytes(8)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := down
		if i&1 != 0 {
			k = up
		}
		if err := s.Feed(k, &w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPointerEvent classifies one PointerEvent per Feed call: 6 bytes, or
// 7 (ExtendedMouseButtons) sent on as 6 by the default policy.
func BenchmarkPointerEvent(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    []byte
	}{{"move", ptrEv(1, 100, 200)}, {"right-strip", ptrEv(4, 100, 200)}, {"ext-trim", ptrExt(1, 1, 100, 200)}} {
		b.Run(tc.name, func(b *testing.B) {
			s := ready(b, DefaultPolicy(), User)
			var w discard
			if len(tc.m) == 7 {
				if err := s.Feed(setEnc(EncodingExtendedMouseButtons), &w); err != nil {
					b.Fatal(err)
				}
			}
			m := append([]byte(nil), tc.m...) // rewritten in place below: never touch tc.m
			mask := m[1]
			b.SetBytes(int64(len(m)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m[1] = mask // undo the in-place rewrite
				m[3] = byte(i)
				if err := s.Feed(m, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSession feeds the recorded noVNC session's messages, one frame per
// Feed call, over and over on one Stream.
func BenchmarkSession(b *testing.B) {
	ss := noVNCSession()
	frames := make([][]byte, len(ss.frames))
	var total int64
	for i, f := range ss.frames {
		frames[i] = bytes.Clone(f)
		total += int64(len(f))
	}
	type restore struct {
		i int
		v byte
	}
	var fix []restore // pointer events the strip rewrites in place
	for i, f := range frames {
		if f[0] == MsgPointerEvent {
			fix = append(fix, restore{i, f[1]})
		}
	}
	s := ready(b, DefaultPolicy(), User)
	var w discard
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range fix {
			frames[r.i][1] = r.v
		}
		for _, f := range frames {
			if err := s.Feed(f, &w); err != nil {
				b.Fatal(err)
			}
		}
		s.TakeEvents()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(frames))), "ns/msg")
}

// BenchmarkCutText64KiB passes one 64 KiB clipboard, in one chunk and in
// noVNC's 10 KiB send-queue pieces.
func BenchmarkCutText64KiB(b *testing.B) {
	msg := cutText(string(bytes.Repeat([]byte("z"), 64<<10)))
	for _, chunk := range []int{len(msg), 10 << 10} {
		b.Run("chunk="+itoa(chunk), func(b *testing.B) {
			s := ready(b, DefaultPolicy(), User)
			var w discard
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(msg); off += chunk {
					if err := s.Feed(msg[off:min(off+chunk, len(msg))], &w); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
