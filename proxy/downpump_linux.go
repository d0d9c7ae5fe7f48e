//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"vncedge/proxy/wsframe"
)

// spliceSupported: this platform has splice(2).
const spliceSupported = true

// ctlMax bounds the control frames the loop may queue for the pump's viewer
// socket at once: pongs beyond it are not sent (RFC 6455 §5.5.3 allows
// answering only the latest ping); room for a close frame is kept.
const ctlMax = 4 * (2 + 125)

// downPump moves the server stream of a raw-TCP upstream to the viewer
// without copying it through user space: splice(2) from the upstream socket
// into a pipe, the frame header written with MSG_MORE, then splice(2) from
// the pipe into the viewer socket; the header's length is what the first
// splice moved. It runs on its own goroutine and waits on Go's netpoller.
// Flow control is the pipe: while the viewer's socket is full the pump waits
// for it to drain and does not read the upstream, so TCP pushes back on the
// VNC server; nothing is buffered in user space and nothing is polled.
//
// Ownership (an exception to "the loop owns every session field", doc.go):
// from start to exit the pump owns the write side of the viewer socket (a
// dup of gnet's fd; gnet still reads it) and the read side of the upstream
// socket. The loop owns everything else and writes the upstream itself
// (writeUp). They share only the fields under mu and the atomics; the loop
// hands control frames (pings, pongs, the close) to the pump through queue,
// and the pump hands its ends back through Execute.
type downPump struct {
	s    *session // carried back in events; the pump never reads it
	loop gnet.EventLoop

	up   sockConn // the upstream socket; closed by the loop (closeUpstream)
	upRC syscall.RawConn
	upFD int      // the loop's non-blocking writes go here (writeUp)
	vw   sockConn // the viewer socket's write side (TCP, or a TLS viewer's bridge socketpair); closed by the pump
	vwRC syscall.RawConn
	pr   int // pipe read end; the pump's
	pw   int // pipe write end; the pump's
	size int // pipe capacity: the largest frame

	mu     sync.Mutex
	ctl    []byte // control frames queued by the loop (ctlBuf)
	ctlBuf [ctlMax]byte
	stop   bool          // after ctl, exit
	wake   chan struct{} // a kick for a pump with no upstream left to wait on

	bytes, frames atomic.Uint64 // payload moved to the viewer
	last          atomic.Int64  // unix ns of the last upstream read

	// The pump goroutine's own.
	hdr                     [wsframe.MaxHeaderSize]byte
	out                     [ctlMax]byte
	n                       int    // bytes in the pipe (fill), left to move (drain)
	sb                      []byte // left to send (send)
	sflags                  int
	serr                    error // a callback's system call error
	fillFn, drainFn, sendFn func(uintptr) bool

	// The loop's own: upstream bytes a short write left (writeUp).
	iov      [batchIOV + 1]unix.Iovec
	flushing int    // bytes a flusher goroutine is writing (0: none)
	next     []byte // bytes queued behind the flusher
	spare    []byte // a flushed buffer, reused
}

// minPipe is the smallest pipe worth splicing through.
const minPipe = 64 << 10

// errPumpViewer marks a failed write to the viewer.
var errPumpViewer = errors.New("viewer write failed")

// pastDeadline wakes a pump waiting on its upstream.
var pastDeadline = time.Unix(1, 0)

// newDownPump takes the upstream (upFD, dup'd from gnet) and a dup of the
// viewer's fd. It closes both fds on error.
func newDownPump(s *session, upFD, viewerFD, pipeSize int) (*downPump, error) {
	up, err := fileSock(upFD, "vncedge-upstream")
	if err != nil {
		_ = syscall.Close(viewerFD)
		return nil, err
	}
	if n := s.srv.cfg.ViewerNotSentLowat; n > 0 {
		// Not a TCP socket for a TLS viewer (its bridge's socketpair): no limit.
		_ = unix.SetsockoptInt(viewerFD, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}
	vw, err := fileSock(viewerFD, "vncedge-viewer")
	if err != nil {
		up.Close()
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		up.Close()
		vw.Close()
		return nil, err
	}
	size := unix.Getpagesize() * 16
	if pipeSize > 0 {
		// Unprivileged users past fs.pipe-user-pages-soft get EPERM: keep the default.
		if n, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize); err == nil {
			size = n
		} else if n, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0); err == nil {
			size = n
		}
	}
	if size < minPipe {
		// Past fs.pipe-user-pages-soft an unprivileged user's new pipes
		// get two pages: frames that small cost more than gnet's copy.
		unix.Close(p[0])
		unix.Close(p[1])
		up.Close()
		vw.Close()
		return nil, fmt.Errorf("pipe of %d bytes (fs.pipe-user-pages-soft reached?)", size)
	}
	d := &downPump{s: s, loop: s.viewer.EventLoop(), up: up, vw: vw, pr: p[0], pw: p[1], size: size, wake: make(chan struct{}, 1)}
	d.ctl = d.ctlBuf[:0]
	d.fillFn, d.drainFn, d.sendFn = d.fillOnce, d.drainOnce, d.sendOnce
	d.upRC, _ = up.SyscallConn()
	d.vwRC, _ = vw.SyscallConn()
	_ = d.upRC.Control(func(fd uintptr) { d.upFD = int(fd) })
	d.last.Store(time.Now().UnixNano())
	return d, nil
}

// sockConn is a socket on Go's netpoller: a TCP conn or a unix socketpair.
type sockConn interface {
	net.Conn
	syscall.Conn
}

// fileSock turns a dup'd socket fd into a conn on Go's netpoller.
func fileSock(fd int, name string) (sockConn, error) {
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // dups fd again, non-blocking
	f.Close()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(sockConn)
	if !ok {
		c.Close()
		return nil, errors.New("not a stream socket")
	}
	return sc, nil
}

// run is the pump goroutine.
func (d *downPump) run() {
	err := d.relay()
	if err != nil {
		d.report(err)
	}
	unix.Close(d.pr)
	unix.Close(d.pw)
	d.vw.Close()
}

// relay moves frames until the loop stops the pump or the viewer fails.
func (d *downPump) relay() error {
	for {
		if stop, err := d.sendCtl(); err != nil || stop {
			return err
		}
		n, err := d.fill()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) { // a kick: control frames
				_ = d.up.SetReadDeadline(time.Time{})
				continue
			}
			// The upstream ended (EOF or error): every frame read is
			// delivered. Tell the loop and wait for its close frame.
			d.report(&pumpUpstreamEnd{err})
			return d.waitStop()
		}
		if err := d.frame(n); err != nil {
			return err
		}
	}
}

// pumpUpstreamEnd: the upstream ended; err is errEOF on an orderly close.
type pumpUpstreamEnd struct{ err error }

func (e *pumpUpstreamEnd) Error() string { return "upstream: " + e.err.Error() }

var errEOF = errors.New("EOF")

// fill splices what the upstream has (at most the pipe's capacity) into the
// empty pipe, waiting for the upstream to be readable.
func (d *downPump) fill() (int, error) {
	err := d.upRC.Read(d.fillFn)
	if err == nil {
		err = d.serr
	}
	if err != nil {
		return 0, err
	}
	if d.n == 0 {
		return 0, errEOF
	}
	d.last.Store(time.Now().UnixNano())
	return d.n, nil
}

// fillOnce is fill's RawConn callback (bound once: no allocation per call).
func (d *downPump) fillOnce(fd uintptr) bool {
	for {
		n, e := unix.Splice(int(fd), nil, d.pw, nil, d.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		d.n, d.serr = int(n), e
		return true
	}
}

// frame sends the n bytes in the pipe as one binary frame.
func (d *downPump) frame(n int) error {
	h := wsframe.PutHeader(d.hdr[:], ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n)})
	if err := d.send(d.hdr[:h], unix.MSG_MORE); err != nil {
		return err
	}
	d.n, d.serr = n, nil
	err := d.vwRC.Write(d.drainFn)
	if err == nil {
		err = d.serr
	}
	if err != nil {
		return errors.Join(errPumpViewer, err)
	}
	d.bytes.Add(uint64(n))
	d.frames.Add(1)
	d.last.Store(time.Now().UnixNano()) // a slow viewer is no idle upstream
	return nil
}

// drainOnce is frame's RawConn callback: the pipe's d.n bytes to the viewer.
func (d *downPump) drainOnce(fd uintptr) bool {
	for d.n > 0 {
		m, e := unix.Splice(d.pr, nil, int(fd), nil, d.n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch e {
		case nil:
			d.n -= int(m)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			d.serr = e
			return true
		}
	}
	return true
}

// send writes b to the viewer, waiting while its socket is full.
func (d *downPump) send(b []byte, flags int) error {
	d.sb, d.sflags, d.serr = b, flags|unix.MSG_NOSIGNAL, nil
	err := d.vwRC.Write(d.sendFn)
	d.sb = nil
	if err == nil {
		err = d.serr
	}
	if err != nil {
		return errors.Join(errPumpViewer, err)
	}
	return nil
}

// sendOnce is send's RawConn callback.
func (d *downPump) sendOnce(fd uintptr) bool {
	for len(d.sb) > 0 {
		m, e := unix.SendmsgN(int(fd), d.sb, nil, nil, d.sflags)
		switch e {
		case nil:
			d.sb = d.sb[m:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			d.serr = e
			return true
		}
	}
	return true
}

// sendCtl writes the control frames the loop queued, and reports whether the
// loop asked the pump to stop.
func (d *downPump) sendCtl() (bool, error) {
	d.mu.Lock()
	n := copy(d.out[:], d.ctl)
	d.ctl = d.ctl[:0]
	stop := d.stop
	d.mu.Unlock()
	if n > 0 {
		if err := d.send(d.out[:n], 0); err != nil {
			return stop, err
		}
	}
	return stop, nil
}

// waitStop serves control frames until the loop stops the pump.
func (d *downPump) waitStop() error {
	for {
		if stop, err := d.sendCtl(); err != nil || stop {
			return err
		}
		<-d.wake
	}
}

// report hands an end to the loop.
func (d *downPump) report(err error) {
	_ = d.loop.Execute(context.Background(), &pumpEvent{s: d.s, d: d, err: err})
}

// queue hands a control frame to the pump (the loop's side); stop asks it
// to exit once the frame is out. It reports false if the frame did not fit.
func (d *downPump) queue(frame []byte, stop bool) bool {
	d.mu.Lock()
	ok := len(d.ctl)+len(frame) <= ctlMax-(2+125) || stop && len(d.ctl)+len(frame) <= ctlMax
	if ok {
		d.ctl = append(d.ctl, frame...)
	}
	d.stop = d.stop || stop
	d.mu.Unlock()
	if ok || stop {
		select {
		case d.wake <- struct{}{}:
		default:
		}
		_ = d.up.SetReadDeadline(pastDeadline)
	}
	return ok
}

// halt stops the pump on the loop's side (closeUpstream): the upstream
// closes now; the pump sends what was queued, within timeout, and exits.
func (d *downPump) halt(timeout time.Duration) {
	d.queue(nil, true)
	_ = d.vw.SetWriteDeadline(time.Now().Add(timeout))
	d.up.Close()
}

// writeUp writes upstream bytes from the loop without blocking it. What a
// short write leaves is copied and written by a flusher goroutine; while
// one runs, later bytes queue behind it (held counts both).
func (d *downPump) writeUp(bufs [][]byte) error {
	if d.flushing > 0 {
		for _, b := range bufs {
			d.next = append(d.next, b...)
		}
		return nil
	}
	var total int
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		d.iov[n].Base = unsafe.SliceData(b)
		d.iov[n].SetLen(len(b))
		n++
		total += len(b)
	}
	if n == 0 {
		return nil
	}
	var done int
	for {
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(d.upFD), uintptr(unsafe.Pointer(&d.iov[0])), uintptr(n))
		switch e {
		case 0:
			done = int(r)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
		default:
			clear(d.iov[:n])
			return e
		}
		break
	}
	clear(d.iov[:n])
	if done == total {
		return nil
	}
	// Keep the rest: the caller's buffers are not ours after return.
	rest := d.spare[:0]
	d.spare = nil
	for _, b := range bufs {
		if done >= len(b) {
			done -= len(b)
			continue
		}
		rest = append(rest, b[done:]...)
		done = 0
	}
	d.startFlush(rest)
	return nil
}

// held is the number of upstream bytes a short write left behind.
func (d *downPump) held() int { return d.flushing + len(d.next) }

// startFlush hands buf to a flusher goroutine, on the loop.
func (d *downPump) startFlush(buf []byte) {
	d.flushing = len(buf)
	go func() {
		_, err := d.up.Write(buf) // waits on the netpoller, not on the loop
		_ = d.loop.Execute(context.Background(), &upFlushed{s: d.s, d: d, buf: buf, err: err})
	}()
}

// upFlushed: a flusher wrote its buffer; on the loop.
type upFlushed struct {
	s   *session
	d   *downPump
	buf []byte
	err error
}

func (u *upFlushed) Run(context.Context) error {
	s, d := u.s, u.d
	d.flushing = 0
	if s.pump != d || s.state != stRelay {
		return nil
	}
	if u.err != nil {
		s.end(reasonUpstreamWriteFailed)
		return nil
	}
	d.spare = u.buf[:0]
	if len(d.next) > 0 {
		buf := d.next
		d.next = nil
		d.startFlush(buf)
	}
	return nil
}

// pumpEvent hands a pump's end to the loop.
type pumpEvent struct {
	s   *session
	d   *downPump
	err error
}

func (e *pumpEvent) Run(context.Context) error {
	s := e.s
	if s.pump != e.d || s.state != stRelay {
		return nil
	}
	var ue *pumpUpstreamEnd
	switch {
	case errors.As(e.err, &ue) && ue.err == errEOF:
		s.end(reasonUpstreamClosed)
	case errors.As(e.err, &ue):
		s.srv.cfg.Logger.Debug("upstream error", "err", ue.err)
		s.end(reasonUpstreamError)
	default:
		s.drop(pumpViewerReason(e.err))
	}
	return nil
}

// pumpViewerReason names a failed write to the viewer: a viewer that
// vanished mid-stream (reset, broken pipe) is "viewer-gone", as on the gnet
// path, where the read side usually notices it first.
func pumpViewerReason(err error) endReason {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return reasonViewerGone
	}
	return reasonViewerWriteLost
}
