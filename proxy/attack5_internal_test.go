package proxy

// White-box attack on the drain waiter (flow_pause.go): a writability edge
// that comes after the loop's refused write but before the waiter goroutine
// starts to wait must still wake the loop, or the session stays paused for
// good (the socket takes another edge only after another refused write, and
// gnet, level-triggered, may empty its outbound on that very edge without
// one).

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// a5Conn is a viewer conn with only what a drainWaiter uses: Dup and Wake.
type a5Conn struct {
	gnet.Conn
	fd    int
	wakes chan struct{}
}

func (c *a5Conn) Dup() (int, error) { return unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0) }

func (c *a5Conn) Wake(gnet.AsyncCallback) error {
	select {
	case c.wakes <- struct{}{}:
	default:
	}
	return nil
}

// a5Pair is a loopback TCP pair with small buffers: w writes, r reads.
func a5Pair(t *testing.T) (w, r *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	w, r = c.(*net.TCPConn), s.(*net.TCPConn)
	t.Cleanup(func() { w.Close(); r.Close() })
	_ = w.SetWriteBuffer(16 << 10)
	_ = r.SetReadBuffer(16 << 10)
	return w, r
}

// a5Fill writes to w until the socket refuses (EAGAIN) and returns the count.
func a5Fill(t *testing.T, w *net.TCPConn) int {
	t.Helper()
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	total := 0
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for {
			n, err := unix.Write(int(fd), buf)
			if n > 0 {
				total += n
			}
			if err == unix.EAGAIN {
				return true
			}
			if err != nil {
				werr = err
				return true
			}
		}
	})
	if err != nil || werr != nil {
		t.Fatal(err, werr)
	}
	return total
}

func a5Writable(t *testing.T, fd int) bool {
	t.Helper()
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(p, 0)
	if err != nil && err != unix.EINTR {
		t.Fatal(err)
	}
	return n == 1 && p[0].Revents&unix.POLLOUT != 0
}

// TestAttack5DrainWaiterEdgeBeforeWait: the loop's write was refused (EAGAIN),
// the viewer then drained everything and the socket's writability edge fired
// before the waiter goroutine took the loop's kick (it runs when the scheduler
// lets it: on 2 busy cores that is long enough for a loopback viewer to read
// megabytes). The kick must still wake the loop: the socket is writable and
// will give no other edge. RawConn.Write resets the poll descriptor's
// readiness before calling the callback (poll.FD.RawWrite → prepareWrite), so
// the edge already latched by the netpoller is thrown away and the waiter
// waits for one that never comes: a lost wake-up, the session paused for good.
func TestAttack5DrainWaiterEdgeBeforeWait(t *testing.T) {
	w, r, wfd, vc, dw := a5Waiter(t)
	defer dw.close()

	n := a5Fill(t, w) // the loop's refused write: SOCK_NOSPACE, one edge owed
	if _, err := io.ReadFull(r, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a5Writable(t, wfd) { // the viewer's ACKs freed the socket: the edge fired
		if time.Now().After(deadline) {
			t.Fatal("the socket never became writable")
		}
		time.Sleep(time.Millisecond)
	}
	// Let the runtime's netpoller read the edge (it latches it in the poll
	// descriptor, as it does when the waiter goroutine is merely late). There is
	// no event to await for that: the netpoller runs when the scheduler idles.
	time.Sleep(30 * time.Millisecond)

	dw.kick() // the kick the waiter takes late
	select {
	case <-vc.wakes:
	case <-time.After(2 * time.Second):
		t.Fatal("lost wake-up: the viewer socket is writable (its edge came before the waiter waited) but the drain waiter never woke the loop")
	}
}

// TestAttack5DrainWaiterNoSpin: once the socket refused a write, a kick
// must not wake the loop before the viewer reads (a wake-up without progress
// would kick again at once: a spin), and must wake it once the viewer does.
func TestAttack5DrainWaiterNoSpin(t *testing.T) {
	w, r, wfd, vc, dw := a5Waiter(t)
	defer dw.close()
	for round := 0; round < 20; round++ {
		n := a5Fill(t, w)
		dw.kick()
		select {
		case <-vc.wakes:
			if !a5Writable(t, wfd) {
				t.Fatalf("round %d: woken while the socket is full", round)
			}
		case <-time.After(20 * time.Millisecond): // not synchronisation: checks that nothing happens
		}
		if _, err := io.ReadFull(r, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-vc.wakes:
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: the viewer drained but no wake-up", round)
		}
	}
}

// a5Waiter makes a socket pair (w written by the "loop", r read by the
// "viewer"), a fake viewer conn on w's fd that records Wake calls, and a drain
// waiter on it.
func a5Waiter(t *testing.T) (w, r *net.TCPConn, wfd int, vc *a5Conn, dw *drainWaiter) {
	t.Helper()
	w, r = a5Pair(t)
	wrc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = wrc.Control(func(fd uintptr) { wfd = int(fd) })
	vc = &a5Conn{fd: wfd, wakes: make(chan struct{}, 1)}
	if dw, err = newDrainWaiter(vc); err != nil {
		t.Fatal(err)
	}
	return w, r, wfd, vc, dw
}
