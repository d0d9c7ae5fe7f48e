package main

// Attacks on the operator work (issue 16) against the built binary and the
// command line. Each test here failed on the code it was written against;
// the comment above each says what the attack is and what goes wrong.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
)

// startShell is startBin for a vncedge started through sh (to set a
// resource limit first): script gets the binary as $0 and args as "$@".
func startShell(t *testing.T, script string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", script, edgeBin(t)}, args...)...)
	p := &proc{cmd: cmd, lines: make(chan string, 1000), done: make(chan error, 1)}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.mu.Lock()
				p.seen = append(p.seen, sc.Text())
				p.mu.Unlock()
				select {
				case p.lines <- sc.Text():
				default: // a flood of lines must not block the process
				}
			}
		}()
	}
	go func() { wg.Wait(); close(p.lines); p.done <- cmd.Wait() }()
	return p
}

// TestOpattackBinaryAdminErrorsAreJSON — attack: exhaust the process's
// descriptors (a TLS handshake flood does it, see
// TestOpattackTLSHandshakesBoundedByMaxConns; here idle connections to the
// admin port, under a low RLIMIT_NOFILE). The admin http.Server has no
// ErrorLog, so net/http writes "2026/12/01 … http: Accept error: accept4:
// too many open files; retrying in 5ms" through the standard log package:
// plain text on stderr in json mode, exactly when an operator most needs
// parsable logs. (/healthz stops answering at the same time.)
func TestOpattackBinaryAdminErrorsAreJSON(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	listen, admin := freePort(t), freePort(t)
	p := startShell(t, `ulimit -n 64 && exec "$0" "$@"`, listen, vnc.Addr(), "--admin", admin, "--log-format", "json")
	p.await(t, `"vncedge listening"`)
	for range 100 { // more than the 64 descriptors vncedge may hold
		c, err := net.Dial("tcp", admin)
		if err != nil {
			break
		}
		defer c.Close()
	}
	l := p.await(t, "too many open files")
	var v map[string]any
	if err := json.Unmarshal([]byte(l), &v); err != nil {
		t.Errorf("json mode wrote a non-JSON line: %q", l)
	}
}

// TestOpattackTargetPortRange — attack (careless operator): a typo in the
// target's port, "vncedge 6080 127.0.0.1:59000" typed as
// "127.0.0.1:590000". The listen port is range-checked ("port 65536 out of
// range") but the target's is not: vncedge starts, logs "vncedge
// listening" with the impossible target, and every viewer then fails its
// dial. A bad target must fail the start, as a bad listen address does.
func TestOpattackTargetPortRange(t *testing.T) {
	for _, args := range [][]string{
		{"127.0.0.1:6080", "127.0.0.1:590000"},
		{"--target", "tcp://127.0.0.1:590000"},
	} {
		o, err := parseFlags(args)
		if err == nil {
			_, _, err = buildConfig(o, slog.New(slog.DiscardHandler))
		}
		if err == nil {
			t.Errorf("%s: accepted (target %q), want an error naming the port", strings.Join(args, " "), o.target)
		}
	}
}

// TestOpattackListenPortZero — attack (careless operator): "vncedge 0
// host:5900" or "--listen 127.0.0.1:0" is accepted and binds a random
// port, but the start-up line reports the configured ":0", so nobody can
// tell where viewers should connect. The line must name the bound port.
func TestOpattackListenPortZero(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	p := startBin(t, "127.0.0.1:0", vnc.Addr(), "--admin", "", "--log-format", "json")
	l := p.await(t, `"vncedge listening"`)
	var v struct{ Addr string }
	if err := json.Unmarshal([]byte(l), &v); err != nil {
		t.Fatal(err)
	}
	if _, port, err := net.SplitHostPort(v.Addr); err != nil || port == "0" {
		t.Errorf("start-up line names addr %q, not the port bound: %s", v.Addr, l)
	}
}

// TestOpattackTLSDescriptorsVersusMaxConns — attack: the default MaxConns
// is RLIMIT_NOFILE − 128, counting one descriptor per gnet conn. A TLS
// viewer holds three (its TCP socket in the bridge and both socketpair
// ends) but counts as one conn, so TLS viewers that completed their
// handshake exhaust the descriptors at about a third of MaxConns: accept
// fails with EMFILE ("accept failed; retrying"), new viewers hang in the
// backlog and upstream dials fail, instead of the excess being shed. Here
// under ulimit -n 600 (MaxConns 472), 250 idle TLS viewers (750
// descriptors) must be shed, not run the process out of descriptors.
func TestOpattackTLSDescriptorsVersusMaxConns(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	dir := t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	p := startShell(t, `ulimit -n 600 && exec "$0" "$@"`, listen, vnc.Addr(), "--admin", "", "--log-format", "json",
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"))
	p.await(t, `"vncedge listening"`)
	var mu sync.Mutex
	var open []net.Conn
	done := false
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		for _, c := range open {
			c.Close()
		}
	})
	for range 250 {
		go func() {
			raw, err := net.Dial("tcp", listen)
			if err != nil {
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				raw.Close()
				return
			}
			open = append(open, raw)
			mu.Unlock()
			_ = raw.SetDeadline(time.Now().Add(30 * time.Second)) // failure bound only
			c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "localhost"})
			_ = c.Handshake() // a shed viewer fails here; an admitted one stays idle
		}()
	}
	// Either the excess is shed (MaxConns' warning) or accept runs out of
	// descriptors: whichever vncedge logs first.
	l := p.awaitAny(t, "connection limit reached", "too many open files")
	if strings.Contains(l, "too many open files") {
		t.Errorf("250 TLS viewers ran vncedge out of descriptors below MaxConns: %s", l)
	}
}

// awaitAny returns the first line containing one of wants.
func (p *proc) awaitAny(t *testing.T, wants ...string) string {
	t.Helper()
	timeout := time.After(30 * time.Second) // a failure bound, not synchronisation
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("vncedge exited before logging any of %q:\n%s", wants, p.output())
			}
			for _, w := range wants {
				if strings.Contains(l, w) {
					return l
				}
			}
		case <-timeout:
			t.Fatalf("none of %q within 30s:\n%s", wants, p.output())
		}
	}
}

// TestOpattackBinaryFatalErrorIsJSON — attack (careless operator): start
// vncedge in json mode on a port that is taken (or with a broken --web
// directory, or an unreadable certificate). It exits 1, as it should,
// but the one line that says why is main's plain "vncedge: proxy: listen
// …: address already in use" on stderr: a JSON log pipeline (Loki,
// CloudWatch, journald → JSON) drops or mangles the only line that
// matters. Once --log-format json is known, the fatal error must be a
// JSON line too.
func TestOpattackBinaryFatalErrorIsJSON(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p := startBin(t, taken.Addr().String(), "127.0.0.1:1", "--admin", "", "--log-format", "json")
	if code := p.wait(t); code == 0 {
		t.Fatalf("exit code 0 with the listen port taken")
	}
	for _, l := range strings.Split(p.output(), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("json mode, fatal error as a non-JSON line: %q", l)
		}
	}
}
