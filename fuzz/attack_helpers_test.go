package fuzz

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/teststack"
	"vncedge/proxy/wsframe"
)

// The attack suite runs the built vncedge binary (with the race detector,
// halting on the first race) as an outside attacker would. VNCEDGE_ATTACK_BIN
// names another binary to attack instead (e.g. main's, to measure "before").

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binNote string
)

// attackBinary builds cmd/vncedge with -race once per test process, for the
// attack and hostile-peer suites both; VNCEDGE_ATTACK_BIN (or
// VNCEDGE_HOSTILE_BIN) names another binary instead. A bare machine without
// cgo, where -race cannot build, gets the plain build (not under
// VNCEDGE_REQUIRE_REAL=1).
func attackBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the vncedge binary")
	}
	for _, env := range []string{"VNCEDGE_ATTACK_BIN", "VNCEDGE_HOSTILE_BIN"} {
		if p := os.Getenv(env); p != "" {
			return p
		}
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vncedge-attack-")
		if err != nil {
			binErr = err
			return
		}
		envTB.Cleanup(func() { os.RemoveAll(dir) })
		binPath = filepath.Join(dir, "vncedge")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/vncedge").CombinedOutput()
		if err != nil && os.Getenv(teststack.RequireRealEnv) != "1" {
			binNote = fmt.Sprintf("built without -race (go build -race: %v)", err)
			out, err = exec.Command("go", "build", "-o", binPath, "../cmd/vncedge").CombinedOutput()
		}
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	if binNote != "" {
		t.Log(binNote)
	}
	return binPath
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// edgeProc is one running vncedge.
type edgeProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // viewer listen address
	admin  string
	log    *syncBuf
	exited chan struct{}
	err    error // exit status, once exited is closed
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startEdge runs the attack binary with args (plus --listen, --admin and
// text logs) and waits for /readyz. The test fails if the process dies, races
// or panics; the process is killed at cleanup.
func startEdge(t *testing.T, args ...string) *edgeProc {
	t.Helper()
	bin := attackBinary(t)
	p := &edgeProc{t: t, addr: freeAddr(t), admin: freeAddr(t), log: &syncBuf{}, exited: make(chan struct{})}
	all := append([]string{"--listen", p.addr, "--admin", p.admin, "--log-format", "text", "--log-level", "warn"}, args...)
	p.cmd = exec.Command(bin, all...)
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1 exitcode=66")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("vncedge exited at start: %v\n%s", p.err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 (last: %v)\n%s", err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a process we do not control: no event to await
	}
	return p
}

// alive fails the test if the process exited, raced or panicked.
func (p *edgeProc) alive() {
	p.t.Helper()
	select {
	case <-p.exited:
		p.t.Fatalf("vncedge died: %v\n%s", p.err, tail(p.log.String(), 8000))
	default:
	}
	if l := p.log.String(); strings.Contains(l, "DATA RACE") || strings.Contains(l, "panic:") {
		p.t.Fatalf("vncedge raced or panicked:\n%s", tail(l, 8000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// status reads a field (kB) of /proc/PID/status, e.g. VmHWM or VmRSS.
func (p *edgeProc) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return -1
}

// fds counts the process's open descriptors.
func (p *edgeProc) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// metric returns the value of an unlabelled metric line (e.g.
// go_goroutines) from /metrics, or -1.
func (p *edgeProc) metric(name string) float64 {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return -1
}

// metricsText is the whole /metrics exposition.
func (p *edgeProc) metricsText() string {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// settle waits (bounded) until f reports true; used for counts of a process
// we do not control, which have no event to await.
func settle(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// upgradeRequest is a complete WebSocket upgrade request head for path.
func upgradeRequest(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
}

// dialFrom connects to addr from the loopback source address src ("" = any).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d.Dial("tcp", addr)
}

// clientFrame is one masked client frame.
func clientFrame(op ws.OpCode, payload []byte) []byte {
	mask := [4]byte{1, 2, 3, 4}
	var hdr [wsframe.MaxHeaderSize]byte
	n := wsframe.PutHeader(hdr[:], ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: int64(len(payload))})
	out := append(hdr[:n:n], payload...)
	ws.Cipher(out[n:], mask, 0)
	return out
}

// openRaw opens a WebSocket to path from src with a small receive buffer
// (so a client that stops reading fills up fast) and reads the 101 head.
func openRaw(t *testing.T, src, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(upgradeRequest(addr, path)); err != nil {
		t.Fatal(err)
	}
	head, err := readHead(c)
	if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
		t.Fatalf("upgrade of %s: %q %v", path, head, err)
	}
	return c
}

// readHead reads an HTTP response head byte by byte (nothing past it).
func readHead(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		b = append(b, one[0])
		if len(b) > 16<<10 {
			return string(b), errors.New("head too long")
		}
	}
	return string(b), nil
}

// flood writes batch over and over to c until total bytes went out, d
// passed, or the peer stopped taking them (closed, or a write stalled for
// 2 s: it does not read, so TCP pushes back). It returns the bytes written.
func flood(c net.Conn, batch []byte, total int64, d time.Duration) int64 {
	var sent int64
	end := time.Now().Add(d)
	for sent < total && time.Now().Before(end) {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Write(batch)
		sent += int64(n)
		if err != nil {
			break
		}
	}
	return sent
}

// frameCounter counts the server frames a flooding client reads back.
type frameCounter struct {
	pongs, data int
	closed      bool   // a close frame came
	reason      string // its reason
	ended       bool   // the server closed the connection (EOF or reset)
}

func (f *frameCounter) OnData(_ ws.OpCode, _ []byte, fin bool) error {
	if fin {
		f.data++
	}
	return nil
}

func (f *frameCounter) OnControl(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpPong:
		f.pongs++
	case ws.OpClose:
		f.closed = true
		if len(payload) > 2 {
			f.reason = string(payload[2:])
		}
	}
	return nil
}

// drainFrames reads server frames from c (after the 101) until EOF, a close
// frame, or idle passes without a byte, and counts them. For a bound only:
// a loaded machine can make it stop early, never count more than was sent.
func drainFrames(c net.Conn, idle time.Duration) *frameCounter {
	f := &frameCounter{}
	d := wsframe.Decoder{Role: wsframe.Client, MaxPayload: 64 << 20, AllowText: true}
	buf := make([]byte, 64<<10)
	for !f.closed {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		n, err := c.Read(buf)
		if d.Feed(buf[:n], f) != nil {
			break
		}
		if err != nil {
			var ne net.Error
			f.ended = !errors.As(err, &ne) || !ne.Timeout()
			break
		}
	}
	return f
}
