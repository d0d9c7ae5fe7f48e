package wsframe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

var headerLengths = []int64{0, 1, 125, 126, 127, 65535, 65536, 1 << 32, 1 << 40, 1<<63 - 1}

func testHeaders() []ws.Header {
	var hs []ws.Header
	for _, l := range headerLengths {
		for _, masked := range []bool{false, true} {
			for i, op := range []ws.OpCode{ws.OpBinary, ws.OpContinuation, ws.OpText, ws.OpPing, ws.OpClose, 0xf} {
				h := ws.Header{Fin: i%2 == 0, OpCode: op, Length: l, Rsv: byte(i) & 7}
				if masked {
					h.Masked, h.Mask = true, [4]byte{0xa1, 0x02, byte(l), 0xff}
				}
				hs = append(hs, h)
			}
		}
	}
	return hs
}

func TestPutHeaderMatchesGobwas(t *testing.T) {
	for _, h := range testHeaders() {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		var b [MaxHeaderSize]byte
		n := PutHeader(b[:], h)
		if !bytes.Equal(b[:n], want.Bytes()) {
			t.Errorf("PutHeader(%+v) = % x, ws.WriteHeader = % x", h, b[:n], want.Bytes())
		}
		if HeaderSize(h) != n || ws.HeaderSize(h) != n {
			t.Errorf("HeaderSize(%+v) = %d, ws.HeaderSize = %d, written %d", h, HeaderSize(h), ws.HeaderSize(h), n)
		}
	}
}

func TestDecodeHeaderRoundTrip(t *testing.T) {
	for _, h := range testHeaders() {
		var b [MaxHeaderSize + 3]byte
		n := PutHeader(b[:], h)
		// Every proper prefix asks for more bytes.
		for i := 0; i < n; i++ {
			got, m, err := DecodeHeader(b[:i])
			if m != 0 || err != nil || got != (ws.Header{}) {
				t.Fatalf("DecodeHeader(%d of %d bytes of %+v) = %+v, %d, %v; want need-more", i, n, h, got, m, err)
			}
		}
		// Whole header, with and without trailing bytes.
		for _, end := range []int{n, len(b)} {
			got, m, err := DecodeHeader(b[:end])
			if err != nil || m != n || got != h {
				t.Fatalf("DecodeHeader(% x) = %+v, %d, %v; want %+v, %d", b[:end], got, m, err, h, n)
			}
		}
		want, err := ws.ReadHeader(bytes.NewReader(b[:n]))
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := DecodeHeader(b[:n]); got != want {
			t.Errorf("DecodeHeader = %+v, ws.ReadHeader = %+v", got, want)
		}
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"64-bit MSB", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{"64-bit MSB masked", []byte{0x82, 0x80 | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}},
		{"16-bit holding 0", []byte{0x82, 126, 0, 0}},
		{"16-bit holding 125", []byte{0x82, 126, 0, 125}},
		{"64-bit holding 0", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"64-bit holding 125", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 125}},
		{"64-bit holding 65535", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff}},
	} {
		_, n, err := DecodeHeader(tc.b)
		var ce *CloseError
		if n != 0 || !errors.As(err, &ce) || ce.Code != ws.StatusProtocolError {
			t.Errorf("%s: DecodeHeader(% x) = %d, %v; want a 1002 CloseError", tc.name, tc.b, n, err)
		}
	}
	// The smallest lengths of each class are accepted.
	for _, b := range [][]byte{
		{0x82, 126, 0, 126},
		{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, n, err := DecodeHeader(b); n != len(b) || err != nil {
			t.Errorf("DecodeHeader(% x) = %d, %v; want %d, nil", b, n, err, len(b))
		}
	}
}

func TestPutHeaderPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		h    ws.Header
	}{
		{"short buffer", make([]byte, 3), ws.Header{Length: 126}},
		{"short buffer for mask", make([]byte, 5), ws.Header{Masked: true}},
		{"negative length", make([]byte, MaxHeaderSize), ws.Header{Length: -1}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: PutHeader did not panic", tc.name)
				}
			}()
			PutHeader(tc.b, tc.h)
		}()
	}
}

func TestHeaderNoAllocs(t *testing.T) {
	var b [MaxHeaderSize]byte
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 1 << 20}
	allocs := testing.AllocsPerRun(100, func() {
		n := PutHeader(b[:], h)
		if _, m, err := DecodeHeader(b[:n]); m != n || err != nil {
			t.Fatal("round trip failed")
		}
	})
	if allocs != 0 {
		t.Errorf("PutHeader+DecodeHeader: %v allocs, want 0", allocs)
	}
}
