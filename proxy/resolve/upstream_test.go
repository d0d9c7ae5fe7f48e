package resolve

import (
	"errors"
	"strings"
	"testing"
)

func TestUpstreamFromBrowserAddress(t *testing.T) {
	tests := []struct {
		name, addr, vncURL string
		port               int
		apiKey             string
		want               string
		wantKey            string // x-api-key header expected
	}{
		{name: "explicit vnc_url wins", addr: "wss://edge.example/s1/t1/devtools/browser/b", vncURL: "ws://10.1.2.3:6900/websockify", want: "ws://10.1.2.3:6900/websockify"},
		{name: "explicit tcp vnc_url", addr: "10.0.0.1", vncURL: "tcp://10.0.0.9:5900", want: "tcp://10.0.0.9:5900"},
		{name: "explicit wss vnc_url gets key", vncURL: "wss://edge.example/vnc/s1", apiKey: "k", want: "wss://edge.example/vnc/s1", wantKey: "k"},
		{name: "loopback localhost", addr: "http://localhost:9222", want: "ws://localhost:6080"},
		{name: "loopback 127", addr: "ws://127.0.0.1:9222/devtools/browser/abc", want: "ws://127.0.0.1:6080"},
		{name: "loopback ipv6", addr: "http://[::1]:9222", want: "ws://[::1]:6080"},
		{name: "loopback custom port", addr: "http://localhost:9222", port: 6999, want: "ws://localhost:6999"},
		{name: "loopback wins over routed", addr: "wss://localhost/s1/t1/devtools/browser/b", apiKey: "k", want: "ws://localhost:6080"},
		{name: "routed", addr: "wss://edge.example/s1/t1/devtools/browser/b", apiKey: "k", want: "wss://edge.example/vnc/s1/t1", wantKey: "k"},
		{name: "routed with port", addr: "wss://edge.example:8443/s1/t1/devtools/browser/b", want: "wss://edge.example:8443/vnc/s1/t1"},
		{name: "routed ws keeps scheme, no key", addr: "ws://edge.example/s1/t1/devtools/page/p", apiKey: "k", want: "ws://edge.example/vnc/s1/t1"},
		{name: "legacy routed", addr: "wss://edge.example/s1?token=abc&x=1", apiKey: "k", want: "wss://edge.example/vnc/s1?token=abc&x=1", wantKey: "k"},
		{name: "legacy without token is a hostname", addr: "wss://edge.example/s1", want: "ws://edge.example:6080"},
		{name: "ip", addr: "10.0.0.5", want: "ws://10.0.0.5:6080"},
		{name: "ip with port", addr: "10.0.0.5:9222", want: "ws://10.0.0.5:6080"},
		{name: "ipv6 with port", addr: "[2001:db8::5]:9222", want: "ws://[2001:db8::5]:6080"},
		{name: "ipv6 bare", addr: "2001:db8::5", want: "ws://[2001:db8::5]:6080"},
		{name: "ip in url", addr: "http://10.0.0.5:9222", want: "ws://10.0.0.5:6080"},
		{name: "hostname url", addr: "http://browser-7.internal:9222/json/version", want: "ws://browser-7.internal:6080"},
		{name: "bare hostname with port", addr: "browser-7:9222", want: "ws://browser-7:6080"},
		{name: "no key on ws", addr: "10.0.0.5", apiKey: "k", want: "ws://10.0.0.5:6080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, h, err := UpstreamFromBrowserAddress(tt.addr, tt.vncURL, tt.port, tt.apiKey)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if u.String() != tt.want {
				t.Errorf("upstream = %s, want %s", u, tt.want)
			}
			if h == nil {
				t.Fatal("nil header")
			}
			if got := h.Get("x-api-key"); got != tt.wantKey {
				t.Errorf("x-api-key = %q, want %q", got, tt.wantKey)
			}
			if tt.wantKey == "" && len(h) != 0 {
				t.Errorf("header = %v, want none", h)
			}
		})
	}
}

func TestUpstreamFromBrowserAddressErrors(t *testing.T) {
	if _, _, err := UpstreamFromBrowserAddress("", "", 0, ""); !errors.Is(err, ErrNoBrowserAddress) {
		t.Errorf("empty: err = %v, want ErrNoBrowserAddress", err)
	}
	for _, tt := range []struct{ addr, vncURL string }{
		{vncURL: "http://edge.example/vnc?token=SECRET"},
		{vncURL: "tcp://edge.example?token=SECRET"},
		{addr: "wss:///s1?token=SECRET"},
		{addr: "wss://edge.example/%zz?token=SECRET"},
	} {
		_, _, err := UpstreamFromBrowserAddress(tt.addr, tt.vncURL, 0, "")
		if err == nil {
			t.Errorf("%+v: no error", tt)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%+v: error quotes the token: %v", tt, err)
		}
	}
}
