package tracing

import (
	"net/http"
	"strings"

	"vncedge/rfbparse"
)

// Metric labels come from fixed sets: a peer (viewer, VNC server, control
// plane) must not be able to mint label values. Close and drop reasons used
// as labels are the constants below; anything else is counted as
// ReasonOther, while the detailed reason stays in logs and span events.

// CloseReason is a session close reason as a metric label value.
type CloseReason string

// Close reasons (the vncedge_sessions_total close_reason label).
const (
	ReasonViewerClosed         CloseReason = "viewer-closed"
	ReasonViewerGone           CloseReason = "viewer-gone"
	ReasonUpstreamClosed       CloseReason = "upstream-closed"
	ReasonUpstreamError        CloseReason = "upstream-error"
	ReasonUpstreamProtocol     CloseReason = "upstream-protocol-error"
	ReasonUpstreamResumeFailed CloseReason = "upstream-resume-failed"
	ReasonUpstreamWriteFailed  CloseReason = "upstream-write-failed"
	ReasonViewerWriteFailed    CloseReason = "viewer-write-failed"
	ReasonSlowConsumer         CloseReason = "slow-consumer"
	ReasonSlowUpstream         CloseReason = "slow-upstream"
	ReasonViewerInputLimit     CloseReason = "viewer-input-limit"
	ReasonEarlyDataLimit       CloseReason = "early-data-limit"
	ReasonUpgradeTimeout       CloseReason = "upgrade-timeout"
	ReasonPingTimeout          CloseReason = "ping-timeout"
	ReasonIdleTimeout          CloseReason = "idle-timeout"
	ReasonMaxDuration          CloseReason = "max-duration"
	ReasonServerShutdown       CloseReason = "server-shutdown"
	ReasonReplaced             CloseReason = "replaced"
	ReasonTokenExpired         CloseReason = "token-expired"
	ReasonSessionEnded         CloseReason = "session-ended"
	ReasonControlPlaneGone     CloseReason = "control-plane-unreachable"
	ReasonLivenessUnverified   CloseReason = "liveness-unverified"   // no liveness check completed within the grace
	ReasonUpstreamIdle         CloseReason = "upstream-idle"         // the VNC server silent past its idle timeout
	ReasonRecordFailed         CloseReason = "record-failed"         // a required recording failed
	ReasonProxyProtocol        CloseReason = "proxy-protocol"        // a bad PROXY protocol header
	ReasonViewerProtocol       CloseReason = "viewer-protocol-error" // a WebSocket framing error of the viewer
	ReasonRFBProtocol          CloseReason = "rfb-protocol-error"    // malformed or out-of-turn RFB
	ReasonRFBUnknownMessage    CloseReason = "rfb-unknown-message"   // unknown client message type or subtype
	ReasonRFBSecurityType      CloseReason = "rfb-security-type"     // a security type that cannot be inspected
	ReasonRFBCutTextLimit      CloseReason = "rfb-cut-text-limit"    // ClientCutText over the limit
	ReasonUnknown              CloseReason = "unknown"               // no reason recorded
	ReasonOther                CloseReason = "other"                 // anything not in this set
	reasonHTTPPrefix                       = "http-"                 // + http.StatusText: a refused upgrade
	maxHTTPStatus                          = 600
)

var knownReasons = func() map[string]CloseReason {
	m := map[string]CloseReason{}
	for _, r := range []CloseReason{ReasonViewerClosed, ReasonViewerGone, ReasonUpstreamClosed, ReasonUpstreamError,
		ReasonUpstreamProtocol, ReasonUpstreamResumeFailed, ReasonUpstreamWriteFailed, ReasonViewerWriteFailed,
		ReasonSlowConsumer, ReasonSlowUpstream, ReasonViewerInputLimit, ReasonEarlyDataLimit, ReasonUpgradeTimeout,
		ReasonPingTimeout, ReasonIdleTimeout, ReasonMaxDuration, ReasonServerShutdown, ReasonReplaced,
		ReasonTokenExpired, ReasonSessionEnded, ReasonControlPlaneGone, ReasonLivenessUnverified, ReasonUpstreamIdle,
		ReasonRecordFailed, ReasonProxyProtocol, ReasonViewerProtocol, ReasonRFBProtocol,
		ReasonRFBUnknownMessage, ReasonRFBSecurityType, ReasonRFBCutTextLimit, ReasonUnknown, ReasonOther} {
		m[string(r)] = r
	}
	for code := 100; code < maxHTTPStatus; code++ { // the statuses Go names: a fixed set
		if t := http.StatusText(code); t != "" {
			m[reasonHTTPPrefix+t] = CloseReason(reasonHTTPPrefix + t)
		}
	}
	return m
}()

// reasonClasses map the detailed reasons of rfbparse and wsframe errors
// (which carry numbers a peer chooses, e.g. "unknown client message type
// 77", "security type 19 (VeNCrypt) cannot be inspected") to their class.
var reasonClasses = []struct {
	prefix string
	class  CloseReason
}{
	{"unknown client message type", ReasonRFBUnknownMessage},
	{"unknown QEMU", ReasonRFBUnknownMessage},
	{"security type ", ReasonRFBSecurityType},
	{"ClientCutText length over limit", ReasonRFBCutTextLimit},
	{"malformed ", ReasonRFBProtocol},
	{"client sent data out of turn", ReasonRFBProtocol},
	{"server sent data out of turn", ReasonRFBProtocol},
	{"client data after failed authentication", ReasonRFBProtocol},
	{"ClientFence payload", ReasonRFBProtocol},
	{"payload length", ReasonViewerProtocol},
	{"reserved ", ReasonViewerProtocol},
	{"client frame not masked", ReasonViewerProtocol},
	{"control frame payload", ReasonViewerProtocol},
	{"fragmented control frame", ReasonViewerProtocol},
	{"continuation frame", ReasonViewerProtocol},
	{"new data frame inside", ReasonViewerProtocol},
	{"text frames not supported", ReasonViewerProtocol},
	{"frame payload too big", ReasonViewerProtocol},
	{"close frame payload", ReasonViewerProtocol},
	{"invalid close code", ReasonViewerProtocol},
	{"close reason not valid", ReasonViewerProtocol},
}

// CloseReasonLabel maps a detailed close reason to its label: a known reason
// is itself, an RFB or framing error its class, "" is ReasonUnknown, and
// anything else ReasonOther.
func CloseReasonLabel(reason string) CloseReason {
	if reason == "" {
		return ReasonUnknown
	}
	if r, ok := knownReasons[reason]; ok {
		return r
	}
	for _, c := range reasonClasses {
		if strings.HasPrefix(reason, c.prefix) {
			return c.class
		}
	}
	return ReasonOther
}

// dropReasons are the drop reason labels: rfbparse's fixed enum.
var dropReasons = func() map[string]bool {
	m := map[string]bool{}
	for r := range rfbparse.NumDropReasons {
		m[r.String()] = true
	}
	return m
}()

// DropReasonLabel maps a drop reason to its label: one of rfbparse's drop
// reasons, else "other".
func DropReasonLabel(reason string) string {
	if dropReasons[reason] {
		return reason
	}
	return string(ReasonOther)
}
