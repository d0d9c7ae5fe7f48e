package wsframe

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// AppendClose appends a complete close frame with code and reason to dst and
// returns the extended slice. The reason is cut at a rune boundary so that
// the payload fits in 125 bytes. A zero code gives a close frame with no
// payload (the reason is then ignored). When mask is not nil the frame is
// masked with *mask, as a client must send it. AppendClose does not allocate
// when dst has room for 6+125 bytes (4 fewer when unmasked).
//
// AppendClose does not check code: 1005, 1006 and 1015 must not be sent.
func AppendClose(dst []byte, code ws.StatusCode, reason string, mask *[4]byte) []byte {
	var plen int
	if code != 0 {
		reason = truncateReason(reason, MaxControlPayload-2)
		plen = 2 + len(reason)
	}
	h := ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(plen)}
	if mask != nil {
		h.Masked, h.Mask = true, *mask
	}
	n := HeaderSize(h)
	off := len(dst)
	dst = slices.Grow(dst, n+plen)[:off+n+plen]
	PutHeader(dst[off:], h)
	if plen == 0 {
		return dst
	}
	p := dst[off+n:]
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	if mask != nil {
		ws.Cipher(p, *mask, 0)
	}
	return dst
}

// truncateReason returns the longest prefix of s of at most max bytes that
// does not end inside a UTF-8 sequence.
func truncateReason(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	// Back off over continuation bytes, at most utf8.UTFMax-1 of them.
	for j := 0; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	return s[:i]
}
