package tracing

import (
	"fmt"
	"strings"
	"testing"
)

func TestCloseReasonLabel(t *testing.T) {
	for in, want := range map[string]CloseReason{
		"":                                     ReasonUnknown,
		"viewer-closed":                        ReasonViewerClosed,
		"slow-consumer":                        ReasonSlowConsumer,
		"upstream-idle":                        ReasonUpstreamIdle,
		"record-failed":                        ReasonRecordFailed,
		"liveness-unverified":                  ReasonLivenessUnverified,
		"proxy-protocol":                       ReasonProxyProtocol,
		"http-Too Many Requests":               "http-Too Many Requests",
		"http-Whatever":                        ReasonOther,
		"unknown client message type 77":       ReasonRFBUnknownMessage,
		"unknown QEMU message subtype 9":       ReasonRFBUnknownMessage,
		"security type 19 cannot be inspected": ReasonRFBSecurityType,
		"ClientCutText length over limit: 99999999": ReasonRFBCutTextLimit,
		"client frame not masked":                   ReasonViewerProtocol,
		"token=abc":                                 ReasonOther,
		"upstream-closed ":                          ReasonOther,
	} {
		if got := CloseReasonLabel(in); got != want {
			t.Errorf("CloseReasonLabel(%q) = %q, want %q", in, got, want)
		}
	}
	if DropReasonLabel("shortcut") != "shortcut" || DropReasonLabel("x y") != "other" {
		t.Error("drop reason labels")
	}
}

// TestCloseReasonsPeerChosen: reasons a peer picks (message types, security
// types, free text) never become series, and real reasons keep their own
// label after a flood of them (issue 13: 64 values such as "unknown client
// message type N" pushed every later real reason into "other").
func TestCloseReasonsPeerChosen(t *testing.T) {
	p, _ := newTestProvider(t, false)
	for i := range 300 {
		p.EndSession(nil, SessionSummary{CloseReason: fmt.Sprintf("unknown client message type %d", i)})
		p.EndSession(nil, SessionSummary{CloseReason: fmt.Sprintf("security type %d cannot be inspected", i)})
		p.EndSession(nil, SessionSummary{CloseReason: "r" + strings.Repeat("x", i%100)})
	}
	p.EndSession(nil, SessionSummary{CloseReason: "slow-consumer"})
	text := scrape(t, p)
	for _, want := range []string{
		`vncedge_sessions_total{close_reason="rfb-unknown-message"} 300`,
		`vncedge_sessions_total{close_reason="rfb-security-type"} 300`,
		`vncedge_sessions_total{close_reason="other"} 300`,
		`vncedge_sessions_total{close_reason="slow-consumer"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if n := strings.Count(text, "vncedge_sessions_total{"); n != 4 {
		t.Errorf("%d close_reason series, want 4", n)
	}
}
