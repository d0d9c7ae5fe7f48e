package proxy_test

import (
	"strings"
	"testing"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"pbs_123": true, "tsk-A.b": true, "...": true, strings.Repeat("a", proxy.MaxIDLength): true,
		"": false, ".": false, "..": false, "a/b": false, "a%2Fb": false, "a b": false, "ü": false,
		strings.Repeat("a", proxy.MaxIDLength+1): false,
	} {
		if got := proxy.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestParseStreamTargetRaw: the raw target decides: an encoded slash is not a
// separator, an encoded dot segment is still a dot segment.
func TestParseStreamTargetRaw(t *testing.T) {
	for target, want := range map[string]string{
		"/v1/stream/vnc/browser_session/pbs_1?x=1":   "vnc browser_session pbs_1",
		"/api/v1/stream/messages/task/tsk_%41":       "messages task tsk_A",
		"/v1/stream/vnc/browser_session/%2e%2e":      "",
		"/v1/stream/vnc/browser_session/..":          "",
		"/v1/stream/vnc/browser_session/a%2Fb":       "",
		"/v1/stream%2Fvnc/browser_session/pbs_1":     "",
		"/v1/stream/vnc/browser_session%2Fpbs_1":     "",
		"/v1/stream/vnc/browser_session/pbs_1/extra": "",
		"/v1/stream/vnc/browser_session/%zz":         "",
	} {
		raw, _, _ := strings.Cut(target, "?")
		r := &upgrade.Request{Target: target, Path: raw}
		ch, kind, id, ok := proxy.ParseStreamTarget(r)
		got := ""
		if ok {
			got = ch + " " + kind + " " + id
		}
		if got != want {
			t.Errorf("ParseStreamTarget(%q) = %q, want %q", target, got, want)
		}
	}
}
