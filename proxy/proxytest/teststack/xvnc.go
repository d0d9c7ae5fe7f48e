package teststack

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
)

// Xvnc is a running TigerVNC Xvnc server.
type Xvnc struct {
	// Display is the X display number (":N" is DisplayName).
	Display int
	// Port is the RFB TCP port on 127.0.0.1.
	Port int
	proc *Proc
}

// XvncArgs are the arguments StartXvnc always passes (before the display,
// port and extra arguments). -retro paints the classic grey weave on the root
// window instead of black, a static, deterministic, non-trivial desktop.
var XvncArgs = []string{
	"-SecurityTypes", "None",
	"-geometry", "1024x768",
	"-depth", "24",
	"-localhost",
	"-nolisten", "tcp",
	"-UseBlacklist=0",
	"-retro",
}

// StartXvnc starts Xvnc on a free display and a free 127.0.0.1 port with
// XvncArgs plus extra (later arguments override earlier ones), waits until it
// sends its RFB version banner, and stops it when the test ends. It skips the
// test when Xvnc is not installed.
func StartXvnc(t testing.TB, extra ...string) *Xvnc {
	t.Helper()
	Require(t, "Xvnc")
	x := &Xvnc{}
	p, _, err := startRetry(5, func() (*Proc, string, error) {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		display := freeDisplay()
		args := append([]string{":" + strconv.Itoa(display)}, XvncArgs...)
		args = append(args, "-rfbport", strconv.Itoa(port))
		args = append(args, extra...)
		p, err := startProc("Xvnc", nil, args...)
		if err != nil {
			return nil, "", err
		}
		x.Display, x.Port = display, port
		return p, hostPort(port), nil
	}, readBanner)
	if err != nil {
		t.Fatalf("teststack: start Xvnc: %v", err)
	}
	x.proc = p
	t.Cleanup(p.Stop)
	return x
}

// readBanner reads an RFB ProtocolVersion banner from c.
func readBanner(c net.Conn) error {
	var b [12]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("reading RFB banner: %w", err)
	}
	if !bytes.HasPrefix(b[:], []byte("RFB ")) {
		return fmt.Errorf("not an RFB banner: %q", b[:])
	}
	return nil
}

// freeDisplay picks a display number in [100, 900) with no lock file or
// socket. Another process may still take it first; StartXvnc retries then.
func freeDisplay() int {
	for {
		n := 100 + rand.IntN(800)
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", n)); err == nil {
			continue
		}
		return n
	}
}

// Addr returns the RFB address, 127.0.0.1:Port.
func (x *Xvnc) Addr() string { return hostPort(x.Port) }

// DisplayName returns the X display name, ":N".
func (x *Xvnc) DisplayName() string { return ":" + strconv.Itoa(x.Display) }

// Output returns the last 64 KiB of Xvnc's log.
func (x *Xvnc) Output() string { return x.proc.Output() }

// Proc returns the Xvnc process.
func (x *Xvnc) Proc() *Proc { return x.proc }

// StartClient runs an X client (name with args) on this display and stops it
// when the test ends. It skips the test when the client is not installed.
// The client is started, not awaited: X clients give no readiness signal.
func (x *Xvnc) StartClient(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	Require(t, name)
	p, err := startProc(name, []string{"DISPLAY=" + x.DisplayName()}, args...)
	if err != nil {
		t.Fatalf("teststack: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// StartXclock runs `xclock -update 1` on this display for pixels that change
// every second.
func (x *Xvnc) StartXclock(t testing.TB) *Proc {
	t.Helper()
	return x.StartClient(t, "xclock", "-update", "1")
}
