package record

import (
	"encoding/binary"
	"strconv"
	"time"
)

// inputFilter follows the viewer's byte stream in the writer goroutine (off
// the loop): it keeps the client's ProtocolVersion and security choice (never
// its VNC auth response), then splits messages and keeps those the input
// mode allows. Message lengths as in notes/FACTS.md.
type inputFilter struct {
	mode InputMode
	srv  [16]byte // the server's first bytes: ProtocolVersion, 3.3 security type
	srvN int

	phase   uint8
	hs      [13]byte // client version and choice
	hsN     int
	secType uint32
	authN   int

	msg  []byte // prefix, then the whole of a kept message
	want int    // total length of the kept message being collected
	skip int64  // bytes of a message not kept still to come
	ext  bool   // ExtendedMouseButtons (-316) in the client's SetEncodings
}

const (
	inVersion = iota
	inChoice
	inAuth
	inInit
	inMessages
	inDead
)

// server sees the server's bytes (only the first 16 matter).
func (f *inputFilter) server(p []byte) {
	if f.srvN < len(f.srv) {
		f.srvN += copy(f.srv[f.srvN:], p)
	}
}

// minor is the negotiated minor version: 3, 7 or 8.
func (f *inputFilter) minor() int {
	v := min(versionMinor(f.hs[:12]), versionMinor(f.srv[:12]))
	if f.srvN < 12 {
		v = versionMinor(f.hs[:12])
	}
	return v
}

func versionMinor(b []byte) int {
	m, err := strconv.Atoi(string(b[8:11]))
	switch {
	case err != nil || m < 7:
		return 3
	case m == 7:
		return 7
	}
	return 8
}

func (f *inputFilter) feed(out []byte, t time.Duration, p []byte) []byte {
	for len(p) > 0 {
		switch f.phase {
		case inVersion:
			k := copy(f.hs[f.hsN:12], p)
			f.hsN += k
			p = p[k:]
			if f.hsN == 12 {
				f.phase = inChoice
				if f.minor() == 3 {
					f.secType = 0
					if f.srvN >= 16 {
						f.secType = binary.BigEndian.Uint32(f.srv[12:16])
					}
					f.afterChoice()
				}
			}
		case inChoice:
			f.hs[12] = p[0]
			f.hsN = 13
			p = p[1:]
			f.secType = uint32(f.hs[12])
			f.afterChoice()
		case inAuth:
			k := min(f.authN, len(p))
			f.authN -= k
			p = p[k:] // never recorded
			if f.authN == 0 {
				f.phase = inInit
			}
		case inInit:
			p = p[1:]
			f.phase = inMessages
			out = appendRecord(out, TypeHandshake, t, f.hs[:f.hsN])
		case inMessages:
			p, out = f.message(out, t, p)
		default:
			return out
		}
	}
	return out
}

func (f *inputFilter) afterChoice() {
	switch f.secType {
	case 1:
		f.phase = inInit
	case 2:
		f.phase, f.authN = inAuth, 16
	default: // not inspectable: record no input
		f.phase = inDead
	}
}

// message consumes bytes of the message stream.
func (f *inputFilter) message(out []byte, t time.Duration, p []byte) ([]byte, []byte) {
	if f.skip > 0 {
		k := min(f.skip, int64(len(p)))
		f.skip -= k
		return p[k:], out
	}
	if f.want > 0 {
		k := min(f.want-len(f.msg), len(p))
		f.msg = append(f.msg, p[:k]...)
		if len(f.msg) == f.want {
			out = f.emit(out, t)
		}
		return p[k:], out
	}
	f.msg = append(f.msg, p[0])
	p = p[1:]
	total, need, ok := msgLen(f.msg, f.ext)
	if !ok {
		f.phase = inDead
		return nil, appendNote(out, t, noteBytes(NoteInputSkipped, 0, "message type "+strconv.Itoa(int(f.msg[0]))))
	}
	if len(f.msg) < need {
		return p, out
	}
	typ := f.msg[0]
	if typ == 6 {
		kind := "" // plain text; "extended": the extended-clipboard protocol (caps, notify, provide)
		if int32(binary.BigEndian.Uint32(f.msg[4:8])) < 0 {
			kind = "extended"
		}
		out = appendNote(out, t, noteBytes(NoteClipboard, uint64(total-8), kind))
	}
	if f.keep(typ) {
		f.want = int(total)
		if len(f.msg) == f.want {
			out = f.emit(out, t)
		}
		return p, out
	}
	f.skip = total - int64(len(f.msg))
	f.msg = f.msg[:0]
	return p, out
}

func (f *inputFilter) keep(typ byte) bool {
	switch typ {
	case 0, 2: // SetPixelFormat, SetEncodings: replay needs them
		return true
	case 5:
		return f.mode != InputNone
	case 4:
		return f.mode == InputAll
	case 255:
		return f.mode == InputAll && f.msg[1] == 0
	}
	return false
}

func (f *inputFilter) emit(out []byte, t time.Duration) []byte {
	m := f.msg
	if m[0] == 2 {
		for i := 4; i+4 <= len(m); i += 4 {
			if int32(binary.BigEndian.Uint32(m[i:])) == -316 {
				f.ext = true
			}
		}
	}
	out = appendRecord(out, TypeInput, t, m)
	f.msg, f.want = f.msg[:0], 0
	return out
}

// msgLen gives a client message's total length once need bytes of it are
// known (ok false: unknown type).
func msgLen(b []byte, ext bool) (total int64, need int, ok bool) {
	switch b[0] {
	case 0:
		return 20, 1, true
	case 2:
		if len(b) < 4 {
			return 0, 4, true
		}
		return 4 + 4*int64(binary.BigEndian.Uint16(b[2:4])), 4, true
	case 3, 150:
		return 10, 1, true
	case 4:
		return 8, 1, true
	case 5:
		if len(b) < 2 {
			return 0, 2, true
		}
		if ext && b[1]&0x80 != 0 {
			return 7, 2, true
		}
		return 6, 2, true
	case 6:
		if len(b) < 8 {
			return 0, 8, true
		}
		n := int64(int32(binary.BigEndian.Uint32(b[4:8])))
		if n < 0 {
			n = -n
		}
		return 8 + n, 8, true
	case 248:
		if len(b) < 9 {
			return 0, 9, true
		}
		return 9 + int64(b[8]), 9, true
	case 250:
		return 4, 1, true
	case 251:
		if len(b) < 7 {
			return 0, 7, true
		}
		return 8 + 16*int64(b[6]), 7, true
	case 253:
		if len(b) < 4 {
			return 0, 4, true
		}
		if b[1]&0x80 != 0 {
			return 4 + int64(binary.BigEndian.Uint16(b[2:4])), 4, true
		}
		return 4 + int64(binary.LittleEndian.Uint16(b[2:4])), 4, true
	case 255:
		if len(b) < 2 {
			return 0, 2, true
		}
		switch b[1] {
		case 0:
			return 12, 2, true
		case 1:
			if len(b) < 4 {
				return 0, 4, true
			}
			if binary.BigEndian.Uint16(b[2:4]) == 2 {
				return 10, 4, true
			}
			return 4, 4, true
		}
	}
	return 0, 0, false
}
