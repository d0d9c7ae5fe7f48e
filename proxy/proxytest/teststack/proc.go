// Package teststack starts real components (Xvnc, websockify, X clients) on
// 127.0.0.1 for end-to-end tests, and stops them when the test ends. Tests
// are skipped when a tool is missing, unless VNCEDGE_REQUIRE_REAL=1.
package teststack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireRealEnv is the environment variable that turns a missing tool into a
// test failure instead of a skip.
const RequireRealEnv = "VNCEDGE_REQUIRE_REAL"

// ReadyTimeout bounds how long a component may take to accept connections.
const ReadyTimeout = 20 * time.Second

// packages maps a tool to the Debian package that ships it.
var packages = map[string]string{
	"Xvnc":       "tigervnc-standalone-server",
	"websockify": "websockify",
	"xclock":     "x11-apps",
	"xlogo":      "x11-apps",
	"xeyes":      "x11-apps",
	"xsetroot":   "x11-xserver-utils",
	"xdotool":    "xdotool",
	"xev":        "x11-utils",
	"setxkbmap":  "x11-xkb-utils",
	"chromium":   "chromium",
}

// Require skips the test when one of tools is not on PATH, or fails it when
// VNCEDGE_REQUIRE_REAL=1.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err == nil {
			continue
		}
		pkg := packages[tool]
		if pkg == "" {
			pkg = tool
		}
		if os.Getenv(RequireRealEnv) == "1" {
			t.Fatalf("missing %s (apt-get install %s) and %s=1", tool, pkg, RequireRealEnv)
		}
		t.Skipf("missing %s (apt-get install %s)", tool, pkg)
	}
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimSpace(b.buf))
}

// Proc is a process started in its own process group.
type Proc struct {
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{}
	err    error // set before done is closed
	stop   sync.Once
}

// startProc starts name with args in a new process group. Its stdout and
// stderr are kept (the last 64 KiB) for error messages.
func startProc(name string, env []string, args ...string) (*Proc, error) {
	p := &Proc{output: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns the last 64 KiB the process wrote to stdout and stderr.
func (p *Proc) Output() string { return p.output.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, and SIGKILL if the process has not
// exited after 5 s, then waits for it. It is safe to call more than once.
func (p *Proc) Stop() {
	p.stop.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		timer := time.NewTimer(5 * time.Second)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Children that outlived the leader (e.g. websockify workers).
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// errExited marks errors of a process that exited before it was ready.
var errExited = errors.New("exited before it was ready")

// exitError describes why the process has exited, with its output.
func (p *Proc) exitError() error {
	return fmt.Errorf("%s %w (%v); output:\n%s", p.cmd.Path, errExited, p.err, p.Output())
}

// waitReady polls addr until check succeeds on a fresh connection, the
// process exits, or ReadyTimeout passes. check may be nil.
func (p *Proc) waitReady(addr string, check func(net.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		lastErr = probe(ctx, addr, check)
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s after %v (last: %v); output:\n%s",
				p.cmd.Path, addr, ReadyTimeout, lastErr, p.Output())
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, addr string, check func(net.Conn) error) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if check == nil {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	return check(c)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

// startRetry starts a component up to attempts times: start picks fresh
// ports (and displays) each time and returns the process and the address to
// probe; check (may be nil) runs on a probe connection. A process that exits
// before it is ready (typically a port or display collision) is retried; a
// timeout is not.
func startRetry(attempts int, start func() (*Proc, string, error), check func(net.Conn) error) (*Proc, string, error) {
	var errs []error
	for i := 0; i < attempts; i++ {
		p, addr, err := start()
		if err != nil {
			return nil, "", err
		}
		err = p.waitReady(addr, check)
		if err == nil {
			return p, addr, nil
		}
		p.Stop()
		errs = append(errs, fmt.Errorf("attempt %d: %w", i+1, err))
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
