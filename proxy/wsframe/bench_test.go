package wsframe

import (
	"testing"

	"github.com/gobwas/ws"
)

// BenchmarkDecode64KiB decodes one masked 64 KiB binary frame per op, fed as
// one chunk (gnet's default read size is 64 KiB).
func BenchmarkDecode64KiB(b *testing.B) {
	const size = 64 << 10
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: size}
	buf := make([]byte, MaxHeaderSize+size)
	n := PutHeader(buf, h)
	buf = buf[:n+size]
	// Unmasking in place flips the payload on every run; the header stays.
	d := Decoder{Role: Server}
	var sink nopHandler
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Feed(buf, sink); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeKeyEvent decodes a chunk of 512 masked binary frames with
// an 8-byte payload (an RFB KeyEvent each) per op.
func BenchmarkDecodeKeyEvent(b *testing.B) {
	const frames = 512
	var buf []byte
	for i := range frames {
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{byte(i), 2, 3, 4}, Length: 8}
		var hb [MaxHeaderSize]byte
		n := PutHeader(hb[:], h)
		buf = append(buf, hb[:n]...)
		buf = append(buf, 4, 1, 0, 0, 0, 0, 0xff, 0x0d)
	}
	d := Decoder{Role: Server, MaxPayload: 1 << 20}
	var sink nopHandler
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Feed(buf, sink); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// BenchmarkPutHeader encodes a masked header with a 64-bit length.
func BenchmarkPutHeader(b *testing.B) {
	var buf [MaxHeaderSize]byte
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 1 << 20}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += PutHeader(buf[:], h)
	}
	if n == 0 {
		b.Fatal("nothing written")
	}
}
