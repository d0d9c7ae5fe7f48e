package proxy

import (
	"errors"
	"net/url"
	"testing"
)

func TestParseUpstreamAllow(t *testing.T) {
	got, err := ParseUpstreamAllow(" 10.0.0.0/8, 192.0.2.7 ,vnc.example,*.browsers.example,, ::1 ")
	if err != nil || len(got) != 5 {
		t.Fatalf("ParseUpstreamAllow = %q, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "*.", "http://x", "a b", "user@host", "host:80"} {
		if _, err := ParseUpstreamAllow(bad); err == nil {
			t.Errorf("ParseUpstreamAllow(%q) accepted", bad)
		}
	}
}

// TestDestGuard: the allow list and the never-dialed addresses, by URL (before
// the dial) and by connected address (at connect time).
func TestDestGuard(t *testing.T) {
	g, err := newDestGuard([]string{"10.0.0.0/8", "vnc.example", "*.browsers.example"}, "0.0.0.0:6080", "127.0.0.1:6081")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		url  string
		deny bool
	}{
		{"ws://10.1.2.3:6080/", false},
		{"ws://11.1.2.3:6080/", true},
		{"ws://127.0.0.1:6080/", true}, // our listen port on every interface
		{"ws://127.0.0.2:6081/", true}, // our admin port on loopback
		{"tcp://[::1]:6080", true},
		{"ws://localhost:6081/", true},
		{"ws://vnc.example/", false},
		{"wss://b1.browsers.example/vnc/x", false},
		{"wss://browsers.example.evil/", false}, // a name: decided at connect time against the CIDRs
	} {
		u, _ := url.Parse(c.url)
		err := g.checkURL(u)
		if (err != nil) != c.deny {
			t.Errorf("checkURL(%s) = %v, want denied %v", c.url, err, c.deny)
		}
		if err != nil && !errors.Is(err, ErrDestinationDenied) {
			t.Errorf("checkURL(%s): %v does not wrap ErrDestinationDenied", c.url, err)
		}
	}
	for _, c := range []struct {
		host, addr string
		deny       bool
	}{
		{"browsers.example.evil", "203.0.113.9:443", true}, // not listed: its address must be allowed
		{"browsers.example.evil", "10.0.0.9:443", false},
		{"b1.browsers.example", "203.0.113.9:443", false}, // listed by name
		{"b1.browsers.example", "127.0.0.1:6081", true},   // a name resolving to our admin port
		{"vnc.example", "0.0.0.0:6080", true},
	} {
		err := g.control(c.host)("tcp", c.addr, nil)
		if (err != nil) != c.deny {
			t.Errorf("connect %s as %s: %v, want denied %v", c.addr, c.host, err, c.deny)
		}
	}
	open, _ := newDestGuard(nil, "127.0.0.1:6080")
	if err := open.control("x.example")("tcp", "203.0.113.9:80", nil); err != nil {
		t.Errorf("no allow list: %v", err)
	}
	if err := open.control("x.example")("tcp", "127.0.0.1:6080", nil); err == nil {
		t.Error("no allow list: our own listen address was allowed")
	}
}

func TestDialControl(t *testing.T) {
	ctl, err := DialControl("http://devtools.example:9222", []string{"10.0.0.0/8"}, "127.0.0.1:6081")
	if err != nil {
		t.Fatal(err)
	}
	for addr, deny := range map[string]bool{"10.2.3.4:9222": false, "192.0.2.9:9222": true, "127.0.0.1:6081": true} {
		if err := ctl("tcp", addr, nil); (err != nil) != deny {
			t.Errorf("DevTools dial to %s: %v, want denied %v", addr, err, deny)
		}
	}
	if _, err := DialControl("http://x", []string{"bad entry"}); err == nil {
		t.Error("a bad allow entry was accepted")
	}
}
