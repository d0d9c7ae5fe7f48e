// flow_pause.go is the gnet path's backpressure, with no timer: while the
// viewer's outbound is over ViewerHighWater the upstream conn is taken off the
// loop (pause, from upstreamTraffic in relay_down.go) with its socket kept open
// by pausedFD, so the kernel window closes on the VNC server. A drainWaiter
// goroutine waits in Go's netpoller for the viewer socket's next writability
// edge and wakes the loop (the viewer conn's Wake: viewerTraffic runs
// resumeCheck), which flushes gnet's outbound itself and enrolls the upstream
// again below ViewerLowWater; unpause releases both when the session ends.
//
// Why the loop flushes: gnet has no drain callback, and an edge only says the
// socket took bytes, not that gnet's buffer emptied. resumeCheck writes the
// outbound until it is under the low watermark or the socket refuses (EAGAIN),
// and a refused write guarantees the socket another writability edge.

package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// flowPause is the gnet path's backpressure state: while paused the upstream
// conn is off the loop and its socket kept open by pausedFD.
type flowPause struct {
	paused, pauseReq bool
	pausedFD         int
	drain            *drainWaiter // created at the first pause, kept until the session ends
	pauses           uint64       // times the upstream was paused for a slow viewer
}

// pause takes the upstream conn c off the loop, keeping its socket, and
// reports whether it did (the caller then closes gnet's conn). It does not
// while gnet holds bytes for the upstream: they would be lost with the conn.
func (s *session) pause(c gnet.Conn) bool {
	if c.OutboundBuffered() != 0 {
		return false
	}
	if s.drain == nil {
		w, err := newDrainWaiter(s.viewer)
		if err != nil {
			s.srv.cfg.Logger.Debug("no drain waiter: not pausing", "err", err)
			return false // the outbound cap still bounds the viewer
		}
		s.drain = w // its dup is of a socket already counted in conns (as is the pump's)
	}
	fd, err := c.Dup()
	if err != nil {
		return false
	}
	s.paused, s.pausedFD, s.up = true, fd, nil
	s.pauses++
	s.drain.kick()
	return true
}

// resumeCheck runs on the loop while paused (viewerTraffic: the waiter's Wake,
// or viewer bytes): it flushes the viewer's outbound and, once that is under
// ViewerLowWater, enrolls the upstream socket again.
func (s *session) resumeCheck() {
	if s.pausedFD < 0 {
		return // enrolled again, waiting for its OnOpen (upstreamOpen)
	}
	for ob := s.viewer.OutboundBuffered(); ob > s.srv.cfg.ViewerLowWater; {
		_ = s.viewer.Flush() // one write; a failed one closes the conn (finish)
		if !s.paused || s.state != stRelay {
			return
		}
		n := s.viewer.OutboundBuffered()
		if n >= ob {
			s.drain.kick() // the socket is full: its next writability edge wakes us
			return
		}
		ob = n
	}
	f := os.NewFile(uintptr(s.pausedFD), "vncedge-upstream")
	conn, err := net.FileConn(f)
	f.Close()
	s.pausedFD = -1
	s.srv.conns.Add(-1) // the paused socket; conn is counted again in OnOpen
	if err != nil {
		s.end(reasonUpstreamResumeFailed)
		return
	}
	up := &upstreamConn{s: s, route: s.route, resumed: true}
	if _, err := s.viewer.EventLoop().Enroll(gnet.NewContext(context.Background(), up), conn); err != nil {
		conn.Close()
		s.end(reasonUpstreamResumeFailed)
	}
}

// unpause releases a paused upstream socket and the drain waiter when the
// session ends.
func (s *session) unpause() {
	if s.paused && s.pausedFD >= 0 {
		_ = syscall.Close(s.pausedFD)
		s.srv.conns.Add(-1) // the paused socket was still counted (OnClose)
	}
	s.paused, s.pausedFD = false, -1
	if s.drain != nil {
		s.drain.close()
		s.drain = nil
	}
}

// drainWaiter wakes a paused session's loop when the viewer's socket may take
// bytes again. Its goroutine waits, when kicked, for a writability edge of a
// dup of the socket in Go's netpoller, then calls the viewer conn's Wake,
// which gnet allows from any goroutine. It reads no session field.
type drainWaiter struct {
	viewer gnet.Conn
	conn   net.Conn // the dup
	rc     syscall.RawConn
	kicks  chan struct{}
	quit   chan struct{}
}

func newDrainWaiter(viewer gnet.Conn) (*drainWaiter, error) {
	fd, err := viewer.Dup()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "vncedge-viewer-drain")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		conn.Close()
		return nil, errors.New("viewer socket has no raw conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &drainWaiter{viewer: viewer, conn: conn, rc: rc, kicks: make(chan struct{}, 1), quit: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *drainWaiter) run() {
	for {
		select {
		case <-w.kicks:
		case <-w.quit:
			return
		}
		waited := false
		err := w.rc.Write(func(fd uintptr) bool {
			if waited {
				return true
			}
			waited = true
			// RawConn.Write has just reset the poll descriptor's readiness
			// (prepareWrite), dropping an edge the netpoller latched before this
			// wait: one that came after the loop's refused write but before
			// the kick reached us. The socket gives no other edge until the
			// next refused write, so look at it now; an edge from here on is
			// latched for the wait.
			return writableNow(fd)
		})
		if err != nil || w.viewer.Wake(nil) != nil {
			return // closed
		}
	}
}

// writableNow reports whether the socket fd takes bytes now (or has failed,
// which the loop's next write reports), without blocking.
func writableNow(fd uintptr) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && p[0].Revents&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP) != 0
	}
}

// kick asks for one wake-up at the viewer socket's next writability edge.
func (w *drainWaiter) kick() {
	select {
	case w.kicks <- struct{}{}:
	default:
	}
}

// close stops the goroutine, whether it waits for a kick or for an edge.
func (w *drainWaiter) close() {
	close(w.quit)
	_ = w.conn.Close()
}
