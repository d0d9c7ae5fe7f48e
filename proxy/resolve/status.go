package resolve

import (
	"errors"
	"fmt"
	"strings"

	"vncedge/proxy"
)

// Errors a Verifier of this package returns once a session is over. All wrap
// proxy.ErrSessionEnded; [Reason] turns them into close reasons.
var (
	// ErrTokenExpired: the signed token the viewer connected with expired.
	ErrTokenExpired = fmt.Errorf("token expired: %w", proxy.ErrSessionEnded)
	// ErrControlPlaneUnreachable: the control plane failed for longer than
	// the grace period.
	ErrControlPlaneUnreachable = fmt.Errorf("control plane unreachable past grace: %w", proxy.ErrSessionEnded)
	// ErrSessionFinished: the control plane reports a final status, or no
	// longer knows the session, or no longer grants the credential access.
	ErrSessionFinished = fmt.Errorf("session finished: %w", proxy.ErrSessionEnded)
)

// Reason returns the WebSocket close reason for a Verifier's error:
// "token-expired", "control-plane-unreachable" or "session-ended" for errors
// wrapping proxy.ErrSessionEnded, and "" for any other error (the session
// goes on).
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTokenExpired):
		return "token-expired"
	case errors.Is(err, ErrControlPlaneUnreachable), errors.Is(err, proxy.ErrLivenessUnverified):
		return "control-plane-unreachable"
	case errors.Is(err, proxy.ErrSessionEnded):
		return "session-ended"
	}
	return ""
}

// Statuses of the reference platform.
var (
	finalBrowserSession = map[string]bool{"completed": true, "failed": true, "timeout": true}
	liveTask            = map[string]bool{"created": true, "queued": true, "running": true}
	liveWorkflowRun     = map[string]bool{"created": true, "queued": true, "running": true, "paused": true}
)

// Live reports whether a platform session of kind (browser_session, task or
// workflow_run) with the given status is live. A browser session is live
// unless its status is final (completed, failed, timeout); a task is live
// while created, queued or running; a workflow run also while paused. Status
// is matched without regard to case.
func Live(kind, status string) bool {
	status = strings.ToLower(strings.TrimSpace(status))
	switch kind {
	case "browser_session":
		return !finalBrowserSession[status]
	case "task":
		return liveTask[status]
	case "workflow_run":
		return liveWorkflowRun[status]
	}
	return false
}

var (
	_ proxy.Resolver = (*TokenResolver)(nil)
	_ proxy.Verifier = (*TokenResolver)(nil)
	_ proxy.Resolver = (*HTTPResolver)(nil)
	_ proxy.Verifier = (*HTTPResolver)(nil)
)
