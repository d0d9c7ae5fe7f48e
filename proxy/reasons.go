package proxy

import (
	"github.com/gobwas/ws"

	"vncedge/proxy/wsframe"
	"vncedge/tracing"
)

// endReason is why a session ended: a row of endReasons, which gives its
// close code, metric label and text. A session ends with s.end(reason), or
// s.endDetail(reason, detail) where the text comes from elsewhere (a parser
// error, the control plane); no call site pairs a code with a string.
type endReason uint8

// End reasons. Those below "not sent" are recorded as the session's close
// code and reason without a close frame of ours (setClose).
const (
	reasonUpstreamClosed       endReason = iota // the VNC server closed its side
	reasonUpstreamError                         // a read error on the upstream
	reasonUpstreamWriteFailed                   // a write to the upstream failed
	reasonUpstreamResumeFailed                  // the upstream could not be put back on the loop
	reasonUpstreamProtocol                      // a WebSocket upstream broke its framing
	reasonUpstreamIdle                          // the VNC server silent past UpstreamIdleTimeout
	reasonViewerWriteFailed                     // a write to the viewer failed (a close frame is still tried)
	reasonViewerInputLimit                      // viewer input held while paused over MaxPausedInput
	reasonSlowConsumer                          // bytes queued for the viewer over the limit
	reasonSlowUpstream                          // bytes queued for the upstream over MaxUpstreamBuffer
	reasonServerShutdown                        // the server drains
	reasonMaxDuration                           // MaxDuration passed
	reasonIdleTimeout                           // no viewer data for IdleTimeout
	reasonRecordFailed                          // a required recording failed
	reasonReplaced                              // the same client_id opened a new channel
	reasonTokenExpired                          // the route's token expired
	reasonSessionEnded                          // the control plane ended it (endDetail: Config.EndReason's text)
	reasonLivenessUnverified                    // no liveness check completed within the grace (endDetail likewise)
	reasonRFBPolicy                             // an rfbparse.Error (endDetail: its Reason, labelled by class)
	reasonViewerProtocol                        // a framing error of the viewer (endFrame: the CloseError's code and text)

	// Not sent.
	reasonViewerClosed    // the viewer sent a close frame: its code is recorded, not the row's
	reasonViewerGone      // the viewer vanished without a close frame
	reasonViewerWriteLost // the down pump's write to the viewer failed: no close frame can follow
	reasonPingTimeout     // a half-open viewer: two pings unanswered
	reasonEarlyDataLimit  // before the upgrade: the viewer sent too much while the upstream was dialled
	reasonUpgradeTimeout  // before the upgrade: no complete request within HandshakeTimeout
	reasonProxyProtocol   // before the upgrade: a bad PROXY protocol header
	numEndReasons         // the number of end reasons
)

// reasonRow is one end reason: the code and text of the close frame (and of
// the session's log line and span), and the close_reason metric label, which
// tracing derives from the text (tracing.CloseReasonLabel); TestEndReasons
// keeps the two in step.
type reasonRow struct {
	code  ws.StatusCode
	label tracing.CloseReason
	text  string
}

// endReasons is the one table of end reasons. A code of 0 is for a session
// that ends before the upgrade (no WebSocket, no close code) or whose code is
// the viewer's own.
var endReasons = [numEndReasons]reasonRow{
	reasonUpstreamClosed:       {ws.StatusNormalClosure, tracing.ReasonUpstreamClosed, "upstream-closed"},
	reasonUpstreamError:        {ws.StatusInternalServerError, tracing.ReasonUpstreamError, "upstream-error"},
	reasonUpstreamWriteFailed:  {ws.StatusInternalServerError, tracing.ReasonUpstreamWriteFailed, "upstream-write-failed"},
	reasonUpstreamResumeFailed: {ws.StatusInternalServerError, tracing.ReasonUpstreamResumeFailed, "upstream-resume-failed"},
	reasonUpstreamProtocol:     {ws.StatusInternalServerError, tracing.ReasonUpstreamProtocol, "upstream-protocol-error"},
	reasonUpstreamIdle:         {ws.StatusGoingAway, tracing.ReasonUpstreamIdle, "upstream-idle"},
	reasonViewerWriteFailed:    {ws.StatusInternalServerError, tracing.ReasonViewerWriteFailed, "viewer-write-failed"},
	reasonViewerInputLimit:     {ws.StatusPolicyViolation, tracing.ReasonViewerInputLimit, "viewer-input-limit"},
	reasonSlowConsumer:         {ws.StatusPolicyViolation, tracing.ReasonSlowConsumer, "slow-consumer"},
	reasonSlowUpstream:         {ws.StatusPolicyViolation, tracing.ReasonSlowUpstream, "slow-upstream"},
	reasonServerShutdown:       {ws.StatusGoingAway, tracing.ReasonServerShutdown, "server-shutdown"},
	reasonMaxDuration:          {ws.StatusNormalClosure, tracing.ReasonMaxDuration, "max-duration"},
	reasonIdleTimeout:          {ws.StatusNormalClosure, tracing.ReasonIdleTimeout, "idle-timeout"},
	reasonRecordFailed:         {ws.StatusInternalServerError, tracing.ReasonRecordFailed, "record-failed"},
	reasonReplaced:             {ws.StatusNormalClosure, tracing.ReasonReplaced, "replaced"},
	reasonTokenExpired:         {ws.StatusNormalClosure, tracing.ReasonTokenExpired, "token-expired"},
	reasonSessionEnded:         {ws.StatusNormalClosure, tracing.ReasonSessionEnded, "session-ended"},
	reasonLivenessUnverified:   {ws.StatusNormalClosure, tracing.ReasonLivenessUnverified, "liveness-unverified"},
	reasonRFBPolicy:            {ws.StatusPolicyViolation, tracing.ReasonRFBProtocol, "rfb-protocol-error"},
	reasonViewerProtocol:       {ws.StatusProtocolError, tracing.ReasonViewerProtocol, "viewer-protocol-error"},
	reasonViewerClosed:         {0, tracing.ReasonViewerClosed, "viewer-closed"},
	reasonViewerGone:           {ws.StatusAbnormalClosure, tracing.ReasonViewerGone, "viewer-gone"},
	reasonViewerWriteLost:      {ws.StatusAbnormalClosure, tracing.ReasonViewerWriteFailed, "viewer-write-failed"},
	reasonPingTimeout:          {ws.StatusGoingAway, tracing.ReasonPingTimeout, "ping-timeout"},
	reasonEarlyDataLimit:       {0, tracing.ReasonEarlyDataLimit, "early-data-limit"},
	reasonUpgradeTimeout:       {0, tracing.ReasonUpgradeTimeout, "upgrade-timeout"},
	reasonProxyProtocol:        {0, tracing.ReasonProxyProtocol, "proxy-protocol"},
}

// code is r's close code.
func (r endReason) code() ws.StatusCode { return endReasons[r].code }

// text is r's close frame and log text.
func (r endReason) text() string { return endReasons[r].text }

// end closes the session for r (endWith).
func (s *session) end(r endReason) { s.endWith(r.code(), r.text()) }

// endDetail closes the session with r's code and detail as its text: for
// reasons whose text comes from elsewhere (reasonRFBPolicy,
// reasonSessionEnded, reasonLivenessUnverified).
func (s *session) endDetail(r endReason, detail string) { s.endWith(r.code(), detail) }

// endFrame closes the session for a framing error of the viewer
// (reasonViewerProtocol), with the decoder's code and text.
func (s *session) endFrame(ce *wsframe.CloseError) { s.endWith(ce.Code, ce.Reason) }

// endAsync ends the session for r from any goroutine.
func (s *session) endAsync(r endReason) { s.endAsyncWith(r.code(), r.text()) }

// endAsyncDetail is endDetail from any goroutine.
func (s *session) endAsyncDetail(r endReason, detail string) { s.endAsyncWith(r.code(), detail) }

// setClose records r as the session's close code and reason, for an end
// that sends no close frame of ours.
func (s *session) setClose(r endReason) { s.closeCode, s.closeReason = r.code(), r.text() }
