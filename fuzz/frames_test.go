package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"vncedge/proxy/wsframe"
)

// mark is a message end or a control frame in a transcript, at a data offset.
type mark struct {
	at      int
	op      ws.OpCode
	control bool
	payload string
}

// transcript is what a decoder delivered: all data bytes in order, and where
// messages ended and control frames came.
type transcript struct {
	data  []byte
	marks []mark
}

func (tr *transcript) OnData(op ws.OpCode, p []byte, fin bool) error {
	tr.data = append(tr.data, p...)
	if fin {
		tr.marks = append(tr.marks, mark{at: len(tr.data), op: op})
	}
	return nil
}

func (tr *transcript) OnControl(op ws.OpCode, p []byte) error {
	tr.marks = append(tr.marks, mark{at: len(tr.data), op: op, control: true, payload: string(p)})
	return nil
}

func (tr *transcript) String() string {
	return fmt.Sprintf("%d data bytes, marks %+v", len(tr.data), tr.marks)
}

func sameTranscript(a, b *transcript) bool {
	if !bytes.Equal(a.data, b.data) || len(a.marks) != len(b.marks) {
		return false
	}
	for i := range a.marks {
		if a.marks[i] != b.marks[i] {
			return false
		}
	}
	return true
}

// refHeader is a frame header as the reference reads it.
type refHeader struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	mask   [4]byte
	length uint64
	size   int
}

// readRefHeader parses a header (RFC 6455 §5.2): size 0 when b is too short,
// bad for a length that is not minimally encoded or has its top bit set.
func readRefHeader(b []byte) (h refHeader, bad bool) {
	if len(b) < 2 {
		return h, false
	}
	h.fin, h.rsv, h.op = b[0]&0x80 != 0, b[0]>>4&7, b[0]&15
	h.masked = b[1]&0x80 != 0
	n := 2 // the whole header must be there before it is judged
	switch b[1] & 0x7f {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	if h.masked {
		n += 4
	}
	if len(b) < n {
		return refHeader{}, false
	}
	switch l := b[1] & 0x7f; l {
	case 126:
		h.length = uint64(binary.BigEndian.Uint16(b[2:]))
		if h.length < 126 {
			return h, true
		}
	case 127:
		h.length = binary.BigEndian.Uint64(b[2:])
		if h.length>>63 != 0 || h.length <= 0xffff {
			return h, true
		}
	default:
		h.length = uint64(l)
	}
	if h.masked {
		copy(h.mask[:], b[n-4:])
	}
	h.size = n
	return h, false
}

// validClose reports whether a close frame may carry code (RFC 6455 §7.4 and
// the IANA registry: 1012-1014 registered later, 3000-4999 for others).
func validClose(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// refFrames decodes client frames the reference way: the transcript, the
// close code of the first violation (0 for none), and the offsets and sizes
// of every header read.
func refFrames(data []byte, allowText bool, maxPayload uint64) (tr transcript, code ws.StatusCode, headers [][2]int) {
	var msgOp byte
	for off := 0; off < len(data); {
		h, bad := readRefHeader(data[off:])
		if bad {
			return tr, ws.StatusProtocolError, headers
		}
		if h.size == 0 {
			return tr, 0, headers
		}
		headers = append(headers, [2]int{off, h.size})
		control := h.op >= 8
		op := h.op
		switch {
		case h.rsv != 0, h.op >= 3 && h.op <= 7, h.op >= 11, !h.masked:
			return tr, ws.StatusProtocolError, headers
		case control && (h.length > 125 || !h.fin):
			return tr, ws.StatusProtocolError, headers
		case !control && op == 0 && msgOp == 0, !control && op != 0 && msgOp != 0:
			return tr, ws.StatusProtocolError, headers
		case op == 1 && !allowText:
			return tr, ws.StatusUnsupportedData, headers
		case !control && maxPayload > 0 && h.length > maxPayload:
			return tr, ws.StatusMessageTooBig, headers
		}
		if !control {
			if op == 0 {
				op = msgOp
			}
			if h.fin {
				msgOp = 0
			} else {
				msgOp = op
			}
		}
		off += h.size
		avail := uint64(len(data) - off)
		n := min(avail, h.length)
		p := bytes.Clone(data[off : off+int(n)])
		for i := range p {
			p[i] ^= h.mask[i%4]
		}
		off += int(n)
		if control {
			if n < h.length {
				return tr, 0, headers
			}
			if op == 8 && len(p) > 0 {
				if len(p) == 1 || !validClose(binary.BigEndian.Uint16(p)) {
					return tr, ws.StatusProtocolError, headers
				}
				if !utf8.Valid(p[2:]) {
					return tr, ws.StatusInvalidFramePayloadData, headers
				}
			}
			tr.marks = append(tr.marks, mark{at: len(tr.data), op: ws.OpCode(op), control: true, payload: string(p)})
			continue
		}
		tr.data = append(tr.data, p...)
		if n < h.length {
			return tr, 0, headers
		}
		if h.fin {
			tr.marks = append(tr.marks, mark{at: len(tr.data), op: ws.OpCode(op)})
		}
	}
	return tr, 0, headers
}

// decodeWith feeds data (copied) to a Server-role decoder in pieces cut at cuts.
func decodeWith(data []byte, allowText bool, maxPayload int64, cuts ...int) (*transcript, error) {
	d := wsframe.Decoder{Role: wsframe.Server, AllowText: allowText, MaxPayload: maxPayload}
	tr := &transcript{}
	buf := bytes.Clone(data)
	prev := 0
	var err error
	for _, c := range append(cuts, len(buf)) {
		if e := d.Feed(buf[prev:c], tr); err == nil {
			err = e
		} else if e != err {
			return tr, fmt.Errorf("error not sticky: %v then %v", err, e)
		}
		prev = c
	}
	return tr, err
}

func closeCode(err error) ws.StatusCode {
	var ce *wsframe.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// FuzzFrames: arbitrary bytes through the frame decoder (Server role) give
// the same data, message ends, control frames and error whether they arrive
// whole or split at two points, and match the reference decoder; every
// header decoded re-encodes to its input bytes. mode: bit 0 AllowText, bit 1
// a 1000-byte MaxPayload.
func FuzzFrames(f *testing.F) {
	masked := func(h ws.Header, p []byte) []byte {
		var b bytes.Buffer
		h.Masked, h.Mask = true, [4]byte{1, 2, 3, 4}
		_ = ws.WriteHeader(&b, h)
		q := bytes.Clone(p)
		ws.Cipher(q, h.Mask, 0)
		return append(b.Bytes(), q...)
	}
	f.Add(cat(masked(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 3}, []byte("abc")),
		masked(ws.Header{OpCode: ws.OpBinary, Length: 2}, []byte("de")),
		masked(ws.Header{Fin: true, OpCode: ws.OpPing, Length: 1}, []byte("x")),
		masked(ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 1}, []byte("f")),
		masked(ws.Header{Fin: true, OpCode: ws.OpClose, Length: 4}, []byte{3, 232, 'o', 'k'})), uint16(5), uint16(20), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint16, mode uint8) {
		allowText := mode&1 != 0
		var maxPayload int64
		if mode&2 != 0 {
			maxPayload = 1000
		}
		c1, c2 := int(a)%(len(data)+1), int(b)%(len(data)+1)
		if c1 > c2 {
			c1, c2 = c2, c1
		}
		whole, werr := decodeWith(data, allowText, maxPayload)
		split, serr := decodeWith(data, allowText, maxPayload, c1, c2)
		if werr != serr || !sameTranscript(whole, split) {
			t.Fatalf("cuts %d,%d: %v %v, unsplit %v %v", c1, c2, split, serr, whole, werr)
		}
		if werr != nil && closeCode(werr) == 0 {
			t.Fatalf("error %v is not a *wsframe.CloseError", werr)
		}
		ref, code, headers := refFrames(data, allowText, uint64(maxPayload))
		if closeCode(werr) != code || !sameTranscript(whole, &ref) {
			t.Fatalf("decoder %v (%v), reference %v (close %d)", whole, werr, &ref, code)
		}
		for _, hp := range headers {
			in := data[hp[0] : hp[0]+hp[1]]
			h, n, err := wsframe.DecodeHeader(in)
			if err != nil || n != len(in) {
				t.Fatalf("DecodeHeader(% x) = %d, %v", in, n, err)
			}
			gh, gerr := ws.ReadHeader(bytes.NewReader(in))
			if gerr != nil || gh != h {
				t.Fatalf("DecodeHeader %+v, gobwas %+v %v", h, gh, gerr)
			}
			var out [wsframe.MaxHeaderSize]byte
			if m := wsframe.PutHeader(out[:], h); !bytes.Equal(out[:m], in) || m != wsframe.HeaderSize(h) {
				t.Fatalf("header % x re-encodes to % x", in, out[:m])
			}
		}
	})
}
