package proxy

import (
	"strings"
	"testing"
)

// TestRedactURLError: no userinfo part or query of the URL survives in the
// message, whatever the URL's state.
func TestRedactURLError(t *testing.T) {
	for _, raw := range []string{
		"wss://svc:S3CR3T@host:bad/x?token=T0KEN",
		"wsss://S3CR3T@h/",
		"http://u:S3CR3T@h:badport",
		"ws://h/?token=T0KEN#frag",
		"%zz://u:S3CR3T@h",
	} {
		_, err := ParseUpstream(raw)
		if err == nil {
			_, err = ParseUpstream(raw + "\x7f")
		}
		if err == nil {
			continue
		}
		msg := redactURLError(err, raw).Error()
		if strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "T0KEN") {
			t.Errorf("%s: %s", raw, msg)
		}
	}
}
