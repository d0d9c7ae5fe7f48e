package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinarySignalDrain builds the real binary, relays a session through it,
// checks /healthz and /readyz, then sends SIGTERM: the viewer gets close 1001
// and the process exits 0.
func TestBinarySignalDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vncedge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	listen, admin := freePort(t), freePort(t)
	cmd := exec.Command(bin, "--listen", listen, "--admin", admin, "--target", "tcp://"+vnc.Addr(), "--log-format", "text")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The "listening" line is logged before the listener is up; /readyz says when it is.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we do not control: no event to await
	}
	if resp, err := http.Get("http://" + admin + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = ws.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	for err == nil { // updates still in flight come first
		_, err = c.ReadMessage()
	}
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) || ce.Code != 1001 {
		t.Fatalf("after SIGTERM the viewer read %v, want close 1001", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("vncedge did not exit after SIGTERM")
	}
	var log []string
	for l := range lines {
		log = append(log, l)
	}
	all := strings.Join(log, "\n")
	for _, want := range []string{"session end", "close_code=1001", "shutting down"} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q:\n%s", want, all)
		}
	}
}
