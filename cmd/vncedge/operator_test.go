package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
)

func TestPositionalArgs(t *testing.T) {
	cases := []struct {
		args           []string
		listen, target string
		all            bool
		wantErr        string
	}{
		{args: []string{"127.0.0.1:6090", "127.0.0.1:5901"}, listen: "127.0.0.1:6090", target: "tcp://127.0.0.1:5901"},
		{args: []string{"6090", "localhost:5900"}, listen: ":6090", all: true, target: "tcp://localhost:5900"},
		{args: []string{"127.0.0.1:6090", "[::1]:5900", "--log-level", "debug"}, listen: "127.0.0.1:6090", target: "tcp://[::1]:5900"},
		{args: []string{"--log-level", "debug", "127.0.0.1:6090", "--target", "ws://h:1/x"}, listen: "127.0.0.1:6090", target: "ws://h:1/x"},
		{args: []string{"--listen", "6091", "--target", "127.0.0.1:5972"}, listen: ":6091", all: true, target: "tcp://127.0.0.1:5972"},
		{args: []string{"--listen", "[::1]:6091", "--target", "tcp://h:1"}, listen: "[::1]:6091", target: "tcp://h:1"},
		{args: []string{"--", "127.0.0.1:6090", "h:1"}, listen: "127.0.0.1:6090", target: "tcp://h:1"},
		{args: []string{"1", "h:1", "x"}, wantErr: "too many arguments"},
		{args: []string{"--listen", "127.0.0.1:1", "127.0.0.1:2"}, wantErr: "listen address given twice"},
		{args: []string{"127.0.0.1:1", "h:1", "--target", "tcp://h:2"}, wantErr: "target given twice"},
		{args: []string{"--listen", "70000"}, wantErr: "out of range"},
		{args: []string{"--listen", "host"}, wantErr: "want host:port or a port"},
		{args: []string{"--target", "h"}, wantErr: "host:port"},
		{args: []string{"--target", ":5900"}, wantErr: "names no host"},
		{args: []string{"--target", "h:vnc"}, wantErr: "port from 1 to 65535"},
	}
	for _, c := range cases {
		o, err := parseFlags(c.args)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: err %v, want %q", c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if o.listen != c.listen || o.target != c.target || o.listenAll != c.all {
			t.Errorf("%q: listen %q (all %v) target %q, want %q (%v) %q", c.args, o.listen, o.listenAll, o.target, c.listen, c.all, c.target)
		}
		if o.logLevel != "info" && o.logLevel != "debug" {
			t.Errorf("%q: log level %q", c.args, o.logLevel)
		}
	}
}

// edgeBin is the binary reload_test.go's vncedgeBin builds (once, -race).
func edgeBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := vncedgeBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a running vncedge whose output lines are collected.
type proc struct {
	cmd   *exec.Cmd
	lines chan string // stdout and stderr, closed at exit
	done  chan error
	mu    sync.Mutex
	seen  []string
}

func startBin(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(edgeBin(t), args...), lines: make(chan string, 1000), done: make(chan error, 1)}
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	var wg sync.WaitGroup
	for _, r := range []interface{ Read([]byte) (int, error) }{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.mu.Lock()
				p.seen = append(p.seen, sc.Text())
				p.mu.Unlock()
				p.lines <- sc.Text()
			}
		}()
	}
	go func() { wg.Wait(); close(p.lines); p.done <- p.cmd.Wait() }()
	return p
}

// await returns the first line containing want, failing if the process ends first.
func (p *proc) await(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(20 * time.Second) // a failure bound, not synchronisation
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("vncedge exited before logging %q:\n%s", want, p.output())
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q line within 20s:\n%s", want, p.output())
		}
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, "\n")
}

// wait waits for exit and returns the exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	for range p.lines { // drain, so the readers finish
	}
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatalf("vncedge did not exit:\n%s", p.output())
	}
	return -1
}

// TestBinaryWebsockifyArgsJSONLog runs vncedge with websockify's positional
// arguments (a bare host:port target, a flag after them), relays a session,
// stops it with SIGTERM, and checks that every output line is JSON and that
// the lifecycle lines are there.
func TestBinaryWebsockifyArgsJSONLog(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	listen, admin := freePort(t), freePort(t)
	p := startBin(t, listen, vnc.Addr(), "--admin", admin, "--log-format", "json", "--log-level", "debug") // debug: gnet's own lines too
	start := p.await(t, `"vncedge listening"`)
	for _, want := range []string{`"resolver":"target"`, `"target":"tcp://` + vnc.Addr() + `"`} {
		if !strings.Contains(start, want) {
			t.Errorf("start-up line lacks %s: %s", want, start)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := rfbclient.DialWS(ctx, "ws://"+listen+"/websockify", []string{"binary"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rfbclient.Handshake(ws, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RequestFull(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFull(); err != nil {
		t.Fatal(err)
	}
	if l := p.await(t, `"session start"`); !strings.Contains(l, `"upstream":"tcp://`+vnc.Addr()+`"`) {
		t.Errorf("session start line lacks the upstream: %s", l)
	}
	ws.Close()
	p.await(t, `"session end"`)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := p.await(t, `"vncedge stopped"`); !strings.Contains(l, `"sessions_total":1`) {
		t.Errorf("stopped line: %s", l)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	out := p.output()
	for _, l := range strings.Split(out, "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("not JSON: %q", l)
		}
	}
}

// TestBinaryPortInUse: a taken listen or admin port fails the start with a
// non-zero exit, and nothing claims to be listening.
func TestBinaryPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct{ name, listen, admin, want string }{
		{"listen", taken.Addr().String(), freePort(t), "address already in use"},
		{"admin", freePort(t), taken.Addr().String(), "--admin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startBin(t, "--listen", c.listen, "--admin", c.admin, "--target", "tcp://127.0.0.1:1")
			if code := p.wait(t); code == 0 {
				t.Errorf("exit code 0 with the %s port taken", c.name)
			}
			out := p.output()
			if strings.Contains(out, "vncedge listening") || !strings.Contains(out, c.want) {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

// TestBinaryTLSWebUnixTarget runs the binary as a websockify user would on a
// VM: TLS on the listener, noVNC files from --web, the VNC server on a unix
// socket; then renews the certificate on disk and checks that new viewers
// get the new one without a restart.
func TestBinaryTLSWebUnixTarget(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vnc.sock")
	teststack.StartXvnc(t, "-rfbunixpath", sock)
	dir, web := t.TempDir(), t.TempDir()
	pool, err := teststack.WriteTestCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte("novnc here"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	_, port, _ := net.SplitHostPort(listen)
	p := startBin(t, listen, "--unix-target", sock, "--web", web, "--admin", "",
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"))
	p.await(t, "vncedge listening")

	tc := &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := hc.Get("https://localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "novnc here" {
		t.Errorf("https GET /: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := rfbclient.Dialer{Protocols: []string{"binary"}, TLSConfig: tc}.Dial(ctx, "wss://localhost:"+port+"/websockify")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rfbclient.Fetch(ws, rfbclient.Options{}); err != nil {
		t.Fatalf("RFB over wss:// to Xvnc's unix socket: %v", err)
	}
	ws.Close()

	serial := func() string {
		c, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	before := serial()
	renewed := t.TempDir()
	if _, err := teststack.WriteTestCert(renewed); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} { // as a renewal does: replace by rename
		b, _ := os.ReadFile(filepath.Join(renewed, f))
		tmp := filepath.Join(dir, f+".new")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for serial() == before {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded within 10s (sha256 %s):\n%s", before, p.output())
		}
		time.Sleep(100 * time.Millisecond) // polling a process we do not control: no event to await
	}
	p.await(t, "certificate reloaded")
}

// dialVia returns a NetDial that connects from source and writes header
// (a PROXY protocol header for the connection's addresses) first.
func dialVia(source string, header func(dst net.Addr) []byte) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil && header != nil {
			_, err = c.Write(header(c.RemoteAddr()))
		}
		return c, err
	}
}

func proxyHeader(version byte, client string) func(dst net.Addr) []byte {
	return func(dst net.Addr) []byte {
		src, _ := net.ResolveTCPAddr("tcp", client)
		b, _ := proxyproto.HeaderProxyFromAddrs(version, src, dst).Format()
		return b
	}
}

// TestBinaryRealClientAddresses: --proxy-protocol (v1 and v2) and
// --trusted-proxies against the built binary, with --max-per-ip 1: users
// behind one balancer are told apart, the same user twice is refused.
func TestBinaryRealClientAddresses(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	try := func(listen string, d rfbclient.Dialer) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Protocols = []string{"binary"}
		ws, err := d.Dial(ctx, "ws://"+listen+"/websockify")
		if err != nil {
			return err
		}
		t.Cleanup(func() { ws.Close() })
		_, _, err = rfbclient.Fetch(ws, rfbclient.Options{})
		return err
	}
	is429 := func(err error) bool {
		var se *rfbclient.StatusError
		return errors.As(err, &se) && se.Status == 429
	}
	t.Run("proxy-protocol", func(t *testing.T) {
		listen := freePort(t)
		p := startBin(t, "--listen", listen, "--admin", "", "--target", vnc.Addr(), "--max-per-ip", "1", "--proxy-protocol")
		p.await(t, "vncedge listening")
		if err := try(listen, rfbclient.Dialer{NetDial: dialVia("127.0.0.1", proxyHeader(1, "203.0.113.7:1000"))}); err != nil {
			t.Fatalf("user A (v1): %v", err)
		}
		if err := try(listen, rfbclient.Dialer{NetDial: dialVia("127.0.0.1", proxyHeader(2, "203.0.113.8:1000"))}); err != nil {
			t.Fatalf("user B (v2): %v", err)
		}
		if err := try(listen, rfbclient.Dialer{NetDial: dialVia("127.0.0.1", proxyHeader(2, "203.0.113.7:1001"))}); !is429(err) {
			t.Errorf("user A again: %v, want 429", err)
		}
		p.await(t, `"viewer":"203.0.113.8:1000"`)
	})
	t.Run("trusted-proxies", func(t *testing.T) {
		listen := freePort(t)
		p := startBin(t, "--listen", listen, "--admin", "", "--target", vnc.Addr(), "--max-per-ip", "1", "--trusted-proxies", "127.0.0.1/32")
		p.await(t, "vncedge listening")
		xff := func(source, a string) rfbclient.Dialer {
			return rfbclient.Dialer{NetDial: dialVia(source, nil), Header: http.Header{"X-Forwarded-For": {a}}}
		}
		if err := try(listen, xff("127.0.0.1", "203.0.113.7")); err != nil {
			t.Fatalf("user A: %v", err)
		}
		if err := try(listen, xff("127.0.0.1", "203.0.113.8")); err != nil {
			t.Fatalf("user B: %v", err)
		}
		if err := try(listen, xff("127.0.0.1", "203.0.113.7")); !is429(err) {
			t.Errorf("user A again: %v, want 429", err)
		}
		if err := try(listen, xff("127.0.0.3", "203.0.113.50")); err != nil {
			t.Fatalf("direct client: %v", err)
		}
		if err := try(listen, xff("127.0.0.3", "203.0.113.51")); !is429(err) {
			t.Errorf("direct client forging X-Forwarded-For: %v, want 429", err)
		}
	})
}
