// flow_pause.go is the gnet path's backpressure: while the viewer's outbound is
// over ViewerHighWater the upstream conn is taken off the loop (upstreamTraffic,
// relay_down.go) with its socket kept open by pausedFD, so the kernel window
// closes on the VNC server. A timer with a growing delay (armResume) runs
// resumeCheck on the loop, which enrolls the socket again below ViewerLowWater;
// unpause releases the socket when the session ends.

package proxy

import (
	"context"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// flowPause is the gnet path's backpressure state: while paused the upstream
// conn is off the loop and its socket kept open by pausedFD.
type flowPause struct {
	paused, pauseReq bool
	pausedFD         int
	resumeTimer      *time.Timer
	resumeDelay      time.Duration
	resumeBackoff    bool   // resumeDelay is growing: set while paused
	pauses           uint64 // times the upstream was paused for a slow viewer
}

// armResume schedules a check of the viewer's outbound from a timer; the check
// itself runs on the loop.
//
// The delay starts short (a viewer on a fast link drains a watermark's worth
// in well under a millisecond) and doubles while the viewer stays behind, so
// a slow viewer costs few checks: gnet has no drain callback to wait on.
func (s *session) armResume() {
	const first, most = 200 * time.Microsecond, 8 * time.Millisecond
	if !s.resumeBackoff {
		s.resumeDelay, s.resumeBackoff = first, true
	} else {
		s.resumeDelay = min(2*s.resumeDelay, most)
	}
	if s.resumeTimer == nil {
		s.resumeTimer = time.AfterFunc(s.resumeDelay, func() {
			_ = s.viewer.EventLoop().Execute(context.Background(), (*resumeCheck)(s))
		})
		return
	}
	s.resumeTimer.Reset(s.resumeDelay)
}

// resumeCheck enrolls the paused upstream again once the viewer has drained.
type resumeCheck session

func (r *resumeCheck) Run(context.Context) error {
	s := (*session)(r)
	if !s.paused || s.state != stRelay {
		return nil
	}
	if s.viewer.OutboundBuffered() > s.srv.cfg.ViewerLowWater {
		s.armResume()
		return nil
	}
	f := os.NewFile(uintptr(s.pausedFD), "vncedge-upstream")
	conn, err := net.FileConn(f)
	f.Close()
	s.pausedFD = -1
	s.srv.conns.Add(-1) // the paused socket; conn is counted again in OnOpen
	if err != nil {
		s.end(reasonUpstreamResumeFailed)
		return nil
	}
	up := &upstreamConn{s: s, route: s.route, resumed: true}
	if _, err := s.viewer.EventLoop().Enroll(gnet.NewContext(context.Background(), up), conn); err != nil {
		conn.Close()
		s.end(reasonUpstreamResumeFailed)
	}
	return nil
}

// unpause releases a paused upstream socket when the session ends.
func (s *session) unpause() {
	if s.paused && s.pausedFD >= 0 {
		_ = syscall.Close(s.pausedFD)
		s.srv.conns.Add(-1) // the paused socket was still counted (OnClose)
	}
	s.paused, s.pausedFD = false, -1
	if s.resumeTimer != nil {
		s.resumeTimer.Stop()
	}
}
