package wsframe

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// readClose parses a close frame with gobwas and returns its unmasked payload.
func readClose(t *testing.T, b []byte, masked bool) []byte {
	t.Helper()
	r := bytes.NewReader(b)
	f, err := ws.ReadFrame(r)
	if err != nil {
		t.Fatalf("ws.ReadFrame(% x): %v", b, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes after the frame", r.Len())
	}
	if !f.Header.Fin || f.Header.OpCode != ws.OpClose || f.Header.Rsv != 0 || f.Header.Masked != masked {
		t.Fatalf("header %+v", f.Header)
	}
	if masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	return f.Payload
}

func TestAppendClose(t *testing.T) {
	mask := [4]byte{9, 8, 7, 6}
	long := strings.Repeat("a", 200)
	runes := strings.Repeat("é", 100) // 2 bytes each
	for _, tc := range []struct {
		code   ws.StatusCode
		reason string
		want   string // reason after truncation
	}{
		{ws.StatusNormalClosure, "", ""},
		{ws.StatusProtocolError, "bad frame", "bad frame"},
		{ws.StatusGoingAway, long[:123], long[:123]},
		{ws.StatusGoingAway, long[:124], long[:123]},
		{ws.StatusGoingAway, long, long[:123]},
		{ws.StatusPolicyViolation, runes, runes[:122]},
		{ws.StatusPolicyViolation, "a" + runes, "a" + runes[:122]},
		{ws.StatusPolicyViolation, "ab" + strings.Repeat("€", 50), "ab" + strings.Repeat("€", 40)},
	} {
		for _, m := range []*[4]byte{nil, &mask} {
			prefix := []byte("xyz")
			out := AppendClose(prefix, tc.code, tc.reason, m)
			if string(out[:3]) != "xyz" {
				t.Fatalf("prefix overwritten: %q", out[:3])
			}
			p := readClose(t, out[3:], m != nil)
			if len(p) > MaxControlPayload {
				t.Errorf("payload %d bytes", len(p))
			}
			code, reason := ws.ParseCloseFrameData(p)
			if code != tc.code || reason != tc.want {
				t.Errorf("AppendClose(%d, %q, masked %v) carries %d, %q; want %d, %q", tc.code, tc.reason, m != nil, code, reason, tc.code, tc.want)
			}
			if !utf8.ValidString(reason) {
				t.Errorf("reason %q not UTF-8", reason)
			}
		}
	}
}

func TestAppendCloseNoCode(t *testing.T) {
	if got := AppendClose(nil, 0, "ignored", nil); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Errorf("AppendClose(0) = % x, want 88 00", got)
	}
	mask := [4]byte{1, 2, 3, 4}
	if got := AppendClose(nil, 0, "", &mask); !bytes.Equal(got, []byte{0x88, 0x80, 1, 2, 3, 4}) {
		t.Errorf("AppendClose(0, masked) = % x", got)
	}
}

// TestAppendCloseDecodes feeds AppendClose's frames to a Decoder of the
// matching role: they must pass its checks.
func TestAppendCloseDecodes(t *testing.T) {
	mask := [4]byte{0xde, 0xad, 0xbe, 0xef}
	for _, role := range []Role{Server, Client} {
		var m *[4]byte
		if role == Server {
			m = &mask
		}
		var rec recorder
		d := Decoder{Role: role}
		frame := AppendClose(nil, ws.StatusMessageTooBig, strings.Repeat("ü", 80), m)
		if err := d.Feed(frame, &rec); err != nil {
			t.Fatalf("role %d: %v", role, err)
		}
		if len(rec.events) != 1 || rec.events[0].op != ws.OpClose {
			t.Fatalf("role %d: events %v", role, rec.events)
		}
		code, reason := ws.ParseCloseFrameData(rec.events[0].data)
		if code != ws.StatusMessageTooBig || reason != strings.Repeat("ü", 61) {
			t.Errorf("role %d: got %d %q", role, code, reason)
		}
	}
}

func TestAppendCloseNoAllocs(t *testing.T) {
	var buf [MaxHeaderSize + MaxControlPayload]byte
	mask := [4]byte{1, 2, 3, 4}
	reason := strings.Repeat("r", 300)
	allocs := testing.AllocsPerRun(100, func() {
		_ = AppendClose(buf[:0], ws.StatusGoingAway, reason, &mask)
		_ = AppendClose(buf[:0], ws.StatusGoingAway, reason, nil)
	})
	if allocs != 0 {
		t.Errorf("AppendClose: %v allocs, want 0", allocs)
	}
}

func TestCloseErrorMessage(t *testing.T) {
	e := &CloseError{Code: ws.StatusMessageTooBig, Reason: "too big"}
	if got := e.Error(); got != "wsframe: 1009 too big" {
		t.Errorf("Error() = %q", got)
	}
}
