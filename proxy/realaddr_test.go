package proxy

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

func v2Header(t testing.TB, src, dst string) []byte {
	s, _ := net.ResolveTCPAddr("tcp", src)
	d, _ := net.ResolveTCPAddr("tcp", dst)
	b, err := proxyproto.HeaderProxyFromAddrs(2, s, d).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProxyHeaderLen(t *testing.T) {
	v1 := []byte("PROXY TCP4 203.0.113.7 127.0.0.1 50000 6080\r\n")
	v2 := v2Header(t, "203.0.113.7:50000", "127.0.0.1:6080")
	get := []byte("GET / HTTP/1.1\r\n")
	for _, full := range [][]byte{v1, v2} {
		for i := range len(full) { // every prefix: wait for more
			if n, err := proxyHeaderLen(full[:i]); n != 0 || err != nil {
				t.Errorf("%q[:%d]: %d %v, want 0 nil", full, i, n, err)
			}
		}
		withReq := append(append([]byte(nil), full...), get...)
		if n, err := proxyHeaderLen(withReq); n != len(full) || err != nil {
			t.Errorf("%q + request: %d %v, want %d", full, n, err, len(full))
		}
		addr, err := parseProxyHeader(full)
		if err != nil || addr.String() != "203.0.113.7:50000" {
			t.Errorf("parse %q: %v %v", full, addr, err)
		}
	}
	for _, bad := range [][]byte{get, []byte("PROXX"), []byte("\r\n\r\nX"), append([]byte("PROXY "), bytes.Repeat([]byte("1"), 200)...)} {
		if _, err := proxyHeaderLen(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	big := append([]byte(nil), v2[:16]...)
	big[14], big[15] = 0xff, 0xff
	if _, err := proxyHeaderLen(big); err != errProxyHeaderBig {
		t.Errorf("v2 of 64 KiB: %v", err)
	}
	local, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	if addr, err := parseProxyHeader(local); addr != nil || err != nil {
		t.Errorf("LOCAL: %v %v, want nil nil (the socket's address stands)", addr, err)
	}
	// The TLS path reads the same header from a stream, leaving what follows.
	br := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), v1...), "\x16\x03\x01"...)))
	if addr, err := readProxyHeader(br); err != nil || addr.String() != "203.0.113.7:50000" {
		t.Errorf("readProxyHeader: %v %v", addr, err)
	}
	if rest, _ := br.Peek(3); string(rest) != "\x16\x03\x01" {
		t.Errorf("after the header: %q", rest)
	}
}

func TestForwardedFor(t *testing.T) {
	trusted, err := ParsePrefixes("127.0.0.1, 10.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ peer, xff, fwd, want string }{
		{"127.0.0.1", "203.0.113.7", "", "203.0.113.7"},
		{"127.0.0.1", "198.51.100.1, 203.0.113.7", "", "203.0.113.7"},           // rightmost untrusted
		{"127.0.0.1", "198.51.100.1, 203.0.113.7, 10.1.2.3", "", "203.0.113.7"}, // skip trusted hops
		{"127.0.0.1", "10.1.2.3", "", "10.1.2.3"},                               // all trusted: the leftmost
		{"192.0.2.9", "203.0.113.7", "", ""},                                    // untrusted peer: ignored
		{"127.0.0.1", "", `for=203.0.113.7;proto=https`, "203.0.113.7"},
		{"127.0.0.1", "", `for="[2001:db8::1]:4711", for=10.0.0.2`, "2001:db8::1"},
		{"127.0.0.1", "bogus", "", ""},
		{"127.0.0.1", "", `for=_hidden`, ""},
		{"::1", "::ffff:203.0.113.7", "", "203.0.113.7"},
		{"127.0.0.1", "", "", ""},
	}
	for _, c := range cases {
		if got := forwardedFor(c.peer, c.xff, c.fwd, trusted); got != c.want {
			t.Errorf("peer %s xff %q fwd %q: %q, want %q", c.peer, c.xff, c.fwd, got, c.want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
}

// FuzzProxyHeader: the length finder never panics, never claims more than
// it was given or more than the cap, and what it measures parses.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 50000 6080\r\nGET"))
	f.Add(v2Header(f, "203.0.113.7:50000", "127.0.0.1:6080"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := proxyHeaderLen(b)
		if err != nil {
			return
		}
		if n > len(b) || n > maxProxyHeader {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if n > 0 {
			_, _ = parseProxyHeader(b[:n])
		}
	})
}
